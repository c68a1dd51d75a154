//! AI-services accounts (`Microsoft.CognitiveServices/accounts` of kinds SpeechServices,
//! FormRecognizer and CognitiveServices).
//!
//! - [`account`]: kinds, SKUs, the settings an account keeps and its sealed keys.
//! - [`provider`]: the ARM provider (accounts, keys, SKUs, availability checks, BYOS binding at
//!   creation, soft delete with restore and purge).
//! - [`artifacts`]: the artifact store the account's services keep what they produce through.
//! - [`cmk`]: customer-managed keys for the account's service-held data, on the key protector.
//! - [`datasets`]: Custom Speech datasets, kept through the artifact store and validated for real
//!   (their routes in `speech_http`).
//! - `recognition`: short-audio speech recognition on the engine workers.
//! - [`batch_synthesis`]: text to speech batch synthesis jobs, outputs through the artifact store
//!   (routes in `batch_synthesis_http`).
//! - [`transcriptions`]: batch transcription jobs (their routes in `transcriptions_http`), each
//!   file transcribed by `transcribe`.
//! - [`endpoints`]: Custom Speech endpoints and their audio and transcription logs (routes in
//!   `endpoints_http`).
//! - [`models`]: Custom Speech models adapted from Language and Pronunciation datasets (routes,
//!   with evaluations', in `models_http`); [`evaluations`]: word error rates of one or two models.
//! - `synthesis`: text to speech REST (`POST /cognitiveservices/v1`, the voices list) on Flite
//!   (English) and eSpeak NG (other languages);
//!   `tts_socket`: the same over the Speech SDK's WebSocket protocol; `stt_socket`: recognition
//!   over that protocol.
//! - [`document_models`]: Document Intelligence template models, aligned to each document by
//!   [`template_anchors`].
//! - [`dataplane`]: each account's data-plane listener at `properties.endpoint` (one port per
//!   account, as the Speech SDK addresses an account by host and port only).
//! - [`doctor`]: `byos doctor`, an account checked against the BYOS seed's hardening rules (read-only).

pub mod account;
pub mod artifacts;
pub mod batch_synthesis;
mod batch_synthesis_http;
pub mod cmk;
pub mod dataplane;
pub mod datasets;
pub mod doctor;
pub mod document_models;
mod document_result;
pub mod documents;
mod documents_http;
pub mod endpoints;
mod endpoints_http;
mod entity_http;
pub mod evaluations;
mod fetch;
pub mod models;
mod models_http;
pub mod provider;
mod recognition;
mod records;
mod speech_http;
mod stt_socket;
mod synthesis;
pub mod template_anchors;
mod transcribe;
pub mod transcriptions;
mod transcriptions_http;
mod tts_socket;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use byos_arm::Arm;
use byos_arm::records::{RESOURCES, ResourceRecord, encode, resource_key, store_error};
use byos_authz::Door;
use byos_core::{ApiError, OrInternal};
use byos_crypto::RootKey;
use byos_http::{ListenerSet, Listeners};
use byos_identity::Directory;
use byos_store::{Batch, SharedStore, Table};

use account::{AccountKeys, AccountSettings};

pub const ACCOUNT_TYPE: &str = "Microsoft.CognitiveServices/accounts";
pub const NAMESPACE: &str = "Microsoft.CognitiveServices";
/// Sealed account keys, by lowercased account id (kept while the account is soft-deleted).
pub(crate) const KEYS: Table = Table("cs_keys");
/// Custom subdomains (lowercased) -> the account id holding them, soft-deleted accounts included.
pub(crate) const DOMAINS: Table = Table("cs_domains");
/// Soft-deleted accounts, by lowercased account id.
pub(crate) const DELETED: Table = Table("cs_deleted_accounts");

/// An account as its data plane needs it, cached in memory and replaced on every change.
pub struct LiveAccount {
    pub id: String,
    pub location: String,
    /// The account's system-assigned identity now (what reaches its BYOS storage).
    pub system_identity: Option<uuid::Uuid>,
    /// The user-assigned identities attached now (resource ids).
    pub user_identities: Vec<String>,
    pub settings: AccountSettings,
    pub keys: AccountKeys,
    /// How the KEK of the account's service-held data is protected now.
    pub protection: byos_keyvault::protector::Protection,
}

/// What the service is made of (the server wires them at start).
pub struct Parts {
    pub store: SharedStore,
    pub root: Arc<RootKey>,
    pub door: Arc<Door>,
    pub directory: Arc<Directory>,
    /// Opens the accounts' data-plane listeners.
    pub listeners: Arc<dyn Listeners>,
    /// Customer storage (BYOS), reached through its blob API.
    pub storage: Arc<byos_storage::StorageService>,
    /// Where service-held artifacts live (not the blob object store).
    pub objects: byos_store::SharedObjects,
    pub customer_keys: cmk::CustomerKeys,
    /// The CA byos's listeners present (what a dataset's `contentUrl` is fetched trusting).
    pub ca_pem: Vec<u8>,
    /// The speech-to-text engine's workers.
    pub speech: Arc<byos_speech::engine::SpeechEngine>,
    /// The text-to-speech engine's workers.
    pub tts: Arc<byos_speech::tts::TtsEngine>,
    /// The OCR engine's workers (Document Intelligence).
    pub ocr: Arc<byos_document::OcrEngine>,
    /// Speech SDK sockets open at once, at most.
    pub max_live_sessions: usize,
    /// A Speech SDK socket on which the client sends nothing this long, while nothing of its is
    /// in flight, is closed (the listeners' idle timeout: an upgraded connection is no longer
    /// theirs to watch).
    pub live_idle_timeout: std::time::Duration,
}

/// The AI-services accounts service: shared by the ARM provider and every account's listener.
pub struct CognitiveService {
    pub(crate) store: SharedStore,
    pub(crate) root: Arc<RootKey>,
    pub(crate) door: Arc<Door>,
    pub(crate) directory: Arc<Directory>,
    listeners: ListenerSet,
    /// Where the account's services keep what they produce.
    pub artifacts: artifacts::ArtifactStore,
    pub(crate) cmk: Arc<cmk::CustomerKeys>,
    /// Fetches datasets' `contentUrl`s.
    pub(crate) http: reqwest::Client,
    /// Serializes block uploads and commits of datasets (each rewrites its dataset's record).
    pub(crate) dataset_writes: tokio::sync::Mutex<()>,
    /// Serializes the changes of transcription records (a job's start and end, PATCH, DELETE).
    pub(crate) transcription_writes: tokio::sync::Mutex<()>,
    /// Serializes the changes of batch synthesis records (create, a job's start and end, DELETE).
    pub(crate) synthesis_writes: tokio::sync::Mutex<()>,
    /// Recognizes speech (worker processes).
    pub(crate) speech: Arc<byos_speech::engine::SpeechEngine>,
    /// Synthesizes speech (worker processes).
    pub(crate) tts: Arc<byos_speech::tts::TtsEngine>,
    /// Reads documents (worker processes).
    pub(crate) ocr: Arc<byos_document::OcrEngine>,
    /// A permit per open Speech SDK socket.
    pub(crate) live_sessions: Arc<tokio::sync::Semaphore>,
    /// Document analyses and their results (in memory only, 24 hours).
    pub(crate) analyses: documents::Analyses,
    /// Document model builds (in memory; the models they make are kept as artifacts).
    pub(crate) model_operations: document_models::ModelOperations,
    /// Copy authorizations accounts issued (`documentModels:authorizeCopy`), in memory.
    pub(crate) copy_authorizations: std::sync::Mutex<Vec<document_models::CopyAuthorization>>,
    pub(crate) live_idle_timeout: std::time::Duration,
    /// Live accounts by lowercased id.
    accounts: RwLock<HashMap<String, Arc<LiveAccount>>>,
}

impl CognitiveService {
    pub fn new(parts: Parts) -> Result<Arc<Self>, ApiError> {
        let Parts {
            store,
            root,
            door,
            directory,
            listeners,
            storage,
            objects,
            customer_keys,
            ca_pem,
            speech,
            tts,
            ocr,
            max_live_sessions,
            live_idle_timeout,
        } = parts;
        let live_sessions = Arc::new(tokio::sync::Semaphore::new(max_live_sessions));
        let http = fetch::fetch_client(&ca_pem)?;
        let listeners = ListenerSet::new(listeners);
        let cmk = Arc::new(customer_keys);
        let artifacts = artifacts::ArtifactStore::new(
            storage,
            Arc::clone(&directory),
            Arc::clone(&store),
            objects,
            Arc::clone(&cmk),
        );
        let accounts = RwLock::default();
        let dataset_writes = tokio::sync::Mutex::new(());
        Ok(Arc::new(CognitiveService {
            store,
            root,
            door,
            directory,
            listeners,
            artifacts,
            cmk,
            http,
            dataset_writes,
            transcription_writes: tokio::sync::Mutex::new(()),
            synthesis_writes: tokio::sync::Mutex::new(()),
            speech,
            tts,
            ocr,
            live_sessions,
            live_idle_timeout,
            analyses: documents::Analyses::default(),
            model_operations: document_models::ModelOperations::default(),
            copy_authorizations: std::sync::Mutex::default(),
            accounts,
        }))
    }

    /// The live account with lowercased id `key`.
    pub fn account(&self, key: &str) -> Option<Arc<LiveAccount>> {
        self.accounts.read().unwrap_or_else(|e| e.into_inner()).get(key).cloned()
    }

    /// The keys of the live accounts that serve speech.
    pub(crate) fn speech_account_keys(&self) -> Vec<String> {
        let accounts = self.accounts.read().unwrap_or_else(|e| e.into_inner());
        accounts.values().filter(|a| a.settings.kind.serves_speech()).map(|a| resource_key(&a.id)).collect()
    }

    /// Re-reads an account's keys and installs the record as the live account (after every
    /// committed change).
    pub(crate) async fn refresh(&self, record: &ResourceRecord) -> Result<(), ApiError> {
        let key = resource_key(&record.id);
        let sealed = self.store.get(KEYS, &key).await.map_err(store_error)?.or_internal()?;
        let keys = AccountKeys::open(&self.root, &sealed)?;
        let live = LiveAccount {
            id: record.id.clone(),
            location: record.location.clone(),
            system_identity: record.owned_principals.first().copied(),
            user_identities: byos_arm::managed_identity::attached_user_identities(record.identity.as_ref()),
            settings: serde_json::from_value(record.properties.clone()).or_internal()?,
            protection: keys.protection()?,
            keys,
        };
        self.accounts.write().unwrap_or_else(|e| e.into_inner()).insert(key, Arc::new(live));
        Ok(())
    }

    /// Serves every account's data plane (at start-up, once the resource manager is open); an
    /// account whose port was taken moves, and its record says so.
    pub async fn load(self: &Arc<Self>, arm: &Arm) -> Result<(), ApiError> {
        let interrupted = self.fail_interrupted_datasets().await?;
        if interrupted > 0 {
            tracing::warn!(interrupted, "dataset imports interrupted by a restart were failed");
        }
        for record in arm.resources_under("/subscriptions/").await? {
            if !record.resource_type.eq_ignore_ascii_case(ACCOUNT_TYPE) {
                continue;
            }
            let mut settings: AccountSettings = serde_json::from_value(record.properties.clone()).or_internal()?;
            let port = self.serve(&record.id, settings.port).await?;
            if port == settings.port {
                self.refresh(&record).await?;
                continue;
            }
            tracing::warn!(account = %record.id, old = settings.port, new = port, "account port was taken; its endpoint changed");
            settings.port = port;
            self.refresh(&self.persist_settings(record, &settings).await?).await?;
        }
        let trainings = self.resume_trainings().await?;
        if trainings > 0 {
            tracing::warn!(trainings, "model trainings interrupted by a restart start over");
        }
        let evaluations = self.resume_evaluations().await?;
        if evaluations > 0 {
            tracing::warn!(evaluations, "evaluations interrupted by a restart start over");
        }
        let resumed = self.resume_transcriptions().await?;
        if resumed > 0 {
            tracing::warn!(resumed, "transcriptions interrupted by a restart start over");
        }
        let syntheses = self.resume_batch_syntheses().await?;
        if syntheses > 0 {
            tracing::warn!(syntheses, "batch syntheses interrupted by a restart start over");
        }
        Ok(())
    }

    async fn persist_settings(
        &self,
        mut record: ResourceRecord,
        settings: &AccountSettings,
    ) -> Result<ResourceRecord, ApiError> {
        record.properties = serde_json::to_value(settings).or_internal()?;
        let key = resource_key(&record.id);
        let batch = Batch::new().put(RESOURCES, key.clone(), encode(&key, &record)?);
        self.store.commit(batch).await.map_err(store_error)?;
        Ok(record)
    }

    /// `https://127.0.0.1:{port}/`: the account's `properties.endpoint`.
    pub fn endpoint(port: u16) -> String {
        format!("https://127.0.0.1:{port}/")
    }

    /// Starts serving an account's data plane on `port` (any free port for 0, or when it is taken).
    pub(crate) async fn serve(self: &Arc<Self>, account_id: &str, port: u16) -> Result<u16, ApiError> {
        let key = resource_key(account_id);
        let router = dataplane::router(Arc::clone(self), key.clone());
        self.listeners.serve(&key, port, router).await.map_err(|e| {
            tracing::error!(account = account_id, error = %e, "cannot open a listener for the account");
            ApiError::internal()
        })
    }

    /// Stops serving an account (deleted, or its creation failed).
    pub(crate) fn close(&self, account_id: &str) {
        let key = resource_key(account_id);
        self.accounts.write().unwrap_or_else(|e| e.into_inner()).remove(&key);
        self.listeners.close(&key);
    }
}
