//! The one error shape every byos service answers with.
//!
//! Each crate has its own typed errors and converts them into an [`ApiError`], which carries what
//! Azure would send: HTTP status, error code, message, and for denials byos's explanation. Rendering
//! an `ApiError` to bytes happens in one place (`byos-http`), in the wire format of the API
//! that was called.

use serde_json::Value;

/// Which protocol family's error body to render.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ErrorFormat {
    /// Resource manager: `{"error":{"code","message","target"?,"details"?,"additionalInfo"?}}`.
    #[default]
    Arm,
    /// Microsoft Entra token endpoints: `{"error","error_description","error_codes",...}`.
    Entra,
    /// Managed-identity endpoints (App Service / IMDS): `{"error","error_description"}` without codes.
    ManagedIdentity,
    /// Storage services: `<Error><Code/><Message/></Error>` XML with an `x-ms-error-code` header.
    StorageXml,
    /// Key Vault data plane: `{"error":{"code","message","innererror":{"code"}}}`.
    KeyVault,
    /// Speech services REST (speech to text v3.x, 2024-11-15): `{"code","message","innerError"?:{"code","message"}}`.
    Speech,
}

/// An error as Azure reports it, plus byos's explanation for denials.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub target: Option<String>,
    /// ARM `additionalInfo` entries (`{"type", "info"}`); byos puts its access explanations here.
    pub additional_info: Vec<Value>,
    /// For Entra errors: the AADSTS number(s).
    pub error_codes: Vec<u32>,
    /// `WWW-Authenticate` challenge to send with a 401.
    pub challenge: Option<String>,
    /// Storage's `AuthenticationErrorDetail` (what was signed, what was expected).
    pub detail: Option<String>,
    /// Further response headers (e.g. `x-byos-denial`, `Content-Range` for a 416).
    pub headers: Vec<(&'static str, String)>,
    /// Key Vault's `innererror.code` (e.g. `AccessDenied`, `KeyDisabled`).
    pub inner_code: Option<String>,
    pub format: ErrorFormat,
}

impl ApiError {
    pub fn new(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
            target: None,
            additional_info: Vec::new(),
            error_codes: Vec::new(),
            challenge: None,
            detail: None,
            headers: Vec::new(),
            inner_code: None,
            format: ErrorFormat::Arm,
        }
    }

    pub fn bad_request(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }

    pub fn not_found(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(404, code, message)
    }

    pub fn conflict(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(409, code, message)
    }

    /// A 500 whose details stay in the log; the caller only learns that something failed.
    pub fn internal() -> Self {
        Self::new(500, "InternalServerError", "The server encountered an internal error. Please retry the request.")
    }

    pub fn with_format(mut self, format: ErrorFormat) -> Self {
        self.format = format;
        self
    }

    pub fn with_target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    pub fn with_challenge(mut self, challenge: impl Into<String>) -> Self {
        self.challenge = Some(challenge.into());
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn with_inner_code(mut self, code: impl Into<String>) -> Self {
        self.inner_code = Some(code.into());
        self
    }

    pub fn with_error_code(mut self, aadsts: u32) -> Self {
        self.error_codes.push(aadsts);
        self
    }

    /// Attaches byos's explanation of a denial (`{"type":"ByosAccessExplanation","info":...}`).
    pub fn with_explanation(mut self, info: Value) -> Self {
        self.additional_info.push(serde_json::json!({"type": "ByosAccessExplanation", "info": info}));
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// Turns a failure that is byos's own fault (a record that does not decode, a key that does not
/// seal, a value that must exist) into a bare 500, after logging where it happened and what kind of
/// error it was. The client learns nothing more; the operator learns enough to find the cause.
/// The error's text is not logged: decoding errors may quote the data they failed on.
pub trait OrInternal<T>: Sized {
    /// The value, or `ApiError::internal()`.
    #[track_caller]
    fn or_internal(self) -> Result<T, ApiError> {
        self.or_internal_with(ApiError::internal)
    }
    /// The value, or the service's own internal error (in its wire format).
    fn or_internal_with(self, internal: fn() -> ApiError) -> Result<T, ApiError>;
}

impl<T, E> OrInternal<T> for Result<T, E> {
    #[track_caller]
    fn or_internal_with(self, internal: fn() -> ApiError) -> Result<T, ApiError> {
        match self {
            Ok(value) => Ok(value),
            Err(_) => {
                log_internal(std::any::type_name::<E>(), std::panic::Location::caller());
                Err(internal())
            }
        }
    }
}

impl<T> OrInternal<T> for Option<T> {
    #[track_caller]
    fn or_internal_with(self, internal: fn() -> ApiError) -> Result<T, ApiError> {
        match self {
            Some(value) => Ok(value),
            None => {
                log_internal("a value that must exist is missing", std::panic::Location::caller());
                Err(internal())
            }
        }
    }
}

fn log_internal(what: &str, at: &std::panic::Location<'_>) {
    tracing::error!(error = what, at = %at, "internal error: answering 500");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_failures_are_bare_500s_in_the_services_format() {
        let failed: Result<u8, &str> = Err("the cause");
        assert_eq!(failed.or_internal().map_err(|e| (e.status, e.code)), Err((500, "InternalServerError".to_owned())));
        let xml = || ApiError::internal().with_format(ErrorFormat::StorageXml);
        assert_eq!(Err::<u8, _>(()).or_internal_with(xml).map_err(|e| e.format), Err(ErrorFormat::StorageXml));
        assert_eq!(None::<u8>.or_internal().map_err(|e| e.status), Err(500));
        assert_eq!(Some(7).or_internal().map_err(|e| e.status), Ok(7));
    }
}
