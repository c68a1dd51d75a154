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

/// What went wrong with a blob operation, in domain terms. The HTTP layer renders it in Azure's
/// format ([`ApiError`]); other services (the artifact store of the AI accounts) match on it.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The door refused the caller (which check, for whom, why).
    #[error("{} is not allowed {} at {}: {}", .0.caller, .0.action.name, .0.scope.as_str(), .0.reason)]
    Denied(Box<Denial>),
    #[error("the storage account does not exist")]
    AccountNotFound,
    #[error("the container does not exist")]
    ContainerNotFound,
    #[error("the blob does not exist")]
    BlobNotFound,
    #[error("the container already exists")]
    ContainerAlreadyExists,
    /// A precondition (`If-Match`, ...) failed; 412, or 304 for a read.
    #[error("a condition was not met: {0}")]
    ConditionNotMet(ApiError),
    /// The account's customer-managed key cannot be used now (revoked, vault gone, identity gone).
    #[error("the account's customer-managed key is unavailable: {0}")]
    KeyUnavailable(ApiError),
    /// Anything else Azure refuses with its own code: invalid input, limits, byos's own failures.
    #[error("{0}")]
    Refused(ApiError),
}

/// The codes of [`cmk`](crate::cmk)'s answer when the account's key cannot be used.
const KEY_UNAVAILABLE_CODES: [&str; 3] =
    ["KeyVaultVaultNotFound", "KeyVaultAccessTokenCannotBeAcquired", "KeyVaultEncryptionKeyNotFound"];

impl From<ApiError> for BlobError {
    /// Classifies this crate's own errors (built by the helpers above and in `cmk`).
    fn from(e: ApiError) -> Self {
        match e.code.as_str() {
            "ContainerNotFound" => BlobError::ContainerNotFound,
            "BlobNotFound" => BlobError::BlobNotFound,
            "ContainerAlreadyExists" => BlobError::ContainerAlreadyExists,
            "ConditionNotMet" => BlobError::ConditionNotMet(e),
            code if KEY_UNAVAILABLE_CODES.contains(&code) => BlobError::KeyUnavailable(e),
            _ => BlobError::Refused(e),
        }
    }
}

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::Denied(denial) => denied(&denial),
            BlobError::AccountNotFound => account_not_found(),
            BlobError::ContainerNotFound => container_not_found(),
            BlobError::BlobNotFound => blob_not_found(),
            BlobError::ContainerAlreadyExists => container_exists(),
            BlobError::ConditionNotMet(e) | BlobError::KeyUnavailable(e) | BlobError::Refused(e) => e,
        }
    }
}

pub fn account_not_found() -> ApiError {
    err(404, "ResourceNotFound", "The specified resource does not exist.")
}

pub fn container_exists() -> ApiError {
    err(409, "ContainerAlreadyExists", "The specified container already exists.")
}
