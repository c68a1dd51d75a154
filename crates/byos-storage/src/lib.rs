//! Storage accounts and the Blob service.
//!
//! - [`provider`]: the `Microsoft.Storage` ARM provider (accounts, keys, blob service properties).
//! - [`account`]: the settings byos enforces and the account's sealed secrets.
//! - [`blob`]: the Blob REST data plane on its own listener: authentication (Shared Key, SAS, bearer,
//!   anonymous), the account's locks (evaluated by the one door), containers and block blobs,
//!   encrypted at rest in chunks under per-segment data keys.

pub mod account;
pub mod blob;
pub mod cmk;
pub mod provider;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use byos_arm::Arm;
use byos_authz::Door;
use byos_core::ApiError;
use byos_core::OrInternal;
use byos_crypto::RootKey;
use byos_identity::Directory;
use byos_store::{SharedObjects, SharedStore, Table};

use account::{AccountSecrets, AccountSettings};
use blob::cors::CorsRule;

pub const ACCOUNT_TYPE: &str = "Microsoft.Storage/storageAccounts";
pub(crate) const NAMES: Table = Table("storage_names");
pub(crate) const SECRETS: Table = Table("storage_secrets");
pub(crate) const BLOB_SERVICES: Table = Table("storage_blob_services");

/// A storage account as the data plane needs it, cached in memory and replaced on every change.
pub struct Account {
    pub id: String,
    pub name: String,
    pub settings: AccountSettings,
    pub secrets: AccountSecrets,
    pub cors: Vec<CorsRule>,
    /// The account's system-assigned identity now (what a customer key is used as by default).
    pub system_identity: Option<uuid::Uuid>,
    /// The user-assigned identities attached to the account now (resource ids).
    pub user_identities: Vec<String>,
}

/// The storage service: shared by the ARM provider and the blob listener.
pub struct StorageService {
    pub(crate) store: SharedStore,
    pub(crate) objects: SharedObjects,
    pub(crate) root: Arc<RootKey>,
    pub(crate) door: Arc<Door>,
    pub(crate) directory: Arc<Directory>,
    /// `https://127.0.0.1:{blob port}`; an account's endpoint is `{blob_base}/{name}/`.
    pub(crate) blob_base: String,
    /// The token authority (for bearer challenges).
    pub(crate) authority: String,
    pub(crate) accounts: RwLock<HashMap<String, Arc<Account>>>,
    /// Objects of accounts being deleted, removed once the deletion commits.
    pub(crate) pending_object_deletes: std::sync::Mutex<HashMap<String, Vec<String>>>,
    /// Customer-managed keys live in Key Vault; byos uses them as the account's identity.
    pub(crate) keyvault: Arc<byos_keyvault::KeyVaultService>,
    /// How long an unwrapped customer-protected KEK is kept (the revocation delay).
    /// Customer-protected KEKs: wraps, unwraps as the account's identity, caches briefly.
    pub(crate) protector: byos_keyvault::protector::KeyProtector,
}

/// Wiring of the storage service.
pub struct StorageConfig {
    pub blob_base: String,
    pub authority: String,
    pub cmk_cache_ttl: std::time::Duration,
}

impl StorageService {
    pub fn new(
        store: SharedStore,
        objects: SharedObjects,
        root: Arc<RootKey>,
        door: Arc<Door>,
        directory: Arc<Directory>,
        keyvault: Arc<byos_keyvault::KeyVaultService>,
        config: StorageConfig,
    ) -> Arc<Self> {
        let protector = byos_keyvault::protector::KeyProtector::new(
            Arc::clone(&keyvault),
            Arc::clone(&directory),
            config.cmk_cache_ttl,
        );
        Arc::new(StorageService {
            store,
            objects,
            root,
            door,
            directory,
            blob_base: config.blob_base,
            authority: config.authority,
            accounts: RwLock::new(HashMap::new()),
            pending_object_deletes: std::sync::Mutex::new(HashMap::new()),
            protector,
            keyvault,
        })
    }

    /// Loads every account into memory (at start-up, once the resource manager is open).
    pub async fn load(&self, arm: &Arm) -> Result<(), ApiError> {
        for record in arm.resources_under("/subscriptions/").await? {
            if record.resource_type.eq_ignore_ascii_case(ACCOUNT_TYPE) {
                self.refresh(&record).await?;
            }
        }
        Ok(())
    }

    /// `https://127.0.0.1:{blob port}`: where every account's endpoint begins.
    pub fn blob_base(&self) -> &str {
        &self.blob_base
    }

    pub fn endpoint(&self, name: &str) -> String {
        format!("{}/{name}/", self.blob_base)
    }

    pub fn account(&self, name: &str) -> Option<Arc<Account>> {
        self.accounts.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    /// Re-reads an account's committed state into the cache.
    pub(crate) async fn refresh(&self, record: &byos_arm::ResourceRecord) -> Result<Arc<Account>, ApiError> {
        let key = record.id.to_ascii_lowercase();
        let settings: AccountSettings = serde_json::from_value(record.properties.clone()).map_err(|e| {
            tracing::error!(account = %record.id, error = %e, "stored account settings are corrupt");
            ApiError::internal()
        })?;
        let sealed = self.store.get(SECRETS, &key).await.map_err(byos_arm::records::store_error)?.or_internal()?;
        let secrets = AccountSecrets::open(&self.root, &sealed)?;
        let cors = match self.store.get(BLOB_SERVICES, &key).await.map_err(byos_arm::records::store_error)? {
            Some(bytes) => blob::cors::decode_rules(&bytes)?,
            None => Vec::new(),
        };
        let account = Arc::new(Account {
            id: record.id.clone(),
            name: record.name.clone(),
            settings,
            secrets,
            cors,
            system_identity: record.owned_principals.first().copied(),
            user_identities: byos_arm::managed_identity::attached_user_identities(record.identity.as_ref()),
        });
        self.accounts.write().unwrap_or_else(|e| e.into_inner()).insert(record.name.clone(), Arc::clone(&account));
        self.protector.forget(&record.name);
        Ok(account)
    }

    /// The live vault that holds an account's customer key: by resource id, or (records of
    /// version 1) by the URI it was set up with, else by the key version it holds.
    pub async fn cmk_vault(&self, cmk: &account::CmkSettings) -> Option<Arc<byos_keyvault::Vault>> {
        if let Some(vault) = self.cmk_vault_now(cmk) {
            return Some(vault);
        }
        if !cmk.vault_id.is_empty() {
            return None;
        }
        // A version 1 record whose vault moved to another port (before ports were persisted).
        self.keyvault.vault_holding_key_version(&cmk.key_name, cmk.current_version()?).await
    }

    /// Brings version 1 customer-key settings to the current version (the vault named by its
    /// resource id, no principal) when their vault can be found; left as they are otherwise.
    pub(crate) async fn migrate_cmk(&self, settings: &mut AccountSettings) {
        let Some(cmk) = settings.cmk.as_mut().filter(|c| c.v < account::CMK_SETTINGS_VERSION) else { return };
        if let Some(vault) = self.cmk_vault(cmk).await {
            cmk.vault_id = vault.id.clone();
            cmk.key_vault_uri.clear();
            cmk.v = account::CMK_SETTINGS_VERSION;
        }
    }

    /// [`Self::cmk_vault`] without the store lookup (for rendering).
    pub(crate) fn cmk_vault_now(&self, cmk: &account::CmkSettings) -> Option<Arc<byos_keyvault::Vault>> {
        if cmk.vault_id.is_empty() {
            self.keyvault.vault_by_uri(&cmk.key_vault_uri)
        } else {
            self.keyvault.vault_by_id(&cmk.vault_id)
        }
    }

    pub(crate) fn forget(&self, name: &str) {
        self.accounts.write().unwrap_or_else(|e| e.into_inner()).remove(name);
        self.protector.forget(name);
    }
}
