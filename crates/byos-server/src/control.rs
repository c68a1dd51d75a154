//! The operator's side of the control socket: the CLI commands that talk to a running server.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;

pub const SOCKET_NAME: &str = "control.sock";

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_NAME)
}

/// Sends one request to the server running on `data_dir` and returns its JSON answer.
pub async fn call(data_dir: &Path, method: &str, path_and_query: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let socket = socket_path(data_dir);
    let stream = tokio::net::UnixStream::connect(&socket).await.map_err(|e| {
        anyhow::anyhow!(
            "no byos server is running for data dir {} (cannot connect to {}: {e}); start one with `byos serve --data-dir {}`",
            data_dir.display(),
            socket.display(),
            data_dir.display()
        )
    })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = hyper::Request::builder()
        .method(method)
        .uri(path_and_query)
        .header("host", "byos-control")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let response = sender.send_request(request).await.context("the byos server did not answer")?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !status.is_success() {
        let message = value.pointer("/error/message").and_then(Value::as_str).unwrap_or("no details");
        bail!("the byos server refused the request ({status}): {message}");
    }
    Ok(value)
}
