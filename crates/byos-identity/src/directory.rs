//! The directory: one tenant, its principals and the keys that make their tokens.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use byos_core::{ApiError, Caller, NetworkOrigin, PrincipalRef};
use byos_crypto::{CryptoError, MacKey, RootKey, SealPurpose, SigningKey, b64url, secret};
use byos_store::{Batch, SharedStore, StoreError, Table};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::principal::{IdentityKind, PRINCIPAL_RECORD_VERSION, Principal};
use crate::token::{TokenError, TokenService};

/// The managed identities a resource has now, as its owner records them: what
/// [`Directory::act_as`] checks an identity against at every use.
pub struct AttachedIdentities<'a> {
    /// The resource's id.
    pub resource_id: &'a str,
    /// Its system-assigned identity's object id.
    pub system: Option<Uuid>,
    /// Its attached user-assigned identities (resource ids).
    pub user: &'a [String],
}

const DIRECTORY: Table = Table("directory");
const PRINCIPALS: Table = Table("principals");
const IMDS_BINDINGS: Table = Table("imds_bindings");

const TENANT_KEY: &str = "tenant";
const SIGNING_KEY: &str = "signing-key";
const IDENTITY_HEADER_KEY: &str = "identity-header-key";

#[derive(Debug, Error)]
pub enum DirectoryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("stored record {0} is corrupt: {1}")]
    Corrupt(String, String),
    #[error("no managed identity matches '{0}'")]
    NoSuchIdentity(String),
    #[error("no service principal matches '{0}'")]
    NoSuchPrincipal(String),
    #[error("service principal {0} is the bootstrap admin")]
    BootstrapAdmin(Uuid),
}

impl From<DirectoryError> for ApiError {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::NoSuchIdentity(what) => {
                ApiError::not_found("IdentityNotFound", format!("No managed identity matches '{what}'."))
            }
            DirectoryError::NoSuchPrincipal(what) => ApiError::not_found(
                "PrincipalNotFound",
                format!(
                    "No service principal has the client id or object id '{what}' (managed identities go with their resource)."
                ),
            ),
            DirectoryError::BootstrapAdmin(oid) => ApiError::new(
                409,
                "BootstrapAdminProtected",
                format!(
                    "Service principal {oid} is the bootstrap admin of bootstrap.json; it can be neither deleted nor reset, so that the operator cannot lock itself out. Give another principal Owner and remove the admin's role assignment instead."
                ),
            ),
            other => {
                tracing::error!(error = %other, "directory failure");
                ApiError::internal()
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
struct TenantRecord {
    v: u32,
    tenant_id: Uuid,
}

/// How an IMDS request names the identity it wants (all optional).
#[derive(Clone, Debug, Default)]
pub struct ImdsRequest {
    pub client_id: Option<String>,
    pub object_id: Option<String>,
    pub resource_id: Option<String>,
}

#[derive(Default)]
struct Principals {
    by_object: HashMap<Uuid, Arc<Principal>>,
    by_client: HashMap<Uuid, Uuid>,
    imds_bound: HashSet<Uuid>,
}

/// The tenant's directory. Principals live in memory for fast token checks; every change is
/// committed to the store first.
pub struct Directory {
    store: SharedStore,
    tenant_id: Uuid,
    tokens: TokenService,
    identity_header_key: MacKey,
    principals: RwLock<Principals>,
    /// The bootstrap admin (`bootstrap.json`), which the operator may not delete or reset.
    bootstrap_admin: RwLock<Option<Uuid>>,
    /// Serializes read-modify-write sequences on the directory's own records.
    write_lock: tokio::sync::Mutex<()>,
}

impl Directory {
    /// Loads the directory from `store`, creating the tenant and its keys on first start.
    pub async fn open(store: SharedStore, root: &RootKey, authority: &str) -> Result<Self, DirectoryError> {
        let tenant_id = load_or_create_tenant(&store).await?;
        let signing_der =
            load_or_create_sealed(&store, root, DIRECTORY, SIGNING_KEY, SealPurpose::TokenSigningKey, || {
                SigningKey::generate()?.to_pkcs8()
            })
            .await?;
        let header_key =
            load_or_create_sealed(&store, root, DIRECTORY, IDENTITY_HEADER_KEY, SealPurpose::IdentityHeaderKey, || {
                Ok(Zeroizing::new(byos_crypto::random_bytes::<32>()?.to_vec()))
            })
            .await?;
        let tokens = TokenService::new(SigningKey::from_pkcs8(&signing_der)?, authority, tenant_id)?;
        let directory = Directory {
            store,
            tenant_id,
            tokens,
            identity_header_key: MacKey::new(&header_key),
            principals: RwLock::new(Principals::default()),
            bootstrap_admin: RwLock::new(None),
            write_lock: tokio::sync::Mutex::new(()),
        };
        directory.load_principals().await?;
        Ok(directory)
    }

    async fn load_principals(&self) -> Result<(), DirectoryError> {
        let mut loaded = Principals::default();
        for (key, bytes) in self.store.scan(PRINCIPALS, "").await? {
            let p: Principal = serde_json::from_slice(&bytes)
                .map_err(|e| DirectoryError::Corrupt(format!("principals/{key}"), e.to_string()))?;
            loaded.by_client.insert(p.client_id, p.object_id);
            loaded.by_object.insert(p.object_id, Arc::new(p));
        }
        for (key, _) in self.store.scan(IMDS_BINDINGS, "").await? {
            if let Ok(oid) = key.parse() {
                loaded.imds_bound.insert(oid);
            }
        }
        *self.write_principals() = loaded;
        Ok(())
    }

    fn read_principals(&self) -> std::sync::RwLockReadGuard<'_, Principals> {
        self.principals.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_principals(&self) -> std::sync::RwLockWriteGuard<'_, Principals> {
        self.principals.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn tenant_id(&self) -> Uuid {
        self.tenant_id
    }

    pub fn tokens(&self) -> &TokenService {
        &self.tokens
    }

    pub fn principal(&self, object_id: Uuid) -> Option<Arc<Principal>> {
        self.read_principals().by_object.get(&object_id).cloned()
    }

    pub fn principal_by_client_id(&self, client_id: Uuid) -> Option<Arc<Principal>> {
        let principals = self.read_principals();
        principals.by_client.get(&client_id).and_then(|oid| principals.by_object.get(oid)).cloned()
    }

    /// Every principal of the tenant (service principals and managed identities), by display name
    /// then object id, so that listings are stable.
    pub fn principals(&self) -> Vec<Arc<Principal>> {
        let mut all: Vec<Arc<Principal>> = self.read_principals().by_object.values().cloned().collect();
        all.sort_by(|a, b| a.display_name.cmp(&b.display_name).then(a.object_id.cmp(&b.object_id)));
        all
    }

    /// Creates a service principal with one fresh secret; returns it with the secret (shown once).
    pub async fn create_service_principal(
        &self,
        display_name: &str,
    ) -> Result<(Principal, Zeroizing<String>), DirectoryError> {
        let secret = Zeroizing::new(secret::generate()?);
        let principal = Principal {
            v: PRINCIPAL_RECORD_VERSION,
            object_id: Uuid::new_v4(),
            client_id: Uuid::new_v4(),
            display_name: display_name.to_owned(),
            kind: IdentityKind::ServicePrincipal,
            secret_hashes: vec![secret::hash(&secret)?.0],
            created_on: byos_core::time::rfc3339_now(),
            header_generation: 0,
        };
        let _guard = self.write_lock.lock().await;
        self.store.commit(self.put_ops(Batch::new(), &principal)?).await?;
        self.installed(principal.clone());
        Ok((principal, secret))
    }

    /// Creates a service principal whose secret is kept sealed in `table/key`, so that it can be
    /// handed out again on every start (the bootstrap admin of `bootstrap.json`).
    pub async fn ensure_sealed_service_principal(
        &self,
        root: &RootKey,
        table: Table,
        key: &str,
        display_name: &str,
    ) -> Result<(Arc<Principal>, Zeroizing<String>), DirectoryError> {
        #[derive(Serialize, Deserialize)]
        struct SealedPrincipal {
            v: u32,
            object_id: Uuid,
            sealed_secret: String,
        }
        if let Some(bytes) = self.store.get(table, key).await? {
            let record: SealedPrincipal =
                serde_json::from_slice(&bytes).map_err(|e| DirectoryError::Corrupt(key.into(), e.to_string()))?;
            let sealed = byos_crypto::b64url_decode(&record.sealed_secret)
                .ok_or_else(|| DirectoryError::Corrupt(key.into(), "secret".into()))?;
            let secret = root.open(SealPurpose::BootstrapSecret, &sealed)?;
            let secret = Zeroizing::new(
                String::from_utf8(secret.to_vec()).map_err(|e| DirectoryError::Corrupt(key.into(), e.to_string()))?,
            );
            let principal = self
                .principal(record.object_id)
                .ok_or_else(|| DirectoryError::Corrupt(key.into(), "principal missing".into()))?;
            self.protect_bootstrap_admin(principal.object_id);
            return Ok((principal, secret));
        }
        let (principal, secret) = self.create_service_principal(display_name).await?;
        self.protect_bootstrap_admin(principal.object_id);
        let record = SealedPrincipal {
            v: 1,
            object_id: principal.object_id,
            sealed_secret: b64url(&root.seal(SealPurpose::BootstrapSecret, secret.as_bytes())?),
        };
        let bytes = serde_json::to_vec(&record).map_err(|e| DirectoryError::Corrupt(key.into(), e.to_string()))?;
        self.store.commit(Batch::new().put(table, key, bytes)).await?;
        Ok((Arc::new(principal), secret))
    }

    fn protect_bootstrap_admin(&self, object_id: Uuid) {
        *self.bootstrap_admin.write().unwrap_or_else(|e| e.into_inner()) = Some(object_id);
    }

    /// The service principal named by its client id or object id, unless it is the bootstrap admin.
    fn deletable_service_principal(&self, needle: &str) -> Result<Arc<Principal>, DirectoryError> {
        let id: Uuid = needle.trim().parse().map_err(|_| DirectoryError::NoSuchPrincipal(needle.to_owned()))?;
        let principal = self
            .principal(id)
            .or_else(|| self.principal_by_client_id(id))
            .filter(|p| !p.is_managed())
            .ok_or_else(|| DirectoryError::NoSuchPrincipal(needle.to_owned()))?;
        if *self.bootstrap_admin.read().unwrap_or_else(|e| e.into_inner()) == Some(principal.object_id) {
            return Err(DirectoryError::BootstrapAdmin(principal.object_id));
        }
        Ok(principal)
    }

    /// Deletes a service principal (by client id or object id): its secrets stop working and its
    /// tokens are refused at once. Its role assignments stay, as in Azure ("Identity not found"),
    /// and grant nothing: no token or delegation key can name a principal that is gone, and object
    /// ids are never reused.
    pub async fn delete_service_principal(&self, needle: &str) -> Result<Arc<Principal>, DirectoryError> {
        let _guard = self.write_lock.lock().await;
        let principal = self.deletable_service_principal(needle)?;
        self.store.commit(self.delete_ops(Batch::new(), principal.object_id)).await?;
        self.removed(principal.object_id);
        Ok(principal)
    }

    /// Replaces every client secret of a service principal with one new secret (shown once). The
    /// old secrets stop working at once; tokens already issued stay valid until they expire (at
    /// most an hour), as in Entra, where removing a secret does not revoke its tokens.
    pub async fn reset_service_principal_secret(
        &self,
        needle: &str,
    ) -> Result<(Principal, Zeroizing<String>), DirectoryError> {
        let _guard = self.write_lock.lock().await;
        let mut principal = Principal::clone(&*self.deletable_service_principal(needle)?);
        let secret = Zeroizing::new(secret::generate()?);
        principal.secret_hashes = vec![secret::hash(&secret)?.0];
        self.replace(principal, needle).await.map(|p| (p, secret))
    }

    /// Rotates a managed identity's `X-IDENTITY-HEADER` secret: the old value stops working at
    /// once (tokens already obtained with it live until they expire), and [`Directory::identity_header`]
    /// hands out the new one.
    pub async fn rotate_identity_header(&self, needle: &str) -> Result<Principal, DirectoryError> {
        let _guard = self.write_lock.lock().await;
        let mut principal = Principal::clone(&*self.find_managed_identity(needle)?);
        principal.header_generation = principal.header_generation.wrapping_add(1);
        self.replace(principal, needle).await
    }

    /// Stores a changed principal, guarded against its concurrent deletion (the resource manager
    /// deletes managed identities without this directory's lock): a principal deleted meanwhile
    /// stays deleted.
    async fn replace(&self, principal: Principal, needle: &str) -> Result<Principal, DirectoryError> {
        let key = principal.object_id.to_string();
        let gone = || {
            if principal.is_managed() {
                DirectoryError::NoSuchIdentity(needle.to_owned())
            } else {
                DirectoryError::NoSuchPrincipal(needle.to_owned())
            }
        };
        let Some(stored) = self.store.get(PRINCIPALS, &key).await? else {
            return Err(gone());
        };
        let batch = self.put_ops(Batch::new().expect_unchanged(PRINCIPALS, key, Some(stored)), &principal)?;
        match self.store.commit(batch).await {
            Err(StoreError::Conflict { .. }) => return Err(gone()),
            other => other?,
        };
        let mut principals = self.write_principals();
        // Absent now means its deletion was committed after this change: it must stay deleted.
        if !principals.by_object.contains_key(&principal.object_id) {
            return Err(gone());
        }
        principals.by_object.insert(principal.object_id, Arc::new(principal.clone()));
        Ok(principal)
    }

    /// A new managed-identity principal for `resource_id`; not stored until its owner commits
    /// [`Directory::put_ops`] and calls [`Directory::installed`].
    pub fn new_managed_identity(&self, resource_id: &str, display_name: &str, system_assigned: bool) -> Principal {
        Principal {
            v: PRINCIPAL_RECORD_VERSION,
            object_id: Uuid::new_v4(),
            client_id: Uuid::new_v4(),
            display_name: display_name.to_owned(),
            kind: IdentityKind::ManagedIdentity { resource_id: resource_id.to_owned(), system_assigned },
            secret_hashes: vec![],
            created_on: byos_core::time::rfc3339_now(),
            header_generation: 0,
        }
    }

    /// Adds the writes that store `principal` to `batch`.
    pub fn put_ops(&self, batch: Batch, principal: &Principal) -> Result<Batch, DirectoryError> {
        let bytes = serde_json::to_vec(principal)
            .map_err(|e| DirectoryError::Corrupt(principal.object_id.to_string(), e.to_string()))?;
        Ok(batch.put(PRINCIPALS, principal.object_id.to_string(), bytes))
    }

    /// Adds the writes that delete a principal (and its IMDS binding) to `batch`.
    pub fn delete_ops(&self, batch: Batch, object_id: Uuid) -> Batch {
        batch.delete(PRINCIPALS, object_id.to_string()).delete(IMDS_BINDINGS, object_id.to_string())
    }

    /// Makes a committed principal visible.
    pub fn installed(&self, principal: Principal) {
        let mut principals = self.write_principals();
        principals.by_client.insert(principal.client_id, principal.object_id);
        principals.by_object.insert(principal.object_id, Arc::new(principal));
    }

    /// Forgets a principal whose deletion was committed: its tokens stop working at once.
    pub fn removed(&self, object_id: Uuid) {
        let mut principals = self.write_principals();
        if let Some(p) = principals.by_object.remove(&object_id) {
            principals.by_client.remove(&p.client_id);
        }
        principals.imds_bound.remove(&object_id);
    }

    /// Verifies a bearer token for an API that accepts `audiences`, and names the caller.
    pub fn authenticate(&self, token: &str, audiences: &[&str], origin: NetworkOrigin) -> Result<Caller, TokenError> {
        let claims = self.tokens.verify(token, byos_core::time::unix_now())?;
        if !audiences.iter().any(|a| a.eq_ignore_ascii_case(&claims.aud)) {
            return Err(TokenError::WrongAudience(claims.aud));
        }
        let principal = self.principal(claims.oid).ok_or(TokenError::UnknownPrincipal(claims.oid))?;
        Ok(Caller::bearer(self.principal_ref(&principal), origin))
    }

    fn principal_ref(&self, principal: &Principal) -> PrincipalRef {
        PrincipalRef {
            object_id: principal.object_id,
            client_id: principal.client_id,
            tenant_id: self.tenant_id,
            kind: principal.caller_kind(),
        }
    }

    /// The caller for a byos service acting, in-process, for `resource` as one of its managed
    /// identities: the system-assigned one (`identity` None) or the attached user-assigned identity
    /// `identity` (a resource id). `None` when that identity is not the resource's now: not attached,
    /// deleted, or (system-assigned) belonging to another resource. The only way to a
    /// service-identity caller, so a service can act only as an identity its resource really has.
    pub fn act_as(&self, resource: &AttachedIdentities<'_>, identity: Option<&str>) -> Option<Caller> {
        let principal = match identity {
            None => self.principal(resource.system?)?,
            Some(uami) => {
                if !resource.user.iter().any(|attached| attached.eq_ignore_ascii_case(uami)) {
                    return None;
                }
                self.find_managed_identity(uami).ok()?
            }
        };
        let owned = match (&principal.kind, identity) {
            (IdentityKind::ManagedIdentity { resource_id, system_assigned: true }, None) => {
                resource_id.eq_ignore_ascii_case(resource.resource_id)
            }
            (IdentityKind::ManagedIdentity { resource_id, system_assigned: false }, Some(uami)) => {
                resource_id.eq_ignore_ascii_case(uami)
            }
            _ => false,
        };
        owned.then(|| Caller::service_identity(self.principal_ref(&principal), resource.resource_id.to_owned()))
    }

    /// The secret a workload presents as `X-IDENTITY-HEADER` to act as a managed identity:
    /// `{object id}.{HMAC(identity-header key, object id [+ generation])}`. Deterministic, so every
    /// `identity env` hands out the same value until it is rotated; it dies with the identity.
    pub fn identity_header(&self, principal: &Principal) -> String {
        let tag =
            self.identity_header_key.sign(&identity_header_message(principal.object_id, principal.header_generation));
        format!("{}.{}", principal.object_id, b64url(&tag))
    }

    /// The managed identity an `X-IDENTITY-HEADER` value stands for, if it is genuine and alive.
    pub fn principal_for_identity_header(&self, header: &str) -> Option<Arc<Principal>> {
        let (oid, tag) = header.split_once('.')?;
        let oid: Uuid = oid.parse().ok()?;
        let tag = byos_crypto::b64url_decode(tag)?;
        let principal = self.principal(oid).filter(|p| p.is_managed())?;
        let message = identity_header_message(oid, principal.header_generation);
        self.identity_header_key.verify(&message, &tag).then_some(principal)
    }

    /// Finds a managed identity by its resource id, client id or object id.
    pub fn find_managed_identity(&self, needle: &str) -> Result<Arc<Principal>, DirectoryError> {
        let principals = self.read_principals();
        let needle = needle.trim();
        let found = principals.by_object.values().find(|p| {
            p.resource_id().is_some_and(|r| r.eq_ignore_ascii_case(needle))
                || p.is_managed()
                    && (p.client_id.to_string() == needle.to_ascii_lowercase()
                        || p.object_id.to_string() == needle.to_ascii_lowercase())
        });
        found.cloned().ok_or_else(|| DirectoryError::NoSuchIdentity(needle.to_owned()))
    }

    /// Binds (or unbinds) a managed identity to this host for the IMDS endpoint.
    pub async fn set_imds_binding(&self, principal: &Principal, bound: bool) -> Result<(), DirectoryError> {
        let key = principal.object_id.to_string();
        let batch = if bound {
            Batch::new().put(IMDS_BINDINGS, key, b"{\"v\":1}".to_vec())
        } else {
            Batch::new().delete(IMDS_BINDINGS, key)
        };
        let _guard = self.write_lock.lock().await;
        self.store.commit(batch).await?;
        let mut principals = self.write_principals();
        if bound {
            principals.imds_bound.insert(principal.object_id);
        } else {
            principals.imds_bound.remove(&principal.object_id);
        }
        Ok(())
    }

    /// The identity bound to this host that an IMDS request selects, or why there is none.
    pub fn imds_identity(&self, request: &ImdsRequest) -> Result<Arc<Principal>, String> {
        let principals = self.read_principals();
        let bound: Vec<&Arc<Principal>> =
            principals.imds_bound.iter().filter_map(|oid| principals.by_object.get(oid)).collect();
        let wanted = |p: &Principal| {
            request.client_id.as_deref().is_none_or(|c| p.client_id.to_string().eq_ignore_ascii_case(c))
                && request.object_id.as_deref().is_none_or(|o| p.object_id.to_string().eq_ignore_ascii_case(o))
                && request
                    .resource_id
                    .as_deref()
                    .is_none_or(|r| p.resource_id().is_some_and(|id| id.eq_ignore_ascii_case(r)))
        };
        let matching: Vec<&&Arc<Principal>> = bound.iter().filter(|p| wanted(p)).collect();
        match matching.as_slice() {
            [one] => Ok(Arc::clone(one)),
            [] if bound.is_empty() => Err("Identity not found: no managed identity is bound to this host (bind one with `byos identity bind-host`)".into()),
            [] => Err("Identity not found: no managed identity bound to this host matches the requested client_id / object_id / msi_res_id".into()),
            _ => Err("Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request".into()),
        }
    }
}

/// What an identity header's HMAC covers: the object id, and after the first rotation its
/// generation too (so headers handed out before rotations existed stay valid until rotated).
fn identity_header_message(object_id: Uuid, generation: u32) -> Vec<u8> {
    let mut message = object_id.as_bytes().to_vec();
    if generation > 0 {
        message.extend_from_slice(&generation.to_be_bytes());
    }
    message
}

async fn load_or_create_tenant(store: &SharedStore) -> Result<Uuid, DirectoryError> {
    if let Some(bytes) = store.get(DIRECTORY, TENANT_KEY).await? {
        let record: TenantRecord =
            serde_json::from_slice(&bytes).map_err(|e| DirectoryError::Corrupt(TENANT_KEY.into(), e.to_string()))?;
        return Ok(record.tenant_id);
    }
    let record = TenantRecord { v: 1, tenant_id: Uuid::new_v4() };
    let bytes = serde_json::to_vec(&record).map_err(|e| DirectoryError::Corrupt(TENANT_KEY.into(), e.to_string()))?;
    store.commit(Batch::new().expect_absent(DIRECTORY, TENANT_KEY).put(DIRECTORY, TENANT_KEY, bytes)).await?;
    Ok(record.tenant_id)
}

/// A service secret kept sealed under the root key in `table`: opened if present, else generated
/// and stored (a concurrent first start loses the race and reads the winner's).
pub async fn load_or_create_sealed(
    store: &SharedStore,
    root: &RootKey,
    table: Table,
    key: &str,
    purpose: SealPurpose,
    generate: impl FnOnce() -> Result<Zeroizing<Vec<u8>>, CryptoError>,
) -> Result<Zeroizing<Vec<u8>>, DirectoryError> {
    if let Some(sealed) = store.get(table, key).await? {
        return Ok(root.open(purpose, &sealed)?);
    }
    let material = generate()?;
    match store.commit(Batch::new().expect_absent(table, key).put(table, key, root.seal(purpose, &material)?)).await {
        Err(StoreError::Conflict { .. }) => match store.get(table, key).await? {
            Some(sealed) => Ok(root.open(purpose, &sealed)?),
            None => Err(StoreError::Backend(format!("sealed secret {key} vanished")).into()),
        },
        other => other.map(|_| material).map_err(Into::into),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use byos_store::MemStore;

    async fn directory() -> (Directory, RootKey, SharedStore) {
        let store: SharedStore = Arc::new(MemStore::new());
        let root = RootKey::ephemeral().unwrap_or_else(|e| panic!("{e}"));
        let dir =
            Directory::open(Arc::clone(&store), &root, "https://127.0.0.1:1").await.unwrap_or_else(|e| panic!("{e}"));
        (dir, root, store)
    }

    fn local() -> NetworkOrigin {
        NetworkOrigin { ip: Some([127, 0, 0, 1].into()), tls: true }
    }

    #[tokio::test]
    async fn reopening_keeps_tenant_keys_and_principals() -> Result<(), Box<dyn std::error::Error>> {
        let (dir, root, store) = directory().await;
        let (p, _) = dir.create_service_principal("app").await?;
        let (token, _) = dir.tokens().mint(&p, "aud", byos_core::time::unix_now())?;
        let reopened = Directory::open(store, &root, "https://127.0.0.1:1").await?;
        assert_eq!(reopened.tenant_id(), dir.tenant_id());
        assert!(reopened.authenticate(&token, &["aud"], local()).is_ok(), "same signing key after restart");
        Ok(())
    }

    #[tokio::test]
    async fn signing_key_is_stored_only_sealed() -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, root, store) = directory().await;
        let sealed = store.get(DIRECTORY, SIGNING_KEY).await?.unwrap_or_default();
        assert!(sealed.starts_with(b"BYOS"));
        assert!(RootKey::ephemeral()?.open(SealPurpose::TokenSigningKey, &sealed).is_err());
        assert!(root.open(SealPurpose::TokenSigningKey, &sealed).is_ok());
        Ok(())
    }

    #[tokio::test]
    async fn deleted_principals_lose_their_tokens_and_identity_headers() -> Result<(), Box<dyn std::error::Error>> {
        let (dir, _, store) = directory().await;
        let mi = dir.new_managed_identity("/subscriptions/s/resourceGroups/g/providers/Microsoft.X/y/z", "z", true);
        store.commit(dir.put_ops(Batch::new(), &mi)?).await?;
        dir.installed(mi.clone());
        let header = dir.identity_header(&mi);
        assert_eq!(dir.principal_for_identity_header(&header).map(|p| p.object_id), Some(mi.object_id));
        let (token, _) = dir.tokens().mint(&mi, "aud", byos_core::time::unix_now())?;
        store.commit(dir.delete_ops(Batch::new(), mi.object_id)).await?;
        dir.removed(mi.object_id);
        assert!(dir.principal_for_identity_header(&header).is_none());
        assert_eq!(dir.authenticate(&token, &["aud"], local()), Err(TokenError::UnknownPrincipal(mi.object_id)));
        Ok(())
    }

    #[tokio::test]
    async fn forged_identity_headers_are_refused() -> Result<(), Box<dyn std::error::Error>> {
        let (dir, _, _) = directory().await;
        let (sp, _) = dir.create_service_principal("sp").await?;
        assert!(dir.principal_for_identity_header(&format!("{}.AAAA", sp.object_id)).is_none());
        assert!(dir.principal_for_identity_header("garbage").is_none());
        assert!(
            dir.principal_for_identity_header(&dir.identity_header(&sp)).is_none(),
            "service principals are not managed identities"
        );
        Ok(())
    }

    /// A service acts only as an identity its resource has now: its own system-assigned identity,
    /// or a user-assigned identity attached to it, never another resource's.
    #[tokio::test]
    async fn act_as_proves_the_identity_is_the_resources_now() -> Result<(), Box<dyn std::error::Error>> {
        let (dir, _root, _store) = directory().await;
        let account = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/a";
        let other = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/b";
        let uami = "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u";
        let own = dir.new_managed_identity(account, "a", true);
        let foreign = dir.new_managed_identity(other, "b", true);
        let user = dir.new_managed_identity(uami, "u", false);
        for p in [&own, &foreign, &user] {
            dir.installed(p.clone());
        }
        let attached = [uami.to_owned()];
        let resource = |system| AttachedIdentities { resource_id: account, system, user: &attached };

        let acting = dir.act_as(&resource(Some(own.object_id)), None).ok_or("own system identity")?;
        assert_eq!((acting.object_id(), acting.acting_for()), (Some(own.object_id), Some(account)));
        assert!(dir.act_as(&resource(Some(foreign.object_id)), None).is_none(), "another resource's identity");
        assert!(dir.act_as(&resource(None), None).is_none(), "no system identity");
        let acting = dir.act_as(&resource(None), Some(uami)).ok_or("attached user identity")?;
        assert_eq!(acting.object_id(), Some(user.object_id));
        let detached = AttachedIdentities { resource_id: account, system: None, user: &[] };
        assert!(dir.act_as(&detached, Some(uami)).is_none(), "a detached user identity");
        let by_object_id = [user.object_id.to_string()];
        let named_oddly = AttachedIdentities { resource_id: account, system: None, user: &by_object_id };
        assert!(dir.act_as(&named_oddly, Some(&by_object_id[0])).is_none(), "attached by resource id only");
        dir.removed(user.object_id);
        assert!(dir.act_as(&resource(None), Some(uami)).is_none(), "a deleted user identity");
        Ok(())
    }
}
