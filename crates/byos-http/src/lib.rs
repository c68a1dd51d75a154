//! HTTP plumbing shared by every byos API. This is the one place where an
//! [`ApiError`](byos_core::ApiError) becomes bytes on the wire, in the format of the API called.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use byos_core::{ApiError, ErrorFormat, NetworkOrigin};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Opens HTTPS listeners at run time (one per Key Vault, as the SDK needs a host or port per
/// vault). Implemented by the server, which owns TLS and shutdown.
#[async_trait::async_trait]
pub trait Listeners: Send + Sync + 'static {
    /// Serves `router` on `port` (0: any free port) of the loopback address; returns the port and
    /// a handle that closes the listener when dropped.
    async fn open(&self, port: u16, router: axum::Router) -> std::io::Result<(u16, ListenerHandle)>;
}

/// Keeps a run-time listener open; dropping it stops accepting on it.
pub struct ListenerHandle(pub Box<dyn Send + Sync>);

/// The run-time listeners of one kind of resource (vaults, AI accounts), one per resource, by key.
pub struct ListenerSet {
    listeners: std::sync::Arc<dyn Listeners>,
    open: std::sync::Mutex<std::collections::HashMap<String, ListenerHandle>>,
}

impl ListenerSet {
    pub fn new(listeners: std::sync::Arc<dyn Listeners>) -> Self {
        ListenerSet { listeners, open: std::sync::Mutex::new(std::collections::HashMap::new()) }
    }

    /// Serves `router` for `key` on `port`, or on any free port when that one is taken (a
    /// resource's advertised URI then changes: the caller persists the port returned).
    pub async fn serve(&self, key: &str, port: u16, router: axum::Router) -> std::io::Result<u16> {
        let (port, handle) = match self.listeners.open(port, router.clone()).await {
            Ok(opened) => opened,
            Err(_) if port != 0 => self.listeners.open(0, router).await?,
            Err(e) => return Err(e),
        };
        self.open.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_owned(), handle);
        Ok(port)
    }

    /// Stops serving `key`'s listener.
    pub fn close(&self, key: &str) {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

/// The largest JSON body any control-plane API accepts.
pub const MAX_JSON_BODY: usize = 1 << 20;

/// An error on its way to the client. Handlers return `Result<_, Failure>`.
#[derive(Debug)]
pub struct Failure(pub Box<ApiError>);

impl<E: Into<ApiError>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(Box::new(e.into()))
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        render_error(&self.0)
    }
}

/// Renders an error in the wire format of its API, with a request id like Azure's.
pub fn render_error(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let request_id = byos_core::request_id().to_string();
    let mut response = match e.format {
        ErrorFormat::Arm => (status, axum::Json(arm_body(e))).into_response(),
        ErrorFormat::Entra => (status, axum::Json(entra_body(e, &request_id))).into_response(),
        ErrorFormat::ManagedIdentity => {
            (status, axum::Json(json!({"error": e.code, "error_description": e.message}))).into_response()
        }
        ErrorFormat::StorageXml => {
            (status, [(header::CONTENT_TYPE, "application/xml")], storage_body(e, &request_id)).into_response()
        }
        ErrorFormat::KeyVault => (status, axum::Json(key_vault_body(e))).into_response(),
        ErrorFormat::Speech => (status, axum::Json(speech_body(e))).into_response(),
    };
    let headers = response.headers_mut();
    if e.format == ErrorFormat::StorageXml {
        insert_header(headers, "x-ms-error-code", &e.code);
    }
    for (name, value) in &e.headers {
        insert_header(headers, name, value);
    }
    insert_header(headers, "x-ms-request-id", &request_id);
    insert_header(headers, "x-ms-failure-cause", &e.code);
    if let Some(challenge) = &e.challenge {
        insert_header(headers, header::WWW_AUTHENTICATE.as_str(), challenge);
    }
    if e.status >= 500 {
        tracing::warn!(status = e.status, code = %e.code, request_id, "request failed");
    }
    response
}

fn arm_body(e: &ApiError) -> Value {
    let mut error = json!({"code": e.code, "message": e.message});
    if let Some(target) = &e.target {
        error["target"] = json!(target);
    }
    if !e.additional_info.is_empty() {
        error["additionalInfo"] = json!(e.additional_info);
    }
    json!({"error": error})
}

fn key_vault_body(e: &ApiError) -> Value {
    let mut error = json!({"code": e.code, "message": e.message});
    if let Some(inner) = &e.inner_code {
        error["innererror"] = json!({"code": inner});
    }
    if !e.additional_info.is_empty() {
        error["additionalInfo"] = json!(e.additional_info);
    }
    json!({"error": error})
}

fn speech_body(e: &ApiError) -> Value {
    let mut body = json!({"code": e.code, "message": e.message});
    if let Some(inner) = &e.inner_code {
        body["innerError"] = json!({"code": inner, "message": e.message});
    }
    if !e.additional_info.is_empty() {
        body["additionalInfo"] = json!(e.additional_info);
    }
    body
}

fn entra_body(e: &ApiError, request_id: &str) -> Value {
    json!({
        "error": e.code,
        "error_description": e.message,
        "error_codes": e.error_codes,
        "timestamp": byos_core::time::rfc3339_now(),
        "trace_id": request_id,
        "correlation_id": request_id,
    })
}

fn storage_body(e: &ApiError, request_id: &str) -> String {
    let detail = e
        .detail
        .as_deref()
        .map(|d| format!("<AuthenticationErrorDetail>{}</AuthenticationErrorDetail>", xml_escape(d)))
        .unwrap_or_default();
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{}</Code><Message>{}\nRequestId:{request_id}\nTime:{}</Message>{detail}</Error>",
        xml_escape(&e.code),
        xml_escape(&e.message),
        byos_core::time::rfc3339_now()
    )
}

/// Escapes text for an XML element or attribute.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn insert_header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// Parses a JSON request body into `T`, answering malformed or mistyped input as ARM does.
pub fn parse_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, Failure> {
    if body.len() > MAX_JSON_BODY {
        return Err(Failure::from(ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!("The request content exceeds the maximum size of {MAX_JSON_BODY} bytes."),
        )));
    }
    serde_json::from_slice(body).map_err(|e| {
        Failure::from(ApiError::bad_request(
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: '{e}'."),
        ))
    })
}

/// The bearer token of the `Authorization` header, if it carries one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The network origin of a request, put into its extensions by the listener that accepted it.
pub fn origin_of(extensions: &axum::http::Extensions) -> NetworkOrigin {
    extensions.get::<NetworkOrigin>().cloned().unwrap_or(NetworkOrigin { ip: None, tls: false })
}

/// A JSON response with the given status.
pub fn json_response(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    (status, axum::Json(body)).into_response()
}
