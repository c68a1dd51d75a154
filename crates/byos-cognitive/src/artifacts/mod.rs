//! The artifact store: the one interface an account's services (speech, documents) keep what they
//! produce through (datasets, results, logs, models).
//!
//! For an account bound to the customer's storage (BYOS) it writes there, in the containers the
//! seed's service uses (created on first use), through the storage service's API as the account's
//! system-assigned identity acting for the account: the door decides exactly as for any client
//! (role, firewall with its trusted-service and resource-instance rules, key and public-access
//! locks, the storage account's own customer-managed key). A refusal is
//! [`ArtifactError::Inaccessible`], carrying the door's explanation.
//!
//! Accounts without BYOS keep their artifacts in service-managed storage ([`service`]), encrypted
//! under the account's KEK.

mod service;

use std::sync::Arc;

use byos_authz::DenialKind;
use byos_core::{ApiError, Caller};
use byos_identity::{AttachedIdentities, Directory};
use byos_storage::StorageService;
use byos_storage::blob::api::{BlobAddress, BlobInfo};
use byos_storage::blob::errors::BlobError;
use bytes::Bytes;
use futures_util::TryStreamExt;
use serde_json::{Value, json};

use crate::LiveAccount;

/// Where in the account's storage an artifact goes: the containers of the seed's service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Area {
    /// Datasets, transcription results, evaluation results (`customspeech-artifacts`).
    Artifacts,
    /// Audio and transcription logs of endpoints with logging on (`customspeech-audiologs`).
    AudioLogs,
    /// Custom models (`customspeech-models`).
    Models,
    /// Batch synthesis outputs (`batchsynthesis-output`, the container Azure's own links name).
    Synthesis,
    /// Document Intelligence custom models (`documentmodels`).
    DocumentModels,
}

impl Area {
    pub fn container(self) -> &'static str {
        match self {
            Area::Artifacts => "customspeech-artifacts",
            Area::AudioLogs => "customspeech-audiologs",
            Area::Models => "customspeech-models",
            Area::Synthesis => "batchsynthesis-output",
            Area::DocumentModels => "documentmodels",
        }
    }
}

/// Why an artifact could not be kept or read.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The customer's storage refused the account (or the account cannot reach it at all).
    #[error("the account's storage {storage} refused access: {reason}")]
    Inaccessible {
        storage: String,
        /// Which check refused, when the door did.
        check: Option<DenialKind>,
        reason: String,
        /// The door's explanation (which rule, which scope, what was considered).
        explanation: Value,
    },
    #[error("the artifact does not exist")]
    NotFound,
    /// Larger than the reader takes.
    #[error("the blob is {size} bytes; at most {limit} are read")]
    TooLarge { size: u64, limit: u64 },
    #[error("reading the artifact's content failed")]
    ReadFailed,
    /// The account's customer-managed key cannot be used now (revoked, access removed, identity
    /// gone): its service-held data is unreadable until access returns.
    #[error("the account's customer-managed key is unavailable: {0}")]
    KeyUnavailable(String),
    /// byos's own storage failed (logged where it happened).
    #[error("byos could not keep or read the artifact")]
    Internal,
    #[error("{0}")]
    Storage(BlobError),
}

impl ArtifactError {
    /// [`ArtifactError::to_api_error`] in the Speech REST error format.
    pub fn to_speech_error(&self) -> ApiError {
        self.to_api_error().with_format(byos_core::ErrorFormat::Speech)
    }

    /// The error a service answers with: `InaccessibleCustomerStorage` with byos's explanation.
    pub fn to_api_error(&self) -> ApiError {
        match self {
            ArtifactError::Inaccessible { storage, check, reason, explanation } => ApiError::new(
                403,
                "InaccessibleCustomerStorage",
                format!(
                    "The storage account '{storage}' bound to this resource cannot be accessed: {reason}.{}",
                    remedy(*check)
                ),
            )
            .with_explanation(explanation.clone()),
            ArtifactError::NotFound => ApiError::not_found("NotFound", "The artifact does not exist."),
            ArtifactError::TooLarge { size, limit } => ApiError::new(
                400,
                "InvalidContentLength",
                format!("The content is {size} bytes; at most {limit} are taken."),
            ),
            ArtifactError::KeyUnavailable(reason) => ApiError::new(
                403,
                "CustomerManagedKeyUnavailable",
                format!(
                    "This resource's data is encrypted with a customer-managed key that cannot be used now: {reason}."
                ),
            ),
            ArtifactError::ReadFailed | ArtifactError::Internal => ApiError::internal(),
            ArtifactError::Storage(e) => {
                tracing::warn!(error = %e, "artifact store: storage failed");
                ApiError::internal()
            }
        }
    }
}

/// The longest a link to a service-held artifact lasts (as a user delegation SAS: 7 days).
const MAX_LINK_SECS: i64 = 7 * 24 * 3600;

/// The audience of a link token: one artifact (its URL path), so a token opens nothing else.
fn link_audience(path: &str) -> String {
    format!("urn:byos:artifact:{path}")
}

impl Area {
    /// The area whose container is `name`.
    pub fn of_container(name: &str) -> Option<Area> {
        [Area::Artifacts, Area::AudioLogs, Area::Models, Area::Synthesis, Area::DocumentModels]
            .into_iter()
            .find(|a| a.container() == name)
    }
}

/// What would let the account in, for the check that refused it (the seed's setup steps).
fn remedy(check: Option<DenialKind>) -> &'static str {
    match check {
        Some(DenialKind::Permission) => {
            " Grant the resource's system-assigned identity Storage Blob Data Contributor on the storage account."
        }
        Some(DenialKind::Network) => {
            " Add a resource instance rule for this resource to the storage account's firewall, or let trusted Azure services through (bypass AzureServices)."
        }
        _ => "",
    }
}

/// An artifact as the services see it.
pub type ArtifactInfo = BlobInfo;

/// The artifact store over the storage service.
pub struct ArtifactStore {
    storage: Arc<StorageService>,
    directory: Arc<Directory>,
    service: service::ServiceStorage,
}

/// Where an account's artifacts live and who reaches them.
struct Binding {
    storage_id: String,
    account_name: String,
    caller: Caller,
}

impl ArtifactStore {
    pub fn new(
        storage: Arc<StorageService>,
        directory: Arc<Directory>,
        store: byos_store::SharedStore,
        objects: byos_store::SharedObjects,
        keys: Arc<crate::cmk::CustomerKeys>,
    ) -> Self {
        ArtifactStore { storage, directory, service: service::ServiceStorage::new(store, objects, keys) }
    }

    /// Whether the account keeps its artifacts in the customer's storage.
    fn byos(account: &LiveAccount) -> bool {
        !account.settings.user_owned_storage.is_empty()
    }

    /// Adds the deletion of the service-held artifacts of `account_id` to `batch` (its purge);
    /// returns what to call [`ArtifactStore::purged`] with once the batch is committed. The
    /// customer's storage is the customer's: a purge leaves it alone, as in Azure.
    pub(crate) async fn purge_ops(
        &self,
        account_id: &str,
        batch: byos_store::Batch,
    ) -> Result<(byos_store::Batch, Vec<String>), ApiError> {
        self.service.purge_ops(account_id, batch).await.map_err(|e| e.to_api_error())
    }

    /// Deletes the objects of a committed purge.
    pub(crate) async fn purged(&self, objects: Vec<String>) {
        for object in objects {
            self.service.delete_object(&object).await;
        }
    }

    /// The customer's storage account and the account's identity acting for it, resolved now (an
    /// identity removed since is refused, never a principal remembered from earlier).
    fn binding(&self, account: &LiveAccount) -> Result<Binding, ArtifactError> {
        let bound = account.settings.user_owned_storage.first().ok_or(ArtifactError::Internal)?;
        let storage_id = bound.resource_id.clone();
        let account_name = storage_id.rsplit('/').next().unwrap_or_default().to_owned();
        let attached = AttachedIdentities {
            resource_id: &account.id,
            system: account.system_identity,
            user: &account.user_identities,
        };
        let caller = self.directory.act_as(&attached, None).ok_or_else(|| ArtifactError::Inaccessible {
            storage: storage_id.clone(),
            check: None,
            reason: "the account has no system-assigned identity now, and BYOS reaches the storage as that identity".into(),
            explanation: json!({"check": "Identity", "resource": account.id,
                                "fix": "enable the account's system-assigned identity and grant it Storage Blob Data Contributor on the storage account"}),
        })?;
        Ok(Binding { storage_id, account_name, caller })
    }

    fn classify(binding: &Binding, e: BlobError) -> ArtifactError {
        match e {
            BlobError::Denied(denial) => ArtifactError::Inaccessible {
                storage: binding.storage_id.clone(),
                check: Some(denial.kind),
                reason: denial.reason.clone(),
                explanation: denial.explanation(),
            },
            BlobError::AccountNotFound => ArtifactError::Inaccessible {
                storage: binding.storage_id.clone(),
                check: None,
                reason: "the storage account no longer exists".into(),
                explanation: json!({"check": "StorageAccount", "storage": binding.storage_id}),
            },
            BlobError::KeyUnavailable(e) => ArtifactError::Inaccessible {
                storage: binding.storage_id.clone(),
                check: None,
                reason: format!("its customer-managed key cannot be used: {}", e.message),
                explanation: json!({"check": "CustomerManagedKey", "storage": binding.storage_id, "code": e.code}),
            },
            BlobError::BlobNotFound | BlobError::ContainerNotFound => ArtifactError::NotFound,
            other => ArtifactError::Storage(other),
        }
    }

    fn address<'a>(binding: &'a Binding, area: Area, path: &'a str) -> BlobAddress<'a> {
        BlobAddress { account: &binding.account_name, container: area.container(), blob: path }
    }

    /// Keeps `content` at `path` of `area`, creating the area's container on first use.
    pub async fn put(
        &self,
        account: &LiveAccount,
        area: Area,
        path: &str,
        content: Bytes,
        content_type: &str,
    ) -> Result<ArtifactInfo, ArtifactError> {
        if !Self::byos(account) {
            return self.service.put(account, area, path, content, content_type).await;
        }
        let binding = self.binding(account)?;
        let at = Self::address(&binding, area, path);
        let put =
            || self.storage.put_blob(&binding.caller, at, content.clone(), Some(content_type), Default::default());
        match put().await {
            Err(BlobError::ContainerNotFound) => {
                match self.storage.create_container(&binding.caller, &binding.account_name, area.container()).await {
                    Ok(()) | Err(BlobError::ContainerAlreadyExists) => {
                        tracing::info!(account = %account.id, container = area.container(), "artifact container created");
                    }
                    Err(e) => return Err(Self::classify(&binding, e)),
                }
                put().await.map_err(|e| Self::classify(&binding, e))
            }
            other => other.map_err(|e| Self::classify(&binding, e)),
        }
    }

    /// The content of the artifact at `path` of `area`.
    pub async fn read(&self, account: &LiveAccount, area: Area, path: &str) -> Result<Bytes, ArtifactError> {
        if !Self::byos(account) {
            return self.service.read(account, area, path).await;
        }
        self.read_bound(account, area.container(), path).await
    }

    /// The artifacts of `area` whose path starts with `prefix` (none when the container was never
    /// used).
    pub async fn list(
        &self,
        account: &LiveAccount,
        area: Area,
        prefix: &str,
    ) -> Result<Vec<ArtifactInfo>, ArtifactError> {
        if !Self::byos(account) {
            return self.service.list(account, area, prefix).await;
        }
        match self.list_bound(account, area.container(), prefix).await {
            Err(ArtifactError::NotFound) => Ok(Vec::new()),
            other => other,
        }
    }

    /// Where a URL without a SAS points in the account's bound (BYOS) storage account: its
    /// container and the blob path (or prefix) after it. Such sources are read as the account's
    /// identity (the seed's "read the files that were already present"); any other URL is the
    /// client's to authorize (a SAS).
    pub fn bound_location(&self, account: &LiveAccount, url: &str) -> Option<(String, String)> {
        let bound = account.settings.user_owned_storage.first()?;
        let name = bound.resource_id.rsplit('/').next()?;
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        if query.split('&').any(|pair| pair.starts_with("sig=")) {
            return None;
        }
        let rest = path.strip_prefix(&self.storage.endpoint(name))?;
        let (container, blob) = rest.split_once('/').unwrap_or((rest, ""));
        let decoded = percent_encoding::percent_decode_str(blob).decode_utf8().ok()?;
        (!container.is_empty()).then(|| (container.to_owned(), decoded.into_owned()))
    }

    /// A blob of any container of the account's bound storage, read as the account's identity.
    pub async fn read_bound(&self, account: &LiveAccount, container: &str, blob: &str) -> Result<Bytes, ArtifactError> {
        let binding = self.binding(account)?;
        let at = BlobAddress { account: &binding.account_name, container, blob };
        let reader = self.storage.read_blob(&binding.caller, at).await.map_err(|e| Self::classify(&binding, e))?;
        let chunks: Vec<Bytes> = reader.content.try_collect().await.map_err(|e| {
            tracing::warn!(error = %e, "artifact store: reading failed");
            ArtifactError::ReadFailed
        })?;
        Ok(chunks.concat().into())
    }

    /// Where `url` points when it is a blob of one of byos's storage accounts given without a SAS:
    /// (storage account name, container, blob). Such a URL is read as the reading account's identity.
    pub fn identity_location(&self, url: &str) -> Option<(String, String, String)> {
        let (name, container, blob) = self.storage_path(url)?;
        (!blob.is_empty()).then_some((name, container, blob))
    }

    /// (storage account name, container) of a container URL into byos's storage given without a SAS.
    pub fn identity_container(&self, url: &str) -> Option<(String, String)> {
        self.storage_path(url).map(|(name, container, _)| (name, container))
    }

    /// (account name, container, blob path or "") of a URL on byos's blob listener without a SAS.
    fn storage_path(&self, url: &str) -> Option<(String, String, String)> {
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        if query.split('&').any(|pair| pair.starts_with("sig=")) {
            return None;
        }
        let rest = path.strip_prefix(self.storage.blob_base())?.strip_prefix('/')?;
        let mut parts = rest.trim_end_matches('/').splitn(3, '/');
        let (name, container, blob) = (parts.next()?, parts.next()?, parts.next().unwrap_or_default());
        let blob = percent_encoding::percent_decode_str(blob).decode_utf8().ok()?;
        (!name.is_empty() && !container.is_empty()).then(|| (name.to_owned(), container.to_owned(), blob.into_owned()))
    }

    /// `account`'s identity as a caller of the storage account `name`: its system-assigned one, or,
    /// when it has none, its (first) user-assigned one, which several resources may share.
    fn identity_binding(&self, account: &LiveAccount, name: &str) -> Result<Binding, ArtifactError> {
        let storage_id = self.storage.account(name).map(|a| a.id.clone()).unwrap_or_else(|| name.to_owned());
        let attached = AttachedIdentities {
            resource_id: &account.id,
            system: account.system_identity,
            user: &account.user_identities,
        };
        let user = match account.system_identity {
            Some(_) => None,
            None => account.user_identities.first().map(String::as_str),
        };
        let caller = self.directory.act_as(&attached, user).ok_or_else(|| ArtifactError::Inaccessible {
            storage: storage_id.clone(),
            check: None,
            reason: "the account has no system-assigned identity (nor a user-assigned one), and documents are read as its identity".into(),
            explanation: json!({"check": "Identity", "resource": account.id,
                                "fix": "enable the account's system-assigned identity (or attach a user-assigned one) and grant it Storage Blob Data Reader on the storage account"}),
        })?;
        Ok(Binding { storage_id, account_name: name.to_owned(), caller })
    }

    /// A blob of any of byos's storage accounts, read as `account`'s identity through the storage
    /// service and the door: its roles, the storage firewall's trusted-service and resource-instance
    /// rules, the storage's customer-managed key decide. At most `limit` bytes.
    pub async fn read_as_identity(
        &self,
        account: &LiveAccount,
        (name, container, blob): (&str, &str, &str),
        limit: u64,
    ) -> Result<Bytes, ArtifactError> {
        let binding = self.identity_binding(account, name)?;
        let at = BlobAddress { account: name, container, blob };
        let reader = self.storage.read_blob(&binding.caller, at).await.map_err(|e| Self::classify(&binding, e))?;
        if reader.info.size > limit {
            return Err(ArtifactError::TooLarge { size: reader.info.size, limit });
        }
        let chunks: Vec<Bytes> = reader.content.try_collect().await.map_err(|e| {
            tracing::warn!(error = %e, "reading a document as the account's identity failed");
            ArtifactError::ReadFailed
        })?;
        Ok(chunks.concat().into())
    }

    /// The blobs under `prefix` of a container of any of byos's storage accounts, listed as
    /// `account`'s identity (training data of Document Intelligence models).
    pub async fn list_as_identity(
        &self,
        account: &LiveAccount,
        (name, container): (&str, &str),
        prefix: &str,
    ) -> Result<Vec<ArtifactInfo>, ArtifactError> {
        let binding = self.identity_binding(account, name)?;
        self.storage.list_blobs(&binding.caller, name, container, prefix).await.map_err(|e| Self::classify(&binding, e))
    }

    /// The blobs under `prefix` of any container of the account's bound storage, listed as the
    /// account's identity ([`ArtifactError::NotFound`] when the container does not exist).
    pub async fn list_bound(
        &self,
        account: &LiveAccount,
        container: &str,
        prefix: &str,
    ) -> Result<Vec<ArtifactInfo>, ArtifactError> {
        let binding = self.binding(account)?;
        self.storage
            .list_blobs(&binding.caller, &binding.account_name, container, prefix)
            .await
            .map_err(|e| Self::classify(&binding, e))
    }

    /// A link to read the artifact at `path` of `area`. In a BYOS account's storage: with a zero
    /// `validity` a plain URL (the seed's `sasValidityInSeconds=0`: readers need their own access
    /// to the customer's storage), else a user delegation SAS URL signed through the account's
    /// identity, which stops working when that identity loses its access. In service storage: a URL
    /// on the account's endpoint, carrying a token for that one artifact unless `validity` is zero
    /// (then the reader needs the account's key or an Entra role).
    pub async fn link(
        &self,
        account: &LiveAccount,
        area: Area,
        path: &str,
        validity: std::time::Duration,
    ) -> Result<String, ArtifactError> {
        if !Self::byos(account) {
            return self.service_link(account, area, path, validity);
        }
        let binding = self.binding(account)?;
        if validity.is_zero() {
            let path = byos_storage::blob::api::blob_path(area.container(), path);
            return Ok(format!("{}{path}", self.storage.endpoint(&binding.account_name)));
        }
        let at = Self::address(&binding, area, path);
        self.storage.read_link(&binding.caller, at, validity).await.map_err(|e| Self::classify(&binding, e))
    }

    fn service_link(
        &self,
        account: &LiveAccount,
        area: Area,
        path: &str,
        validity: std::time::Duration,
    ) -> Result<String, ArtifactError> {
        let path = byos_storage::blob::api::blob_path(area.container(), path);
        let url = format!("{}artifacts/{path}", crate::CognitiveService::endpoint(account.settings.port));
        if validity.is_zero() {
            return Ok(url);
        }
        let lifetime = i64::try_from(validity.as_secs()).unwrap_or(i64::MAX).min(MAX_LINK_SECS);
        let token = self
            .directory
            .tokens()
            .mint_resource_token(
                &account.id,
                &account.location,
                &link_audience(&path),
                lifetime,
                byos_core::time::unix_now(),
            )
            .map_err(|e| {
                tracing::error!(error = %e, "cannot sign an artifact link");
                ArtifactError::Internal
            })?;
        Ok(format!("{url}?token={token}"))
    }

    /// Whether `token` is a link token of `account` for the artifact at URL path `path`
    /// (`{container}/{encoded path}`).
    pub fn link_token_valid(&self, account: &LiveAccount, path: &str, token: &str) -> bool {
        let now = byos_core::time::unix_now();
        self.directory
            .tokens()
            .verify_resource_token(token, &link_audience(path), now)
            .is_ok_and(|resource| resource.eq_ignore_ascii_case(&account.id))
    }

    /// Deletes the artifact at `path` of `area`.
    pub async fn delete(&self, account: &LiveAccount, area: Area, path: &str) -> Result<(), ArtifactError> {
        if !Self::byos(account) {
            return self.service.delete(account, area, path).await;
        }
        let binding = self.binding(account)?;
        self.storage
            .delete_blob(&binding.caller, Self::address(&binding, area, path))
            .await
            .map_err(|e| Self::classify(&binding, e))
    }
}
