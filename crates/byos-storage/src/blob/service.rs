//! Service-level operations: Get User Delegation Key (Get Blob Service Properties needs nothing
//! beyond the account's CORS rules and is answered by the HTTP layer).

use base64::Engine;
use byos_core::AuthMethod;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::errors::{BlobError, bad_request, err};
use super::ops::Permit;
use super::sas;
use crate::StorageService;

/// Azure's limit on a user delegation key's lifetime.
const MAX_KEY_LIFETIME: time::Duration = time::Duration::days(7);

/// A user delegation key, as Get User Delegation Key returns it.
pub struct UserDelegationKey {
    pub oid: String,
    pub tid: String,
    /// ISO 8601, whole seconds.
    pub start: String,
    pub expiry: String,
    pub service: &'static str,
    pub version: String,
    /// Base64.
    pub value: String,
}

pub(crate) fn iso(at: OffsetDateTime) -> String {
    at.replace_nanosecond(0).ok().and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_default()
}

fn parse_time(text: &str) -> Result<OffsetDateTime, BlobError> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
        bad_request("InvalidXmlNodeValue", format!("The value '{text}' is not a valid ISO 8601 time.")).into()
    })
}

/// A key bound to the calling principal, derived (not stored) so that any SAS signed with it can be
/// re-checked against that principal's roles. `start` defaults to now; `version` is the service
/// version the key is for.
pub async fn user_delegation_key(
    service: &StorageService,
    permit: &Permit,
    start: Option<&str>,
    expiry: &str,
    version: &str,
) -> Result<UserDelegationKey, BlobError> {
    let caller = permit.caller();
    // A principal's own token, or a byos service acting in-process as a resource's identity (the
    // same principal, authorized the same way).
    let (Some(oid), AuthMethod::BearerToken | AuthMethod::ServiceIdentity) = (caller.object_id(), caller.auth()) else {
        return Err(err(
            403,
            "AuthenticationFailed",
            "Only a Microsoft Entra token can request a user delegation key.",
        )
        .with_header("x-byos-denial", "user delegation keys need a bearer token")
        .into());
    };
    let now = OffsetDateTime::now_utc();
    let start = match start {
        Some(s) => parse_time(s)?,
        None => now,
    };
    let expiry = parse_time(expiry)?;
    if expiry <= start || expiry > now + MAX_KEY_LIFETIME || expiry <= now {
        return Err(bad_request(
            "InvalidXmlNodeValue",
            "The key expiry must be after its start, in the future, and at most 7 days from now.",
        )
        .into());
    }
    let tid = service.directory.tenant_id().to_string();
    let (skt, ske) = (iso(start), iso(expiry));
    let oid = oid.to_string();
    let value = sas::delegation_key_value(permit.account(), [&oid, &tid, &skt, &ske, "b", version]);
    Ok(UserDelegationKey {
        oid,
        tid,
        start: skt,
        expiry: ske,
        service: "b",
        version: version.to_owned(),
        value: base64::engine::general_purpose::STANDARD.encode(value),
    })
}
