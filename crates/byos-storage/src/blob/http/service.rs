//! Service-level requests: Get User Delegation Key, Get Blob Service Properties.

use axum::response::Response;
use byos_http::Failure;

use super::{BlobRequest, xml_response};
use crate::StorageService;
use crate::blob::ops::Permit;
use crate::blob::xml::{self, escape};
use crate::blob::{SERVICE_VERSION, service as domain};

/// `POST /?restype=service&comp=userdelegationkey`.
pub async fn user_delegation_key(
    service: &StorageService,
    request: &BlobRequest,
    permit: &Permit,
) -> Result<Response, Failure> {
    let version = request.header("x-ms-version").unwrap_or(SERVICE_VERSION).to_owned();
    let body = request.small_body(64 * 1024).await?;
    let (start, expiry) = xml::parse_key_info(&body)?;
    let key = domain::user_delegation_key(service, permit, start.as_deref(), &expiry, &version).await?;
    Ok(xml_response(format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><UserDelegationKey><SignedOid>{}</SignedOid><SignedTid>{}</SignedTid><SignedStart>{}</SignedStart><SignedExpiry>{}</SignedExpiry><SignedService>{}</SignedService><SignedVersion>{}</SignedVersion><Value>{}</Value></UserDelegationKey>",
        key.oid,
        key.tid,
        key.start,
        key.expiry,
        key.service,
        escape(&key.version),
        key.value
    )))
}

/// `GET /?restype=service&comp=properties`: CORS rules as the data plane reports them.
pub fn properties(permit: &Permit) -> Response {
    let mut cors = String::from("<Cors>");
    for rule in &permit.account().cors {
        cors.push_str(&format!(
            "<CorsRule><AllowedOrigins>{}</AllowedOrigins><AllowedMethods>{}</AllowedMethods><AllowedHeaders>{}</AllowedHeaders><ExposedHeaders>{}</ExposedHeaders><MaxAgeInSeconds>{}</MaxAgeInSeconds></CorsRule>",
            escape(&rule.allowed_origins.join(",")),
            escape(&rule.allowed_methods.join(",")),
            escape(&rule.allowed_headers.join(",")),
            escape(&rule.exposed_headers.join(",")),
            rule.max_age_in_seconds
        ));
    }
    cors.push_str("</Cors>");
    xml_response(format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><StorageServiceProperties>{cors}</StorageServiceProperties>"
    ))
}
