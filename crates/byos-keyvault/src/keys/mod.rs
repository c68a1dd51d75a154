//! The keys of a vault, without HTTP: every key operation is a method of [`Ctx`] (one vault, one
//! caller) that asks the door first, takes typed parameters ([`model`]) and returns typed results
//! or a [`KeyError`]. [`http`] is the REST API over them (one listener per vault);
//! [`KeyVaultService::use_key`] is how other byos services use keys; the rotation watcher calls
//! [`rotate_due_keys`] and [`purge_expired_keys`].

mod error;
pub mod http;
pub mod model;

use std::sync::{Arc, OnceLock};

use byos_authz::{Action, ResourceGuard};
use byos_core::{ApiError, Caller, Scope};
use byos_crypto::vault_keys::{EcKey, RsaEncryption, RsaKey, RsaSignature};
use byos_crypto::{SealPurpose, b64url, b64url_decode};
use byos_store::{Batch, Table};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::rotation::RotationPolicy;
use crate::{KeyVaultService, Vault};
use error::OrKeyInternal;
pub use error::{KeyError, Refusal};
pub use model::KeyOperation;
use model::{
    Attributes, CreateKey, DeletedKeyBundle, DeletedKeyItem, JsonWebKey, KeyAttributes, KeyBackup, KeyBundle, KeyItem,
    OperationRequest, OperationResult, PublicKey, RestoreKey, RotationPolicyBundle, UpdateKey,
};

const READ: &str = "Microsoft.KeyVault/vaults/keys/read";
const ROTATE: &str = "Microsoft.KeyVault/vaults/keys/rotate/action";
const PURGE: &str = "Microsoft.KeyVault/vaults/keys/purge/action";

pub(crate) const KEYS: Table = Table("kv_keys");
const KEY_STATE: Table = Table("kv_key_state");
const ROTATION: Table = Table("kv_rotation");
/// Every operation a key may allow; an RSA key allows all of them unless created otherwise.
const KEY_OPS: [&str; 6] = ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"];

/// A request's typed parameters, or why its body could not be read into them. An operation
/// reports a body it could not read only after the door admitted the caller.
pub type Parsed<T> = Result<T, KeyError>;

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
    fn rsa(&self) -> Result<&RsaKey, KeyError> {
        match self {
            ParsedKey::Rsa(key) => Ok(key),
            ParsedKey::Ec(_) => {
                Err(KeyError::bad_parameter("This operation needs an RSA key; EC keys can only sign and verify."))
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

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, KeyError> {
    serde_json::from_slice(bytes).or_key_internal()
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, KeyError> {
    serde_json::to_vec(value).or_key_internal()
}

fn validate_name(name: &str) -> Result<(), KeyError> {
    if !name.is_empty() && name.len() <= 127 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        Ok(())
    } else {
        Err(KeyError::bad_parameter(format!(
            "The key name '{name}' is invalid: it must match ^[0-9a-zA-Z-]+$ and be at most 127 characters."
        )))
    }
}

fn not_found(name: &str, version: Option<&str>) -> KeyError {
    KeyError::KeyNotFound { name: name.to_owned(), version: version.map(str::to_owned) }
}

fn check_key_ops(ops: &[String]) -> Result<(), KeyError> {
    match ops.iter().find(|op| !KEY_OPS.contains(&op.as_str())) {
        Some(op) => Err(KeyError::bad_parameter(format!("The key operation '{op}' is invalid."))),
        None => Ok(()),
    }
}

/// The context of key operations: one vault, one authenticated caller. Every operation asks the
/// door for this caller before it reads anything.
pub struct Ctx<'a> {
    service: &'a Arc<KeyVaultService>,
    vault: &'a Vault,
    caller: &'a Caller,
    /// The key an operation turned out to address when its target does not name it (restore
    /// names it only inside the backup), so the audit log records that key.
    addressed: OnceLock<String>,
}

impl<'a> Ctx<'a> {
    pub fn new(service: &'a Arc<KeyVaultService>, vault: &'a Vault, caller: &'a Caller) -> Self {
        Ctx { service, vault, caller, addressed: OnceLock::new() }
    }

    /// The id of the key the last operation addressed, when its target did not name it.
    pub fn addressed_key(&self) -> Option<String> {
        self.addressed.get().cloned()
    }
}

impl Ctx<'_> {
    /// The door's decision on `action` at the vault or one of its keys: the vault's network rules,
    /// then RBAC on RBAC vaults or the vault's access policy (`permission`) otherwise.
    fn admit(&self, action: &'static str, permission: &'static str, key: Option<&str>) -> Result<(), KeyError> {
        let resource = match key {
            Some(name) => format!("{}/keys/{name}", self.vault.id),
            None => self.vault.id.clone(),
        };
        let scope = Scope::parse(&resource).or_key_internal()?;
        let settings = &self.vault.settings;
        let (public_network_disabled, firewall) = settings.network();
        let guard = ResourceGuard {
            public_network_disabled,
            firewall,
            policy_permits: (!settings.enable_rbac_authorization).then(|| settings.policy_permits(self.caller)),
            ..ResourceGuard::default()
        };
        self.service.door.authorize_access(self.caller, &Action::data(action), &scope, Some(&guard)).map_err(
            |denial| {
                KeyError::Denied(Box::new(Refusal {
                    denial,
                    action,
                    permission,
                    resource,
                    vault: self.vault.name.clone(),
                    location: self.vault.location.clone(),
                    public_network_disabled,
                }))
            },
        )?;
        Ok(())
    }

    fn kid(&self, name: &str, version: Option<&str>) -> String {
        match version {
            Some(v) => format!("{}keys/{name}/{v}", self.vault.uri),
            None => format!("{}keys/{name}", self.vault.uri),
        }
    }

    fn recovery_level(&self) -> &'static str {
        if self.vault.settings.enable_purge_protection { "Recoverable" } else { "Recoverable+Purgeable" }
    }

    fn attributes(&self, k: &KeyVersion) -> KeyAttributes {
        KeyAttributes {
            enabled: k.enabled,
            nbf: k.nbf,
            exp: k.exp,
            created: k.created,
            updated: k.updated,
            recovery_level: self.recovery_level(),
            recoverable_days: self.vault.settings.soft_delete_retention_in_days,
        }
    }

    fn bundle(&self, k: &KeyVersion) -> KeyBundle {
        let public = if k.kty == "EC" {
            PublicKey::Ec { crv: k.crv.clone(), x: k.x.clone(), y: k.y.clone() }
        } else {
            PublicKey::Rsa { n: k.n.clone(), e: k.e.clone() }
        };
        KeyBundle {
            key: JsonWebKey {
                kid: self.kid(&k.name, Some(&k.version)),
                kty: k.kty.clone(),
                key_ops: k.key_ops.clone(),
                public,
            },
            attributes: self.attributes(k),
            tags: k.tags.clone(),
        }
    }

    fn deleted_bundle(&self, k: &KeyVersion, deleted: &Deleted) -> DeletedKeyBundle {
        DeletedKeyBundle {
            bundle: self.bundle(k),
            recovery_id: format!("{}deletedkeys/{}", self.vault.uri, k.name),
            deleted_date: deleted.deleted_date,
            scheduled_purge_date: deleted.scheduled_purge_date,
        }
    }

    /// A list entry: the key (`kid` without version) or one version (`kid` with it).
    fn item(&self, k: &KeyVersion, version: Option<&str>) -> KeyItem {
        KeyItem { kid: self.kid(&k.name, version), attributes: self.attributes(k), tags: k.tags.clone() }
    }

    fn state_key(&self, name: &str) -> String {
        format!("{}/{}", self.vault.name.to_ascii_lowercase(), name.to_ascii_lowercase())
    }

    fn version_key(&self, name: &str, version: &str) -> String {
        format!("{}/{}", self.state_key(name), version)
    }

    async fn state(&self, name: &str) -> Result<Option<KeyState>, KeyError> {
        self.service.store.get(KEY_STATE, &self.state_key(name)).await?.map(|b| decode(&b)).transpose()
    }

    async fn version(&self, name: &str, version: &str) -> Result<Option<KeyVersion>, KeyError> {
        self.service.store.get(KEYS, &self.version_key(name, version)).await?.map(|b| decode(&b)).transpose()
    }

    /// A live (not deleted) key's requested or latest version.
    async fn live(&self, name: &str, version: Option<&str>) -> Result<KeyVersion, KeyError> {
        let state = self.state(name).await?.filter(|s| s.deleted.is_none()).ok_or_else(|| not_found(name, version))?;
        self.version(name, version.unwrap_or(&state.latest)).await?.ok_or_else(|| not_found(name, version))
    }

    /// Creates a key, or a new current version of an existing one.
    pub async fn create(&self, name: &str, request: Parsed<CreateKey>) -> Result<KeyBundle, KeyError> {
        self.admit("Microsoft.KeyVault/vaults/keys/create/action", "create", Some(name))?;
        validate_name(name)?;
        let request = request?;
        let kind = key_kind(&request)?;
        let default_ops: &[&str] = if matches!(kind, KeyKind::EcP256) { &["sign", "verify"] } else { &KEY_OPS };
        let key_ops = request.key_ops.unwrap_or_else(|| default_ops.iter().map(|s| (*s).to_owned()).collect());
        check_key_ops(&key_ops)?;
        if matches!(kind, KeyKind::EcP256) && key_ops.iter().any(|op| op != "sign" && op != "verify") {
            return Err(KeyError::bad_parameter("EC keys support only the sign and verify operations."));
        }
        let previous = self.state(name).await?;
        if previous.as_ref().is_some_and(|s| s.deleted.is_some()) {
            return Err(KeyError::DeletedButRecoverable(name.to_owned()));
        }
        let attributes = request.attributes.unwrap_or_default();
        let record =
            self.new_version(name, kind, key_ops, attributes, request.tags.unwrap_or_default(), previous).await?;
        Ok(self.bundle(&record))
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
    ) -> Result<KeyVersion, KeyError> {
        // RSA generation takes up to seconds for 4096 bits: keep it off the async workers.
        let key = tokio::task::spawn_blocking(move || match kind {
            KeyKind::Rsa(bits) => RsaKey::generate(bits).map(ParsedKey::Rsa),
            KeyKind::EcP256 => EcKey::generate().map(ParsedKey::Ec),
        })
        .await
        .or_key_internal()?
        .or_key_internal()?;
        let (kty, public) = match &key {
            ParsedKey::Rsa(rsa) => {
                let (n, e) = rsa.public_components().or_key_internal()?;
                ("RSA", [b64url(&n), b64url(&e), String::new(), String::new()])
            }
            ParsedKey::Ec(ec) => {
                let (x, y) = ec.public_xy().or_key_internal()?;
                ("EC", [String::new(), String::new(), b64url(&x), b64url(&y)])
            }
        };
        let pkcs8 = match &key {
            ParsedKey::Rsa(rsa) => rsa.pkcs8(),
            ParsedKey::Ec(ec) => ec.pkcs8(),
        };
        let sealed = self.service.root.seal(SealPurpose::VaultKey, pkcs8).or_key_internal()?;
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
        self.service.store.commit(batch).await?;
        tracing::info!(vault = %self.vault.name, key = name, version = %record.version, "key version created");
        Ok(record)
    }

    /// A new version with the current one's type, size, operations and tags.
    async fn rotate_now(&self, name: &str) -> Result<KeyVersion, KeyError> {
        let current = self.live(name, None).await?;
        let kind = match &*self.private_key(&current)? {
            ParsedKey::Rsa(rsa) => KeyKind::Rsa(rsa.bits().or_key_internal()?),
            ParsedKey::Ec(_) => KeyKind::EcP256,
        };
        let state = self.state(name).await?;
        self.new_version(name, kind, current.key_ops.clone(), Attributes::default(), current.tags.clone(), state).await
    }

    /// Rotates a key now: a new current version like the current one.
    pub async fn rotate(&self, name: &str) -> Result<KeyBundle, KeyError> {
        self.admit(ROTATE, "rotate", Some(name))?;
        Ok(self.bundle(&self.rotate_now(name).await?))
    }

    /// An opaque backup of every version of a key: the records (private keys still sealed) sealed
    /// once more under the root key, so it restores only into this deployment.
    pub async fn backup(&self, name: &str) -> Result<KeyBackup, KeyError> {
        self.admit("Microsoft.KeyVault/vaults/keys/backup/action", "backup", Some(name))?;
        self.live(name, None).await?;
        let backup = Backup {
            v: 1,
            name: name.to_owned(),
            state: self.state(name).await?.ok_or_else(|| not_found(name, None))?,
            versions: self.versions(name).await?,
        };
        let sealed = self.service.root.seal(SealPurpose::KeyBackup, &encode(&backup)?).or_key_internal()?;
        Ok(KeyBackup { value: b64url(&sealed) })
    }

    /// Restores a backup as a key of this vault, under its original name (which must be free).
    pub async fn restore(&self, request: Parsed<RestoreKey>) -> Result<KeyBundle, KeyError> {
        // Authorized at the vault (the key does not exist yet) before the backup is even opened: a
        // caller without the right learns nothing, not even whether a blob is a backup of this deployment.
        self.admit("Microsoft.KeyVault/vaults/keys/restore/action", "restore", None)?;
        let request = request?;
        let invalid =
            || KeyError::bad_parameter("The backup blob is malformed or was not produced by this byos deployment.");
        let sealed = b64url_decode(&request.value).ok_or_else(invalid)?;
        let plain = self.service.root.open(SealPurpose::KeyBackup, &sealed).map_err(|_| invalid())?;
        let backup: Backup = serde_json::from_slice(&plain).map_err(|_| invalid())?;
        let _ = self.addressed.set(self.kid(&backup.name, None));
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
            byos_store::StoreError::Conflict { .. } => KeyError::NameTaken(backup.name.clone()),
            other => KeyError::from(other),
        })?;
        let current = self.live(&backup.name, None).await?;
        tracing::info!(vault = %self.vault.name, key = %backup.name, "key restored from backup");
        Ok(self.bundle(&current))
    }

    async fn rotation_policy(&self, name: &str) -> Result<Option<RotationPolicy>, KeyError> {
        self.service.store.get(ROTATION, &self.state_key(name)).await?.map(|b| decode(&b)).transpose()
    }

    fn policy_bundle(&self, name: &str, policy: RotationPolicy) -> RotationPolicyBundle {
        RotationPolicyBundle { id: format!("{}keys/{name}/rotationpolicy", self.vault.uri), policy }
    }

    /// The key's rotation policy (Key Vault's default when none was set).
    pub async fn get_rotation_policy(&self, name: &str) -> Result<RotationPolicyBundle, KeyError> {
        self.admit("Microsoft.KeyVault/vaults/keyrotationpolicies/read", "getrotationpolicy", Some(name))?;
        self.live(name, None).await?;
        let policy = self.rotation_policy(name).await?.unwrap_or_else(RotationPolicy::default_policy);
        Ok(self.policy_bundle(name, policy))
    }

    /// Sets the key's rotation policy (keeping when the first one was created).
    pub async fn set_rotation_policy(
        &self,
        name: &str,
        policy: Parsed<RotationPolicy>,
    ) -> Result<RotationPolicyBundle, KeyError> {
        self.admit("Microsoft.KeyVault/vaults/keyrotationpolicies/write", "setrotationpolicy", Some(name))?;
        self.live(name, None).await?;
        let mut policy = policy?;
        policy.validate()?;
        let now = byos_core::time::unix_now();
        let created = self.rotation_policy(name).await?.and_then(|p| p.attributes.created).unwrap_or(now);
        policy.attributes.created = Some(created);
        policy.attributes.updated = Some(now);
        self.service.store.commit(Batch::new().put(ROTATION, self.state_key(name), encode(&policy)?)).await?;
        Ok(self.policy_bundle(name, policy))
    }

    /// A live key's requested or current version.
    pub async fn get(&self, name: &str, version: Option<&str>) -> Result<KeyBundle, KeyError> {
        self.admit(READ, "get", Some(name))?;
        Ok(self.bundle(&self.live(name, version).await?))
    }

    /// Changes a version's operations, attributes or tags.
    pub async fn update(
        &self,
        name: &str,
        version: Option<&str>,
        request: Parsed<UpdateKey>,
    ) -> Result<KeyBundle, KeyError> {
        self.admit("Microsoft.KeyVault/vaults/keys/update/action", "update", Some(name))?;
        let request = request?;
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
        self.service.store.commit(batch).await?;
        Ok(self.bundle(&key))
    }

    /// The vault's live keys, each by its current version.
    pub async fn list_keys(&self) -> Result<Vec<KeyItem>, KeyError> {
        self.admit(READ, "list", None)?;
        let prefix = format!("{}/", self.vault.name.to_ascii_lowercase());
        let mut items = Vec::new();
        for (state_key, bytes) in self.service.store.scan(KEY_STATE, &prefix).await? {
            let state: KeyState = decode(&bytes)?;
            if state.deleted.is_some() {
                continue;
            }
            if let Some(key) = self.version(&state_key[prefix.len()..], &state.latest).await? {
                items.push(self.item(&key, None));
            }
        }
        Ok(items)
    }

    async fn versions(&self, name: &str) -> Result<Vec<KeyVersion>, KeyError> {
        let rows = self.service.store.scan(KEYS, &format!("{}/", self.state_key(name))).await?;
        let mut versions: Vec<KeyVersion> = rows.iter().map(|(_, b)| decode(b)).collect::<Result<_, _>>()?;
        versions.sort_by_key(|k| k.created);
        Ok(versions)
    }

    /// Every version of a live key, oldest first.
    pub async fn list_versions(&self, name: &str) -> Result<Vec<KeyItem>, KeyError> {
        self.admit(READ, "list", Some(name))?;
        self.live(name, None).await?;
        Ok(self.versions(name).await?.iter().map(|k| self.item(k, Some(&k.version))).collect())
    }

    /// Soft-deletes a key: recoverable until its vault's retention ends.
    pub async fn delete(&self, name: &str) -> Result<DeletedKeyBundle, KeyError> {
        self.admit("Microsoft.KeyVault/vaults/keys/delete", "delete", Some(name))?;
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
        self.service.store.commit(batch).await?;
        tracing::info!(vault = %self.vault.name, key = name, "key soft-deleted");
        Ok(self.deleted_bundle(&key, &deleted))
    }

    async fn deleted_key(&self, name: &str) -> Result<(KeyState, Deleted, KeyVersion), KeyError> {
        let missing = || KeyError::DeletedKeyNotFound(name.to_owned());
        let state = self.state(name).await?.ok_or_else(missing)?;
        let deleted = state.deleted.clone().ok_or_else(missing)?;
        let key = self.version(name, &state.latest).await?.ok_or_else(missing)?;
        Ok((state, deleted, key))
    }

    /// A soft-deleted key.
    pub async fn get_deleted(&self, name: &str) -> Result<DeletedKeyBundle, KeyError> {
        self.admit(READ, "get", Some(name))?;
        let (_, deleted, key) = self.deleted_key(name).await?;
        Ok(self.deleted_bundle(&key, &deleted))
    }

    /// The vault's soft-deleted keys.
    pub async fn list_deleted(&self) -> Result<Vec<DeletedKeyItem>, KeyError> {
        self.admit(READ, "list", None)?;
        let prefix = format!("{}/", self.vault.name.to_ascii_lowercase());
        let mut items = Vec::new();
        for (state_key, bytes) in self.service.store.scan(KEY_STATE, &prefix).await? {
            let state: KeyState = decode(&bytes)?;
            let Some(deleted) = &state.deleted else { continue };
            if let Some(key) = self.version(&state_key[prefix.len()..], &state.latest).await? {
                items.push(DeletedKeyItem {
                    deleted: self.deleted_bundle(&key, deleted),
                    kid: self.kid(&key.name, None),
                });
            }
        }
        Ok(items)
    }

    /// Brings a soft-deleted key back, every version as it was.
    pub async fn recover(&self, name: &str) -> Result<KeyBundle, KeyError> {
        self.admit("Microsoft.KeyVault/vaults/keys/recover/action", "recover", Some(name))?;
        let (state, _, key) = self.deleted_key(name).await?;
        let skey = self.state_key(name);
        let recovered = KeyState { deleted: None, ..state.clone() };
        let batch = Batch::new().expect_unchanged(KEY_STATE, skey.clone(), Some(encode(&state)?)).put(
            KEY_STATE,
            skey,
            encode(&recovered)?,
        );
        self.service.store.commit(batch).await?;
        Ok(self.bundle(&key))
    }

    /// Deletes a soft-deleted key for good (refused under purge protection until its retention ends).
    pub async fn purge(&self, name: &str) -> Result<(), KeyError> {
        self.admit(PURGE, "purge", Some(name))?;
        let (state, deleted, _) = self.deleted_key(name).await?;
        if self.vault.settings.enable_purge_protection && deleted.scheduled_purge_date > byos_core::time::unix_now() {
            return Err(KeyError::PurgeProtected);
        }
        let skey = self.state_key(name);
        let mut batch = Batch::new()
            .expect_unchanged(KEY_STATE, skey.clone(), Some(encode(&state)?))
            .delete(KEY_STATE, skey.clone())
            .delete(ROTATION, skey);
        for version in self.versions(name).await? {
            batch = batch.delete(KEYS, self.version_key(name, &version.version));
        }
        self.service.store.commit(batch).await?;
        self.service.forget_parsed_keys(&format!("{}/", self.state_key(name)));
        tracing::info!(vault = %self.vault.name, key = name, "key purged");
        Ok(())
    }

    /// encrypt, decrypt, wrapKey, unwrapKey, sign or verify with one key version.
    pub async fn operate(
        &self,
        name: &str,
        version: &str,
        op: KeyOperation,
        request: Parsed<OperationRequest>,
    ) -> Result<OperationResult, KeyError> {
        self.admit(op.action(), op.name(), Some(name))?;
        let request = request?;
        let key = self.live(name, Some(version)).await?;
        if key.kty == "EC" && !matches!(op, KeyOperation::Sign | KeyOperation::Verify) {
            return Err(KeyError::bad_parameter(format!(
                // The operation as the path spells it (lower case).
                "The operation '{}' needs an RSA key; EC keys can only sign and verify.",
                op.name().to_ascii_lowercase()
            )));
        }
        usability(&key, op.name()).map_err(|reason| KeyError::Unusable { reason, operation: op.name() })?;
        let value = b64url_decode(&request.value)
            .ok_or_else(|| KeyError::bad_parameter("The 'value' is not valid base64url."))?;
        let parsed = self.private_key(&key)?;
        let kid = self.kid(name, Some(&key.version));
        let result = match &*parsed {
            ParsedKey::Ec(ec) => ec_operation(ec, op, &request, &value, kid)?,
            ParsedKey::Rsa(rsa) => rsa_operation(rsa, op, &request, &value, kid)?,
        };
        tracing::debug!(vault = %self.vault.name, key = name, version = %key.version, op = op.name(), "key operation");
        Ok(result)
    }

    /// The version's private key: unsealed and parsed once, then kept in memory.
    fn private_key(&self, key: &KeyVersion) -> Result<Arc<ParsedKey>, KeyError> {
        let cache_key = self.version_key(&key.name, &key.version);
        if let Some(parsed) = self.service.parsed_keys.lock().unwrap_or_else(|e| e.into_inner()).get(&cache_key) {
            return Ok(Arc::clone(parsed));
        }
        let sealed = b64url_decode(&key.sealed_private).or_key_internal()?;
        let pkcs8: Zeroizing<Vec<u8>> = self.service.root.open(SealPurpose::VaultKey, &sealed).or_key_internal()?;
        let parsed = Arc::new(if key.kty == "EC" {
            ParsedKey::Ec(EcKey::from_pkcs8(pkcs8).or_key_internal()?)
        } else {
            ParsedKey::Rsa(RsaKey::from_pkcs8(pkcs8).or_key_internal()?)
        });
        self.service.parsed_keys.lock().unwrap_or_else(|e| e.into_inner()).insert(cache_key, Arc::clone(&parsed));
        Ok(parsed)
    }
}

impl KeyVaultService {
    /// Drops the parsed private keys under `prefix` (`{vault}/` or `{vault}/{name}/`) once their
    /// records are gone.
    fn forget_parsed_keys(&self, prefix: &str) {
        self.parsed_keys.lock().unwrap_or_else(|e| e.into_inner()).retain(|k, _| !k.starts_with(prefix));
    }
}

/// The kind of key a Create Key request asks for, if byos makes it.
fn key_kind(request: &CreateKey) -> Result<KeyKind, KeyError> {
    match (request.kty.as_str(), request.crv.as_deref()) {
        ("RSA" | "RSA-HSM", _) => {
            let bits = request.key_size.unwrap_or(2048);
            if ![2048, 3072, 4096].contains(&bits) {
                return Err(KeyError::bad_parameter(format!(
                    "The key size {bits} is not supported; use 2048, 3072 or 4096."
                )));
            }
            Ok(KeyKind::Rsa(bits))
        }
        ("EC" | "EC-HSM", None | Some("P-256")) => Ok(KeyKind::EcP256),
        ("EC" | "EC-HSM", Some(curve)) => {
            Err(KeyError::bad_parameter(format!("The curve '{curve}' is not supported; byos creates P-256 EC keys.")))
        }
        (other, _) => Err(KeyError::bad_parameter(format!(
            "The key type '{other}' is not supported; byos creates RSA (2048, 3072, 4096) and EC P-256 keys."
        ))),
    }
}

fn rsa_algorithm_error(alg: &str) -> KeyError {
    KeyError::bad_parameter(format!("The algorithm '{alg}' is not valid for an RSA key."))
}

fn digest_of(request: &OperationRequest) -> Result<Vec<u8>, KeyError> {
    request
        .digest
        .as_deref()
        .and_then(b64url_decode)
        .ok_or_else(|| KeyError::bad_parameter("The 'digest' is missing or not valid base64url."))
}

/// encrypt, decrypt, wrapKey, unwrapKey, sign, verify with an RSA key.
fn rsa_operation(
    key: &RsaKey,
    op: KeyOperation,
    request: &OperationRequest,
    value: &[u8],
    kid: String,
) -> Result<OperationResult, KeyError> {
    let encryption = || RsaEncryption::parse(&request.alg).ok_or_else(|| rsa_algorithm_error(&request.alg));
    let signature = || RsaSignature::parse(&request.alg).ok_or_else(|| rsa_algorithm_error(&request.alg));
    // Decrypted output is plaintext: it stays in zeroized memory until encoded.
    let output: Zeroizing<Vec<u8>> = match op {
        KeyOperation::Encrypt | KeyOperation::WrapKey => Zeroizing::new(
            key.encrypt(encryption()?, value)
                .map_err(|_| KeyError::bad_parameter("The value is too long for this key and algorithm."))?,
        ),
        KeyOperation::Decrypt | KeyOperation::UnwrapKey => {
            let alg = encryption()?;
            if value.len() != key.modulus_len().or_key_internal()? {
                return Err(KeyError::bad_parameter("The ciphertext length does not match the key's modulus length."));
            }
            key.decrypt(alg, value).map_err(|_| {
                KeyError::bad_parameter("The ciphertext could not be decrypted with this key and algorithm.")
            })?
        }
        KeyOperation::Sign => {
            let alg = signature()?;
            if value.len() != alg.digest_len() {
                return Err(KeyError::bad_parameter(format!(
                    "The digest must be {} bytes for {}.",
                    alg.digest_len(),
                    request.alg
                )));
            }
            Zeroizing::new(key.sign_digest(alg, value).or_key_internal()?)
        }
        KeyOperation::Verify => {
            let alg = signature()?;
            let digest = digest_of(request)?;
            return Ok(OperationResult::Verified { value: key.verify_digest(alg, &digest, value).or_key_internal()? });
        }
    };
    Ok(OperationResult::Value { kid, value: b64url(&output) })
}

/// sign / verify with an EC P-256 key (ES256 over a SHA-256 digest).
fn ec_operation(
    key: &EcKey,
    op: KeyOperation,
    request: &OperationRequest,
    value: &[u8],
    kid: String,
) -> Result<OperationResult, KeyError> {
    if request.alg != "ES256" {
        return Err(KeyError::bad_parameter(format!(
            "The algorithm '{}' is not valid for a P-256 key; use ES256.",
            request.alg
        )));
    }
    match op {
        KeyOperation::Sign => {
            if value.len() != 32 {
                return Err(KeyError::bad_parameter("The digest must be 32 bytes for ES256."));
            }
            Ok(OperationResult::Value { kid, value: b64url(&key.sign_digest(value).or_key_internal()?) })
        }
        KeyOperation::Verify => {
            let digest = digest_of(request)?;
            Ok(OperationResult::Verified { value: key.verify_digest(&digest, value) })
        }
        _ => Err(KeyError::bad_parameter("EC keys support only the sign and verify operations.")),
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
    /// The modulus size of an RSA key (what AI accounts' customer keys must be: 2048).
    pub rsa_bits: Option<usize>,
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
        vault: &Vault,
        caller: &Caller,
        name: &str,
        version: Option<&str>,
        op: KeyUse,
    ) -> Result<KeyUsed, KeyUseError> {
        let ctx = Ctx::new(self, vault, caller);
        let (action, permission, key_op) = match &op {
            KeyUse::Get => (READ, "get", None),
            KeyUse::Wrap(_) => (KeyOperation::WrapKey.action(), "wrapKey", Some("wrapKey")),
            KeyUse::Unwrap(_) => (KeyOperation::UnwrapKey.action(), "unwrapKey", Some("unwrapKey")),
        };
        ctx.admit(action, permission, Some(name)).map_err(KeyUseError::from)?;
        let key = ctx.live(name, version).await.map_err(KeyUseError::from)?;
        if let Some(key_op) = key_op {
            if !key.kty.starts_with("RSA") {
                return Err(KeyUseError::NotRsa(key.kty.clone()));
            }
            usability(&key, key_op).map_err(KeyUseError::Unusable)?;
        }
        let rsa = || ctx.private_key(&key).map_err(|_| KeyUseError::Internal);
        let output = match op {
            KeyUse::Get => Zeroizing::new(Vec::new()),
            KeyUse::Wrap(plain) => {
                let parsed = rsa()?;
                let rsa = parsed.rsa().map_err(|_| KeyUseError::Internal)?;
                Zeroizing::new(
                    rsa.encrypt(RsaEncryption::Oaep256, &plain).map_err(|_| KeyUseError::Rejected("wrapped"))?,
                )
            }
            KeyUse::Unwrap(wrapped) => {
                let parsed = rsa()?;
                let rsa = parsed.rsa().map_err(|_| KeyUseError::Internal)?;
                rsa.decrypt(RsaEncryption::Oaep256, &wrapped).map_err(|_| KeyUseError::Rejected("unwrapped"))?
            }
        };
        tracing::debug!(vault = %vault.name, key = name, version = %key.version, caller = %caller, "key used by a byos service");
        let rsa_bits = modulus_bits(&key);
        Ok(KeyUsed { kid: ctx.kid(name, Some(&key.version)), version: key.version, output, rsa_bits })
    }
}

/// The bit length of an RSA key's modulus (`None` for other key types).
fn modulus_bits(key: &KeyVersion) -> Option<usize> {
    let n = byos_crypto::b64url_decode(&key.n).filter(|_| key.kty.starts_with("RSA"))?;
    let significant = n.iter().skip_while(|b| **b == 0).collect::<Vec<_>>();
    let first = **significant.first()?;
    Some((significant.len() - 1) * 8 + (8 - first.leading_zeros() as usize))
}

impl From<KeyError> for KeyUseError {
    /// The errors the door and the key lookup can give a key use; anything else is byos's failure.
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Denied(refusal) => KeyUseError::Denied(refusal.denial),
            KeyError::KeyNotFound { name, .. } => KeyUseError::KeyNotFound(name),
            _ => KeyUseError::Internal,
        }
    }
}

/// Adds the deletion of every key of a vault to `batch` (purging the vault).
pub async fn vault_keys_delete_ops(
    service: &KeyVaultService,
    vault: &str,
    mut batch: Batch,
) -> Result<Batch, ApiError> {
    let prefix = format!("{vault}/");
    service.forget_parsed_keys(&prefix);
    for table in [KEYS, KEY_STATE, ROTATION] {
        for (key, _) in service.store.scan(table, &prefix).await.map_err(KeyError::from)? {
            batch = batch.delete(table, key);
        }
    }
    Ok(batch)
}

/// Rotates every key whose rotation policy is due (the watcher's tick).
pub async fn rotate_due_keys(service: &Arc<KeyVaultService>, rotator: &Caller) -> Result<(), KeyError> {
    let now = byos_core::time::unix_now();
    for (state_key, bytes) in service.store.scan(ROTATION, "").await? {
        let policy: RotationPolicy = decode(&bytes)?;
        let Some((vault_name, name)) = state_key.split_once('/') else { continue };
        let Some(vault) = service.vault(vault_name) else { continue };
        let ctx = Ctx::new(service, &vault, rotator);
        let Ok(current) = ctx.live(name, None).await else { continue };
        if !policy.due(current.created, current.exp, now) {
            continue;
        }
        let outcome = ctx.rotate(name).await;
        let rotated = outcome.is_ok();
        let who = crate::audit::Who {
            caller: String::new(),
            client_id: String::new(),
            authentication: "KeyRotationPolicy".into(),
        };
        let key_id = outcome.as_ref().map(|k| k.key.kid.clone()).unwrap_or_else(|_| ctx.kid(name, None));
        // Recorded in Key Vault's codes, like the results of REST requests.
        let result = match outcome {
            Ok(_) => crate::audit::result_of(Ok(())),
            Err(e) => crate::audit::result_of(Err(&ApiError::from(e))),
        };
        if let Err(e) = service.audit_as(&vault.name, &who, &key_id, "rotate", result).await {
            tracing::error!(vault = %vault.name, key = name, error = %e, "a rotation by a rotation policy could not be audited");
        }
        if rotated {
            tracing::info!(vault = %vault.name, key = name, kid = %key_id, "key rotated by its rotation policy");
        }
    }
    Ok(())
}

/// Purges soft-deleted keys whose retention has ended (the watcher's tick), as Key Vault does.
pub async fn purge_expired_keys(service: &Arc<KeyVaultService>, purger: &Caller) -> Result<usize, KeyError> {
    let now = byos_core::time::unix_now();
    let mut purged = 0;
    for (state_key, bytes) in service.store.scan(KEY_STATE, "").await? {
        let state: KeyState = decode(&bytes)?;
        if state.deleted.as_ref().is_none_or(|d| d.scheduled_purge_date > now) {
            continue;
        }
        // The keys of a vault that is itself soft-deleted go with the vault's own purge.
        let Some((vault, name)) = state_key.split_once('/').and_then(|(v, n)| Some((service.vault(v)?, n))) else {
            continue;
        };
        Ctx::new(service, &vault, purger).admit(PURGE, "purge", Some(name))?;
        let mut batch = Batch::new()
            .expect_unchanged(KEY_STATE, state_key.clone(), Some(bytes))
            .delete(KEY_STATE, state_key.clone())
            .delete(ROTATION, state_key.clone());
        let prefix = format!("{state_key}/");
        for (version_key, _) in service.store.scan(KEYS, &prefix).await? {
            batch = batch.delete(KEYS, version_key);
        }
        service.store.commit(batch).await?;
        service.forget_parsed_keys(&prefix);
        purged += 1;
    }
    Ok(purged)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use axum::Router;
    use byos_store::{MemStore, SharedStore};
    use serde_json::json;

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
        let (service, tenant) = service_on(Arc::clone(&store)).await?;
        let user = uuid::Uuid::new_v4();
        let vault = install_policy_vault(&service, tenant, user, &["get", "wrapKey"])?;
        let caller = bearer(user, tenant);
        let ops = vec!["wrapKey".to_owned()];
        Ctx::new(&service, &vault, &caller)
            .new_version("k", KeyKind::Rsa(2048), ops, Attributes::default(), Map::new(), None)
            .await?;
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

    /// A Key Vault service over `store` (no listeners, an empty door), and its tenant.
    pub(crate) async fn service_on(
        store: SharedStore,
    ) -> Result<(Arc<KeyVaultService>, uuid::Uuid), Box<dyn std::error::Error>> {
        let root = Arc::new(byos_crypto::RootKey::ephemeral()?);
        let directory =
            Arc::new(byos_identity::Directory::open(Arc::clone(&store), &root, "https://127.0.0.1:1").await?);
        let tenant = directory.tenant_id();
        let service = KeyVaultService::new(
            store,
            root,
            Arc::new(byos_authz::Door::new()),
            directory,
            Arc::new(NoListeners),
            "https://127.0.0.1:1".into(),
        );
        Ok((service, tenant))
    }

    /// Installs vault `kv1`, governed by an access policy granting `user` the key permissions `keys`.
    pub(crate) fn install_policy_vault(
        service: &KeyVaultService,
        tenant: uuid::Uuid,
        user: uuid::Uuid,
        keys: &[&str],
    ) -> Result<Arc<Vault>, Box<dyn std::error::Error>> {
        let props = json!({"tenantId": tenant, "sku": {},
            "accessPolicies": [{"tenantId": tenant, "objectId": user, "permissions": {"keys": keys}}]});
        let settings =
            crate::settings::VaultSettings::create(props.as_object().ok_or("props")?).map_err(|e| e.message)?;
        service.install(&vault_record("kv1"), settings);
        Ok(service.vault("kv1").ok_or("vault")?)
    }

    pub(crate) fn bearer(user: uuid::Uuid, tenant: uuid::Uuid) -> Caller {
        let principal = byos_core::PrincipalRef {
            object_id: user,
            client_id: uuid::Uuid::new_v4(),
            tenant_id: tenant,
            kind: byos_core::PrincipalKind::ServicePrincipal,
        };
        Caller::bearer(principal, byos_core::NetworkOrigin::local_socket())
    }

    pub(crate) fn rsa_key() -> CreateKey {
        CreateKey { kty: "RSA".into(), key_size: None, crv: None, key_ops: None, attributes: None, tags: None }
    }

    /// The key operations are usable without HTTP, and each asks the door itself: a caller the
    /// vault's access policy does not name is refused in domain terms (even with unreadable
    /// parameters: the door answers first), one it grants creates and reads a key.
    #[tokio::test]
    async fn domain_operations_ask_the_door_before_anything_else() -> Result<(), Box<dyn std::error::Error>> {
        let (service, tenant) = service_on(Arc::new(MemStore::new())).await?;
        let owner = uuid::Uuid::new_v4();
        let vault = install_policy_vault(&service, tenant, owner, &["create", "get"])?;
        let stranger = bearer(uuid::Uuid::new_v4(), tenant);
        let refused = Ctx::new(&service, &vault, &stranger);
        let unreadable = Err(KeyError::bad_parameter("unreadable"));
        for outcome in [refused.create("k", Ok(rsa_key())).await, refused.create("k", unreadable).await] {
            match outcome {
                Err(KeyError::Denied(refusal)) => {
                    assert_eq!(refusal.denial.kind, byos_authz::DenialKind::AccessPolicy);
                    assert_eq!(refusal.permission, "create");
                }
                other => return Err(format!("expected a denial, got {:?}", other.map(|b| b.key.kid)).into()),
            }
        }
        assert!(matches!(refused.get("k", None).await, Err(KeyError::Denied(_))), "the stranger cannot read either");

        let owner = bearer(owner, tenant);
        let admitted = Ctx::new(&service, &vault, &owner);
        let created = admitted.create("k", Ok(rsa_key())).await?;
        assert_eq!(created.key.kty, "RSA");
        let read = admitted.get("k", None).await?;
        assert_eq!(read.key.kid, created.key.kid, "the current version is the one just created");
        assert!(
            matches!(admitted.get("other", None).await, Err(KeyError::KeyNotFound { name, version: None }) if name == "other"),
            "an admitted caller learns that a key does not exist"
        );
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
        let (service, _) = service_on(Arc::clone(&store)).await?;
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
        assert!(
            matches!(purge_expired_keys(&service, &rotation).await, Err(KeyError::Denied(_))),
            "not the purge's actor"
        );
        assert!(store.get(KEY_STATE, "vault/expired").await?.is_some(), "a refused purge purges nothing");
        assert_eq!(purge_expired_keys(&service, &Caller::actor(byos_core::Actor::SoftDeletePurge)).await?, 1);
        assert!(store.get(KEY_STATE, "vault/expired").await?.is_none());
        assert!(store.get(KEYS, "vault/expired/v1").await?.is_none(), "every version goes with the key");
        assert!(store.get(KEY_STATE, "vault/retained").await?.is_some(), "a key still in retention stays recoverable");
        Ok(())
    }
}
