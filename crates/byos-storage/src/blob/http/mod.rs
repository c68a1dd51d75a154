//! The HTTP layer of the blob data plane: one listener's router, requests parsed into
//! [`BlobRequest`], the caller a credential stands for, and one handler per operation that parses
//! its parameters, calls the HTTP-free domain function and renders Azure's answer.

mod blobs;
mod containers;
pub mod recognise;
mod service;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use byos_core::{ApiError, Caller, SignatureKind};
use byos_http::{Failure, origin_of};
use percent_encoding::percent_decode_str;

use super::auth::{self, Authenticated, Sas};
use super::errors::{self, err};
use super::ops::{self, Descriptor, Level, Op, Permit};
use super::{SERVICE_VERSION, blob_scope, container_scope, cors, sas, structured, xml};
use crate::{Account, StorageService};

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
    crate::blob::containers::validate_name(name)
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
}

impl BlobRequest {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
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
    };
    let op = recognise::operation(&request)?;
    let caller = caller_for(&request, op, authenticated);
    let (account, container, blob) = (Arc::clone(&request.account), request.container.clone(), request.blob.clone());
    let permit = ops::permit(service, caller, op, account, container, blob).await?;
    execute(service, &request, &permit).await
}

/// Whether a verified SAS carries the permission and resource type the operation needs.
fn sas_allows(sas: &Sas, op: Op, d: &Descriptor) -> bool {
    let letter = d.letters.chars().any(|l| sas.permissions.contains(l));
    let level = match (sas.kind, d.level) {
        (SignatureKind::Account, Level::Service) => sas.resource.contains('s'),
        (SignatureKind::Account, Level::Container) => sas.resource.contains('c'),
        (SignatureKind::Account, Level::Object) => sas.resource.contains('o'),
        // Service and delegation SAS grant blob operations only: on the container itself they
        // allow List Blobs and nothing else (Azure: a container SAS cannot read or write the
        // container's properties, metadata or ACL, nor delete it; those need the account key,
        // an account SAS or RBAC). The door checks the signed scope.
        (_, Level::Service) => false,
        (_, Level::Container) => op == Op::ListBlobs,
        (_, Level::Object) => true,
    };
    letter && level
}

/// The caller a request's credential stands for: for a SAS, the signer with a grant of exactly
/// what the signature permits for this operation at its signed scope (the door checks both).
fn caller_for(request: &BlobRequest, op: Op, authenticated: Authenticated) -> Caller {
    let Some(sas) = &authenticated.sas else { return authenticated.caller };
    let d = op.descriptor();
    let account = &request.account;
    let permits = if sas_allows(sas, op, &d) { vec![d.action.to_owned()] } else { vec![] };
    let signed_scope = match &sas.path {
        Some((c, Some(b))) => blob_scope(account, c, b).as_str().to_owned(),
        Some((c, None)) => container_scope(account, c).as_str().to_owned(),
        None => account.id.clone(),
    };
    sas::for_operation(&authenticated.caller, permits, signed_scope)
}

/// Runs the admitted operation's handler.
async fn execute(service: &StorageService, request: &BlobRequest, permit: &Permit) -> Result<Response, Failure> {
    match permit.op() {
        Op::ListContainers => containers::list(service, request, permit).await,
        Op::GetUserDelegationKey => service::user_delegation_key(service, request, permit).await,
        Op::GetServiceProperties => Ok(service::properties(permit)),
        Op::CreateContainer => containers::create(service, request, permit).await,
        Op::DeleteContainer => containers::delete(service, request, permit).await,
        Op::GetContainerProperties | Op::GetContainerMetadata => containers::properties(service, permit).await,
        Op::SetContainerMetadata => containers::set_metadata(service, request, permit).await,
        Op::GetContainerAcl => containers::get_acl(service, permit).await,
        Op::SetContainerAcl => containers::set_acl(service, request, permit).await,
        Op::ListBlobs => blobs::list(service, request, permit).await,
        Op::PutBlob => blobs::put(service, request, permit).await,
        Op::PutBlock => blobs::put_block(service, request, permit).await,
        Op::PutBlockList => blobs::put_block_list(service, request, permit).await,
        Op::GetBlockList => blobs::get_block_list(service, request, permit).await,
        Op::GetBlob => blobs::get(service, request, permit, true).await,
        Op::GetBlobProperties => blobs::get(service, request, permit, false).await,
        Op::GetBlobMetadata => blobs::metadata(service, permit).await,
        Op::SetBlobMetadata => blobs::set_metadata(service, request, permit).await,
        Op::SetBlobProperties => blobs::set_properties(service, request, permit).await,
        Op::DeleteBlob => blobs::delete(service, request, permit).await,
    }
}

/// An XML answer.
pub fn xml_response(body: String) -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/xml")], body).into_response()
}

/// Parses `maxresults` (1..=5000, default 5000).
fn max_results(request: &BlobRequest) -> Result<usize, ApiError> {
    match request.param("maxresults") {
        None => Ok(5000),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=5000).contains(n))
            .ok_or_else(|| errors::invalid_query("maxresults")),
    }
}

/// Metadata as `x-ms-meta-*` response headers.
fn metadata_headers(metadata: &std::collections::BTreeMap<String, String>) -> impl Iterator<Item = (String, String)> {
    metadata.iter().map(|(name, value)| (format!("x-ms-meta-{name}"), value.clone()))
}

/// `<Metadata>` of a listing entry.
fn metadata_xml(metadata: &std::collections::BTreeMap<String, String>) -> String {
    let mut out = String::from("<Metadata>");
    for (k, v) in metadata {
        out.push_str(&format!("<{k}>{}</{k}>", xml::escape(v)));
    }
    out.push_str("</Metadata>");
    out
}
