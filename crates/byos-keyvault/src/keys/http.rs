//! The keys data plane over HTTP (Key Vault REST 7.x, prefix-less paths on the vault's port): the
//! only place that knows requests and responses. It authenticates the bearer token, turns the path
//! into a target and the body into typed parameters, calls the domain ([`super::Ctx`]), renders
//! the result or the [`KeyError`] in Key Vault's words, and records every request in the audit log.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use byos_authz::DenialKind;
use byos_core::{ApiError, Caller, ErrorFormat};
use byos_http::{Failure, bearer_token, json_response, origin_of};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{Ctx, KeyError, KeyOperation, Parsed, Refusal};
use crate::{KeyVaultService, Vault};

const VAULT_AUDIENCES: [&str; 2] = ["https://vault.azure.net", "https://vault.azure.net/"];
const MAX_BODY: usize = 256 * 1024;

fn kv_error(status: u16, code: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(status, code, message).with_format(ErrorFormat::KeyVault)
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::VaultNotFound => kv_error(404, "VaultNotFound", "The vault was deleted."),
            KeyError::Denied(refusal) => denied(&refusal),
            KeyError::KeyNotFound { name, version } => kv_error(
                404,
                "KeyNotFound",
                format!(
                    "A key with (name/id) {name}{} was not found in this key vault.",
                    version.map(|v| format!("/{v}")).unwrap_or_default()
                ),
            ),
            KeyError::DeletedKeyNotFound(name) => kv_error(404, "KeyNotFound", format!("Deleted Key not found: {name}")),
            KeyError::DeletedButRecoverable(name) => kv_error(
                409,
                "Conflict",
                format!("Key {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the key can only be recovered or purged."),
            )
            .with_inner_code("ObjectIsDeletedButRecoverable"),
            KeyError::NameTaken(name) => kv_error(
                409,
                "Conflict",
                format!("A key named '{name}' already exists in this vault (or is deleted but recoverable)."),
            ),
            KeyError::ConcurrentChange => {
                kv_error(409, "Conflict", "A concurrent change conflicted with this request; retry it.")
            }
            KeyError::PurgeProtected => kv_error(
                403,
                "Forbidden",
                "Operation \"purge\" is not allowed because purge protection is enabled for this vault. Key Vault service will automatically purge it after the retention period has passed.",
            )
            .with_inner_code("PurgeProtected"),
            KeyError::Unusable { reason, operation } => {
                kv_error(403, "Forbidden", unusable_message(reason, operation)).with_inner_code(reason.inner_code())
            }
            KeyError::BadParameter(message) => kv_error(400, "BadParameter", message),
            KeyError::Internal => ApiError::internal().with_format(ErrorFormat::KeyVault),
        }
    }
}

fn unusable_message(reason: super::Unusable, op: &str) -> String {
    use super::Unusable as U;
    match reason {
        U::Disabled => format!("Operation {op} is not allowed on a disabled key."),
        U::NotYetValid => format!("Operation {op} is not allowed on a key that is not yet valid."),
        U::Expired => format!("Operation {op} is not allowed on an expired key."),
        U::OperationNotAllowed => format!("Operation {op} is not permitted on this key."),
    }
}

/// A refusal by the door in Key Vault's words: which rule refused (inner code), for whom, and
/// byos's explanation.
fn denied(refusal: &Refusal) -> ApiError {
    let caller = &refusal.denial.caller;
    let who = format!(
        "appid={};oid={}",
        caller.client_id().map(|c| c.to_string()).unwrap_or_default(),
        caller.object_id().map(|c| c.to_string()).unwrap_or_default()
    );
    let error = match refusal.denial.kind {
        DenialKind::Network if refusal.public_network_disabled => kv_error(
            403,
            "Forbidden",
            "Public network access is disabled and request is not from a trusted service nor via an approved private link.",
        )
        .with_inner_code("ForbiddenByConnection"),
        DenialKind::Network => kv_error(
            403,
            "Forbidden",
            format!(
                "Client address is not authorized and caller is not a trusted service.\r\nClient address: {}\r\nCaller: {who}\r\nVault: {};location={}",
                caller.origin().ip.map(|ip| ip.to_string()).unwrap_or_else(|| "(in-process)".into()),
                refusal.vault,
                refusal.location
            ),
        )
        .with_inner_code("ForbiddenByFirewall"),
        DenialKind::AccessPolicy => kv_error(
            403,
            "Forbidden",
            format!(
                "The user, group or application '{who}' does not have keys {} permission on key vault '{};location={}'.",
                refusal.permission, refusal.vault, refusal.location
            ),
        )
        .with_inner_code("AccessDenied"),
        _ => kv_error(
            403,
            "Forbidden",
            format!(
                "Caller is not authorized to perform action on resource. Caller: {who}. Action: '{}'. Resource: '{}'.",
                refusal.action, refusal.resource
            ),
        )
        .with_inner_code("ForbiddenByRbac"),
    };
    error.with_explanation(refusal.denial.explanation())
}

/// The router of one vault's listener.
pub fn router(service: Arc<KeyVaultService>, vault: String) -> Router {
    Router::new().fallback(handle).with_state((service, vault))
}

async fn handle(State((service, vault)): State<(Arc<KeyVaultService>, String)>, request: Request) -> Response {
    match dispatch(&service, &vault, request).await {
        Ok(response) => response,
        Err(failure) => failure.into_response(),
    }
}

/// What a request addresses, from its path.
enum Target {
    Keys,
    Create(String),
    Key(String, Option<String>),
    Versions(String),
    Operation(String, String, String),
    DeletedKeys,
    DeletedKey(String),
    Recover(String),
    Rotate(String),
    RotationPolicy(String),
    Backup(String),
    Restore,
}

fn target(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let own = |s: &str| s.to_owned();
    let version = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    Some(match segments.as_slice() {
        ["keys"] | ["keys", ""] => Target::Keys,
        ["keys", name, "create"] => Target::Create(own(name)),
        ["keys", "restore"] => Target::Restore,
        ["keys", name, "backup"] => Target::Backup(own(name)),
        ["keys", name, "versions"] => Target::Versions(own(name)),
        ["keys", name, "rotate"] => Target::Rotate(own(name)),
        ["keys", name, "rotationpolicy"] => Target::RotationPolicy(own(name)),
        ["keys", name] => Target::Key(own(name), None),
        ["keys", name, v] => Target::Key(own(name), version(v)),
        ["keys", name, v, op] => Target::Operation(own(name), own(v), op.to_ascii_lowercase()),
        ["deletedkeys"] | ["deletedkeys", ""] => Target::DeletedKeys,
        ["deletedkeys", name] => Target::DeletedKey(own(name)),
        ["deletedkeys", name, "recover"] => Target::Recover(own(name)),
        _ => return None,
    })
}

/// The cryptographic operation a path's last segment names (lower-cased).
fn key_operation(segment: &str) -> Option<KeyOperation> {
    Some(match segment {
        "encrypt" => KeyOperation::Encrypt,
        "decrypt" => KeyOperation::Decrypt,
        "wrapkey" => KeyOperation::WrapKey,
        "unwrapkey" => KeyOperation::UnwrapKey,
        "sign" => KeyOperation::Sign,
        "verify" => KeyOperation::Verify,
        _ => return None,
    })
}

/// The authenticated caller, or the 401 challenge the SDK needs to fetch a token.
fn authenticate(service: &KeyVaultService, request: &Request) -> Result<Caller, ApiError> {
    let challenge = format!(
        "Bearer authorization=\"{}/{}\", resource=\"https://vault.azure.net\"",
        service.authority,
        service.directory.tenant_id()
    );
    let Some(token) = bearer_token(request.headers()) else {
        return Err(kv_error(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.")
            .with_challenge(challenge));
    };
    service.directory.authenticate(token, &VAULT_AUDIENCES, origin_of(request.extensions())).map_err(|e| {
        kv_error(401, "Unauthorized", format!("AKV10032: Invalid token: {e}."))
            .with_challenge(challenge.clone())
            .with_explanation(json!({"reason": e.to_string()}))
    })
}

async fn dispatch(service: &Arc<KeyVaultService>, vault_name: &str, request: Request) -> Result<Response, Failure> {
    let vault = service.vault(vault_name).ok_or(KeyError::VaultNotFound)?;
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let target = target(&path);
    let subject = audit_subject(&vault, &method, target.as_ref(), &path);
    let caller = match authenticate(service, &request) {
        Ok(caller) => caller,
        Err(refusal) => {
            // Requests without valid credentials are recorded too (as Azure's AuditEvent log does).
            // The caller is unknown: an invalid token's claims are not evidence of anything.
            let who = crate::audit::Who {
                caller: "anonymous".into(),
                client_id: String::new(),
                authentication: if bearer_token(request.headers()).is_some() { "BearerToken" } else { "Anonymous" }
                    .into(),
            };
            let result = crate::audit::result_of(Err(&refusal));
            if let Err(e) = service.audit_as(&vault.name, &who, &subject.key, &subject.operation, result).await {
                tracing::error!(vault = %vault.name, error = %e, "an unauthenticated key vault request could not be audited");
            }
            return Err(Failure::from(refusal));
        }
    };
    let ctx = Ctx::new(service, &vault, &caller);
    let outcome = serve(&ctx, method, target, request).await;
    let key_id = ctx.addressed_key().unwrap_or(subject.key);
    let result = crate::audit::result_of(outcome.as_ref().map(|_| ()).map_err(|f| &*f.0));
    match service.audit(&vault.name, &caller, &key_id, &subject.operation, result).await {
        Ok(()) => outcome,
        Err(e) => {
            tracing::error!(vault = %vault.name, key = %key_id, operation = %subject.operation, error = %e, "a key operation could not be audited");
            // An operation whose record is not durable is not reported as done; a refusal stays one.
            match outcome {
                Ok(_) => Err(Failure::from(KeyError::Internal)),
                refused => refused,
            }
        }
    }
}

/// Reads the body and routes an authenticated request.
async fn serve(ctx: &Ctx<'_>, method: Method, target: Option<Target>, request: Request) -> Result<Response, Failure> {
    let target = target
        .ok_or_else(|| kv_error(404, "NotFound", "The requested URI does not address a Key Vault key resource."))?;
    let body = axum::body::to_bytes(request.into_body(), MAX_BODY)
        .await
        .map_err(|_| KeyError::bad_parameter("The request body is too large."))?;
    route(ctx, method, target, &body).await
}

/// What a request is recorded under in the audit log: a key id (or the vault's collection, or the
/// requested path when it names nothing), and the operation.
struct AuditSubject {
    key: String,
    operation: String,
}

/// The longest requested path the log records for a request that addresses nothing.
const MAX_AUDITED_PATH: usize = 256;

/// The audit subject of every request that reaches a live vault, including lists, rotation
/// policies, restore (its key is known once the backup is opened) and operations byos does not
/// implement.
fn audit_subject(vault: &Vault, method: &Method, target: Option<&Target>, path: &str) -> AuditSubject {
    use Target as T;
    let key = |name: &str, version: Option<&str>| match version {
        Some(v) => format!("{}keys/{name}/{v}", vault.uri),
        None => format!("{}keys/{name}", vault.uri),
    };
    let (key, operation): (String, &str) = match (method, target) {
        (&Method::GET, Some(T::Keys)) => (format!("{}keys", vault.uri), "list"),
        (&Method::POST, Some(T::Create(name))) => (key(name, None), "create"),
        (&Method::GET, Some(T::Key(name, version))) => (key(name, version.as_deref()), "get"),
        (&Method::PATCH, Some(T::Key(name, version))) => (key(name, version.as_deref()), "update"),
        (&Method::DELETE, Some(T::Key(name, None))) => (key(name, None), "delete"),
        (&Method::GET, Some(T::Versions(name))) => (key(name, None), "listVersions"),
        (&Method::POST, Some(T::Operation(name, version, op))) => {
            let operation = match key_operation(op) {
                Some(known) => known.name().to_owned(),
                // Operations byos does not implement (release, export, ...) by their name, when it is one.
                None if op.len() <= 32 && op.chars().all(|c| c.is_ascii_alphanumeric()) => op.clone(),
                None => "unknown".to_owned(),
            };
            return AuditSubject { key: key(name, Some(version)), operation };
        }
        (&Method::GET, Some(T::DeletedKeys)) => (format!("{}deletedkeys", vault.uri), "listDeleted"),
        (&Method::GET, Some(T::DeletedKey(name))) => (key(name, None), "getDeleted"),
        (&Method::DELETE, Some(T::DeletedKey(name))) => (key(name, None), "purge"),
        (&Method::POST, Some(T::Recover(name))) => (key(name, None), "recover"),
        (&Method::POST, Some(T::Rotate(name))) => (key(name, None), "rotate"),
        (&Method::POST, Some(T::Backup(name))) => (key(name, None), "backup"),
        (&Method::POST, Some(T::Restore)) => (format!("{}keys", vault.uri), "restore"),
        (&Method::GET, Some(T::RotationPolicy(name))) => (key(name, None), "getRotationPolicy"),
        (&Method::PUT, Some(T::RotationPolicy(name))) => (key(name, None), "setRotationPolicy"),
        _ => {
            let requested: String = path.trim_start_matches('/').chars().take(MAX_AUDITED_PATH).collect();
            (format!("{}{requested}", vault.uri), "unknown")
        }
    };
    AuditSubject { key, operation: operation.to_owned() }
}

/// A body's typed parameters. A malformed body is handed to the domain as such, which reports
/// it only once the door admitted the caller: a refused caller gets the refusal, not a 400.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Parsed<T> {
    serde_json::from_slice(body).map_err(|e| KeyError::bad_parameter(format!("The request body is invalid: {e}.")))
}

/// 200 with `body` as JSON.
fn ok<T: Serialize>(body: &T) -> Result<Response, Failure> {
    let value = serde_json::to_value(body).map_err(|e| {
        tracing::error!(error = %e, "a key vault response did not serialize");
        KeyError::Internal
    })?;
    Ok(json_response(200, &value))
}

/// A list as Key Vault pages it: byos returns every item in one page, so `nextLink` is null.
#[derive(Serialize)]
struct Page<'a, T> {
    value: &'a [T],
    #[serde(rename = "nextLink")]
    next_link: Option<String>,
}

fn page<T: Serialize>(items: &[T]) -> Result<Response, Failure> {
    ok(&Page { value: items, next_link: None })
}

async fn route(ctx: &Ctx<'_>, method: Method, target: Target, body: &Bytes) -> Result<Response, Failure> {
    use Target as T;
    match (method, target) {
        (Method::GET, T::Keys) => page(&ctx.list_keys().await?),
        (Method::POST, T::Create(name)) => ok(&ctx.create(&name, parse(body)).await?),
        (Method::GET, T::Key(name, version)) => ok(&ctx.get(&name, version.as_deref()).await?),
        (Method::PATCH, T::Key(name, version)) => ok(&ctx.update(&name, version.as_deref(), parse(body)).await?),
        (Method::DELETE, T::Key(name, None)) => ok(&ctx.delete(&name).await?),
        (Method::GET, T::Versions(name)) => page(&ctx.list_versions(&name).await?),
        (Method::POST, T::Operation(name, version, op)) => {
            let op = key_operation(&op)
                .ok_or_else(|| kv_error(404, "NotFound", format!("'{op}' is not a key operation.")))?;
            ok(&ctx.operate(&name, &version, op, parse(body)).await?)
        }
        (Method::GET, T::DeletedKeys) => page(&ctx.list_deleted().await?),
        (Method::GET, T::DeletedKey(name)) => ok(&ctx.get_deleted(&name).await?),
        (Method::DELETE, T::DeletedKey(name)) => {
            ctx.purge(&name).await?;
            Ok(axum::http::StatusCode::NO_CONTENT.into_response())
        }
        (Method::POST, T::Recover(name)) => ok(&ctx.recover(&name).await?),
        (Method::POST, T::Rotate(name)) => ok(&ctx.rotate(&name).await?),
        (Method::POST, T::Backup(name)) => ok(&ctx.backup(&name).await?),
        (Method::POST, T::Restore) => ok(&ctx.restore(parse(body)).await?),
        (Method::GET, T::RotationPolicy(name)) => ok(&ctx.get_rotation_policy(&name).await?),
        (Method::PUT, T::RotationPolicy(name)) => ok(&ctx.set_rotation_policy(&name, parse(body)).await?),
        (method, _) => Err(Failure::from(kv_error(
            405,
            "MethodNotAllowed",
            format!("The method {method} is not supported on this resource."),
        ))),
    }
}
