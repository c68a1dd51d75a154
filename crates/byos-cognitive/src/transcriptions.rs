//! Batch transcription (speech to text v3.2 and 2024-11-15): jobs that read audio by URL, transcribe
//! every file on the engine workers and keep one result file per source plus a report.
//!
//! A job's record (`cs_transcriptions`) holds what the API returns; the URLs it reads from and
//! writes to (SAS URLs are credentials) are sealed in it under the root key. Results are artifacts
//! of the account (`customspeech-artifacts/TranscriptionData/...`: the customer's storage for a
//! BYOS account, else service storage under the account's KEK), or blobs of the client's
//! `destinationContainerUrl`. A source in the account's own BYOS storage given without a SAS is
//! read as the account's identity. A file that cannot be read or decoded is a failure in the
//! report, not a failed job; a job that cannot write its results fails. A job interrupted by a
//! restart starts over at the next start; a finished job with a `timeToLive` is deleted with its
//! result files once that has passed since it finished.

use std::sync::Arc;

use base64::Engine as _;
use byos_core::ApiError;
use byos_crypto::SealPurpose;
use byos_store::{Batch, Table};
use bytes::Bytes;
use futures_util::{StreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::artifacts::{Area, ArtifactError};
use crate::datasets::{Status, iso_duration, speech_error};
use crate::records::{Entity, Records};
use crate::transcribe::{Channels, Transcript, transcribe};
use crate::{CognitiveService, LiveAccount};

pub(crate) const TRANSCRIPTIONS: Records = Records::new(Table("cs_transcriptions"), "transcription");
/// At most this many `contentUrls` (Azure: 1000).
pub const MAX_CONTENT_URLS: usize = 1000;
/// A container source holds at most this many blobs (Azure: 10,000).
const MAX_CONTAINER_BLOBS: usize = 10_000;
/// The largest page of a container listing read (5,000 names of at most 1,024 bytes, with room for their XML).
const MAX_LISTING_BYTES: u64 = 16 << 20;
/// The largest audio file byos reads (held in memory while it is decoded).
pub(crate) const MAX_AUDIO_BYTES: u64 = 256 << 20;
/// Azure's bounds for `timeToLive`: 6 hours to 31 days.
pub const TTL_SECS: std::ops::RangeInclusive<u64> = 6 * 3600..=31 * 24 * 3600;
/// The channels transcribed when the request names none (Azure: 0 and 1).
pub const DEFAULT_CHANNELS: [u32; 2] = [0, 1];
const TICKS_PER_MS: u64 = 10_000;
/// What the expiry watch asks the door for, per transcription.
const EXPIRE: byos_authz::Action =
    byos_authz::Action::data("Microsoft.CognitiveServices/accounts/SpeechServices/speechrest/transcriptions/delete");

/// What a job does besides transcribing (the request's `properties`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Options {
    pub word_level_timestamps: bool,
    pub display_form_word_level_timestamps: bool,
    pub channels: Vec<u32>,
    #[serde(default)]
    pub punctuation_mode: Option<String>,
    #[serde(default)]
    pub profanity_filter_mode: Option<String>,
    pub diarization_enabled: bool,
    /// Kept this long after it finished, then deleted with its results (none: until deleted).
    #[serde(default)]
    pub time_to_live_secs: Option<u64>,
    /// Results go to the client's container (its URL is sealed with the sources).
    pub to_destination: bool,
}

/// What a job reads and where it writes: credentials, sealed in the record.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sources {
    pub content_urls: Vec<String>,
    pub content_container_url: Option<String>,
    pub destination_container_url: Option<String>,
}

/// What a client asks for when it creates a transcription.
pub struct NewTranscription {
    /// The custom model to transcribe with (none: the base model).
    pub model: Option<String>,
    pub display_name: String,
    pub description: Option<String>,
    pub custom_properties: Map<String, Value>,
    pub locale: String,
    pub options: Options,
    pub sources: Sources,
}

/// Where a result file is.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Location {
    /// An artifact of the account (`customspeech-artifacts`).
    Artifact(String),
    /// A blob of the destination container.
    Destination(String),
}

/// A result file (a transcription or the report).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultFile {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub location: Location,
    pub size: u64,
    pub created: String,
}

/// A transcription as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transcription {
    pub v: u32,
    pub id: String,
    pub display_name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub custom_properties: Map<String, Value>,
    pub locale: String,
    /// The custom model it transcribes with (none: the base model).
    #[serde(default)]
    pub model: Option<String>,
    pub options: Options,
    pub status: Status,
    pub created: String,
    pub last_action: String,
    /// When it ended (what `timeToLive` counts from), Unix seconds.
    #[serde(default)]
    pub finished_at: Option<i64>,
    #[serde(default)]
    pub error: Option<(String, String)>,
    #[serde(default)]
    pub files: Vec<ResultFile>,
    /// Total audio transcribed.
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// [`Sources`], sealed under the root key (base64).
    sealed_sources: String,
}

impl Entity for Transcription {
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> &str {
        &self.created
    }
}

fn now() -> String {
    byos_core::time::rfc3339_now()
}

fn store_failure(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "transcriptions: metadata store failure");
    ApiError::internal().with_format(byos_core::ErrorFormat::Speech)
}

/// A source as reports and results name it: its URL without the query (which may hold a SAS).
fn shown(url: &str) -> &str {
    url.split_once('?').map_or(url, |(path, _)| path)
}

/// The extension of a URL's last path segment (the decoder's hint).
fn extension(url: &str) -> &str {
    let last = shown(url).rsplit('/').next().unwrap_or_default();
    last.rsplit_once('.').map_or("", |(_, ext)| ext)
}

/// One audio file of a job and how it is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Input {
    /// By HTTPS (a SAS URL, or any URL byos's CA vouches for).
    Url(String),
    /// In the account's bound storage, read as its identity.
    Bound { url: String, container: String, blob: String },
}

impl Input {
    fn url(&self) -> &str {
        match self {
            Input::Url(url) | Input::Bound { url, .. } => url,
        }
    }
}

/// Why a file of a job was not transcribed (its report entry).
struct FileFailure {
    kind: &'static str,
    message: String,
}

/// What stops a job: its results cannot be written (or the job was deleted meanwhile).
enum Stop {
    /// With the error's code and message (the job's `properties.error`).
    Failed(String, String),
    Deleted,
}

impl Stop {
    fn failed(e: ApiError) -> Stop {
        Stop::Failed(e.code, e.message)
    }
}

impl CognitiveService {
    async fn put_transcription(&self, account: &LiveAccount, t: &Transcription) -> Result<(), ApiError> {
        TRANSCRIPTIONS.put(&self.store, account, t).await
    }

    /// The transcription `id` of the account.
    pub async fn transcription(&self, account: &LiveAccount, id: &str) -> Result<Transcription, ApiError> {
        TRANSCRIPTIONS.get(&self.store, account, id).await
    }

    /// Every transcription of the account, oldest first.
    pub async fn transcriptions(&self, account: &LiveAccount) -> Result<Vec<Transcription>, ApiError> {
        TRANSCRIPTIONS.list(&self.store, account).await
    }

    /// What a background job must keep out of its record in plaintext (the URLs it reads and
    /// writes, which may carry SAS; a batch synthesis's texts), sealed under the root key (base64).
    pub(crate) fn seal_job_secrets(&self, secrets: &impl Serialize) -> Result<String, ApiError> {
        let plain = zeroize::Zeroizing::new(serde_json::to_vec(secrets).map_err(store_failure)?);
        let sealed = self.root.seal(SealPurpose::JobCredentials, &plain).map_err(store_failure)?;
        Ok(base64::engine::general_purpose::STANDARD.encode(sealed))
    }

    /// What [`Self::seal_job_secrets`] sealed.
    pub(crate) fn open_job_secrets<T: serde::de::DeserializeOwned>(&self, sealed: &str) -> Result<T, ApiError> {
        let sealed = base64::engine::general_purpose::STANDARD.decode(sealed).map_err(store_failure)?;
        let plain = self.root.open(SealPurpose::JobCredentials, &sealed).map_err(store_failure)?;
        serde_json::from_slice(&plain).map_err(store_failure)
    }

    fn open_sources(&self, t: &Transcription) -> Result<Sources, ApiError> {
        self.open_job_secrets(&t.sealed_sources)
    }

    /// Records a new transcription (`NotStarted`) and starts it in the background.
    pub async fn create_transcription(
        self: &Arc<Self>,
        account: Arc<LiveAccount>,
        new: NewTranscription,
    ) -> Result<Transcription, ApiError> {
        let created = now();
        let transcription = Transcription {
            v: 1,
            id: uuid::Uuid::new_v4().to_string(),
            display_name: new.display_name,
            description: new.description,
            custom_properties: new.custom_properties,
            locale: new.locale,
            model: new.model,
            options: new.options,
            status: Status::NotStarted,
            created: created.clone(),
            last_action: created,
            finished_at: None,
            error: None,
            files: Vec::new(),
            duration_ms: None,
            sealed_sources: self.seal_job_secrets(&new.sources)?,
        };
        self.put_transcription(&account, &transcription).await?;
        self.start_transcription(account, transcription.id.clone());
        Ok(transcription)
    }

    fn start_transcription(self: &Arc<Self>, account: Arc<LiveAccount>, id: String) {
        let service = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = service.run_transcription(&account, &id).await {
                tracing::warn!(account = %account.id, transcription = %id, error = %e.message, "transcription failed");
            }
        });
    }

    /// Runs a job to its end: `Succeeded` (with its report) or `Failed`, never left `Running`.
    async fn run_transcription(&self, account: &LiveAccount, id: &str) -> Result<(), ApiError> {
        let (job, sources) = {
            let _serialized = self.transcription_writes.lock().await;
            let mut job = self.transcription(account, id).await?;
            job.status = Status::Running;
            job.last_action = now();
            self.put_transcription(account, &job).await?;
            let sources = self.open_sources(&job)?;
            (job, sources)
        };
        tracing::info!(account = %account.id, transcription = id, "transcription started");
        let mut files = Vec::new();
        let outcome = self.transcribe_sources(account, &job, &sources, &mut files).await;
        self.finish_transcription(account, id, files, outcome).await
    }

    /// The job's audio files: its `contentUrls`, or the blobs of its `contentContainerUrl`.
    async fn inputs(&self, account: &LiveAccount, sources: &Sources) -> Result<Vec<Input>, ApiError> {
        let input = |url: &str| match self.artifacts.bound_location(account, url) {
            Some((container, blob)) => Input::Bound { url: url.to_owned(), container, blob },
            None => Input::Url(url.to_owned()),
        };
        let Some(container_url) = &sources.content_container_url else {
            return Ok(sources.content_urls.iter().map(|u| input(u)).collect());
        };
        let names = match self.artifacts.bound_location(account, container_url) {
            Some((container, prefix)) => self
                .artifacts
                .list_bound(account, &container, &prefix)
                .await
                .map_err(|e| e.to_speech_error())?
                .into_iter()
                .map(|b| b.name)
                .collect(),
            None => self.list_container(container_url).await?,
        };
        if names.len() > MAX_CONTAINER_BLOBS {
            return Err(invalid_data(format!(
                "The container holds {} blobs; a transcription reads at most {MAX_CONTAINER_BLOBS}.",
                names.len()
            )));
        }
        Ok(names.iter().map(|name| input(&blob_url(container_url, name))).collect())
    }

    /// The blob names of a container, listed through its SAS URL (every page).
    pub(crate) async fn list_container(&self, container_url: &str) -> Result<Vec<String>, ApiError> {
        let (base, sas) = container_url.split_once('?').unwrap_or((container_url, ""));
        let mut names = Vec::new();
        let mut marker = String::new();
        loop {
            let mut url = format!("{base}?restype=container&comp=list&{sas}");
            if !marker.is_empty() {
                url.push_str(&format!("&marker={}", percent_encoding::utf8_percent_encode(&marker, QUERY)));
            }
            let fail = |why: String| invalid_data(format!("The contentContainerUrl could not be listed: {why}."));
            let body = crate::fetch::fetch_limited(&self.http, &url, MAX_LISTING_BYTES)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let body = String::from_utf8(body.into()).map_err(|_| fail("the listing is not UTF-8".into()))?;
            let (page, next) = parse_blob_list(&body).map_err(fail)?;
            names.extend(page);
            if next.is_empty() || names.len() > MAX_CONTAINER_BLOBS {
                return Ok(names);
            }
            marker = next;
        }
    }

    /// Transcribes every input, at most the engine pool's size of files at once, keeping each
    /// result (or failure) as it comes and the report at the end.
    async fn transcribe_sources(
        &self,
        account: &LiveAccount,
        job: &Transcription,
        sources: &Sources,
        files: &mut Vec<ResultFile>,
    ) -> Result<Report, Stop> {
        let inputs = self.inputs(account, sources).await.map_err(Stop::failed)?;
        let model = match &job.model {
            Some(id) => Some(self.adapted_model(account, id).await.map_err(Stop::failed)?),
            None => None,
        };
        let model = model.as_ref();
        let total = inputs.len();
        let mut outcomes = stream::iter(inputs.into_iter().enumerate())
            .map(|(index, input)| async move {
                let outcome = self.transcribe_input(account, job, &input, model).await;
                (index, input, outcome)
            })
            // One file more per worker than the pool runs: while a file is fetched, decoded or its result
            // written, the next one's utterances keep the workers busy (the pool's queue bounds the rest).
            .buffer_unordered(self.speech.workers() * 2);
        let mut report = Report::default();
        while let Some((index, input, outcome)) = outcomes.next().await {
            match outcome {
                Ok((result, duration_ms)) => {
                    let name = format!("contenturl_{index}.json");
                    let path = format!("TranscriptionData/{}_{index}_0.json", job.id);
                    let file = self.keep(account, job, sources, &name, "Transcription", &path, result).await?;
                    files.push(file);
                    report.succeeded(input.url(), duration_ms);
                }
                Err(failure) => report.failed(input.url(), failure),
            }
            let done = report.details.len();
            tracing::info!(transcription = %job.id, done, total, "transcription progress");
            if self.transcription(account, &job.id).await.is_err_and(|e| e.status == 404) {
                return Err(Stop::Deleted);
            }
        }
        let path = format!("TranscriptionData/{}_report.json", job.id);
        let body = Bytes::from(report.to_json().to_string());
        files.push(self.keep(account, job, sources, "report.json", "TranscriptionReport", &path, body).await?);
        Ok(report)
    }

    /// One file: read, transcribed, its result JSON (and the audio's length).
    async fn transcribe_input(
        &self,
        account: &LiveAccount,
        job: &Transcription,
        input: &Input,
        model: Option<&byos_speech::adapt::AdaptedModel>,
    ) -> Result<(Bytes, u64), FileFailure> {
        let audio = match input {
            Input::Url(url) => self.fetch_audio(url).await?,
            Input::Bound { container, blob, .. } => {
                self.artifacts.read_bound(account, container, blob).await.map_err(|e| FileFailure {
                    kind: "InaccessibleCustomerStorage",
                    message: e.to_speech_error().message,
                })?
            }
        };
        let channels =
            if job.options.channels.is_empty() { DEFAULT_CHANNELS.to_vec() } else { job.options.channels.clone() };
        let transcript = transcribe(&self.speech, audio, extension(input.url()), &Channels::Separate(channels), model)
            .await
            .map_err(|e| FileFailure { kind: e.kind(), message: e.to_string() })?;
        let result = result_json(shown(input.url()), &transcript, &job.options);
        Ok((Bytes::from(result.to_string()), transcript.duration_ms))
    }

    /// Fetches an audio file by URL (HTTPS, byos's CA trusted), at most [`MAX_AUDIO_BYTES`].
    async fn fetch_audio(&self, url: &str) -> Result<Bytes, FileFailure> {
        crate::fetch::fetch_limited(&self.http, url, MAX_AUDIO_BYTES).await.map_err(|e| FileFailure {
            kind: "InvalidData",
            message: format!("The audio could not be read from its URL: {e}."),
        })
    }

    /// Writes a result file where the job's results go.
    #[allow(clippy::too_many_arguments)]
    async fn keep(
        &self,
        account: &LiveAccount,
        job: &Transcription,
        sources: &Sources,
        name: &str,
        kind: &str,
        path: &str,
        content: Bytes,
    ) -> Result<ResultFile, Stop> {
        let size = content.len() as u64;
        let location = match (&sources.destination_container_url, job.options.to_destination) {
            (Some(container), true) => {
                self.put_destination(container, path, content, "application/json").await.map_err(Stop::failed)?;
                Location::Destination(path.to_owned())
            }
            _ => {
                self.artifacts
                    .put(account, Area::Artifacts, path, content, "application/json")
                    .await
                    .map_err(|e| Stop::failed(e.to_speech_error()))?;
                Location::Artifact(path.to_owned())
            }
        };
        Ok(ResultFile {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.to_owned(),
            kind: kind.to_owned(),
            location,
            size,
            created: now(),
        })
    }

    /// Puts a block blob into the destination container through its SAS URL.
    pub(crate) async fn put_destination(
        &self,
        container_url: &str,
        path: &str,
        content: Bytes,
        content_type: &str,
    ) -> Result<(), ApiError> {
        let url = blob_url(container_url, path);
        let fail = |why: String| {
            speech_error(
                400,
                "InvalidDestinationContainer",
                format!("The results could not be written to the destinationContainerUrl: {why}."),
            )
        };
        let response = self
            .http
            .put(&url)
            .header("x-ms-blob-type", "BlockBlob")
            .header("x-ms-version", "2021-12-02")
            .header("content-type", content_type)
            .body(content)
            .send()
            .await
            .map_err(|e| fail(crate::fetch::fetch_error(e)))?;
        if !response.status().is_success() {
            return Err(fail(format!("the storage answered {}", response.status())));
        }
        Ok(())
    }

    /// Records a job's end on the transcription as it is now (a PATCH meanwhile is kept); a
    /// transcription deleted meanwhile stays deleted, and the files the job wrote go too.
    async fn finish_transcription(
        &self,
        account: &LiveAccount,
        id: &str,
        files: Vec<ResultFile>,
        outcome: Result<Report, Stop>,
    ) -> Result<(), ApiError> {
        let _serialized = self.transcription_writes.lock().await;
        let mut job = match (self.transcription(account, id).await, &outcome) {
            (Ok(job), Ok(_) | Err(Stop::Failed(..))) => job,
            (Err(e), _) if e.status != 404 => return Err(e),
            _ => {
                self.delete_result_files(account, &files).await;
                tracing::info!(transcription = id, "a transcription deleted while it ran: its results are gone too");
                return Ok(());
            }
        };
        job.files = files;
        job.last_action = now();
        job.finished_at = Some(byos_core::time::unix_now());
        match outcome {
            Ok(report) if report.successful > 0 || report.details.is_empty() => {
                job.status = Status::Succeeded;
                job.duration_ms = Some(report.audio_ms);
            }
            Ok(report) => {
                job.status = Status::Failed;
                job.error = Some((
                    "InvalidData".into(),
                    format!("None of the {} files could be transcribed; see the report.", report.details.len()),
                ));
            }
            Err(Stop::Failed(code, message)) => {
                job.status = Status::Failed;
                job.error = Some((code, message));
            }
            Err(Stop::Deleted) => return Ok(()),
        }
        tracing::info!(account = %account.id, transcription = id, status = ?job.status, "transcription finished");
        self.put_transcription(account, &job).await
    }

    async fn delete_result_files(&self, account: &LiveAccount, files: &[ResultFile]) {
        for file in files {
            if let Location::Artifact(path) = &file.location
                && let Err(e) = self.artifacts.delete(account, Area::Artifacts, path).await
                && !matches!(e, ArtifactError::NotFound)
            {
                tracing::warn!(account = %account.id, path, error = %e, "a transcription result was not deleted");
            }
        }
    }

    /// Changes what a transcription says about itself (`displayName`, `description`, `customProperties`).
    pub async fn update_transcription(
        &self,
        account: &LiveAccount,
        id: &str,
        update: &Map<String, Value>,
    ) -> Result<Transcription, ApiError> {
        let _serialized = self.transcription_writes.lock().await;
        let mut job = self.transcription(account, id).await?;
        crate::records::apply_description(
            update,
            &mut job.display_name,
            &mut job.description,
            &mut job.custom_properties,
        );
        job.last_action = now();
        self.put_transcription(account, &job).await?;
        Ok(job)
    }

    /// Deletes a transcription and its result files kept as artifacts (in the customer's storage
    /// too; a destination container is the client's and is left alone, as in Azure). A running
    /// job notices and removes what it wrote. Deleting one that does not exist is no error.
    pub async fn delete_transcription(&self, account: &LiveAccount, id: &str) -> Result<(), ApiError> {
        let _serialized = self.transcription_writes.lock().await;
        let job = match self.transcription(account, id).await {
            Ok(job) => job,
            Err(e) if e.status == 404 => return Ok(()),
            Err(e) => return Err(e),
        };
        for file in &job.files {
            if let Location::Artifact(path) = &file.location {
                match self.artifacts.delete(account, Area::Artifacts, path).await {
                    Ok(()) | Err(ArtifactError::NotFound) => {}
                    Err(e) => return Err(e.to_speech_error()),
                }
            }
        }
        TRANSCRIPTIONS.delete(&self.store, account, id).await
    }

    /// A link to a result file: an artifact's (see [`crate::artifacts::ArtifactStore::link`]) or
    /// the destination blob's URL with the SAS the client gave.
    pub async fn transcription_file_link(
        &self,
        account: &LiveAccount,
        job: &Transcription,
        file: &ResultFile,
        validity: std::time::Duration,
    ) -> Result<String, ApiError> {
        match &file.location {
            Location::Artifact(path) => {
                self.artifacts.link(account, Area::Artifacts, path, validity).await.map_err(|e| e.to_speech_error())
            }
            Location::Destination(path) => {
                let container = self.open_sources(job)?.destination_container_url.unwrap_or_default();
                Ok(blob_url(&container, path))
            }
        }
    }

    /// Adds the deletion of every transcription record of `account_id` to `batch` (its purge;
    /// their files go with the account's artifacts).
    pub(crate) async fn transcriptions_purge_ops(&self, account_id: &str, batch: Batch) -> Result<Batch, ApiError> {
        TRANSCRIPTIONS.purge_ops(&self.store, account_id, batch).await
    }

    /// Starts over the jobs a restart interrupted (at start, once the accounts are live); a job
    /// whose account is gone fails.
    pub(crate) async fn resume_transcriptions(self: &Arc<Self>) -> Result<usize, ApiError> {
        let mut resumed = 0;
        for (account_key, mut job) in TRANSCRIPTIONS.all::<Transcription>(&self.store).await? {
            if !matches!(job.status, Status::NotStarted | Status::Running) {
                continue;
            }
            let Some(account) = self.account(&account_key) else {
                // Its account is soft-deleted: restored, the job starts over then; purged, it goes with it.
                continue;
            };
            job.status = Status::NotStarted;
            job.files.clear();
            self.put_transcription(&account, &job).await?;
            self.start_transcription(account, job.id);
            resumed += 1;
        }
        Ok(resumed)
    }

    /// Deletes the finished transcriptions whose `timeToLive` has passed at `now` (Unix seconds),
    /// with their result files, as `watch` (the expiry watch), which the door must admit for each;
    /// returns how many went.
    pub async fn expire_transcriptions(&self, watch: &byos_core::Caller, now: i64) -> Result<usize, ApiError> {
        let mut expired = 0;
        for (account_key, job) in TRANSCRIPTIONS.all::<Transcription>(&self.store).await? {
            let (Some(finished), Some(ttl)) = (job.finished_at, job.options.time_to_live_secs) else { continue };
            if finished.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)) > now {
                continue;
            }
            // A soft-deleted account's jobs wait: restored, it has them back; purged, they go with it.
            let Some(account) = self.account(&account_key) else { continue };
            let scope = byos_core::Scope::parse(&account.id).map_err(store_failure)?;
            self.door.authorize(watch, &EXPIRE, &scope).map_err(|denial| denial.to_api_error())?;
            self.delete_transcription(&account, &job.id).await?;
            tracing::info!(account = %account.id, transcription = %job.id, "transcription expired (timeToLive)");
            expired += 1;
        }
        Ok(expired)
    }
}

/// Deletes expired transcriptions, batch syntheses and endpoint logs every `interval`, until the
/// service is dropped.
pub fn spawn_retention_watch(
    service: Arc<CognitiveService>,
    interval: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    let weak = Arc::downgrade(&service);
    drop(service);
    let watch = byos_core::Caller::actor(byos_core::Actor::SpeechRetention);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Some(service) = weak.upgrade() else { return };
            if let Err(e) = service.expire_transcriptions(&watch, byos_core::time::unix_now()).await {
                tracing::warn!(error = %e, "deleting expired transcriptions failed");
            }
            if let Err(e) = service.expire_batch_syntheses(&watch, byos_core::time::unix_now()).await {
                tracing::warn!(error = %e, "deleting expired batch syntheses failed");
            }
            match service.expire_logs(&watch, time::OffsetDateTime::now_utc().date()).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "endpoint logs past their retention deleted"),
                Err(e) => tracing::warn!(error = %e, "deleting expired endpoint logs failed"),
            }
        }
    })
}

fn invalid_data(message: String) -> ApiError {
    speech_error(400, "InvalidData", message)
}

const QUERY: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// The URL of blob `name` in the container at `container_url` (its SAS kept).
pub(crate) fn blob_url(container_url: &str, name: &str) -> String {
    let (base, sas) = container_url.split_once('?').unwrap_or((container_url, ""));
    let container = base.trim_end_matches('/');
    let path = byos_storage::blob::api::blob_path("", name);
    let url = format!("{container}{path}");
    if sas.is_empty() { url } else { format!("{url}?{sas}") }
}

/// The blob names and the next marker of a List Blobs page.
fn parse_blob_list(xml: &str) -> Result<(Vec<String>, String), String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let (mut names, mut next) = (Vec::new(), String::new());
    let mut path: Vec<Vec<u8>> = Vec::new();
    loop {
        match reader.read_event().map_err(|e| format!("the listing is not XML: {e}"))? {
            Event::Start(e) => path.push(e.name().as_ref().to_vec()),
            Event::End(_) => {
                path.pop();
            }
            Event::Text(text) => {
                let text = text.decode().map_err(|e| format!("the listing is unreadable: {e}"))?;
                let at: Vec<&[u8]> = path.iter().map(Vec::as_slice).collect();
                match at.as_slice() {
                    [.., b"Blob", b"Name"] => names.push(text.into_owned()),
                    [b"EnumerationResults", b"NextMarker"] => next = text.into_owned(),
                    _ => {}
                }
            }
            Event::Eof => return Ok((names, next)),
            _ => {}
        }
    }
}

/// The report of a job (`report.json`).
#[derive(Default)]
struct Report {
    successful: usize,
    audio_ms: u64,
    details: Vec<Value>,
}

impl Report {
    fn succeeded(&mut self, url: &str, duration_ms: u64) {
        self.successful += 1;
        self.audio_ms += duration_ms;
        self.details.push(json!({"source": shown(url), "status": "Succeeded"}));
    }

    fn failed(&mut self, url: &str, failure: FileFailure) {
        self.details.push(json!({"source": shown(url), "status": "Failed", "errorKind": failure.kind,
                                 "errorMessage": failure.message}));
    }

    fn to_json(&self) -> Value {
        json!({"successfulTranscriptionsCount": self.successful,
               "failedTranscriptionsCount": self.details.len() - self.successful,
               "details": self.details})
    }
}

/// A time as the result files give it: ISO 8601, ticks and milliseconds.
fn times(prefix: &str, ms: u64, out: &mut Map<String, Value>) {
    out.insert(prefix.to_owned(), json!(iso_duration(ms)));
    out.insert(format!("{prefix}InTicks"), json!((ms * TICKS_PER_MS) as f64));
    out.insert(format!("{prefix}Milliseconds"), json!(ms));
}

/// A file's result in Azure's shape (`source`, `timestamp`, `duration*`, `combinedRecognizedPhrases`,
/// `recognizedPhrases` with `nBest`, words when asked for).
pub fn result_json(source: &str, transcript: &Transcript, options: &Options) -> Value {
    let mut out = Map::new();
    out.insert("source".into(), json!(source));
    out.insert("timestamp".into(), json!(now()));
    times("duration", transcript.duration_ms, &mut out);
    let combined: Vec<Value> = transcript
        .channels
        .iter()
        .map(|&channel| {
            let lexical = transcript.combined(channel);
            let display = crate::recognition::display(&lexical);
            json!({"channel": channel, "lexical": lexical, "itn": lexical, "maskedITN": lexical, "display": display})
        })
        .collect();
    out.insert("combinedRecognizedPhrases".into(), json!(combined));
    let phrases: Vec<Value> = transcript
        .phrases
        .iter()
        .map(|phrase| {
            let mut p = Map::new();
            p.insert("recognitionStatus".into(), json!("Success"));
            p.insert("channel".into(), json!(phrase.channel));
            times("offset", phrase.offset_ms, &mut p);
            times("duration", phrase.duration_ms, &mut p);
            let text = &phrase.heard.text;
            let mut best = json!({"confidence": phrase.heard.confidence, "lexical": text, "itn": text,
                                  "maskedITN": text, "display": crate::recognition::display(text)});
            if options.word_level_timestamps {
                best["words"] = json!(words(phrase, "word"));
            }
            if options.display_form_word_level_timestamps {
                best["displayWords"] = json!(words(phrase, "displayText"));
            }
            let mut n_best = vec![best];
            n_best.extend(alternatives(&phrase.heard).map(|(confidence, text)| {
                json!({"confidence": confidence, "lexical": text, "itn": text, "maskedITN": text,
                       "display": crate::recognition::display(text)})
            }));
            p.insert("nBest".into(), json!(n_best));
            Value::Object(p)
        })
        .collect();
    out.insert("recognizedPhrases".into(), json!(phrases));
    Value::Object(out)
}

/// The engine's other hypotheses after its best, each with a confidence no higher than the best's
/// (the n-best list's own shares of the likelihood).
pub(crate) fn alternatives(heard: &byos_speech::pocketsphinx::Recognition) -> impl Iterator<Item = (f64, &str)> {
    heard.alternatives.iter().skip(1).map(|a| (f64::from(a.confidence).min(heard.confidence), a.text.as_str()))
}

fn words(phrase: &crate::transcribe::Phrase, field: &str) -> Vec<Value> {
    phrase
        .heard
        .words
        .iter()
        .map(|w| {
            let mut word = Map::new();
            word.insert(field.to_owned(), json!(w.text));
            times("offset", w.offset_ms, &mut word);
            times("duration", w.duration_ms, &mut word);
            word.insert("confidence".into(), json!(phrase.heard.confidence));
            Value::Object(word)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcribe::Phrase;
    use byos_speech::pocketsphinx::{Recognition, Word};

    #[test]
    fn container_listings_give_names_and_the_next_marker() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?><EnumerationResults ContainerName="c"><Blobs>
            <Blob><Name>a.wav</Name><Properties><Content-Length>4</Content-Length></Properties></Blob>
            <Blob><Name>dir/b c.wav</Name></Blob></Blobs><NextMarker>m2</NextMarker></EnumerationResults>"#;
        assert_eq!(parse_blob_list(xml), Ok((vec!["a.wav".into(), "dir/b c.wav".into()], "m2".into())));
        assert!(parse_blob_list("<a><b></a>").is_err());
        assert_eq!(blob_url("https://h/acct/c?sv=1&sig=x", "dir/b c.wav"), "https://h/acct/c/dir/b%20c.wav?sv=1&sig=x");
        assert_eq!((shown("https://h/a.wav?sig=s"), extension("https://h/x/a.MP3?sig=s")), ("https://h/a.wav", "MP3"));
    }

    #[test]
    fn results_follow_azures_shape() {
        let heard = Recognition {
            text: "hello world".into(),
            words: vec![
                Word { text: "hello".into(), offset_ms: 1200, duration_ms: 300 },
                Word { text: "world".into(), offset_ms: 1500, duration_ms: 400 },
            ],
            confidence: 0.75,
            alternatives: vec![
                byos_speech::recognizer::Alternative { text: "hello world".into(), confidence: 0.9 },
                byos_speech::recognizer::Alternative { text: "hello word".into(), confidence: 0.1 },
            ],
        };
        let transcript = Transcript {
            duration_ms: 2580,
            channels: vec![0],
            phrases: vec![Phrase { channel: 0, offset_ms: 1200, duration_ms: 700, heard }],
        };
        let options = Options { word_level_timestamps: true, ..Options::default() };
        let result = result_json("https://h/a.wav", &transcript, &options);
        assert_eq!(
            (result["duration"].as_str(), result["durationInTicks"].as_f64()),
            (Some("PT2.58S"), Some(25_800_000.0))
        );
        assert_eq!(result["combinedRecognizedPhrases"][0]["display"], "Hello world.");
        let phrase = &result["recognizedPhrases"][0];
        assert_eq!((phrase["offset"].as_str(), phrase["offsetInTicks"].as_f64()), (Some("PT1.2S"), Some(12_000_000.0)));
        assert_eq!(phrase["nBest"][0]["words"][1]["word"], "world");
        assert_eq!(phrase["nBest"][0]["words"][1]["durationMilliseconds"], 400);
        assert_eq!(
            (phrase["nBest"][1]["lexical"].as_str(), phrase["nBest"].as_array().map(Vec::len)),
            (Some("hello word"), Some(2))
        );
        assert!(phrase["nBest"][1]["confidence"].as_f64() <= phrase["nBest"][0]["confidence"].as_f64());
        let plain = result_json("s", &transcript, &Options::default());
        assert!(plain["recognizedPhrases"][0]["nBest"][0].get("words").is_none());
    }

    #[test]
    fn reports_count_successes_and_failures() {
        let mut report = Report::default();
        report.succeeded("https://h/a.wav?sig=secret", 1000);
        report.failed("https://h/b.wav", FileFailure { kind: "InvalidAudioFormat", message: "not audio".into() });
        let json = report.to_json();
        assert_eq!(
            (json["successfulTranscriptionsCount"].as_u64(), json["failedTranscriptionsCount"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(json["details"][0]["source"], "https://h/a.wav");
        assert_eq!(json["details"][1]["errorKind"], "InvalidAudioFormat");
    }
}
