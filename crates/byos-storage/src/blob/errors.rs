//! Blob service errors, in Azure's codes and XML shape.

use byos_authz::{Denial, DenialKind};
use byos_core::{ApiError, AuthMethod, ErrorFormat};

/// A blob-service error with Azure's status and code.
pub fn err(status: u16, code: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(status, code, message).with_format(ErrorFormat::StorageXml)
}

pub fn bad_request(code: &str, message: impl Into<String>) -> ApiError {
    err(400, code, message)
}

pub fn invalid_header(name: &str) -> ApiError {
    bad_request(
        "InvalidHeaderValue",
        format!("The value for one of the HTTP headers is not in the correct format. Header: {name}"),
    )
}

pub fn invalid_query(name: &str) -> ApiError {
    bad_request(
        "InvalidQueryParameterValue",
        format!("Value for one of the query parameters specified in the request URI is invalid. Parameter: {name}"),
    )
}

pub fn container_not_found() -> ApiError {
    err(404, "ContainerNotFound", "The specified container does not exist.")
}

pub fn blob_not_found() -> ApiError {
    err(404, "BlobNotFound", "The specified blob does not exist.")
}

pub fn condition_not_met() -> ApiError {
    err(412, "ConditionNotMet", "The condition specified using HTTP conditional header(s) is not met.")
}

pub fn authentication_failed(detail: impl Into<String>) -> ApiError {
    err(403, "AuthenticationFailed", "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.")
        .with_detail(detail)
        .with_header("x-byos-denial", "authentication failed")
}

pub fn internal() -> ApiError {
    ApiError::internal().with_format(ErrorFormat::StorageXml)
}

/// Storage's answer to a door denial: Azure's status and code, plus the explanation header.
pub fn denied(denial: &Denial) -> ApiError {
    let (status, code, message) = match denial.kind {
        DenialKind::Network => {
            (403, "AuthorizationFailure", "This request is not authorized to perform this operation.")
        }
        DenialKind::KeyBasedNotPermitted => (
            403,
            "KeyBasedAuthenticationNotPermitted",
            "Key based authentication is not permitted on this storage account.",
        ),
        DenialKind::PublicAccessNotPermitted => {
            (409, "PublicAccessNotPermitted", "Public access is not permitted on this storage account.")
        }
        DenialKind::NoCredentials => (
            401,
            "NoAuthenticationInformation",
            "Server failed to authenticate the request. Please refer to the information in the www-authenticate header.",
        ),
        DenialKind::SignaturePermission
        | DenialKind::Permission
        | DenialKind::AccessPolicy
        | DenialKind::NotOperator => (
            403,
            "AuthorizationPermissionMismatch",
            "This request is not authorized to perform this operation using this permission.",
        ),
    };
    let mut error = err(status, code, message);
    error = if explains_to(denial.caller.auth()) {
        error.with_header("x-byos-denial", header_safe(&denial.reason)).with_explanation(denial.explanation())
    } else {
        error.with_header("x-byos-denial", format!("denied by the {} check", check_name(denial.kind)))
    };
    if denial.kind == DenialKind::NoCredentials {
        error = error.with_challenge("Bearer authorization_uri=https://login.microsoftonline.com/common/oauth2/authorize resource_id=https://storage.azure.com");
    }
    error
}

/// Whether a denied caller may read the door's full explanation. Only an authenticated principal
/// does: it names the principal's own assignments. Anyone else (anonymous, an account-key or SAS
/// holder, who may be a stranger holding a leaked URL) learns what Azure tells it, the code, plus
/// which kind of check refused it; firewall rules, account locks and a delegator's object id and
/// role assignments stay in the log.
fn explains_to(auth: AuthMethod) -> bool {
    matches!(auth, AuthMethod::BearerToken | AuthMethod::ServiceIdentity | AuthMethod::OperatorSocket)
}

/// The check category of a denial, as generic callers are told it.
fn check_name(kind: DenialKind) -> &'static str {
    match kind {
        DenialKind::Network => "network",
        DenialKind::KeyBasedNotPermitted => "key-based authentication",
        DenialKind::PublicAccessNotPermitted => "public access",
        DenialKind::NoCredentials => "credentials",
        DenialKind::SignaturePermission
        | DenialKind::Permission
        | DenialKind::AccessPolicy
        | DenialKind::NotOperator => "permission",
    }
}

/// Header values must be visible ASCII; explanations are, but be safe with names from requests.
pub fn header_safe(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii() && !c.is_ascii_control() { c } else { '?' }).collect()
}
