//! The Blob REST data plane, path-style: `https://{host}:{port}/{account}/{container}/{blob}`.
//!
//! Every request: find the account, answer CORS preflights, authenticate ([`auth`]), name the
//! operation ([`ops`]), ask the door (network rules, accepted credentials, what the credential
//! permits, RBAC) and only then touch metadata or data.

pub mod auth;
pub mod blobs;
pub mod containers;
pub mod cors;
pub mod data;
pub mod errors;
pub mod ops;
pub mod sas;
pub mod service;
pub mod structured;
pub mod sweep;
pub mod xml;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use byos_core::{ApiError, Scope};
use byos_http::{Failure, origin_of};
use percent_encoding::percent_decode_str;

use crate::{Account, StorageService};
use errors::err;
use ops::Op;

/// The newest service version byos speaks; echoed when a client sends none.
pub const SERVICE_VERSION: &str = "2026-10-06";

/// The router of the blob listener.
pub fn router(service: Arc<StorageService>) -> Router {
    Router::new().fallback(handle).with_state(service)
}

/// Splits `/{account}/{container}/{blob...}` into container and blob (percent-decoded).
pub fn split_path(path: &str, account: &str) -> Result<(Option<String>, Option<String>), ApiError> {
    let rest = path
        .strip_prefix('/')
        .and_then(|p| p.strip_prefix(account))
        .ok_or_else(|| err(400, "InvalidUri", "The requested URI does not represent any resource on the server."))?;
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let decode = |s: &str| {
        percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| err(400, "InvalidUri", "The request URI is not valid UTF-8."))
    };
    // Split first, then decode, and refuse a container name no container can have: metadata keys
    // are `{account}/{container}/{blob}`, which names one record only while a container name
    // cannot hold a '/' (`a%2Fb/c` would otherwise address blob `b/c` of container `a`).
    let container = |s: &str| decode(s).and_then(|c| checked_container(&c).map(|()| c));
    match rest.split_once('/') {
        _ if rest.is_empty() => Ok((None, None)),
        None => Ok((Some(container(rest)?), None)),
        Some((c, "")) => Ok((Some(container(c)?), None)),
        Some((c, blob)) => Ok((Some(container(c)?), Some(decode(blob)?))),
    }
}

/// A container name as Azure allows it (the rule of Create Container, or one of the reserved
/// `$` names).
fn checked_container(name: &str) -> Result<(), ApiError> {
    if matches!(name, "$root" | "$logs" | "$web" | "$blobchangefeed") {
        return Ok(());
    }
    containers::validate_name(name)
}

/// A response with `status` and `headers` (values that are not valid header text are left out).
pub fn respond<N: AsRef<str>>(
    status: axum::http::StatusCode,
    headers: impl IntoIterator<Item = (N, String)>,
) -> Response {
    let mut response = status.into_response();
    for (name, value) in headers {
        if let (Ok(n), Ok(v)) = (axum::http::HeaderName::try_from(name.as_ref()), HeaderValue::from_str(&value)) {
            response.headers_mut().insert(n, v);
        }
    }
    response
}

/// The RBAC scope of a container.
pub fn container_scope(account: &Account, container: &str) -> Scope {
    Scope::parse(&format!("{}/blobServices/default/containers/{container}", account.id))
        .unwrap_or_else(|_| Scope::root())
}

/// The scope of a blob: below its container, the name encoded as one segment.
pub fn blob_scope(account: &Account, container: &str, blob: &str) -> Scope {
    let encoded = percent_encoding::utf8_percent_encode(blob, percent_encoding::NON_ALPHANUMERIC).to_string();
    container_scope(account, container).child(&format!("blobs/{encoded}"))
}

/// One request on its way through the data plane.
pub struct BlobRequest {
    pub method: Method,
    pub uri: axum::http::Uri,
    pub headers: HeaderMap,
    pub query: Vec<(String, String)>,
    pub account: Arc<Account>,
    pub container: Option<String>,
    pub blob: Option<String>,
    /// Taken once by the handler that consumes it; in a mutex so the request can be shared.
    body: std::sync::Mutex<Option<axum::body::Body>>,
    /// The account's KEK, fetched once per request by the operations that touch customer data.
    kek: tokio::sync::OnceCell<Arc<byos_crypto::envelope::Kek>>,
}

impl BlobRequest {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn container(&self) -> &str {
        self.container.as_deref().unwrap_or_default()
    }

    pub fn blob(&self) -> &str {
        self.blob.as_deref().unwrap_or_default()
    }

    /// The account's KEK (for a customer-managed key: possibly through Key Vault, which can refuse).
    pub async fn kek(&self, service: &StorageService) -> Result<Arc<byos_crypto::envelope::Kek>, ApiError> {
        self.kek.get_or_try_init(|| service.kek(&self.account)).await.cloned()
    }

    /// The request body (empty if already taken).
    pub fn take_body(&self) -> axum::body::Body {
        self.body.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default()
    }

    /// A small request body (an XML document) read whole, at most `limit` bytes of content; a
    /// structured message is decoded and checked.
    pub async fn small_body(&self, limit: usize) -> Result<bytes::Bytes, ApiError> {
        let framing = if self.headers.contains_key(structured::HEADER) {
            structured::encoded_len(limit as u64) as usize - limit
        } else {
            0
        };
        let body = axum::body::to_bytes(self.take_body(), limit + framing).await.map_err(|_| {
            errors::bad_request(
                "RequestBodyTooLarge",
                format!("The request body is too large and exceeds the maximum permissible limit of {limit} bytes."),
            )
        })?;
        structured::content_of(&self.headers, body)
    }
}

async fn handle(State(service): State<Arc<StorageService>>, request: Request) -> Response {
    let version = request.headers().get("x-ms-version").cloned();
    let origin_header = request.headers().get("origin").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let method = request.method().clone();
    let framed_write =
        matches!(method, Method::PUT | Method::POST) && request.headers().contains_key(structured::HEADER);
    let account = account_of(&service, request.uri().path());
    let mut response = match dispatch(&service, account.clone(), request).await {
        Ok(response) => response,
        Err(failure) => failure.into_response(),
    };
    let headers = response.headers_mut();
    headers.insert("x-ms-version", version.unwrap_or(HeaderValue::from_static(SERVICE_VERSION)));
    if let Ok(date) = HeaderValue::from_str(&xml::http_date(time::OffsetDateTime::now_utc())) {
        headers.insert("date", date);
    }
    if !headers.contains_key("x-ms-request-id")
        && let Ok(id) = HeaderValue::from_str(&byos_core::request_id().to_string())
    {
        headers.insert("x-ms-request-id", id);
    }
    if framed_write && response.status().is_success() {
        // The body was a structured message, decoded and checked: say so, as the SDK expects.
        response.headers_mut().insert(structured::HEADER, HeaderValue::from_static(structured::V1_CRC64));
    }
    let headers = response.headers_mut();
    if let (Some(account), false) = (account, method == Method::OPTIONS) {
        cors::decorate(&account.cors, origin_header.as_deref(), method.as_str(), headers);
    }
    response
}

fn account_of(service: &StorageService, path: &str) -> Option<Arc<Account>> {
    let name = path.trim_start_matches('/').split('/').next().unwrap_or_default();
    service.account(name)
}

async fn dispatch(
    service: &StorageService,
    account: Option<Arc<Account>>,
    request: Request,
) -> Result<Response, Failure> {
    let account = account.ok_or_else(|| err(404, "ResourceNotFound", "The specified resource does not exist."))?;
    let (parts, body) = request.into_parts();
    if parts.method == Method::OPTIONS {
        let headers = cors::preflight(&account.cors, &parts.headers)?;
        let mut response = axum::http::StatusCode::OK.into_response();
        for (name, value) in headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, v);
            }
        }
        return Ok(response);
    }
    let origin = origin_of(&parts.extensions);
    let authenticated = auth::authenticate(service, &account, &parts.method, &parts.uri, &parts.headers, origin)?;
    let authenticated = sas::apply_stored_policy(service, &account, authenticated).await?;
    let (container, blob) = split_path(parts.uri.path(), &account.name)?;
    let request = BlobRequest {
        method: parts.method,
        query: auth::query_pairs(&parts.uri),
        uri: parts.uri,
        headers: parts.headers,
        account,
        container,
        blob,
        body: std::sync::Mutex::new(Some(body)),
        kek: tokio::sync::OnceCell::new(),
    };
    let op = Op::of(&request)?;
    let caller = ops::authorize(service, &request, op, authenticated).await?;
    ops::execute(service, request, op, &caller).await
}
