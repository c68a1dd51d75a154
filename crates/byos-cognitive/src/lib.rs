//! AI-services accounts (`Microsoft.CognitiveServices/accounts` of kinds SpeechServices,
//! FormRecognizer and CognitiveServices).
//!
//! - [`account`]: kinds, SKUs, the settings an account keeps and its sealed keys.
//! - [`provider`]: the ARM provider (accounts, keys, SKUs, availability checks, BYOS binding at
//!   creation, soft delete with restore and purge).
//! - [`dataplane`]: each account's data-plane listener at `properties.endpoint` (one port per
//!   account, as the Speech SDK addresses an account by host and port only).

pub mod account;
pub mod dataplane;
pub mod provider;

use std::sync::Arc;

use byos_arm::Arm;
use byos_arm::records::{RESOURCES, ResourceRecord, encode, resource_key, store_error};
use byos_core::{ApiError, OrInternal};
use byos_crypto::RootKey;
use byos_http::{ListenerSet, Listeners};
use byos_store::{Batch, SharedStore, Table};

use account::AccountSettings;

pub const ACCOUNT_TYPE: &str = "Microsoft.CognitiveServices/accounts";
pub const NAMESPACE: &str = "Microsoft.CognitiveServices";
/// Sealed account keys, by lowercased account id (kept while the account is soft-deleted).
pub(crate) const KEYS: Table = Table("cs_keys");
/// Custom subdomains (lowercased) -> the account id holding them, soft-deleted accounts included.
pub(crate) const DOMAINS: Table = Table("cs_domains");
/// Soft-deleted accounts, by lowercased account id.
pub(crate) const DELETED: Table = Table("cs_deleted_accounts");

/// The AI-services accounts service: shared by the ARM provider and every account's listener.
pub struct CognitiveService {
    pub(crate) store: SharedStore,
    pub(crate) root: Arc<RootKey>,
    listeners: ListenerSet,
}

impl CognitiveService {
    pub fn new(store: SharedStore, root: Arc<RootKey>, listeners: Arc<dyn Listeners>) -> Arc<Self> {
        Arc::new(CognitiveService { store, root, listeners: ListenerSet::new(listeners) })
    }

    /// Serves every account's data plane (at start-up, once the resource manager is open); an
    /// account whose port was taken moves, and its record says so.
    pub async fn load(self: &Arc<Self>, arm: &Arm) -> Result<(), ApiError> {
        for record in arm.resources_under("/subscriptions/").await? {
            if !record.resource_type.eq_ignore_ascii_case(ACCOUNT_TYPE) {
                continue;
            }
            let mut settings: AccountSettings = serde_json::from_value(record.properties.clone()).or_internal()?;
            let port = self.serve(&record.id, settings.port).await?;
            if port != settings.port {
                tracing::warn!(account = %record.id, old = settings.port, new = port, "account port was taken; its endpoint changed");
                settings.port = port;
                self.persist_settings(record, &settings).await?;
            }
        }
        Ok(())
    }

    async fn persist_settings(&self, mut record: ResourceRecord, settings: &AccountSettings) -> Result<(), ApiError> {
        record.properties = serde_json::to_value(settings).or_internal()?;
        let key = resource_key(&record.id);
        let batch = Batch::new().put(RESOURCES, key.clone(), encode(&key, &record)?);
        self.store.commit(batch).await.map_err(store_error)
    }

    /// `https://127.0.0.1:{port}/`: the account's `properties.endpoint`.
    pub fn endpoint(port: u16) -> String {
        format!("https://127.0.0.1:{port}/")
    }

    /// Starts serving an account's data plane on `port` (any free port for 0, or when it is taken).
    pub(crate) async fn serve(self: &Arc<Self>, account_id: &str, port: u16) -> Result<u16, ApiError> {
        let key = resource_key(account_id);
        let router = dataplane::router();
        self.listeners.serve(&key, port, router).await.map_err(|e| {
            tracing::error!(account = account_id, error = %e, "cannot open a listener for the account");
            ApiError::internal()
        })
    }

    /// Stops serving an account (deleted, or its creation failed).
    pub(crate) fn close(&self, account_id: &str) {
        self.listeners.close(&resource_key(account_id));
    }
}
