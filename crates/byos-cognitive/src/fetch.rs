//! Content fetched by URL (SAS links the client gives, byos's own storage over HTTPS): one client
//! trusting only byos's CA, and one bounded read that every caller shares, so that no source can make
//! the server hold more than the caller's limit.

use bytes::{Bytes, BytesMut};

use byos_core::{ApiError, OrInternal};

/// Why content could not be fetched, never naming the URL (it may carry the client's SAS, which
/// reports and records must not repeat).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FetchError {
    /// The request failed or the server refused it.
    Unreachable(String),
    /// The content is larger than the caller takes.
    TooLarge { limit: u64 },
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreachable(why) => f.write_str(why),
            Self::TooLarge { limit } => write!(f, "it is larger than {limit} bytes"),
        }
    }
}

/// Why a request failed, without its URL.
pub(crate) fn fetch_error(e: reqwest::Error) -> String {
    e.without_url().to_string()
}

/// The body of `url`, read as it arrives and given up as soon as it passes `limit` bytes (a body
/// without a length, or with a false one, is not buffered whole first).
pub(crate) async fn fetch_limited(http: &reqwest::Client, url: &str, limit: u64) -> Result<Bytes, FetchError> {
    let mut response = http.get(url).send().await.map_err(|e| FetchError::Unreachable(fetch_error(e)))?;
    if !response.status().is_success() {
        return Err(FetchError::Unreachable(format!("the server answered {}", response.status())));
    }
    if response.content_length().is_some_and(|length| length > limit) {
        return Err(FetchError::TooLarge { limit });
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| FetchError::Unreachable(fetch_error(e)))? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(FetchError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The client that fetches content by URL: HTTPS only, trusting byos's own CA (the machine is
/// offline: its URLs are byos's), bounded in time.
pub(crate) fn fetch_client(ca_pem: &[u8]) -> Result<reqwest::Client, ApiError> {
    let ca = reqwest::Certificate::from_pem(ca_pem).or_internal()?;
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .https_only(true)
        .timeout(std::time::Duration::from_secs(300))
        .build()
        .or_internal()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A plain HTTP server on a free port answering every request with `head` and then `chunk`
    /// repeated as chunked transfer coding, without end.
    async fn endless_server(head: &'static str, chunk: &'static [u8]) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let address = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = socket.read(&mut request).await;
                    let _ = socket.write_all(head.as_bytes()).await;
                    if chunk.is_empty() {
                        return;
                    }
                    let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
                    while socket.write_all(&framed).await.is_ok() {}
                });
            }
        });
        format!("http://{address}/blob")
    }

    #[tokio::test]
    async fn regression_a_body_without_a_length_was_buffered_whole_before_the_limit_was_checked() {
        let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        let url = endless_server(head, &[7u8; 65536]).await;
        let fetched = fetch_limited(&reqwest::Client::new(), &url, 1 << 20).await;
        assert_eq!(fetched, Err(FetchError::TooLarge { limit: 1 << 20 }));
    }

    #[tokio::test]
    async fn an_announced_length_over_the_limit_is_refused_before_reading() {
        let head = "HTTP/1.1 200 OK\r\ncontent-length: 999999999999\r\n\r\n";
        let url = endless_server(head, b"x").await;
        let refused = fetch_limited(&reqwest::Client::new(), &url, 10).await;
        assert_eq!(refused.map_err(|e| e.to_string()), Err("it is larger than 10 bytes".to_owned()));
    }

    #[tokio::test]
    async fn a_refusal_is_reported_with_its_status_and_without_the_url() {
        let url = endless_server("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n", b"").await;
        let refused = fetch_limited(&reqwest::Client::new(), &format!("{url}?sig=secret"), 10).await;
        let why = refused.map_err(|e| e.to_string()).err().unwrap_or_default();
        assert!(why.contains("403") && !why.contains("secret"), "{why}");
    }
}
