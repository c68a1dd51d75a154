//! Custom Speech datasets (speech to text v3.2): the first user of the artifact store.
//!
//! A dataset's content and its validation report are artifacts of the account
//! (`customspeech-artifacts/{Kind}Data/{datasetId}/...`: in the customer's storage for a BYOS
//! account, else in service storage under the account's KEK); its record (`cs_datasets`) holds what
//! the API returns. Creation answers at once (`NotStarted`); a background task fetches or takes the
//! content, stores it, validates it for real and ends `Succeeded` or `Failed` with a report. A
//! dataset left `NotStarted` or `Running` by a restart is failed at start, never left running.

use std::io::{Cursor, Read};
use std::sync::Arc;

use byos_core::ApiError;
use byos_store::{Batch, Table};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::artifacts::{Area, ArtifactError};
use crate::{CognitiveService, LiveAccount};

const DATASETS: Table = Table("cs_datasets");
/// The largest dataset byos takes (in memory while it is validated).
pub const MAX_DATASET_BYTES: usize = 256 << 20;

/// The kinds byos can validate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DatasetKind {
    /// Plain text, one utterance a line.
    Language,
    /// A zip of WAV files with a `trans.txt` naming each with its transcript.
    Acoustic,
    /// `word<TAB>pronunciation` lines.
    Pronunciation,
    /// A zip of WAV files.
    AudioFiles,
}

impl DatasetKind {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        [DatasetKind::Language, DatasetKind::Acoustic, DatasetKind::Pronunciation, DatasetKind::AudioFiles]
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(text))
            .ok_or_else(|| {
                speech_error(
                    400,
                    "InvalidArgument",
                    format!("The dataset kind '{text}' is not supported; byos validates Language, Acoustic, Pronunciation and AudioFiles datasets."),
                )
            })
    }

    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Language => "Language",
            DatasetKind::Acoustic => "Acoustic",
            DatasetKind::Pronunciation => "Pronunciation",
            DatasetKind::AudioFiles => "AudioFiles",
        }
    }

    /// The file kind and name of the content, as the files list reports them.
    fn content_file(self) -> (&'static str, &'static str) {
        match self {
            DatasetKind::Language | DatasetKind::Pronunciation => ("LanguageData", "data.txt"),
            DatasetKind::Acoustic | DatasetKind::AudioFiles => ("AcousticDataArchive", "data.zip"),
        }
    }
}

/// An error in the Speech REST format.
pub fn speech_error(status: u16, code: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(status, code, message).with_format(byos_core::ErrorFormat::Speech)
}

fn not_found(id: &str) -> ApiError {
    speech_error(404, "NotFound", format!("The dataset '{id}' does not exist."))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    NotStarted,
    Running,
    Succeeded,
    Failed,
}

/// A stored dataset file (content or report).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetFile {
    pub id: String,
    pub name: String,
    pub kind: String,
    /// The artifact's path in `customspeech-artifacts`.
    pub path: String,
    pub size: u64,
    pub created: String,
}

/// A dataset as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dataset {
    pub v: u32,
    pub id: String,
    pub kind: DatasetKind,
    pub locale: String,
    pub display_name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub custom_properties: Map<String, Value>,
    #[serde(default)]
    pub content_url: Option<String>,
    pub status: Status,
    pub created: String,
    pub last_action: String,
    #[serde(default)]
    pub accepted_line_count: Option<u64>,
    #[serde(default)]
    pub rejected_line_count: Option<u64>,
    /// Total audio, ISO 8601 (`PT4M12S`).
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub error: Option<(String, String)>,
    #[serde(default)]
    pub files: Vec<DatasetFile>,
    /// Created without content: waiting for blocks and their commit.
    #[serde(default)]
    pub awaiting_blocks: bool,
    /// Blocks uploaded and not yet committed.
    #[serde(default)]
    pub blocks: Vec<Block>,
}

/// An uploaded block of a dataset created for block upload.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Block {
    pub id: String,
    pub size: u64,
    /// The artifact holding it until the commit.
    pub path: String,
}

/// The largest block (Azure: 8 MiB).
pub const MAX_BLOCK_BYTES: usize = 8 << 20;

/// What a client asks for when it creates a dataset.
pub struct NewDataset {
    pub kind: DatasetKind,
    pub locale: String,
    pub display_name: String,
    pub description: Option<String>,
    pub custom_properties: Map<String, Value>,
}

/// Where a new dataset's content comes from.
pub enum Content {
    /// Uploaded with the request.
    Bytes(Bytes),
    /// To be fetched from this URL (a blob URL with a SAS, typically).
    Url(String),
    /// To be uploaded in blocks, then committed.
    Blocks,
}

/// The outcome of validating a dataset's content.
#[derive(Debug, PartialEq, Eq)]
pub struct Validation {
    pub accepted: u64,
    pub rejected: u64,
    /// Total audio in milliseconds (audio kinds).
    pub audio_ms: Option<u64>,
    /// Why lines or files were rejected (into the report).
    pub problems: Vec<String>,
}

/// A dataset the content cannot make.
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid(pub String);

fn key(account: &LiveAccount, id: &str) -> String {
    format!("{}/{}", account.id.to_ascii_lowercase(), id.to_ascii_lowercase())
}

fn now() -> String {
    byos_core::time::rfc3339_now()
}

fn store_failure(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "datasets: metadata store failure");
    ApiError::internal().with_format(byos_core::ErrorFormat::Speech)
}

impl CognitiveService {
    async fn put_dataset(&self, account: &LiveAccount, dataset: &Dataset) -> Result<(), ApiError> {
        let bytes = serde_json::to_vec(dataset).map_err(store_failure)?;
        self.store.commit(Batch::new().put(DATASETS, key(account, &dataset.id), bytes)).await.map_err(store_failure)
    }

    /// The dataset `id` of the account.
    pub async fn dataset(&self, account: &LiveAccount, id: &str) -> Result<Dataset, ApiError> {
        let bytes =
            self.store.get(DATASETS, &key(account, id)).await.map_err(store_failure)?.ok_or_else(|| not_found(id))?;
        serde_json::from_slice(&bytes).map_err(store_failure)
    }

    /// Every dataset of the account, oldest first.
    pub async fn datasets(&self, account: &LiveAccount) -> Result<Vec<Dataset>, ApiError> {
        let prefix = format!("{}/", account.id.to_ascii_lowercase());
        let rows = self.store.scan(DATASETS, &prefix).await.map_err(store_failure)?;
        let mut all: Vec<Dataset> =
            rows.iter().map(|(_, b)| serde_json::from_slice(b).map_err(store_failure)).collect::<Result<_, _>>()?;
        all.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
        Ok(all)
    }

    /// Records a new dataset (`NotStarted`) and starts importing its content in the background.
    pub async fn create_dataset(
        self: &Arc<Self>,
        account: Arc<LiveAccount>,
        new: NewDataset,
        content: Content,
    ) -> Result<Dataset, ApiError> {
        let created = now();
        let dataset = Dataset {
            v: 1,
            id: uuid::Uuid::new_v4().to_string(),
            kind: new.kind,
            locale: new.locale,
            display_name: new.display_name,
            description: new.description,
            custom_properties: new.custom_properties,
            content_url: match &content {
                Content::Url(url) => Some(url.clone()),
                Content::Bytes(_) | Content::Blocks => None,
            },
            status: Status::NotStarted,
            created: created.clone(),
            last_action: created,
            accepted_line_count: None,
            rejected_line_count: None,
            duration: None,
            error: None,
            files: Vec::new(),
            awaiting_blocks: matches!(content, Content::Blocks),
            blocks: Vec::new(),
        };
        self.put_dataset(&account, &dataset).await?;
        if !dataset.awaiting_blocks {
            self.start_import(account, dataset.id.clone(), content);
        }
        Ok(dataset)
    }

    fn start_import(self: &Arc<Self>, account: Arc<LiveAccount>, id: String, content: Content) {
        let service = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = service.import(&account, &id, content).await {
                tracing::warn!(account = %account.id, dataset = %id, error = %e.message, "dataset import failed");
            }
        });
    }

    /// A dataset waiting for blocks, or Azure's refusal.
    async fn awaiting(&self, account: &LiveAccount, id: &str) -> Result<Dataset, ApiError> {
        let dataset = self.dataset(account, id).await?;
        if !dataset.awaiting_blocks {
            return Err(speech_error(
                409,
                "Conflict",
                format!(
                    "The dataset '{id}' does not take blocks: it was created with its content, or its blocks were committed."
                ),
            ));
        }
        Ok(dataset)
    }

    /// Keeps block `block_id` of a dataset created for block upload (a block uploaded again
    /// replaces the earlier one).
    pub async fn put_block(
        &self,
        account: &LiveAccount,
        id: &str,
        block_id: &str,
        content: Bytes,
    ) -> Result<(), ApiError> {
        if block_id.is_empty() || block_id.len() > 128 {
            return Err(speech_error(
                400,
                "InvalidArgument",
                "The blockid must be a base64 string of at most 64 bytes.",
            ));
        }
        if content.len() > MAX_BLOCK_BYTES {
            return Err(speech_error(413, "InvalidArgument", format!("A block is at most {MAX_BLOCK_BYTES} bytes.")));
        }
        let _serialized = self.dataset_writes.lock().await;
        let mut dataset = self.awaiting(account, id).await?;
        let total: u64 = dataset.blocks.iter().filter(|b| b.id != block_id).map(|b| b.size).sum();
        if total + content.len() as u64 > MAX_DATASET_BYTES as u64 {
            return Err(speech_error(
                413,
                "InvalidArgument",
                format!("A dataset is at most {MAX_DATASET_BYTES} bytes."),
            ));
        }
        let path = format!("{}Data/{}/blocks/{}", dataset.kind.name(), dataset.id, hex(block_id.as_bytes()));
        let size = content.len() as u64;
        self.artifacts
            .put(account, Area::Artifacts, &path, content, "application/octet-stream")
            .await
            .map_err(|e| e.to_speech_error())?;
        dataset.blocks.retain(|b| b.id != block_id);
        dataset.blocks.push(Block { id: block_id.to_owned(), size, path });
        dataset.last_action = now();
        self.put_dataset(account, &dataset).await
    }

    /// Commits the blocks named in `order` (each uploaded earlier) as the dataset's content and
    /// starts its import.
    pub async fn commit_blocks(
        self: &Arc<Self>,
        account: Arc<LiveAccount>,
        id: &str,
        order: &[String],
    ) -> Result<(), ApiError> {
        let _serialized = self.dataset_writes.lock().await;
        let mut dataset = self.awaiting(&account, id).await?;
        if order.is_empty() {
            return Err(speech_error(400, "InvalidArgument", "The block list is empty."));
        }
        let mut content = Vec::new();
        for block_id in order {
            let block = dataset.blocks.iter().find(|b| &b.id == block_id).ok_or_else(|| {
                speech_error(400, "InvalidArgument", format!("The block '{block_id}' was not uploaded."))
            })?;
            content.extend_from_slice(
                &self.artifacts.read(&account, Area::Artifacts, &block.path).await.map_err(|e| e.to_speech_error())?,
            );
        }
        for block in std::mem::take(&mut dataset.blocks) {
            if let Err(e) = self.artifacts.delete(&account, Area::Artifacts, &block.path).await {
                tracing::warn!(dataset = %dataset.id, error = %e, "a committed block was not deleted");
            }
        }
        dataset.awaiting_blocks = false;
        dataset.last_action = now();
        self.put_dataset(&account, &dataset).await?;
        self.start_import(account, dataset.id, Content::Bytes(content.into()));
        Ok(())
    }

    /// Fetches (or takes) the content, keeps it as an artifact, validates it and writes the report;
    /// the dataset ends `Succeeded` or `Failed`, never `Running`.
    async fn import(&self, account: &LiveAccount, id: &str, content: Content) -> Result<(), ApiError> {
        let mut working = {
            let _serialized = self.dataset_writes.lock().await;
            let mut dataset = self.dataset(account, id).await?;
            dataset.status = Status::Running;
            dataset.last_action = now();
            self.put_dataset(account, &dataset).await?;
            dataset
        };
        let outcome = self.import_content(account, &mut working, content).await;
        self.finish_import(account, id, working.files, outcome).await
    }

    /// Records an import's outcome on the dataset as it is now (a PATCH during the import is
    /// kept); a dataset deleted meanwhile stays deleted, and the files the import wrote go too.
    async fn finish_import(
        &self,
        account: &LiveAccount,
        id: &str,
        files: Vec<DatasetFile>,
        outcome: Result<Validation, Invalid>,
    ) -> Result<(), ApiError> {
        let _serialized = self.dataset_writes.lock().await;
        let mut dataset = match self.dataset(account, id).await {
            Ok(dataset) => dataset,
            Err(e) if e.status == 404 => {
                for file in &files {
                    if let Err(e) = self.artifacts.delete(account, Area::Artifacts, &file.path).await {
                        tracing::warn!(dataset = id, error = %e, "a file of a dataset deleted during its import was not deleted");
                    }
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        dataset.files = files;
        dataset.last_action = now();
        match outcome {
            Ok(validation) if validation.accepted > 0 => {
                dataset.status = Status::Succeeded;
                dataset.accepted_line_count = Some(validation.accepted);
                dataset.rejected_line_count = Some(validation.rejected);
                dataset.duration = validation.audio_ms.map(iso_duration);
            }
            Ok(validation) => {
                dataset.status = Status::Failed;
                dataset.rejected_line_count = Some(validation.rejected);
                dataset.error = Some((
                    "DataImportFailed".into(),
                    "No line or file of the dataset is valid; see the report.".into(),
                ));
            }
            Err(Invalid(why)) => {
                dataset.status = Status::Failed;
                dataset.error = Some(("DataImportFailed".into(), why));
            }
        }
        self.put_dataset(account, &dataset).await
    }

    async fn import_content(
        &self,
        account: &LiveAccount,
        dataset: &mut Dataset,
        content: Content,
    ) -> Result<Validation, Invalid> {
        let bytes = match content {
            Content::Bytes(bytes) => bytes,
            Content::Url(url) => self.fetch(&url).await?,
            Content::Blocks => return Err(Invalid("The dataset's blocks were not committed.".into())),
        };
        let (file_kind, name) = dataset.kind.content_file();
        let folder = format!("{}Data/{}", dataset.kind.name(), dataset.id);
        let file_id = uuid::Uuid::new_v4().to_string();
        let path = format!("{folder}/{file_id}{}", &name[name.rfind('.').unwrap_or(name.len())..]);
        let stored =
            self.artifacts.put(account, Area::Artifacts, &path, bytes.clone(), "application/octet-stream").await;
        let stored = stored.map_err(|e| Invalid(e.to_api_error().message))?;
        dataset.files.push(DatasetFile {
            id: file_id,
            name: name.into(),
            kind: file_kind.into(),
            path,
            size: stored.size,
            created: now(),
        });
        let validation = validate(dataset.kind, &bytes);
        let report = report(dataset, validation.as_ref());
        let report_id = uuid::Uuid::new_v4().to_string();
        let report_path = format!("{folder}/report.json");
        let report_bytes = Bytes::from(report.to_string());
        if let Ok(stored) =
            self.artifacts.put(account, Area::Artifacts, &report_path, report_bytes, "application/json").await
        {
            dataset.files.push(DatasetFile {
                id: report_id,
                name: "report.json".into(),
                kind: "DatasetReport".into(),
                path: report_path,
                size: stored.size,
                created: now(),
            });
        }
        validation
    }

    /// Fetches a dataset's content from `url` over HTTPS (byos's own CA is trusted).
    async fn fetch(&self, url: &str) -> Result<Bytes, Invalid> {
        crate::fetch::fetch_limited(&self.http, url, MAX_DATASET_BYTES as u64)
            .await
            .map_err(|e| Invalid(format!("The content could not be fetched from contentUrl: {e}.")))
    }

    /// Changes what a dataset says about itself (`displayName`, `description`, `customProperties`).
    pub async fn update_dataset(
        &self,
        account: &LiveAccount,
        id: &str,
        update: &Map<String, Value>,
    ) -> Result<Dataset, ApiError> {
        let _serialized = self.dataset_writes.lock().await;
        let mut dataset = self.dataset(account, id).await?;
        crate::records::apply_description(
            update,
            &mut dataset.display_name,
            &mut dataset.description,
            &mut dataset.custom_properties,
        );
        dataset.last_action = now();
        self.put_dataset(account, &dataset).await?;
        Ok(dataset)
    }

    /// Deletes a dataset and its files (in the customer's storage too); deleting one that does not
    /// exist is no error, as in Azure.
    pub async fn delete_dataset(&self, account: &LiveAccount, id: &str) -> Result<(), ApiError> {
        let _serialized = self.dataset_writes.lock().await;
        let dataset = match self.dataset(account, id).await {
            Ok(dataset) => dataset,
            Err(e) if e.status == 404 => return Ok(()),
            Err(e) => return Err(e),
        };
        let paths = dataset.files.iter().map(|f| &f.path).chain(dataset.blocks.iter().map(|b| &b.path));
        for path in paths {
            match self.artifacts.delete(account, Area::Artifacts, path).await {
                Ok(()) | Err(ArtifactError::NotFound) => {}
                Err(e) => return Err(e.to_speech_error()),
            }
        }
        self.store.commit(Batch::new().delete(DATASETS, key(account, id))).await.map_err(store_failure)
    }

    /// A link to a dataset file: see [`crate::artifacts::ArtifactStore::link`].
    pub async fn dataset_file_link(
        &self,
        account: &LiveAccount,
        file: &DatasetFile,
        validity: std::time::Duration,
    ) -> Result<String, ApiError> {
        self.artifacts.link(account, Area::Artifacts, &file.path, validity).await.map_err(|e| e.to_speech_error())
    }

    /// Adds the deletion of every dataset record of `account_id` to `batch` (its purge; their
    /// files go with the account's artifacts).
    pub(crate) async fn datasets_purge_ops(&self, account_id: &str, mut batch: Batch) -> Result<Batch, ApiError> {
        let prefix = format!("{}/", account_id.to_ascii_lowercase());
        for (key, _) in self.store.scan(DATASETS, &prefix).await.map_err(store_failure)? {
            batch = batch.delete(DATASETS, key);
        }
        Ok(batch)
    }

    /// Fails the datasets a restart interrupted (their import task is gone).
    pub(crate) async fn fail_interrupted_datasets(&self) -> Result<usize, ApiError> {
        let rows = self.store.scan(DATASETS, "").await.map_err(store_failure)?;
        let mut batch = Batch::new();
        let mut failed = 0;
        for (key, bytes) in rows {
            let mut dataset: Dataset = serde_json::from_slice(&bytes).map_err(store_failure)?;
            if matches!(dataset.status, Status::NotStarted | Status::Running) && !dataset.awaiting_blocks {
                dataset.status = Status::Failed;
                dataset.last_action = now();
                dataset.error = Some((
                    "DataImportFailed".into(),
                    "The import was interrupted by a restart of the service; create the dataset again.".into(),
                ));
                batch = batch.put(DATASETS, key, serde_json::to_vec(&dataset).map_err(store_failure)?);
                failed += 1;
            }
        }
        if failed > 0 {
            self.store.commit(batch).await.map_err(store_failure)?;
        }
        Ok(failed)
    }
}

fn report(dataset: &Dataset, validation: Result<&Validation, &Invalid>) -> Value {
    match validation {
        Ok(v) => json!({"kind": dataset.kind.name(), "acceptedLineCount": v.accepted, "rejectedLineCount": v.rejected,
                        "details": v.problems}),
        Err(Invalid(why)) => json!({"kind": dataset.kind.name(), "error": why}),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `PT1H4M12.5S` for a duration in milliseconds (ISO 8601, as the Speech APIs give durations).
pub(crate) fn iso_duration(ms: u64) -> String {
    let (hours, minutes, rest) = (ms / 3_600_000, ms / 60_000 % 60, ms % 60_000);
    let mut out = String::from("PT");
    if hours > 0 {
        out.push_str(&format!("{hours}H"));
    }
    if minutes > 0 {
        out.push_str(&format!("{minutes}M"));
    }
    if rest > 0 || out.len() == 2 {
        out.push_str(&format!("{}S", rest as f64 / 1000.0));
    }
    out
}

/// Validates a dataset's content for its kind.
pub fn validate(kind: DatasetKind, bytes: &[u8]) -> Result<Validation, Invalid> {
    match kind {
        DatasetKind::Language => validate_text(bytes, |_| None),
        DatasetKind::Pronunciation => validate_text(bytes, |line| match line.split_once('\t') {
            None => Some("no tab between the word and its pronunciation".into()),
            Some((word, said)) if word.trim().is_empty() || said.trim().is_empty() => {
                Some("a word or its pronunciation is empty".into())
            }
            Some(_) => None,
        }),
        DatasetKind::Acoustic => validate_audio_zip(bytes, true),
        DatasetKind::AudioFiles => validate_audio_zip(bytes, false),
    }
}

/// UTF-8 text (a BOM allowed), one entry a line; `reject` says why a line is refused.
fn validate_text(bytes: &[u8], reject: impl Fn(&str) -> Option<String>) -> Result<Validation, Invalid> {
    let text = std::str::from_utf8(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes))
        .map_err(|e| Invalid(format!("The dataset is not UTF-8 text (invalid byte at offset {}).", e.valid_up_to())))?;
    let mut validation = Validation { accepted: 0, rejected: 0, audio_ms: None, problems: Vec::new() };
    for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        match reject(line) {
            None => validation.accepted += 1,
            Some(why) => {
                validation.rejected += 1;
                validation.problems.push(format!("line {}: {why}", number + 1));
            }
        }
    }
    Ok(validation)
}

/// A zip of WAV files; with `transcribed`, a `trans.txt` naming each file with its transcript
/// (`name<TAB>text` lines), every named file present and a readable WAV.
fn validate_audio_zip(bytes: &[u8], transcribed: bool) -> Result<Validation, Invalid> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| Invalid(format!("The dataset is not a zip archive: {e}.")))?;
    let mut validation = Validation { accepted: 0, rejected: 0, audio_ms: Some(0), problems: Vec::new() };
    let mut audio_ms = 0;
    let mut wav = |archive: &mut zip::ZipArchive<Cursor<&[u8]>>, name: &str, validation: &mut Validation| match wav_ms(
        archive, name,
    ) {
        Ok(ms) => {
            validation.accepted += 1;
            audio_ms += ms;
        }
        Err(why) => {
            validation.rejected += 1;
            validation.problems.push(format!("{name}: {why}"));
        }
    };
    if transcribed {
        let transcript = read_entry(&mut archive, "trans.txt").map_err(|_| {
            Invalid("An Acoustic dataset needs a trans.txt naming each audio file with its transcript.".into())
        })?;
        let transcript = String::from_utf8(transcript).map_err(|_| Invalid("trans.txt is not UTF-8 text.".into()))?;
        for line in transcript.lines().filter(|l| !l.trim().is_empty()) {
            match line.split_once('\t') {
                Some((name, text)) if !text.trim().is_empty() => wav(&mut archive, name.trim(), &mut validation),
                _ => {
                    validation.rejected += 1;
                    validation.problems.push(format!("trans.txt: '{line}' is not 'file<TAB>transcript'"));
                }
            }
        }
    } else {
        let names: Vec<String> = archive.file_names().filter(|n| !n.ends_with('/')).map(str::to_owned).collect();
        for name in names {
            wav(&mut archive, &name, &mut validation);
        }
    }
    validation.audio_ms = Some(audio_ms);
    Ok(validation)
}

/// The audio files an Acoustic dataset's zip names in its `trans.txt`, each with its transcript and
/// bytes; a file the archive lacks is left out (validation reported it).
pub(crate) fn transcribed_audio(bytes: &[u8]) -> Result<Vec<(String, String, Vec<u8>)>, Invalid> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| Invalid(format!("The dataset is not a zip archive: {e}.")))?;
    let transcript = read_entry(&mut archive, "trans.txt").map_err(|_| {
        Invalid("An Acoustic dataset needs a trans.txt naming each audio file with its transcript.".into())
    })?;
    let transcript = String::from_utf8(transcript).map_err(|_| Invalid("trans.txt is not UTF-8 text.".into()))?;
    let mut out = Vec::new();
    for line in transcript.lines() {
        if let Some((name, text)) = line.split_once('\t')
            && !text.trim().is_empty()
            && let Ok(audio) = read_entry(&mut archive, name.trim())
        {
            out.push((name.trim().to_owned(), text.trim().to_owned(), audio));
        }
    }
    Ok(out)
}

fn read_entry(archive: &mut zip::ZipArchive<Cursor<&[u8]>>, name: &str) -> Result<Vec<u8>, String> {
    let mut entry = archive.by_name(name).map_err(|_| "not in the archive".to_owned())?;
    if entry.size() > MAX_DATASET_BYTES as u64 {
        return Err("too large".into());
    }
    let mut out = Vec::with_capacity(entry.size() as usize);
    entry.read_to_end(&mut out).map_err(|e| format!("unreadable: {e}"))?;
    Ok(out)
}

/// The duration of a WAV file in the archive, in milliseconds.
fn wav_ms(archive: &mut zip::ZipArchive<Cursor<&[u8]>>, name: &str) -> Result<u64, String> {
    let bytes = read_entry(archive, name)?;
    let reader = hound::WavReader::new(Cursor::new(bytes)).map_err(|e| format!("not a WAV file: {e}"))?;
    let spec = reader.spec();
    if spec.sample_rate == 0 {
        return Err("a sample rate of 0".into());
    }
    Ok(u64::from(reader.duration()) * 1000 / u64::from(spec.sample_rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(seconds: u32) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::new(&mut out, spec).unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..16000 * seconds {
            writer.write_sample(0i16).unwrap_or_else(|e| panic!("{e}"));
        }
        writer.finalize().unwrap_or_else(|e| panic!("{e}"));
        out.into_inner()
    }

    fn zip_of(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut out);
        for (name, data) in entries {
            zip.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap_or_else(|e| panic!("{e}"));
            std::io::Write::write_all(&mut zip, data).unwrap_or_else(|e| panic!("{e}"));
        }
        zip.finish().unwrap_or_else(|e| panic!("{e}"));
        out.into_inner()
    }

    #[test]
    fn text_datasets_count_lines_and_refuse_what_is_not_text() {
        let v = validate(DatasetKind::Language, b"\xEF\xBB\xBFhello world\n\nsecond line\n")
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((v.accepted, v.rejected), (2, 0));
        assert!(validate(DatasetKind::Language, b"\xff\xfe").is_err());
        let v =
            validate(DatasetKind::Pronunciation, b"byos\tb i o s\nbroken line\n").unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((v.accepted, v.rejected), (1, 1));
    }

    #[test]
    fn acoustic_datasets_need_a_transcript_naming_real_wav_files() {
        let good = zip_of(&[
            ("a.wav", wav(2)),
            ("b.wav", wav(1)),
            ("trans.txt", b"a.wav\thello\nb.wav\tworld\nmissing.wav\tgone\n".to_vec()),
        ]);
        let v = validate(DatasetKind::Acoustic, &good).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((v.accepted, v.rejected, v.audio_ms), (2, 1, Some(3000)));
        assert!(v.problems.iter().any(|p| p.starts_with("missing.wav")), "{:?}", v.problems);
        let no_transcript = zip_of(&[("a.wav", wav(1))]);
        assert!(validate(DatasetKind::Acoustic, &no_transcript).is_err());
        assert!(validate(DatasetKind::Acoustic, b"not a zip").is_err());
        let not_wav = zip_of(&[("a.wav", b"RIFF-but-not".to_vec()), ("trans.txt", b"a.wav\thi\n".to_vec())]);
        assert_eq!(validate(DatasetKind::Acoustic, &not_wav).map(|v| (v.accepted, v.rejected)), Ok((0, 1)));
        let audio =
            validate(DatasetKind::AudioFiles, &zip_of(&[("x.wav", wav(1))])).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((audio.accepted, audio.audio_ms), (1, Some(1000)));
        assert_eq!(iso_duration(252_000), "PT4M12S");
        assert_eq!(
            (iso_duration(3_723_500), iso_duration(0), iso_duration(60_000)),
            ("PT1H2M3.5S".into(), "PT0S".into(), "PT1M".into())
        );
    }
}
