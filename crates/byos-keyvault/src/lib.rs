//! Key vaults and their keys.
//!
//! - [`settings`]: the vault properties byos enforces (soft delete always on, irreversible purge
//!   protection, access policies or RBAC).
//! - [`provider`]: the `Microsoft.KeyVault` ARM provider, soft-deleted vaults, access policy edits.
//! - [`keys`]: the keys data plane (create, versions, crypto operations, delete/recover/purge):
//!   HTTP-free operations that authorize inside ([`keys::Ctx`], typed [`keys::KeyError`]), and
//!   [`keys::http`], served on one listener per vault because the SDK needs a host or port per
//!   vault. Private keys never leave byos and are stored only sealed under the root key.

pub mod audit;
pub mod keys;
pub mod protector;
pub mod provider;
pub mod rotation;
pub mod settings;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use byos_arm::Arm;
use byos_authz::Door;
use byos_core::ApiError;
use byos_core::OrInternal;
use byos_crypto::RootKey;
use byos_http::{ListenerSet, Listeners};
use byos_identity::Directory;
use byos_store::{SharedStore, Table};

use settings::VaultSettings;

pub const VAULT_TYPE: &str = "Microsoft.KeyVault/vaults";
pub(crate) const NAMES: Table = Table("kv_names");
pub(crate) const DELETED_VAULTS: Table = Table("kv_deleted_vaults");
/// The host suffix of a vault's `vaultUri` in Azure (`https://{name}.vault.azure.net/`).
const AZURE_VAULT_SUFFIX: &str = ".vault.azure.net";

/// A live vault as the data plane needs it.
pub struct Vault {
    pub id: String,
    pub name: String,
    pub location: String,
    pub settings: VaultSettings,
    /// `https://127.0.0.1:{port}/`
    pub uri: String,
}

/// The Key Vault service: shared by the ARM provider and every vault listener.
pub struct KeyVaultService {
    pub(crate) store: SharedStore,
    pub(crate) root: Arc<RootKey>,
    pub(crate) door: Arc<Door>,
    pub(crate) directory: Arc<Directory>,
    pub(crate) authority: String,
    vaults: RwLock<HashMap<String, Arc<Vault>>>,
    listeners: ListenerSet,
    /// The key-usage log: one hash-chained chain per vault.
    audit_log: audit::KeyAuditLog,
    /// Private keys already unsealed and parsed, by `{vault}/{name}/{version}` (memory only).
    parsed_keys: Mutex<HashMap<String, Arc<keys::ParsedKey>>>,
}

impl KeyVaultService {
    pub fn new(
        store: SharedStore,
        root: Arc<RootKey>,
        door: Arc<Door>,
        directory: Arc<Directory>,
        listeners: Arc<dyn Listeners>,
        authority: String,
    ) -> Arc<Self> {
        let audit_log = audit::KeyAuditLog::new(store.clone(), Arc::clone(&root), audit::TABLES);
        Arc::new(KeyVaultService {
            store,
            root,
            door,
            directory,
            authority,
            vaults: RwLock::new(HashMap::new()),
            listeners: ListenerSet::new(listeners),
            audit_log,
            parsed_keys: Mutex::new(HashMap::new()),
        })
    }

    /// Opens a listener for every vault (at start-up, once the resource manager is open).
    pub async fn load(self: &Arc<Self>, arm: &Arm) -> Result<(), ApiError> {
        for record in arm.resources_under("/subscriptions/").await? {
            if record.resource_type.eq_ignore_ascii_case(VAULT_TYPE) {
                let settings: VaultSettings = serde_json::from_value(record.properties.clone()).or_internal()?;
                let port = self.serve(&record.name, settings.port).await?;
                if port == settings.port {
                    self.install(&record, settings);
                    continue;
                }
                tracing::warn!(vault = %record.name, old = settings.port, new = port, "vault port was taken; its vaultUri changed");
                let settings = VaultSettings { port, ..settings };
                let record = self.persist_port(record, &settings).await?;
                self.install(&record, settings);
            }
        }
        Ok(())
    }

    /// Records the port a vault is served on now, so that ARM advertises the `vaultUri` that works
    /// (and the next start tries that port first).
    async fn persist_port(
        &self,
        mut record: byos_arm::ResourceRecord,
        settings: &VaultSettings,
    ) -> Result<byos_arm::ResourceRecord, ApiError> {
        use byos_arm::records::{RESOURCES, encode, resource_key, store_error};
        record.properties = serde_json::to_value(settings).or_internal()?;
        let key = resource_key(&record.id);
        self.store
            .commit(byos_store::Batch::new().put(RESOURCES, key.clone(), encode(&key, &record)?))
            .await
            .map_err(store_error)?;
        Ok(record)
    }

    pub fn vault(&self, name: &str) -> Option<Arc<Vault>> {
        self.vaults.read().unwrap_or_else(|e| e.into_inner()).get(&name.to_ascii_lowercase()).cloned()
    }

    /// The live vault with resource id `id`.
    pub fn vault_by_id(&self, id: &str) -> Option<Arc<Vault>> {
        let name = id.rsplit('/').next()?;
        self.vault(name).filter(|v| v.id.eq_ignore_ascii_case(id))
    }

    /// The live vault a `keyVaultUri` names: the URI it is served at now, or its Azure form
    /// `https://{name}.vault.azure.net/` (which does not depend on a port).
    pub fn vault_named_by(&self, uri: &str) -> Option<Arc<Vault>> {
        self.vault_by_uri(uri).or_else(|| {
            let host = uri.trim().strip_prefix("https://")?.trim_end_matches('/').to_ascii_lowercase();
            self.vault(host.strip_suffix(AZURE_VAULT_SUFFIX)?)
        })
    }

    /// The live vault that holds version `version` of key `name` (versions are unique across
    /// vaults): how a record that named a vault by a URI no longer served finds it again.
    pub async fn vault_holding_key_version(&self, name: &str, version: &str) -> Option<Arc<Vault>> {
        let vaults: Vec<Arc<Vault>> = self.vaults.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        for vault in vaults {
            let key = format!("{}/{}/{version}", vault.name.to_ascii_lowercase(), name.to_ascii_lowercase());
            if let Ok(Some(_)) = self.store.get(keys::KEYS, &key).await {
                return Some(vault);
            }
        }
        None
    }

    pub(crate) fn uri(port: u16) -> String {
        format!("https://127.0.0.1:{port}/")
    }

    /// Starts serving a vault's data plane on `port` (or any port if it is taken); returns the port.
    pub(crate) async fn serve(self: &Arc<Self>, name: &str, port: u16) -> Result<u16, ApiError> {
        let key = name.to_ascii_lowercase();
        let router = keys::http::router(Arc::clone(self), key.clone());
        self.listeners.serve(&key, port, router).await.map_err(|e| listener_error(name, e))
    }

    pub(crate) fn install(&self, record: &byos_arm::ResourceRecord, settings: VaultSettings) {
        let vault = Vault {
            id: record.id.clone(),
            name: record.name.clone(),
            location: record.location.clone(),
            uri: Self::uri(settings.port),
            settings,
        };
        self.vaults
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(record.name.to_ascii_lowercase(), Arc::new(vault));
    }

    /// Stops serving a vault (deleted or its group deleted).
    pub(crate) fn forget(&self, name: &str) {
        self.vaults.write().unwrap_or_else(|e| e.into_inner()).remove(&name.to_ascii_lowercase());
        self.listeners.close(&name.to_ascii_lowercase());
    }
}

fn listener_error(name: &str, e: std::io::Error) -> ApiError {
    tracing::error!(vault = name, error = %e, "cannot open a listener for the vault");
    ApiError::internal()
}
