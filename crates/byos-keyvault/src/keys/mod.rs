//! The keys data plane of one vault (Key Vault REST 7.x, prefix-less paths on the vault's port).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use byos_authz::{Action, DenialKind, ResourceGuard};
use byos_core::{ApiError, Caller, ErrorFormat, OrInternal, Scope};
use byos_crypto::vault_keys::{EcKey, RsaEncryption, RsaKey, RsaSignature};
use byos_crypto::{SealPurpose, b64url, b64url_decode};
use byos_http::{Failure, bearer_token, json_response, origin_of};
use byos_store::{Batch, Table};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use crate::{KeyVaultService, Vault};

const ROTATE: &str = "Microsoft.KeyVault/vaults/keys/rotate/action";
const PURGE: &str = "Microsoft.KeyVault/vaults/keys/purge/action";

pub(crate) const KEYS: Table = Table("kv_keys");
const KEY_STATE: Table = Table("kv_key_state");
const ROTATION: Table = Table("kv_rotation");
const VAULT_AUDIENCES: [&str; 2] = ["https://vault.azure.net", "https://vault.azure.net/"];
const DEFAULT_KEY_OPS: [&str; 6] = ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"];
const MAX_BODY: usize = 256 * 1024;

/// One version of a key, as stored. The private key is sealed under the root key.
#[derive(Clone, Serialize, Deserialize)]
struct KeyVersion {
    v: u32,
    name: String,
    version: String,
    kty: String,
    key_ops: Vec<String>,
    enabled: bool,
    nbf: Option<i64>,
    exp: Option<i64>,
    created: i64,
    updated: i64,
    tags: Map<String, Value>,
    #[serde(default)]
    n: String,
    #[serde(default)]
    e: String,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    sealed_private: String,
}

/// A key's backup before sealing: its name-level state and every version.
#[derive(Serialize, Deserialize)]
struct Backup {
    v: u32,
    name: String,
    state: KeyState,
    versions: Vec<KeyVersion>,
}

/// What kind of key to generate.
#[derive(Clone, Copy)]
enum KeyKind {
    Rsa(usize),
    EcP256,
}

/// A version's private key, unsealed and parsed.
pub enum ParsedKey {
    Rsa(RsaKey),
    Ec(EcKey),
}

impl ParsedKey {
    fn rsa(&self) -> Result<&RsaKey, ApiError> {
        match self {
            ParsedKey::Rsa(key) => Ok(key),
            ParsedKey::Ec(_) => {
                Err(bad_parameter("This operation needs an RSA key; EC keys can only sign and verify."))
            }
        }
    }
}

/// A key's name-level state: its current version and, once deleted, when.
#[derive(Clone, Serialize, Deserialize)]
struct KeyState {
    v: u32,
    latest: String,
    deleted: Option<Deleted>,
}

#[derive(Clone, Serialize, Deserialize)]
struct Deleted {
    deleted_date: i64,
    scheduled_purge_date: i64,
}

fn kv_error(status: u16, code: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(status, code, message).with_format(ErrorFormat::KeyVault)
}

fn bad_parameter(message: impl Into<String>) -> ApiError {
    kv_error(400, "BadParameter", message)
}

fn internal() -> ApiError {
    ApiError::internal().with_format(ErrorFormat::KeyVault)
}

fn store_err(e: byos_store::StoreError) -> ApiError {
    match e {
        byos_store::StoreError::Conflict { .. } => {
            kv_error(409, "Conflict", "A concurrent change conflicted with this request; retry it.")
        }
        byos_store::StoreError::Backend(detail) => {
            tracing::error!(%detail, "metadata store failure");
            internal()
        }
    }
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).or_internal_with(internal)
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(value).or_internal_with(internal)
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

/// The door's decision on `action` at `scope` of `vault`: its network rules, then RBAC on RBAC
/// vaults or the vault's access policy otherwise.
fn ask_door(
    service: &KeyVaultService,
    vault: &Vault,
    caller: &Caller,
    action: &'static str,
    scope: &Scope,
) -> Result<(), Box<byos_authz::Denial>> {
    let (public_network_disabled, firewall) = vault.settings.network();
    let guard = ResourceGuard {
        public_network_disabled,
        firewall,
        policy_permits: (!vault.settings.enable_rbac_authorization).then(|| vault.settings.policy_permits(caller)),
        ..ResourceGuard::default()
    };
    service.door.authorize_access(caller, &Action::data(action), scope, Some(&guard)).map(|_| ())
}

/// Asks the door (see [`ask_door`]) and answers a refusal in Key Vault's words.
fn authorize(
    service: &KeyVaultService,
    vault: &Vault,
    caller: &Caller,
    action: &'static str,
    permission: &str,
    key: Option<&str>,
) -> Result<(), ApiError> {
    let scope_text = match key {
        Some(name) => format!("{}/keys/{name}", vault.id),
        None => vault.id.clone(),
    };
    let scope = Scope::parse(&scope_text).or_internal_with(internal)?;
    let public_network_disabled = vault.settings.network().0;
    ask_door(service, vault, caller, action, &scope).map_err(|denial| {
        let who = format!("appid={};oid={}", caller.client_id().map(|c| c.to_string()).unwrap_or_default(), caller.object_id().map(|c| c.to_string()).unwrap_or_default());
        let error = match denial.kind {
            DenialKind::Network if public_network_disabled => kv_error(
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
                    vault.name,
                    vault.location
                ),
            )
            .with_inner_code("ForbiddenByFirewall"),
            DenialKind::AccessPolicy => kv_error(
                403,
                "Forbidden",
                format!("The user, group or application '{who}' does not have keys {permission} permission on key vault '{};location={}'.", vault.name, vault.location),
            )
            .with_inner_code("AccessDenied"),
            _ => kv_error(403, "Forbidden", format!("Caller is not authorized to perform action on resource. Caller: {who}. Action: '{action}'. Resource: '{scope_text}'."))
                .with_inner_code("ForbiddenByRbac"),
        };
        error.with_explanation(denial.explanation())
    })
}

async fn dispatch(service: &Arc<KeyVaultService>, vault_name: &str, request: Request) -> Result<Response, Failure> {
    let vault = service.vault(vault_name).ok_or_else(|| kv_error(404, "VaultNotFound", "The vault was deleted."))?;
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
    let key_id = ctx.audit_key.get().cloned().unwrap_or(subject.key);
    let result = crate::audit::result_of(outcome.as_ref().map(|_| ()).map_err(|f| &*f.0));
    match service.audit(&vault.name, &caller, &key_id, &subject.operation, result).await {
        Ok(()) => outcome,
        Err(e) => {
            tracing::error!(vault = %vault.name, key = %key_id, operation = %subject.operation, error = %e, "a key operation could not be audited");
            // An operation whose record is not durable is not reported as done; a refusal stays one.
            match outcome {
                Ok(_) => Err(Failure::from(internal())),
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
        .map_err(|_| bad_parameter("The request body is too large."))?;
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
            let known = match op.as_str() {
                "encrypt" => Some("encrypt"),
                "decrypt" => Some("decrypt"),
                "wrapkey" => Some("wrapKey"),
                "unwrapkey" => Some("unwrapKey"),
                "sign" => Some("sign"),
                "verify" => Some("verify"),
                _ => None,
            };
            let operation = match known {
                Some(known) => known.to_owned(),
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

async fn route(ctx: &Ctx<'_>, method: Method, target: Target, body: &Bytes) -> Result<Response, Failure> {
    use Target as T;
    match (method, target) {
        (Method::GET, T::Keys) => ctx.list_keys().await,
        (Method::POST, T::Create(name)) => ctx.create(&name, body).await,
        (Method::GET, T::Key(name, version)) => ctx.get(&name, version.as_deref()).await,
        (Method::PATCH, T::Key(name, version)) => ctx.update(&name, version.as_deref(), body).await,
        (Method::DELETE, T::Key(name, None)) => ctx.delete(&name).await,
        (Method::GET, T::Versions(name)) => ctx.list_versions(&name).await,
        (Method::POST, T::Operation(name, version, op)) => ctx.operate(&name, &version, &op, body).await,
        (Method::GET, T::DeletedKeys) => ctx.list_deleted().await,
        (Method::GET, T::DeletedKey(name)) => ctx.get_deleted(&name).await,
        (Method::DELETE, T::DeletedKey(name)) => ctx.purge(&name).await,
        (Method::POST, T::Recover(name)) => ctx.recover(&name).await,
        (Method::POST, T::Rotate(name)) => ctx.rotate(&name).await,
        (Method::POST, T::Backup(name)) => ctx.backup(&name).await,
        (Method::POST, T::Restore) => ctx.restore(body).await,
        (Method::GET, T::RotationPolicy(name)) => ctx.get_rotation_policy(&name).await,
        (Method::PUT, T::RotationPolicy(name)) => ctx.set_rotation_policy(&name, body).await,
        (method, _) => Err(Failure::from(kv_error(
            405,
            "MethodNotAllowed",
            format!("The method {method} is not supported on this resource."),
        ))),
    }
}

struct Ctx<'a> {
    service: &'a Arc<KeyVaultService>,
    vault: &'a Vault,
    caller: &'a Caller,
    /// The key a request turned out to address, when its path does not name it (restore).
    audit_key: std::sync::OnceLock<String>,
}

impl<'a> Ctx<'a> {
    fn new(service: &'a Arc<KeyVaultService>, vault: &'a Vault, caller: &'a Caller) -> Self {
        Ctx { service, vault, caller, audit_key: std::sync::OnceLock::new() }
    }
}

fn validate_name(name: &str) -> Result<(), ApiError> {
    if !name.is_empty() && name.len() <= 127 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        Ok(())
    } else {
        Err(bad_parameter(format!(
            "The key name '{name}' is invalid: it must match ^[0-9a-zA-Z-]+$ and be at most 127 characters."
        )))
    }
}

fn not_found(name: &str, version: Option<&str>) -> ApiError {
    kv_error(
        404,
        "KeyNotFound",
        format!(
            "A key with (name/id) {name}{} was not found in this key vault.",
            version.map(|v| format!("/{v}")).unwrap_or_default()
        ),
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Attributes {
    enabled: Option<bool>,
    nbf: Option<i64>,
    exp: Option<i64>,
}

#[derive(Deserialize)]
struct CreateBody {
    kty: String,
    key_size: Option<usize>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    key_ops: Option<Vec<String>>,
    #[serde(default)]
    attributes: Option<Attributes>,
    #[serde(default)]
    tags: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct UpdateBody {
    #[serde(default)]
    key_ops: Option<Vec<String>>,
    #[serde(default)]
    attributes: Option<Attributes>,
    #[serde(default)]
    tags: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct OperationBody {
    alg: String,
    value: String,
    #[serde(default)]
    digest: Option<String>,
}

fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| bad_parameter(format!("The request body is invalid: {e}.")))
}

const KEY_OPS: [&str; 6] = ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"];

fn check_key_ops(ops: &[String]) -> Result<(), ApiError> {
    match ops.iter().find(|op| !KEY_OPS.contains(&op.as_str())) {
        Some(op) => Err(bad_parameter(format!("The key operation '{op}' is invalid."))),
        None => Ok(()),
    }
}

impl Ctx<'_> {
    fn kid(&self, name: &str, version: Option<&str>) -> String {
        match version {
            Some(v) => format!("{}keys/{name}/{v}", self.vault.uri),
            None => format!("{}keys/{name}", self.vault.uri),
        }
    }

    fn recovery_level(&self) -> &'static str {
        if self.vault.settings.enable_purge_protection { "Recoverable" } else { "Recoverable+Purgeable" }
    }

    fn attributes(&self, k: &KeyVersion) -> Value {
        let mut attributes = json!({
            "enabled": k.enabled, "created": k.created, "updated": k.updated,
            "recoveryLevel": self.recovery_level(), "recoverableDays": self.vault.settings.soft_delete_retention_in_days,
        });
        if let Some(nbf) = k.nbf {
            attributes["nbf"] = json!(nbf);
        }
        if let Some(exp) = k.exp {
            attributes["exp"] = json!(exp);
        }
        attributes
    }

    fn bundle(&self, k: &KeyVersion) -> Value {
        let mut key = json!({"kid": self.kid(&k.name, Some(&k.version)), "kty": k.kty, "key_ops": k.key_ops});
        if k.kty == "EC" {
            key["crv"] = json!(k.crv);
            key["x"] = json!(k.x);
            key["y"] = json!(k.y);
        } else {
            key["n"] = json!(k.n);
            key["e"] = json!(k.e);
        }
        json!({"key": key, "attributes": self.attributes(k), "tags": k.tags})
    }

    fn deleted_bundle(&self, k: &KeyVersion, deleted: &Deleted) -> Value {
        let mut bundle = self.bundle(k);
        bundle["recoveryId"] = json!(format!("{}deletedkeys/{}", self.vault.uri, k.name));
        bundle["deletedDate"] = json!(deleted.deleted_date);
        bundle["scheduledPurgeDate"] = json!(deleted.scheduled_purge_date);
        bundle
    }

    fn state_key(&self, name: &str) -> String {
        format!("{}/{}", self.vault.name.to_ascii_lowercase(), name.to_ascii_lowercase())
    }

    fn version_key(&self, name: &str, version: &str) -> String {
        format!("{}/{}", self.state_key(name), version)
    }

    async fn state(&self, name: &str) -> Result<Option<KeyState>, ApiError> {
        self.service
            .store
            .get(KEY_STATE, &self.state_key(name))
            .await
            .map_err(store_err)?
            .map(|b| decode(&b))
            .transpose()
    }

    async fn version(&self, name: &str, version: &str) -> Result<Option<KeyVersion>, ApiError> {
        self.service
            .store
            .get(KEYS, &self.version_key(name, version))
            .await
            .map_err(store_err)?
            .map(|b| decode(&b))
            .transpose()
    }

    /// A live (not deleted) key's requested or latest version.
    async fn live(&self, name: &str, version: Option<&str>) -> Result<KeyVersion, ApiError> {
        let state = self.state(name).await?.filter(|s| s.deleted.is_none()).ok_or_else(|| not_found(name, version))?;
        self.version(name, version.unwrap_or(&state.latest)).await?.ok_or_else(|| not_found(name, version))
    }

    async fn create(&self, name: &str, body: &Bytes) -> Result<Response, Failure> {
        authorize(
            self.service,
            self.vault,
            self.caller,
            "Microsoft.KeyVault/vaults/keys/create/action",
            "create",
            Some(name),
        )?;
        validate_name(name)?;
        let request: CreateBody = parse(body)?;
        let kind = match (request.kty.as_str(), request.crv.as_deref()) {
            ("RSA" | "RSA-HSM", _) => {
                let bits = request.key_size.unwrap_or(2048);
                if ![2048, 3072, 4096].contains(&bits) {
                    return Err(Failure::from(bad_parameter(format!(
                        "The key size {bits} is not supported; use 2048, 3072 or 4096."
                    ))));
                }
                KeyKind::Rsa(bits)
            }
            ("EC" | "EC-HSM", None | Some("P-256")) => KeyKind::EcP256,
            ("EC" | "EC-HSM", Some(curve)) => {
                return Err(Failure::from(bad_parameter(format!(
                    "The curve '{curve}' is not supported; byos creates P-256 EC keys."
                ))));
            }
            (other, _) => {
                return Err(Failure::from(bad_parameter(format!(
                    "The key type '{other}' is not supported; byos creates RSA (2048, 3072, 4096) and EC P-256 keys."
                ))));
            }
        };
        let default_ops: &[&str] = if matches!(kind, KeyKind::EcP256) { &["sign", "verify"] } else { &DEFAULT_KEY_OPS };
        let key_ops = request.key_ops.unwrap_or_else(|| default_ops.iter().map(|s| (*s).to_owned()).collect());
        check_key_ops(&key_ops)?;
        if matches!(kind, KeyKind::EcP256) && key_ops.iter().any(|op| op != "sign" && op != "verify") {
            return Err(Failure::from(bad_parameter("EC keys support only the sign and verify operations.")));
        }
        let previous = self.state(name).await?;
        if previous.as_ref().is_some_and(|s| s.deleted.is_some()) {
            return Err(Failure::from(
                kv_error(409, "Conflict", format!("Key {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the key can only be recovered or purged."))
                    .with_inner_code("ObjectIsDeletedButRecoverable"),
            ));
        }
        let attributes = request.attributes.unwrap_or_default();
        let record =
            self.new_version(name, kind, key_ops, attributes, request.tags.unwrap_or_default(), previous).await?;
        Ok(json_response(200, &self.bundle(&record)))
    }

    /// Generates and stores a new version of `name`, making it the current one; guarded on the
    /// key's previous state.
    async fn new_version(
        &self,
        name: &str,
        kind: KeyKind,
        key_ops: Vec<String>,
        attributes: Attributes,
        tags: Map<String, Value>,
        previous: Option<KeyState>,
    ) -> Result<KeyVersion, ApiError> {
        // RSA generation takes up to seconds for 4096 bits: keep it off the async workers.
        let key = tokio::task::spawn_blocking(move || match kind {
            KeyKind::Rsa(bits) => RsaKey::generate(bits).map(ParsedKey::Rsa),
            KeyKind::EcP256 => EcKey::generate().map(ParsedKey::Ec),
        })
        .await
        .or_internal_with(internal)?
        .or_internal_with(internal)?;
        let (kty, public) = match &key {
            ParsedKey::Rsa(rsa) => {
                let (n, e) = rsa.public_components().or_internal_with(internal)?;
                ("RSA", [b64url(&n), b64url(&e), String::new(), String::new()])
            }
            ParsedKey::Ec(ec) => {
                let (x, y) = ec.public_xy().or_internal_with(internal)?;
                ("EC", [String::new(), String::new(), b64url(&x), b64url(&y)])
            }
        };
        let pkcs8 = match &key {
            ParsedKey::Rsa(rsa) => rsa.pkcs8(),
            ParsedKey::Ec(ec) => ec.pkcs8(),
        };
        let sealed = self.service.root.seal(SealPurpose::VaultKey, pkcs8).or_internal_with(internal)?;
        let [n, e, x, y] = public;
        let now = byos_core::time::unix_now();
        let policy_expiry = self.rotation_policy(name).await?.and_then(|p| p.expiry_for(now));
        let record = KeyVersion {
            v: 1,
            name: name.to_owned(),
            version: uuid::Uuid::new_v4().simple().to_string(),
            kty: kty.into(),
            key_ops,
            enabled: attributes.enabled.unwrap_or(true),
            nbf: attributes.nbf,
            exp: attributes.exp.or(policy_expiry),
            created: now,
            updated: now,
            tags,
            n,
            e,
            crv: (kty == "EC").then(|| "P-256".to_owned()),
            x: (kty == "EC").then_some(x),
            y: (kty == "EC").then_some(y),
            sealed_private: b64url(&sealed),
        };
        let state = KeyState { v: 1, latest: record.version.clone(), deleted: None };
        let state_bytes = previous.map(|p| encode(&p)).transpose()?;
        let batch = Batch::new()
            .expect_unchanged(KEY_STATE, self.state_key(name), state_bytes)
            .put(KEYS, self.version_key(name, &record.version), encode(&record)?)
            .put(KEY_STATE, self.state_key(name), encode(&state)?);
        self.service.store.commit(batch).await.map_err(store_err)?;
        tracing::info!(vault = %self.vault.name, key = name, version = %record.version, "key version created");
        Ok(record)
    }

    /// A new version with the current one's type, size, operations and tags.
    async fn rotate_now(&self, name: &str) -> Result<KeyVersion, ApiError> {
        let current = self.live(name, None).await?;
        let kind = match &*self.private_key(&current)? {
            ParsedKey::Rsa(rsa) => KeyKind::Rsa(rsa.bits().or_internal_with(internal)?),
            ParsedKey::Ec(_) => KeyKind::EcP256,
        };
        let state = self.state(name).await?;
        self.new_version(name, kind, current.key_ops.clone(), Attributes::default(), current.tags.clone(), state).await
    }

    async fn rotate(&self, name: &str) -> Result<Response, Failure> {
        authorize(self.service, self.vault, self.caller, ROTATE, "rotate", Some(name))?;
        Ok(json_response(200, &self.bundle(&self.rotate_now(name).await?)))
    }

    /// An opaque backup of every version of a key: the records (private keys still sealed) sealed
    /// once more under the root key, so it restores only into this deployment.
    async fn backup(&self, name: &str) -> Result<Response, Failure> {
        authorize(
            self.service,
            self.vault,
            self.caller,
            "Microsoft.KeyVault/vaults/keys/backup/action",
            "backup",
            Some(name),
        )?;
        self.live(name, None).await?;
        let backup = Backup {
            v: 1,
            name: name.to_owned(),
            state: self.state(name).await?.ok_or_else(|| not_found(name, None))?,
            versions: self.versions(name).await?,
        };
        let sealed = self.service.root.seal(SealPurpose::KeyBackup, &encode(&backup)?).or_internal_with(internal)?;
        Ok(json_response(200, &json!({"value": b64url(&sealed)})))
    }

    /// Restores a backup as a key of this vault, under its original name (which must be free).
    async fn restore(&self, body: &Bytes) -> Result<Response, Failure> {
        #[derive(Deserialize)]
        struct RestoreBody {
            value: String,
        }
        // Authorized at the vault (the key does not exist yet) before the backup is even opened: a
        // caller without the right learns nothing, not even whether a blob is a backup of this deployment.
        authorize(
            self.service,
            self.vault,
            self.caller,
            "Microsoft.KeyVault/vaults/keys/restore/action",
            "restore",
            None,
        )?;
        let request: RestoreBody = parse(body)?;
        let invalid = || bad_parameter("The backup blob is malformed or was not produced by this byos deployment.");
        let sealed = b64url_decode(&request.value).ok_or_else(invalid)?;
        let plain = self.service.root.open(SealPurpose::KeyBackup, &sealed).map_err(|_| invalid())?;
        let backup: Backup = serde_json::from_slice(&plain).map_err(|_| invalid())?;
        let _ = self.audit_key.set(self.kid(&backup.name, None));
        let skey = self.state_key(&backup.name);
        let mut batch = Batch::new().expect_absent(KEY_STATE, skey.clone()).put(
            KEY_STATE,
            skey,
            encode(&KeyState { deleted: None, ..backup.state.clone() })?,
        );
        for version in &backup.versions {
            batch = batch.put(KEYS, self.version_key(&backup.name, &version.version), encode(version)?);
        }
        self.service.store.commit(batch).await.map_err(|e| match e {
            byos_store::StoreError::Conflict { .. } => kv_error(
                409,
                "Conflict",
                format!("A key named '{}' already exists in this vault (or is deleted but recoverable).", backup.name),
            ),
            other => store_err(other),
        })?;
        let current = self.live(&backup.name, None).await?;
        tracing::info!(vault = %self.vault.name, key = %backup.name, "key restored from backup");
        Ok(json_response(200, &self.bundle(&current)))
    }

    async fn rotation_policy(&self, name: &str) -> Result<Option<crate::rotation::RotationPolicy>, ApiError> {
        self.service
            .store
            .get(ROTATION, &self.state_key(name))
            .await
            .map_err(store_err)?
            .map(|b| decode(&b))
            .transpose()
    }

    fn policy_wire(&self, name: &str, policy: &crate::rotation::RotationPolicy) -> Value {
        let mut wire = serde_json::to_value(policy).unwrap_or(Value::Null);
        wire["id"] = json!(format!("{}keys/{name}/rotationpolicy", self.vault.uri));
        wire
    }

    async fn get_rotation_policy(&self, name: &str) -> Result<Response, Failure> {
        authorize(
            self.service,
            self.vault,
            self.caller,
            "Microsoft.KeyVault/vaults/keyrotationpolicies/read",
            "getrotationpolicy",
            Some(name),
        )?;
        self.live(name, None).await?;
        let policy = self.rotation_policy(name).await?.unwrap_or_else(crate::rotation::RotationPolicy::default_policy);
        Ok(json_response(200, &self.policy_wire(name, &policy)))
    }

    async fn set_rotation_policy(&self, name: &str, body: &Bytes) -> Result<Response, Failure> {
        authorize(
            self.service,
            self.vault,
            self.caller,
            "Microsoft.KeyVault/vaults/keyrotationpolicies/write",
            "setrotationpolicy",
            Some(name),
        )?;
        self.live(name, None).await?;
        let mut policy: crate::rotation::RotationPolicy = parse(body)?;
        policy.validate()?;
        let now = byos_core::time::unix_now();
        let created = self.rotation_policy(name).await?.and_then(|p| p.attributes.created).unwrap_or(now);
        policy.attributes.created = Some(created);
        policy.attributes.updated = Some(now);
        self.service
            .store
            .commit(Batch::new().put(ROTATION, self.state_key(name), encode(&policy)?))
            .await
            .map_err(store_err)?;
        Ok(json_response(200, &self.policy_wire(name, &policy)))
    }

    async fn get(&self, name: &str, version: Option<&str>) -> Result<Response, Failure> {
        authorize(self.service, self.vault, self.caller, "Microsoft.KeyVault/vaults/keys/read", "get", Some(name))?;
        Ok(json_response(200, &self.bundle(&self.live(name, version).await?)))
    }

    async fn update(&self, name: &str, version: Option<&str>, body: &Bytes) -> Result<Response, Failure> {
        authorize(
            self.service,
            self.vault,
            self.caller,
            "Microsoft.KeyVault/vaults/keys/update/action",
            "update",
            Some(name),
        )?;
        let request: UpdateBody = parse(body)?;
        let mut key = self.live(name, version).await?;
        let before = encode(&key)?;
        if let Some(ops) = request.key_ops {
            check_key_ops(&ops)?;
            key.key_ops = ops;
        }
        if let Some(attributes) = request.attributes {
            key.enabled = attributes.enabled.unwrap_or(key.enabled);
            key.nbf = attributes.nbf.or(key.nbf);
            key.exp = attributes.exp.or(key.exp);
        }
        if let Some(tags) = request.tags {
            key.tags = tags;
        }
        key.updated = byos_core::time::unix_now();
        let vkey = self.version_key(name, &key.version);
        let batch = Batch::new().expect_unchanged(KEYS, vkey.clone(), Some(before)).put(KEYS, vkey, encode(&key)?);
        self.service.store.commit(batch).await.map_err(store_err)?;
        Ok(json_response(200, &self.bundle(&key)))
    }

    async fn list_keys(&self) -> Result<Response, Failure> {
        authorize(self.service, self.vault, self.caller, "Microsoft.KeyVault/vaults/keys/read", "list", None)?;
        let prefix = format!("{}/", self.vault.name.to_ascii_lowercase());
        let mut value = Vec::new();
        for (state_key, bytes) in self.service.store.scan(KEY_STATE, &prefix).await.map_err(store_err)? {
            let state: KeyState = decode(&bytes)?;
            if state.deleted.is_some() {
                continue;
            }
            if let Some(key) = self.version(&state_key[prefix.len()..], &state.latest).await? {
                value.push(
                    json!({"kid": self.kid(&key.name, None), "attributes": self.attributes(&key), "tags": key.tags}),
                );
            }
        }
        Ok(json_response(200, &json!({"value": value, "nextLink": null})))
    }

    async fn versions(&self, name: &str) -> Result<Vec<KeyVersion>, ApiError> {
        let rows = self.service.store.scan(KEYS, &format!("{}/", self.state_key(name))).await.map_err(store_err)?;
        let mut versions: Vec<KeyVersion> = rows.iter().map(|(_, b)| decode(b)).collect::<Result<_, _>>()?;
        versions.sort_by_key(|k| k.created);
        Ok(versions)
    }

    async fn list_versions(&self, name: &str) -> Result<Response, Failure> {
        authorize(self.service, self.vault, self.caller, "Microsoft.KeyVault/vaults/keys/read", "list", Some(name))?;
        self.live(name, None).await?;
        let value: Vec<Value> = self
            .versions(name)
            .await?
            .iter()
            .map(|k| json!({"kid": self.kid(&k.name, Some(&k.version)), "attributes": self.attributes(k), "tags": k.tags}))
            .collect();
        Ok(json_response(200, &json!({"value": value, "nextLink": null})))
    }

    async fn delete(&self, name: &str) -> Result<Response, Failure> {
        authorize(
            self.service,
            self.vault,
            self.caller,
            "Microsoft.KeyVault/vaults/keys/delete",
            "delete",
            Some(name),
        )?;
        let key = self.live(name, None).await?;
        let state = self.state(name).await?.ok_or_else(|| not_found(name, None))?;
        let now = byos_core::time::unix_now();
        let deleted = Deleted {
            deleted_date: now,
            scheduled_purge_date: now + i64::from(self.vault.settings.soft_delete_retention_in_days) * 86_400,
        };
        let new_state = KeyState { deleted: Some(deleted.clone()), ..state.clone() };
        let skey = self.state_key(name);
        let batch = Batch::new().expect_unchanged(KEY_STATE, skey.clone(), Some(encode(&state)?)).put(
            KEY_STATE,
            skey,
            encode(&new_state)?,
        );
        self.service.store.commit(batch).await.map_err(store_err)?;
        tracing::info!(vault = %self.vault.name, key = name, "key soft-deleted");
        Ok(json_response(200, &self.deleted_bundle(&key, &deleted)))
    }

    async fn deleted_key(&self, name: &str) -> Result<(KeyState, Deleted, KeyVersion), ApiError> {
        let missing = || kv_error(404, "KeyNotFound", format!("Deleted Key not found: {name}"));
        let state = self.state(name).await?.ok_or_else(missing)?;
        let deleted = state.deleted.clone().ok_or_else(missing)?;
        let key = self.version(name, &state.latest).await?.ok_or_else(missing)?;
        Ok((state, deleted, key))
    }

    async fn get_deleted(&self, name: &str) -> Result<Response, Failure> {
        authorize(self.service, self.vault, self.caller, "Microsoft.KeyVault/vaults/keys/read", "get", Some(name))?;
        let (_, deleted, key) = self.deleted_key(name).await?;
        Ok(json_response(200, &self.deleted_bundle(&key, &deleted)))
    }

    async fn list_deleted(&self) -> Result<Response, Failure> {
        authorize(self.service, self.vault, self.caller, "Microsoft.KeyVault/vaults/keys/read", "list", None)?;
        let prefix = format!("{}/", self.vault.name.to_ascii_lowercase());
        let mut value = Vec::new();
        for (state_key, bytes) in self.service.store.scan(KEY_STATE, &prefix).await.map_err(store_err)? {
            let state: KeyState = decode(&bytes)?;
            let Some(deleted) = &state.deleted else { continue };
            if let Some(key) = self.version(&state_key[prefix.len()..], &state.latest).await? {
                let mut item = self.deleted_bundle(&key, deleted);
                item["kid"] = json!(self.kid(&key.name, None));
                value.push(item);
            }
        }
        Ok(json_response(200, &json!({"value": value, "nextLink": null})))
    }

    async fn recover(&self, name: &str) -> Result<Response, Failure> {
        authorize(
            self.service,
            self.vault,
            self.caller,
            "Microsoft.KeyVault/vaults/keys/recover/action",
            "recover",
            Some(name),
        )?;
        let (state, _, key) = self.deleted_key(name).await?;
        let skey = self.state_key(name);
        let recovered = KeyState { deleted: None, ..state.clone() };
        let batch = Batch::new().expect_unchanged(KEY_STATE, skey.clone(), Some(encode(&state)?)).put(
            KEY_STATE,
            skey,
            encode(&recovered)?,
        );
        self.service.store.commit(batch).await.map_err(store_err)?;
        Ok(json_response(200, &self.bundle(&key)))
    }

    async fn purge(&self, name: &str) -> Result<Response, Failure> {
        authorize(self.service, self.vault, self.caller, PURGE, "purge", Some(name))?;
        let (state, deleted, _) = self.deleted_key(name).await?;
        if self.vault.settings.enable_purge_protection && deleted.scheduled_purge_date > byos_core::time::unix_now() {
            return Err(Failure::from(kv_error(
                403,
                "Forbidden",
                "Operation \"purge\" is not allowed because purge protection is enabled for this vault. Key Vault service will automatically purge it after the retention period has passed.",
            )
            .with_inner_code("PurgeProtected")));
        }
        let skey = self.state_key(name);
        let mut batch = Batch::new()
            .expect_unchanged(KEY_STATE, skey.clone(), Some(encode(&state)?))
            .delete(KEY_STATE, skey.clone())
            .delete(ROTATION, skey);
        for version in self.versions(name).await? {
            batch = batch.delete(KEYS, self.version_key(name, &version.version));
        }
        self.service.store.commit(batch).await.map_err(store_err)?;
        let prefix = format!("{}/", self.state_key(name));
        self.service.parsed_keys.lock().unwrap_or_else(|e| e.into_inner()).retain(|k, _| !k.starts_with(&prefix));
        tracing::info!(vault = %self.vault.name, key = name, "key purged");
        Ok(axum::http::StatusCode::NO_CONTENT.into_response())
    }

    /// encrypt, decrypt, wrapkey, unwrapkey, sign, verify with one key version.
    async fn operate(&self, name: &str, version: &str, op: &str, body: &Bytes) -> Result<Response, Failure> {
        let (action, permission, key_op) = match op {
            "encrypt" => ("Microsoft.KeyVault/vaults/keys/encrypt/action", "encrypt", "encrypt"),
            "decrypt" => ("Microsoft.KeyVault/vaults/keys/decrypt/action", "decrypt", "decrypt"),
            "wrapkey" => ("Microsoft.KeyVault/vaults/keys/wrap/action", "wrapKey", "wrapKey"),
            "unwrapkey" => ("Microsoft.KeyVault/vaults/keys/unwrap/action", "unwrapKey", "unwrapKey"),
            "sign" => ("Microsoft.KeyVault/vaults/keys/sign/action", "sign", "sign"),
            "verify" => ("Microsoft.KeyVault/vaults/keys/verify/action", "verify", "verify"),
            other => {
                return Err(Failure::from(kv_error(404, "NotFound", format!("'{other}' is not a key operation."))));
            }
        };
        authorize(self.service, self.vault, self.caller, action, permission, Some(name))?;
        let request: OperationBody = parse(body)?;
        let key = self.live(name, Some(version)).await?;
        if key.kty == "EC" && !matches!(op, "sign" | "verify") {
            return Err(Failure::from(bad_parameter(format!(
                "The operation '{op}' needs an RSA key; EC keys can only sign and verify."
            ))));
        }
        self.check_usable(&key, key_op)?;
        let value =
            b64url_decode(&request.value).ok_or_else(|| bad_parameter("The 'value' is not valid base64url."))?;
        let parsed = self.private_key(&key)?;
        let kid = self.kid(name, Some(&key.version));
        if let ParsedKey::Ec(ec) = &*parsed {
            return Ok(json_response(200, &ec_operation(ec, op, &request, &value, &kid)?));
        }
        let private = parsed.rsa()?;
        let out = match op {
            "encrypt" | "wrapkey" => {
                let alg = RsaEncryption::parse(&request.alg).ok_or_else(|| {
                    bad_parameter(format!("The algorithm '{}' is not valid for an RSA key.", request.alg))
                })?;
                let out = private
                    .encrypt(alg, &value)
                    .map_err(|_| bad_parameter("The value is too long for this key and algorithm."))?;
                json!({"kid": kid, "value": b64url(&out)})
            }
            "decrypt" | "unwrapkey" => {
                let alg = RsaEncryption::parse(&request.alg).ok_or_else(|| {
                    bad_parameter(format!("The algorithm '{}' is not valid for an RSA key.", request.alg))
                })?;
                if value.len() != private.modulus_len().or_internal_with(internal)? {
                    return Err(Failure::from(bad_parameter(
                        "The ciphertext length does not match the key's modulus length.",
                    )));
                }
                let plain = private
                    .decrypt(alg, &value)
                    .map_err(|_| bad_parameter("The ciphertext could not be decrypted with this key and algorithm."))?;
                json!({"kid": kid, "value": b64url(&plain)})
            }
            "sign" => {
                let alg = RsaSignature::parse(&request.alg).ok_or_else(|| {
                    bad_parameter(format!("The algorithm '{}' is not valid for an RSA key.", request.alg))
                })?;
                if value.len() != alg.digest_len() {
                    return Err(Failure::from(bad_parameter(format!(
                        "The digest must be {} bytes for {}.",
                        alg.digest_len(),
                        request.alg
                    ))));
                }
                json!({"kid": kid, "value": b64url(&private.sign_digest(alg, &value).or_internal_with(internal)?)})
            }
            _ => {
                let alg = RsaSignature::parse(&request.alg).ok_or_else(|| {
                    bad_parameter(format!("The algorithm '{}' is not valid for an RSA key.", request.alg))
                })?;
                let digest = request
                    .digest
                    .as_deref()
                    .and_then(b64url_decode)
                    .ok_or_else(|| bad_parameter("The 'digest' is missing or not valid base64url."))?;
                json!({"value": private.verify_digest(alg, &digest, &value).or_internal_with(internal)?})
            }
        };
        tracing::debug!(vault = %self.vault.name, key = name, version = %key.version, op, "key operation");
        Ok(json_response(200, &out))
    }

    /// Disabled, expired, not-yet-valid keys and operations the key does not allow are refused.
    fn check_usable(&self, key: &KeyVersion, op: &str) -> Result<(), ApiError> {
        usability(key, op)
            .map_err(|unusable| kv_error(403, "Forbidden", unusable.message(op)).with_inner_code(unusable.inner_code()))
    }

    /// The version's private key: unsealed and parsed once, then kept in memory.
    fn private_key(&self, key: &KeyVersion) -> Result<Arc<ParsedKey>, ApiError> {
        let cache_key = self.version_key(&key.name, &key.version);
        if let Some(parsed) = self.service.parsed_keys.lock().unwrap_or_else(|e| e.into_inner()).get(&cache_key) {
            return Ok(Arc::clone(parsed));
        }
        let sealed = b64url_decode(&key.sealed_private).or_internal_with(internal)?;
        let pkcs8: Zeroizing<Vec<u8>> =
            self.service.root.open(SealPurpose::VaultKey, &sealed).or_internal_with(internal)?;
        let parsed = Arc::new(if key.kty == "EC" {
            ParsedKey::Ec(EcKey::from_pkcs8(pkcs8).or_internal_with(internal)?)
        } else {
            ParsedKey::Rsa(RsaKey::from_pkcs8(pkcs8).or_internal_with(internal)?)
        });
        self.service.parsed_keys.lock().unwrap_or_else(|e| e.into_inner()).insert(cache_key, Arc::clone(&parsed));
        Ok(parsed)
    }
}

/// sign / verify with an EC P-256 key (ES256 over a SHA-256 digest).
fn ec_operation(key: &EcKey, op: &str, request: &OperationBody, value: &[u8], kid: &str) -> Result<Value, ApiError> {
    if request.alg != "ES256" {
        return Err(bad_parameter(format!("The algorithm '{}' is not valid for a P-256 key; use ES256.", request.alg)));
    }
    match op {
        "sign" => {
            if value.len() != 32 {
                return Err(bad_parameter("The digest must be 32 bytes for ES256."));
            }
            Ok(json!({"kid": kid, "value": b64url(&key.sign_digest(value).or_internal_with(internal)?)}))
        }
        "verify" => {
            let digest = request
                .digest
                .as_deref()
                .and_then(b64url_decode)
                .ok_or_else(|| bad_parameter("The 'digest' is missing or not valid base64url."))?;
            Ok(json!({"value": key.verify_digest(&digest, value)}))
        }
        _ => Err(bad_parameter("EC keys support only the sign and verify operations.")),
    }
}

/// What a byos service asks of a customer's key (customer-managed keys for storage).
pub enum KeyUse {
    Get,
    Wrap(Vec<u8>),
    Unwrap(Vec<u8>),
}

/// Why a key version cannot serve an operation now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unusable {
    Disabled,
    NotYetValid,
    Expired,
    /// The operation is not among the key's `key_ops`.
    OperationNotAllowed,
}

impl Unusable {
    /// Key Vault's inner error code.
    pub fn inner_code(self) -> &'static str {
        match self {
            Unusable::Disabled => "KeyDisabled",
            Unusable::NotYetValid => "KeyNotYetValid",
            Unusable::Expired => "KeyExpired",
            Unusable::OperationNotAllowed => "OperationNotAllowed",
        }
    }

    fn message(self, op: &str) -> String {
        match self {
            Unusable::Disabled => format!("Operation {op} is not allowed on a disabled key."),
            Unusable::NotYetValid => format!("Operation {op} is not allowed on a key that is not yet valid."),
            Unusable::Expired => format!("Operation {op} is not allowed on an expired key."),
            Unusable::OperationNotAllowed => format!("Operation {op} is not permitted on this key."),
        }
    }
}

/// Whether `key` may serve `op` now: enabled, within its validity, `op` among its operations.
fn usability(key: &KeyVersion, op: &str) -> Result<(), Unusable> {
    let now = byos_core::time::unix_now();
    if !key.enabled {
        return Err(Unusable::Disabled);
    }
    if key.nbf.is_some_and(|nbf| now < nbf) {
        return Err(Unusable::NotYetValid);
    }
    if key.exp.is_some_and(|exp| now >= exp) {
        return Err(Unusable::Expired);
    }
    if !key.key_ops.iter().any(|o| o == op) {
        return Err(Unusable::OperationNotAllowed);
    }
    Ok(())
}

/// Why [`KeyVaultService::use_key`] did not serve a use: in domain terms, for the service that
/// asked to explain in its own protocol (no status codes or inner error strings to decode).
#[derive(Debug, thiserror::Error)]
pub enum KeyUseError {
    #[error("no key vault is served at {0}")]
    VaultNotFound(String),
    /// The door refused: the vault's network rules (`DenialKind::Network`), its RBAC or its access policy.
    #[error("{}", .0.reason)]
    Denied(Box<byos_authz::Denial>),
    #[error("the key '{0}' (or the version asked for) does not exist")]
    KeyNotFound(String),
    #[error("the key cannot be used now: {}", .0.inner_code())]
    Unusable(Unusable),
    #[error("only RSA keys can protect another key (RSA-OAEP-256); this one is an {0} key")]
    NotRsa(String),
    #[error("the value cannot be {0} with this key")]
    Rejected(&'static str),
    #[error("the key use failed or could not be recorded")]
    Internal,
}

impl KeyUseError {
    /// The result the audit log records.
    fn audit_result(&self) -> String {
        match self {
            KeyUseError::Denied(_) => "denied".into(),
            KeyUseError::VaultNotFound(_) => "failed: VaultNotFound".into(),
            KeyUseError::KeyNotFound(_) => "failed: KeyNotFound".into(),
            KeyUseError::Unusable(u) => format!("failed: {}", u.inner_code()),
            KeyUseError::NotRsa(_) | KeyUseError::Rejected(_) => "failed: BadParameter".into(),
            KeyUseError::Internal => "failed: InternalServerError".into(),
        }
    }
}

/// The key version that served a [`KeyUse`], and its output (empty for `Get`).
pub struct KeyUsed {
    pub kid: String,
    pub version: String,
    pub output: Zeroizing<Vec<u8>>,
}

impl KeyVaultService {
    /// The live vault served at `uri` (`https://127.0.0.1:{port}/`).
    pub fn vault_by_uri(&self, uri: &str) -> Option<Arc<Vault>> {
        let wanted = uri.trim_end_matches('/').to_ascii_lowercase();
        self.vaults
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .find(|v| v.uri.trim_end_matches('/').eq_ignore_ascii_case(&wanted))
            .cloned()
    }

    /// Uses a key for another byos service, as `caller` (the resource's managed identity): the
    /// same authorization, validity checks and algorithms (RSA-OAEP-256) as the REST API.
    pub async fn use_key(
        self: &Arc<Self>,
        caller: &Caller,
        vault_uri: &str,
        name: &str,
        version: Option<&str>,
        op: KeyUse,
    ) -> Result<KeyUsed, KeyUseError> {
        let vault = self.vault_by_uri(vault_uri).ok_or_else(|| KeyUseError::VaultNotFound(vault_uri.to_owned()))?;
        let operation = match &op {
            KeyUse::Get => "get",
            KeyUse::Wrap(_) => "wrapKey",
            KeyUse::Unwrap(_) => "unwrapKey",
        };
        let key_id = match version {
            Some(v) => format!("{}keys/{name}/{v}", vault.uri),
            None => format!("{}keys/{name}", vault.uri),
        };
        let outcome = self.use_key_unaudited(&vault, caller, name, version, op).await;
        let audited = self
            .audit(
                &vault.name,
                caller,
                outcome.as_ref().map(|u| u.kid.as_str()).unwrap_or(&key_id),
                operation,
                outcome.as_ref().map_or_else(KeyUseError::audit_result, |_| "success".into()),
            )
            .await;
        match (audited, outcome) {
            (Ok(()), outcome) => outcome,
            (Err(e), Ok(_)) => {
                // The key was used but the use is not on record: the caller gets no output from it.
                tracing::error!(vault = %vault.name, key = name, operation, error = %e, "a key use by a byos service could not be audited");
                Err(KeyUseError::Internal)
            }
            (Err(e), refused) => {
                tracing::error!(vault = %vault.name, key = name, operation, error = %e, "a refused key use could not be audited");
                refused
            }
        }
    }

    async fn use_key_unaudited(
        self: &Arc<Self>,
        vault: &Arc<Vault>,
        caller: &Caller,
        name: &str,
        version: Option<&str>,
        op: KeyUse,
    ) -> Result<KeyUsed, KeyUseError> {
        let vault = Arc::clone(vault);
        let ctx = Ctx::new(self, &vault, caller);
        let (action, key_op) = match &op {
            KeyUse::Get => ("Microsoft.KeyVault/vaults/keys/read", None),
            KeyUse::Wrap(_) => ("Microsoft.KeyVault/vaults/keys/wrap/action", Some("wrapKey")),
            KeyUse::Unwrap(_) => ("Microsoft.KeyVault/vaults/keys/unwrap/action", Some("unwrapKey")),
        };
        let scope = Scope::parse(&format!("{}/keys/{name}", vault.id)).map_err(|_| KeyUseError::Internal)?;
        ask_door(self, &vault, caller, action, &scope).map_err(KeyUseError::Denied)?;
        let key = match ctx.live(name, version).await {
            Ok(key) => key,
            // `live` answers 404 for a key or version that does not exist, 500 for a store failure.
            Err(e) if e.status == 404 => return Err(KeyUseError::KeyNotFound(name.to_owned())),
            Err(_) => return Err(KeyUseError::Internal),
        };
        if let Some(key_op) = key_op {
            if !key.kty.starts_with("RSA") {
                return Err(KeyUseError::NotRsa(key.kty.clone()));
            }
            usability(&key, key_op).map_err(KeyUseError::Unusable)?;
        }
        let private = || ctx.private_key(&key).map_err(|_| KeyUseError::Internal);
        let output = match op {
            KeyUse::Get => Zeroizing::new(Vec::new()),
            KeyUse::Wrap(plain) => {
                let parsed = private()?;
                let rsa = parsed.rsa().map_err(|_| KeyUseError::Internal)?;
                Zeroizing::new(
                    rsa.encrypt(RsaEncryption::Oaep256, &plain).map_err(|_| KeyUseError::Rejected("wrapped"))?,
                )
            }
            KeyUse::Unwrap(wrapped) => {
                let parsed = private()?;
                let rsa = parsed.rsa().map_err(|_| KeyUseError::Internal)?;
                rsa.decrypt(RsaEncryption::Oaep256, &wrapped).map_err(|_| KeyUseError::Rejected("unwrapped"))?
            }
        };
        tracing::debug!(vault = %vault.name, key = name, version = %key.version, caller = %caller, "key used by a byos service");
        Ok(KeyUsed { kid: ctx.kid(name, Some(&key.version)), version: key.version, output })
    }
}

/// Adds the deletion of every key of a vault to `batch` (purging the vault).
pub async fn vault_keys_delete_ops(
    service: &KeyVaultService,
    vault: &str,
    mut batch: Batch,
) -> Result<Batch, ApiError> {
    let prefix = format!("{vault}/");
    service.parsed_keys.lock().unwrap_or_else(|e| e.into_inner()).retain(|k, _| !k.starts_with(&prefix));
    for table in [KEYS, KEY_STATE, ROTATION] {
        for (key, _) in service.store.scan(table, &prefix).await.map_err(store_err)? {
            batch = batch.delete(table, key);
        }
    }
    Ok(batch)
}

/// Rotates every key whose rotation policy is due (the watcher's tick).
pub async fn rotate_due_keys(service: &Arc<KeyVaultService>, rotator: &Caller) -> Result<(), ApiError> {
    let now = byos_core::time::unix_now();
    for (state_key, bytes) in service.store.scan(ROTATION, "").await.map_err(store_err)? {
        let policy: crate::rotation::RotationPolicy = decode(&bytes)?;
        let Some((vault_name, name)) = state_key.split_once('/') else { continue };
        let Some(vault) = service.vault(vault_name) else { continue };
        let ctx = Ctx::new(service, &vault, rotator);
        let Ok(current) = ctx.live(name, None).await else { continue };
        if !policy.due(current.created, current.exp, now) {
            continue;
        }
        let outcome = match authorize(service, &vault, rotator, ROTATE, "rotate", Some(name)) {
            Ok(()) => ctx.rotate_now(name).await,
            Err(e) => Err(e),
        };
        let who = crate::audit::Who {
            caller: String::new(),
            client_id: String::new(),
            authentication: "KeyRotationPolicy".into(),
        };
        let key_id = outcome.as_ref().map(|k| ctx.kid(name, Some(&k.version))).unwrap_or_else(|_| ctx.kid(name, None));
        let result = crate::audit::result_of(outcome.as_ref().map(|_| ()));
        if let Err(e) = service.audit_as(&vault.name, &who, &key_id, "rotate", result).await {
            tracing::error!(vault = %vault.name, key = name, error = %e, "a rotation by a rotation policy could not be audited");
        }
        if let Ok(key) = outcome {
            tracing::info!(vault = %vault.name, key = name, version = %key.version, "key rotated by its rotation policy");
        }
    }
    Ok(())
}

/// Purges soft-deleted keys whose retention has ended (the watcher's tick), as Key Vault does.
pub async fn purge_expired_keys(service: &KeyVaultService, purger: &Caller) -> Result<usize, ApiError> {
    let now = byos_core::time::unix_now();
    let mut purged = 0;
    for (state_key, bytes) in service.store.scan(KEY_STATE, "").await.map_err(store_err)? {
        let state: KeyState = decode(&bytes)?;
        if state.deleted.as_ref().is_none_or(|d| d.scheduled_purge_date > now) {
            continue;
        }
        // The keys of a vault that is itself soft-deleted go with the vault's own purge.
        let Some((vault, name)) = state_key.split_once('/').and_then(|(v, n)| Some((service.vault(v)?, n))) else {
            continue;
        };
        authorize(service, &vault, purger, PURGE, "purge", Some(name))?;
        let mut batch = Batch::new()
            .expect_unchanged(KEY_STATE, state_key.clone(), Some(bytes))
            .delete(KEY_STATE, state_key.clone())
            .delete(ROTATION, state_key.clone());
        let prefix = format!("{state_key}/");
        for (version_key, _) in service.store.scan(KEYS, &prefix).await.map_err(store_err)? {
            batch = batch.delete(KEYS, version_key);
        }
        service.store.commit(batch).await.map_err(store_err)?;
        service.parsed_keys.lock().unwrap_or_else(|e| e.into_inner()).retain(|k, _| !k.starts_with(&prefix));
        purged += 1;
    }
    Ok(purged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use byos_store::{MemStore, SharedStore};

    struct NoListeners;

    #[async_trait::async_trait]
    impl byos_http::Listeners for NoListeners {
        async fn open(&self, _port: u16, _router: Router) -> std::io::Result<(u16, byos_http::ListenerHandle)> {
            Err(std::io::Error::other("no listeners in this test"))
        }
    }

    fn state(purge_at: i64) -> Vec<u8> {
        encode(&KeyState {
            v: 1,
            latest: "v1".into(),
            deleted: Some(Deleted { deleted_date: 0, scheduled_purge_date: purge_at }),
        })
        .unwrap_or_default()
    }

    /// Audit never loses an entry: when a key use cannot be recorded durably, the use fails (500)
    /// instead of handing out its result unrecorded.
    #[tokio::test]
    async fn regression_audit_a_key_use_whose_entry_cannot_be_made_durable_fails()
    -> Result<(), Box<dyn std::error::Error>> {
        let failing = Arc::new(crate::audit::tests::FailingAudit::default());
        let store: SharedStore = failing.clone();
        let root = Arc::new(byos_crypto::RootKey::ephemeral()?);
        let directory =
            Arc::new(byos_identity::Directory::open(Arc::clone(&store), &root, "https://127.0.0.1:1").await?);
        let tenant = directory.tenant_id();
        let service = KeyVaultService::new(
            Arc::clone(&store),
            root,
            Arc::new(byos_authz::Door::new()),
            directory,
            Arc::new(NoListeners),
            "https://127.0.0.1:1".into(),
        );
        let user = uuid::Uuid::new_v4();
        let props = json!({"tenantId": tenant, "sku": {},
            "accessPolicies": [{"tenantId": tenant, "objectId": user, "permissions": {"keys": ["get", "wrapKey"]}}]});
        let settings =
            crate::settings::VaultSettings::create(props.as_object().ok_or("props")?).map_err(|e| e.message)?;
        service.install(&vault_record("kv1"), settings);
        let vault = service.vault("kv1").ok_or("vault")?;
        let principal = byos_core::PrincipalRef {
            object_id: user,
            client_id: uuid::Uuid::new_v4(),
            tenant_id: tenant,
            kind: byos_core::PrincipalKind::ServicePrincipal,
        };
        let caller = Caller::bearer(principal, byos_core::NetworkOrigin::local_socket());
        let ops = vec!["wrapKey".to_owned()];
        Ctx::new(&service, &vault, &caller)
            .new_version("k", KeyKind::Rsa(2048), ops, Attributes::default(), Map::new(), None)
            .await
            .map_err(|e| e.message)?;
        let wrap = || service.use_key(&caller, &vault.uri, "k", None, KeyUse::Wrap(vec![7; 32]));
        assert!(wrap().await.is_ok(), "the key is usable while the log is writable");
        failing.fail.store(true, std::sync::atomic::Ordering::SeqCst);
        let unrecorded = wrap().await;
        assert!(unrecorded.as_ref().is_err_and(|e| matches!(e, KeyUseError::Internal)), "an unaudited wrap must fail");
        failing.fail.store(false, std::sync::atomic::Ordering::SeqCst);
        let (entries, verdict) = service.audit_verdict("kv1").await.map_err(|e| e.message)?;
        assert_eq!(entries.len(), 1, "only the recorded use is in the log");
        assert_eq!(verdict, Ok(1));
        Ok(())
    }

    fn vault_record(name: &str) -> byos_arm::ResourceRecord {
        byos_arm::ResourceRecord {
            v: 1,
            id: format!("/subscriptions/s/resourceGroups/g/providers/Microsoft.KeyVault/vaults/{name}"),
            name: name.into(),
            resource_type: crate::VAULT_TYPE.into(),
            location: "local".into(),
            tags: Map::new(),
            properties: Value::Null,
            identity: None,
            owned_principals: vec![],
            created_on: String::new(),
            extra: Map::new(),
        }
    }

    #[tokio::test]
    async fn soft_deleted_keys_are_purged_only_after_their_retention() -> Result<(), Box<dyn std::error::Error>> {
        let store: SharedStore = Arc::new(MemStore::new());
        let root = Arc::new(byos_crypto::RootKey::ephemeral()?);
        let directory =
            Arc::new(byos_identity::Directory::open(Arc::clone(&store), &root, "https://127.0.0.1:1").await?);
        let service = KeyVaultService::new(
            Arc::clone(&store),
            root,
            Arc::new(byos_authz::Door::new()),
            directory,
            Arc::new(NoListeners),
            "https://127.0.0.1:1".into(),
        );
        let props = json!({"tenantId": uuid::Uuid::new_v4(), "sku": {}, "enableRbacAuthorization": true});
        let settings =
            crate::settings::VaultSettings::create(props.as_object().ok_or("props")?).map_err(|e| e.message)?;
        service.install(&vault_record("vault"), settings);
        let now = byos_core::time::unix_now();
        store
            .commit(
                Batch::new()
                    .put(KEY_STATE, "vault/expired", state(now - 1))
                    .put(KEYS, "vault/expired/v1", b"{}".to_vec())
                    .put(KEY_STATE, "vault/retained", state(now + 3600))
                    .put(KEYS, "vault/retained/v1", b"{}".to_vec()),
            )
            .await?;
        let rotation = Caller::actor(byos_core::Actor::KeyRotation);
        assert!(purge_expired_keys(&service, &rotation).await.is_err_and(|e| e.status == 403), "not the purge's actor");
        assert!(store.get(KEY_STATE, "vault/expired").await?.is_some(), "a refused purge purges nothing");
        assert_eq!(
            purge_expired_keys(&service, &Caller::actor(byos_core::Actor::SoftDeletePurge))
                .await
                .map_err(|e| e.message)?,
            1
        );
        assert!(store.get(KEY_STATE, "vault/expired").await?.is_none());
        assert!(store.get(KEYS, "vault/expired/v1").await?.is_none(), "every version goes with the key");
        assert!(store.get(KEY_STATE, "vault/retained").await?.is_some(), "a key still in retention stays recoverable");
        Ok(())
    }
}
