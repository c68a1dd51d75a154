//! Service-level operations: Get User Delegation Key and Get Blob Service Properties.

use axum::response::Response;
use base64::Engine;
use byos_core::{AuthMethod, Caller};
use byos_http::Failure;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::containers::xml_response;
use super::errors::{bad_request, err};
use super::xml::{self, escape};
use super::{BlobRequest, SERVICE_VERSION, sas};
use crate::StorageService;

/// Azure's limit on a user delegation key's lifetime.
const MAX_KEY_LIFETIME: time::Duration = time::Duration::days(7);

fn iso(at: OffsetDateTime) -> String {
    at.replace_nanosecond(0).ok().and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_default()
}

/// `POST /?restype=service&comp=userdelegationkey`: a key bound to the calling principal, derived
/// (not stored) so that any SAS signed with it can be re-checked against that principal's roles.
pub async fn user_delegation_key(
    service: &StorageService,
    request: &BlobRequest,
    caller: &Caller,
) -> Result<Response, Failure> {
    let (Some(oid), AuthMethod::BearerToken) = (caller.object_id(), caller.auth()) else {
        return Err(Failure::from(
            err(403, "AuthenticationFailed", "Only a Microsoft Entra token can request a user delegation key.")
                .with_header("x-byos-denial", "user delegation keys need a bearer token"),
        ));
    };
    let version = request.header("x-ms-version").unwrap_or(SERVICE_VERSION).to_owned();
    let account = std::sync::Arc::clone(&request.account);
    let body = request.small_body(64 * 1024).await?;
    let (start, expiry) = xml::parse_key_info(&body)?;
    let parse = |text: &str| {
        OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
            bad_request("InvalidXmlNodeValue", format!("The value '{text}' is not a valid ISO 8601 time."))
        })
    };
    let now = OffsetDateTime::now_utc();
    let start = match start {
        Some(s) => parse(&s)?,
        None => now,
    };
    let expiry = parse(&expiry)?;
    if expiry <= start || expiry > now + MAX_KEY_LIFETIME || expiry <= now {
        return Err(Failure::from(bad_request(
            "InvalidXmlNodeValue",
            "The key expiry must be after its start, in the future, and at most 7 days from now.",
        )));
    }
    let tid = service.directory.tenant_id().to_string();
    let (skt, ske) = (iso(start), iso(expiry));
    let oid = oid.to_string();
    let value = sas::delegation_key_value(&account, [&oid, &tid, &skt, &ske, "b", &version]);
    let value = base64::engine::general_purpose::STANDARD.encode(value);
    Ok(xml_response(format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><UserDelegationKey><SignedOid>{oid}</SignedOid><SignedTid>{tid}</SignedTid><SignedStart>{skt}</SignedStart><SignedExpiry>{ske}</SignedExpiry><SignedService>b</SignedService><SignedVersion>{}</SignedVersion><Value>{value}</Value></UserDelegationKey>",
        escape(&version)
    )))
}

/// `GET /?restype=service&comp=properties`: CORS rules as the data plane reports them.
pub fn properties(request: &BlobRequest) -> Result<Response, Failure> {
    let mut cors = String::from("<Cors>");
    for rule in &request.account.cors {
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
    Ok(xml_response(format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><StorageServiceProperties>{cors}</StorageServiceProperties>"
    )))
}
