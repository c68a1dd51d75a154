//! What every ARM request carries once it is let in: the authenticated caller, the parsed query,
//! the body (size-capped). Also the ARM mapping of authentication failures and door denials.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{HeaderMap, Method};
use byos_authz::{Action, Denial};
use byos_core::{ApiError, Caller, Scope};
use byos_http::{Failure, MAX_JSON_BODY, bearer_token, origin_of, parse_json};
use byos_identity::TokenError;
use byos_identity::api::bearer_challenge;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::Arm;

/// Token audiences the resource manager accepts (Azure's list) besides its own base URL.
const ARM_AUDIENCES: [&str; 4] = [
    "https://management.core.windows.net/",
    "https://management.core.windows.net",
    "https://management.azure.com/",
    "https://management.azure.com",
];

/// An authenticated ARM request.
pub struct ArmRequest {
    pub method: Method,
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub caller: Caller,
}

impl ArmRequest {
    /// Authenticates the caller, then checks `api-version`, then reads the body: ARM's order.
    pub async fn from_http(arm: &Arm, request: Request) -> Result<Self, Failure> {
        let (parts, body) = request.into_parts();
        let caller = authenticate(arm, &parts.headers, &parts.extensions)?;
        let query: HashMap<String, String> =
            parts.uri.query().map(|q| serde_urlencoded::from_str(q).unwrap_or_default()).unwrap_or_default();
        check_api_version(&query)?;
        let body = axum::body::to_bytes(body, MAX_JSON_BODY).await.map_err(|_| {
            Failure::from(ApiError::new(
                413,
                "RequestEntityTooLarge",
                format!("The request content exceeds the maximum size of {MAX_JSON_BODY} bytes."),
            ))
        })?;
        Ok(ArmRequest {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            query,
            headers: parts.headers,
            body,
            caller,
        })
    }

    /// The JSON body, or ARM's `InvalidRequestContent`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Failure> {
        parse_json(&self.body)
    }

    /// Authorizes `action` at `scope` for this request's caller through the one door.
    pub fn authorize(&self, arm: &Arm, action: &Action, scope: &Scope) -> Result<(), Failure> {
        arm.authorize(&self.caller, action, scope)
    }

    /// Refuses any method but `method` (ARM's `MethodNotAllowed`).
    pub fn require_method(&self, method: &axum::http::Method) -> Result<(), Failure> {
        if self.method == method {
            return Ok(());
        }
        Err(crate::groups::method_not_allowed(&self.method))
    }

    /// The key a `regenerateKey` action names (`{"keyName": "key1" | "key2"}`, any case): 0 or 1.
    pub fn key_to_regenerate(&self) -> Result<usize, Failure> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Regenerate {
            key_name: String,
        }
        let body: Regenerate = self.json()?;
        match body.key_name.to_ascii_lowercase().as_str() {
            "key1" => Ok(0),
            "key2" => Ok(1),
            other => Err(Failure::from(byos_core::ApiError::bad_request(
                "InvalidKeyName",
                format!("The key name '{other}' is invalid; use key1 or key2."),
            ))),
        }
    }

    /// Whether the caller may perform `action` at `scope` (for filtering lists; no error).
    pub fn may(&self, arm: &Arm, action: &Action, scope: &Scope) -> bool {
        arm.door.authorize(&self.caller, action, scope).is_ok()
    }
}

impl Arm {
    /// Authorizes `action` at `scope` for `caller` through the one door, as an ARM error on denial.
    pub fn authorize(&self, caller: &Caller, action: &Action, scope: &Scope) -> Result<(), Failure> {
        self.door
            .authorize(caller, action, scope)
            .map(|_| ())
            .map_err(|denial| Failure::from(authorization_failed(&denial)))
    }
}

/// ARM's 403 for a door denial, with Azure's exact message and byos's explanation.
pub fn authorization_failed(denial: &Denial) -> ApiError {
    let client = denial.caller.client_id().map(|c| c.to_string()).unwrap_or_default();
    let oid = denial.caller.object_id().map(|c| c.to_string()).unwrap_or_default();
    ApiError::new(
        403,
        "AuthorizationFailed",
        format!(
            "The client '{client}' with object id '{oid}' does not have authorization to perform action '{}' over scope '{}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
            denial.action.name, denial.scope
        ),
    )
    .with_explanation(denial.explanation())
}

fn authenticate(arm: &Arm, headers: &HeaderMap, extensions: &axum::http::Extensions) -> Result<Caller, Failure> {
    let authorization_uri = format!("{}/{}", arm.deployment.authority, arm.directory.tenant_id());
    let Some(token) = bearer_token(headers) else {
        return Err(Failure::from(
            ApiError::new(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
                .with_challenge(bearer_challenge(
                    &authorization_uri,
                    "The authentication failed because of missing 'Authorization' header.",
                ))
                .with_explanation(json!({"reason": "no bearer token in the Authorization header"})),
        ));
    };
    let own_audience = arm.deployment.base_url.as_str();
    let own_audience_slash = format!("{own_audience}/");
    let mut audiences: Vec<&str> = ARM_AUDIENCES.to_vec();
    audiences.extend([own_audience, own_audience_slash.as_str()]);
    arm.directory.authenticate(token, &audiences, origin_of(extensions)).map_err(|e| {
        let error = token_error(&e);
        // Azure's challenge repeats the message; a client that logs only the header sees why.
        let challenge = bearer_challenge(&authorization_uri, &error.message);
        Failure::from(error.with_challenge(challenge))
    })
}

/// ARM's 401 for each way a token can fail, plus byos's explanation.
fn token_error(e: &TokenError) -> ApiError {
    let (code, message) = match e {
        TokenError::Expired { exp, now } => (
            "ExpiredAuthenticationToken",
            format!(
                "The access token expiry UTC time '{}' is earlier than current UTC time '{}'.",
                utc(*exp),
                utc(*now)
            ),
        ),
        TokenError::WrongAudience(aud) => (
            "InvalidAuthenticationTokenAudience",
            format!(
                "The access token has been obtained for wrong audience or resource '{aud}'. It should exactly match with one of the allowed audiences {}.",
                ARM_AUDIENCES.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(",")
            ),
        ),
        other => ("InvalidAuthenticationToken", format!("The access token is invalid: {other}.")),
    };
    ApiError::new(401, code, message).with_explanation(json!({"reason": e.to_string()}))
}

fn utc(unix: i64) -> String {
    time_from_unix(unix).unwrap_or_else(|| unix.to_string())
}

fn time_from_unix(unix: i64) -> Option<String> {
    let format = byos_core::time::rfc3339;
    Some(format(time::OffsetDateTime::from_unix_timestamp(unix).ok()?))
}

/// `api-version` is required; any well-formed date version (`2024-01-01[-preview]`) is accepted.
fn check_api_version(query: &HashMap<String, String>) -> Result<(), Failure> {
    let Some(version) = query.get("api-version") else {
        return Err(Failure::from(ApiError::bad_request(
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )));
    };
    let date = version.get(..10).unwrap_or_default();
    let well_formed = date.len() == 10
        && date.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() })
        && (version.len() == 10 || version[10..].starts_with('-'));
    if !well_formed {
        return Err(Failure::from(ApiError::bad_request(
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{version}' is invalid. The supported versions are in the form 'yyyy-mm-dd' or 'yyyy-mm-dd-preview'."
            ),
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions() {
        let check = |v: &str| check_api_version(&HashMap::from([("api-version".to_owned(), v.to_owned())])).is_ok();
        assert!(check("2021-04-01"));
        assert!(check("2026-05-15-preview"));
        assert!(!check("latest"));
        assert!(!check("2021-4-01"));
        assert!(!check("2021-04-01x"));
        assert!(check_api_version(&HashMap::new()).is_err());
    }
}
