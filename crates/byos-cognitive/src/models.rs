//! Custom Speech models (speech to text `/models`): adapted from an account's Language and
//! Pronunciation datasets into a model the engine really decodes with
//! ([`byos_speech::adapt::AdaptedModel`]: a trigram language model interpolated with the base one,
//! plus dictionary entries), kept through the artifact store in `customspeech-models`
//! (`{modelId}/model.bin`, with its training report beside it): the customer's storage for a BYOS
//! account, else service storage under the account's KEK. It is read again at every use, so a
//! customer who revokes the account's access to their storage revokes the model too.
//!
//! Training runs in the background (`NotStarted` → `Running` → `Succeeded`/`Failed`); a training a
//! restart interrupted starts over at the next start.

use std::sync::Arc;

use byos_core::ApiError;
use byos_speech::adapt::{AdaptedModel, Dictionary, TrainingReport};
use byos_store::{Batch, Table};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::artifacts::{Area, ArtifactError};
use crate::datasets::{DatasetKind, Status, speech_error};
use crate::records::{Entity, Records};
use crate::{CognitiveService, LiveAccount};

pub(crate) const MODELS: Records = Records::new(Table("cs_models"), "model");

/// A custom model as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomModel {
    pub v: u32,
    pub id: String,
    pub display_name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub custom_properties: Map<String, Value>,
    pub locale: String,
    /// The datasets it was trained from (ids in this account).
    pub datasets: Vec<String>,
    pub status: Status,
    pub created: String,
    pub last_action: String,
    #[serde(default)]
    pub error: Option<(String, String)>,
    /// What training made of the data.
    #[serde(default)]
    pub report: Option<TrainingReport>,
    /// Where it was copied from (`copyTo`), when it was.
    #[serde(default)]
    pub copied_from: Option<String>,
}

impl Entity for CustomModel {
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> &str {
        &self.created
    }
}

/// What a client asks for when it creates a model.
pub struct NewModel {
    pub display_name: String,
    pub description: Option<String>,
    pub custom_properties: Map<String, Value>,
    pub locale: String,
    pub datasets: Vec<String>,
}

fn now() -> String {
    byos_core::time::rfc3339_now()
}

/// The path of a model's bytes in `customspeech-models`.
pub fn model_path(id: &str) -> String {
    format!("{id}/model.bin")
}

/// The path of a model's training report in `customspeech-models`.
pub fn report_path(id: &str) -> String {
    format!("{id}/report.json")
}

fn invalid(message: impl Into<String>) -> ApiError {
    speech_error(400, "InvalidRequest", message).with_inner_code("InvalidDataset")
}

impl CognitiveService {
    pub async fn custom_model(&self, account: &LiveAccount, id: &str) -> Result<CustomModel, ApiError> {
        MODELS.get(&self.store, account, id).await
    }

    pub async fn custom_models(&self, account: &LiveAccount) -> Result<Vec<CustomModel>, ApiError> {
        MODELS.list(&self.store, account).await
    }

    /// Records a new model (`NotStarted`) and trains it in the background. Its datasets must be
    /// this account's, `Succeeded`, of its locale and of kind Language or Pronunciation, with at
    /// least one Language dataset.
    pub async fn create_model(
        self: &Arc<Self>,
        account: Arc<LiveAccount>,
        new: NewModel,
    ) -> Result<CustomModel, ApiError> {
        if new.datasets.is_empty() {
            return Err(invalid("A model is trained from at least one Language dataset."));
        }
        let mut languages = 0;
        for id in &new.datasets {
            let dataset = self.dataset(&account, id).await.map_err(|e| {
                if e.status == 404 { invalid(format!("The dataset '{id}' does not exist in this account.")) } else { e }
            })?;
            if dataset.status != Status::Succeeded {
                return Err(invalid(format!("The dataset '{id}' has not succeeded.")));
            }
            if !dataset.locale.eq_ignore_ascii_case(&new.locale) {
                return Err(invalid(format!("The dataset '{id}' is {}, not {}.", dataset.locale, new.locale)));
            }
            match dataset.kind {
                DatasetKind::Language => languages += 1,
                DatasetKind::Pronunciation => {}
                other => {
                    return Err(invalid(format!(
                        "The dataset '{id}' is {}: byos adapts language models (Language and Pronunciation datasets), not acoustic ones.",
                        other.name()
                    )));
                }
            }
        }
        if languages == 0 {
            return Err(invalid("A model is trained from at least one Language dataset."));
        }
        let created = now();
        let model = CustomModel {
            v: 1,
            id: uuid::Uuid::new_v4().to_string(),
            display_name: new.display_name,
            description: new.description,
            custom_properties: new.custom_properties,
            locale: new.locale,
            datasets: new.datasets,
            status: Status::NotStarted,
            created: created.clone(),
            last_action: created,
            error: None,
            report: None,
            copied_from: None,
        };
        MODELS.put(&self.store, &account, &model).await?;
        self.start_training(account, model.id.clone());
        Ok(model)
    }

    fn start_training(self: &Arc<Self>, account: Arc<LiveAccount>, id: String) {
        let service = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = service.train(&account, &id).await {
                tracing::warn!(account = %account.id, model = %id, error = %e.message, "model training failed");
            }
        });
    }

    /// Trains a model to its end: `Succeeded` with the model kept, or `Failed` with why.
    async fn train(&self, account: &LiveAccount, id: &str) -> Result<(), ApiError> {
        let mut model = {
            let _serialized = self.transcription_writes.lock().await;
            let mut model = self.custom_model(account, id).await?;
            model.status = Status::Running;
            model.last_action = now();
            MODELS.put(&self.store, account, &model).await?;
            model
        };
        tracing::info!(account = %account.id, model = id, "model training started");
        let outcome = self.build(account, &model).await;
        let _serialized = self.transcription_writes.lock().await;
        match self.custom_model(account, id).await {
            Ok(now_stored) => model = now_stored,
            Err(e) if e.status == 404 => {
                self.delete_model_files(account, id).await;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        model.last_action = now();
        match outcome {
            Ok(report) => {
                model.status = Status::Succeeded;
                model.report = Some(report);
            }
            Err((code, message)) => {
                model.status = Status::Failed;
                model.error = Some((code, message));
            }
        }
        tracing::info!(account = %account.id, model = id, status = ?model.status, "model training finished");
        MODELS.put(&self.store, account, &model).await
    }

    /// Builds the adapted model from the datasets' content and keeps it and its report.
    async fn build(&self, account: &LiveAccount, model: &CustomModel) -> Result<TrainingReport, (String, String)> {
        let fail = |e: ApiError| (e.code, e.message);
        let (mut language, mut pronunciations) = (String::new(), String::new());
        for id in &model.datasets {
            let dataset = self.dataset(account, id).await.map_err(fail)?;
            let Some(content) = dataset.files.iter().find(|f| f.kind == "LanguageData") else { continue };
            let bytes = self.artifacts.read(account, Area::Artifacts, &content.path).await;
            let bytes = bytes.map_err(|e| fail(e.to_speech_error()))?;
            let text = String::from_utf8_lossy(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes)).into_owned();
            let into = if dataset.kind == DatasetKind::Pronunciation { &mut pronunciations } else { &mut language };
            into.push_str(&text);
            into.push('\n');
        }
        let dictionary = self.base_dictionary().map_err(|why| ("ModelTrainingFailed".to_owned(), why))?;
        let adapted = tokio::task::spawn_blocking(move || AdaptedModel::build(&language, &pronunciations, &dictionary))
            .await
            .map_err(|e| ("ModelTrainingFailed".to_owned(), e.to_string()))?
            .map_err(|e| ("ModelTrainingFailed".to_owned(), format!("The data cannot make a model: {e}.")))?;
        let report = adapted.report().clone();
        let bytes = Bytes::from(adapted.to_bytes());
        let path = model_path(&model.id);
        let stored = self.artifacts.put(account, Area::Models, &path, bytes, "application/octet-stream").await;
        stored.map_err(|e| fail(e.to_speech_error()))?;
        let report_json = Bytes::from(json!({"modelId": model.id, "training": report}).to_string());
        let path = report_path(&model.id);
        let stored = self.artifacts.put(account, Area::Models, &path, report_json, "application/json").await;
        stored.map_err(|e| fail(e.to_speech_error()))?;
        Ok(report)
    }

    /// The engine's own pronunciation dictionary (what an adapted model's words are spelled from),
    /// read once.
    fn base_dictionary(&self) -> Result<Arc<Dictionary>, String> {
        static BASE: std::sync::OnceLock<Arc<Dictionary>> = std::sync::OnceLock::new();
        if let Some(dictionary) = BASE.get() {
            return Ok(Arc::clone(dictionary));
        }
        let path = std::path::Path::new(byos_speech::pocketsphinx::DEBIAN_MODEL_DIR).join("cmudict-en-us.dict");
        let dictionary = Dictionary::load(&path)
            .map_err(|e| format!("The speech engine's dictionary {} is not readable: {e}.", path.display()))?;
        Ok(Arc::clone(BASE.get_or_init(|| Arc::new(dictionary))))
    }

    /// A live recognition's phrase list (`PhraseListGrammar`) as a model that biases the engine
    /// towards its phrases: a language model of the phrases, interpolated with the base one as a
    /// Custom Speech model's is. Words the engine cannot pronounce are left out.
    pub(crate) async fn phrase_list_model(&self, phrases: Vec<String>) -> Result<AdaptedModel, String> {
        let dictionary = self.base_dictionary()?;
        tokio::task::spawn_blocking(move || AdaptedModel::build(&phrases.join("\n"), "", &dictionary))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    /// The adapted model `id` of the account, read from where it is kept (at every use).
    pub async fn adapted_model(&self, account: &LiveAccount, id: &str) -> Result<AdaptedModel, ApiError> {
        let bytes =
            self.artifacts.read(account, Area::Models, &model_path(id)).await.map_err(|e| e.to_speech_error())?;
        AdaptedModel::from_bytes(&bytes).map_err(|e| {
            tracing::error!(model = id, error = %e, "a stored model is unreadable");
            ApiError::internal().with_format(byos_core::ErrorFormat::Speech)
        })
    }

    /// Changes what a model says about itself (`displayName`, `description`, `customProperties`).
    pub async fn update_model(
        &self,
        account: &LiveAccount,
        id: &str,
        update: &Map<String, Value>,
    ) -> Result<CustomModel, ApiError> {
        let _serialized = self.transcription_writes.lock().await;
        let mut model = self.custom_model(account, id).await?;
        crate::records::apply_description(
            update,
            &mut model.display_name,
            &mut model.description,
            &mut model.custom_properties,
        );
        model.last_action = now();
        MODELS.put(&self.store, account, &model).await?;
        Ok(model)
    }

    /// Deletes a model and its files; refused while an endpoint serves it (as Azure). Deleting one
    /// that does not exist is no error.
    pub async fn delete_model(&self, account: &LiveAccount, id: &str) -> Result<(), ApiError> {
        let _serialized = self.transcription_writes.lock().await;
        if let Err(e) = self.custom_model(account, id).await {
            return if e.status == 404 { Ok(()) } else { Err(e) };
        }
        let used = self.speech_endpoints(account).await?;
        if let Some(endpoint) = used.iter().find(|e| e.model.as_deref().is_some_and(|m| m.eq_ignore_ascii_case(id))) {
            return Err(speech_error(
                409,
                "Conflict",
                format!("The model '{id}' is used by the endpoint '{}'; delete the endpoint first.", endpoint.id),
            ));
        }
        self.delete_model_files(account, id).await;
        MODELS.delete(&self.store, account, id).await
    }

    async fn delete_model_files(&self, account: &LiveAccount, id: &str) {
        for path in [model_path(id), report_path(id)] {
            if let Err(e) = self.artifacts.delete(account, Area::Models, &path).await
                && !matches!(e, ArtifactError::NotFound)
            {
                tracing::warn!(account = %account.id, path, error = %e, "a model file was not deleted");
            }
        }
    }

    /// Copies a succeeded model into `target` (`copyTo`: the account whose key the client gave),
    /// its bytes re-kept there; the copy is `Succeeded` at once.
    pub async fn copy_model(
        &self,
        account: &LiveAccount,
        id: &str,
        target: &LiveAccount,
    ) -> Result<CustomModel, ApiError> {
        let model = self.custom_model(account, id).await?;
        if model.status != Status::Succeeded {
            return Err(speech_error(
                409,
                "Conflict",
                format!("The model '{id}' has not succeeded; only a trained model is copied."),
            ));
        }
        let bytes =
            self.artifacts.read(account, Area::Models, &model_path(id)).await.map_err(|e| e.to_speech_error())?;
        let created = now();
        let copy = CustomModel {
            id: uuid::Uuid::new_v4().to_string(),
            datasets: Vec::new(),
            created: created.clone(),
            last_action: created,
            copied_from: Some(model.id.clone()),
            ..model
        };
        let path = model_path(&copy.id);
        let stored = self.artifacts.put(target, Area::Models, &path, bytes, "application/octet-stream").await;
        stored.map_err(|e| e.to_speech_error())?;
        MODELS.put(&self.store, target, &copy).await?;
        Ok(copy)
    }

    /// The live account one of whose keys is `key` (compared in constant time), if any.
    pub fn account_with_key(&self, key: &str) -> Option<Arc<LiveAccount>> {
        let accounts = self.accounts.read().unwrap_or_else(|e| e.into_inner());
        accounts
            .values()
            .find(|a| (0..2).any(|i| byos_crypto::constant_time_eq(key.as_bytes(), a.keys.key(i).as_bytes())))
            .cloned()
    }

    pub(crate) async fn models_purge_ops(&self, account_id: &str, batch: Batch) -> Result<Batch, ApiError> {
        MODELS.purge_ops(&self.store, account_id, batch).await
    }

    /// Starts over the trainings a restart interrupted (at start, once the accounts are live).
    pub(crate) async fn resume_trainings(self: &Arc<Self>) -> Result<usize, ApiError> {
        let mut resumed = 0;
        for (account_key, model) in MODELS.all::<CustomModel>(&self.store).await? {
            if !matches!(model.status, Status::NotStarted | Status::Running) {
                continue;
            }
            let Some(account) = self.account(&account_key) else { continue };
            self.start_training(account, model.id);
            resumed += 1;
        }
        Ok(resumed)
    }
}
