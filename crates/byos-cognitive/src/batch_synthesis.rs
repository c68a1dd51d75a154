//! Batch synthesis (text to speech 2024-04-01, `/texttospeech/batchsyntheses`): jobs that speak
//! up to [`MAX_INPUTS`] plain texts or SSML documents on the TTS workers and keep the audio, with
//! a `summary.json` and word and sentence boundaries when asked for, in one `results.zip`.
//!
//! A job's record (`cs_batch_syntheses`) holds what the API returns; the customer's texts and the
//! `destinationContainerUrl` (a SAS URL, a credential) are sealed in it under the root key. The
//! outputs are artifacts of the account (`batchsynthesis-output/{id}/results.zip`: the customer's
//! storage for a BYOS account, else service storage under the account's KEK), or blobs of the
//! client's destination container (`{destinationPath}/{id}/...`); `decompressOutputFiles` writes
//! the files one by one instead of the zip, where Azure does (a destination container or BYOS
//! storage). An input that cannot be spoken is a failure in the summary; a job where none could
//! is Failed. A job interrupted by a restart starts over at the next start; a finished job is
//! deleted with its outputs (not those in a destination container, which is the client's) once
//! its `timeToLiveInHours` has passed since it finished.

use std::io::Write as _;
use std::sync::Arc;

use byos_authz::{Action, Denial};
use byos_core::ApiError;
use byos_speech::ssml::{Piece, Ssml};
use byos_speech::tts::{OutputFormat, WordBoundary};
use byos_store::{Batch, Table};
use bytes::Bytes;
use futures_util::{StreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::artifacts::{Area, ArtifactError};
use crate::datasets::Status;
use crate::records::{Entity, Records};
use crate::{CognitiveService, LiveAccount};

pub(crate) const SYNTHESES: Records = Records::new(Table("cs_batch_syntheses"), "batch synthesis");
/// At most this many inputs (the spec and Azure's 400 list: 10,000).
pub const MAX_INPUTS: usize = 10_000;
/// The longest `timeToLiveInHours` (31 days), also its default (the spec's).
pub const MAX_TTL_HOURS: u32 = 744;
/// The format a job that names none gets (Azure's default).
pub const DEFAULT_OUTPUT_FORMAT: &str = "riff-24khz-16bit-mono-pcm";
/// Inputs waiting on the TTS workers at once: enough to keep a small pool busy, few enough that
/// one large job leaves room in the queue for the REST and WebSocket syntheses.
const IN_FLIGHT: usize = 4;
/// What the expiry watch asks the door for, per batch synthesis.
const EXPIRE: Action = Action::data("Microsoft.CognitiveServices/accounts/BatchTextToSpeech/batchsyntheses/delete");
const RESULTS_ZIP: &str = "results.zip";
const SUMMARY: &str = "summary.json";

/// What the inputs are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputKind {
    PlainText,
    #[serde(rename = "SSML")]
    Ssml,
}

impl InputKind {
    /// `PlainText` or `SSML`, in any case (as Azure takes them).
    pub fn parse(text: &str) -> Option<InputKind> {
        [InputKind::PlainText, InputKind::Ssml].into_iter().find(|k| k.name().eq_ignore_ascii_case(text))
    }

    pub fn name(self) -> &'static str {
        match self {
            InputKind::PlainText => "PlainText",
            InputKind::Ssml => "SSML",
        }
    }
}

/// How plain text inputs are spoken (`synthesisConfig`), as the client gave it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SynthesisConfig {
    pub voice: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pitch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
}

/// What a job makes besides the audio (the request's `properties`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Options {
    pub output_format: String,
    pub concatenate_result: bool,
    pub decompress_output_files: bool,
    pub word_boundary_enabled: bool,
    pub sentence_boundary_enabled: bool,
    pub time_to_live_in_hours: u32,
    /// The folder in the destination container the outputs' folder goes under.
    #[serde(default)]
    pub destination_path: Option<String>,
    /// The outputs go to the client's container (its URL is sealed with the inputs).
    pub to_destination: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            output_format: DEFAULT_OUTPUT_FORMAT.into(),
            concatenate_result: false,
            decompress_output_files: false,
            word_boundary_enabled: false,
            sentence_boundary_enabled: false,
            time_to_live_in_hours: MAX_TTL_HOURS,
            destination_path: None,
            to_destination: false,
        }
    }
}

/// What a job must not keep in plaintext: the customer's texts and the destination's SAS URL.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secrets {
    pub inputs: Vec<String>,
    pub destination_container_url: Option<String>,
}

/// What a client asks for when it creates a batch synthesis (validated: see [`prepare`]).
pub struct NewBatchSynthesis {
    pub id: String,
    /// The `Operation-Id` the client chose (none: one is made).
    pub operation_id: Option<String>,
    pub description: Option<String>,
    pub input_kind: InputKind,
    pub synthesis_config: Option<SynthesisConfig>,
    pub options: Options,
    pub secrets: Secrets,
}

/// Where a job's outputs are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Place {
    /// Artifacts of the account (`batchsynthesis-output`).
    Artifact,
    /// Blobs of the destination container.
    Destination,
}

/// The outputs a job wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outputs {
    pub place: Place,
    /// Their folder (`{id}`, or `{destinationPath}/{id}` in a destination container).
    pub folder: String,
    /// The files one by one (`decompressOutputFiles`) rather than `results.zip`.
    pub decompressed: bool,
    /// Every path written (what deleting the job deletes).
    pub paths: Vec<String>,
}

/// What the audio of a job amounts to (the response's read-only `properties`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub size_in_bytes: u64,
    pub succeeded_audio_count: u32,
    pub failed_audio_count: u32,
    pub duration_in_milliseconds: u64,
    /// Characters spoken (what Azure bills).
    pub characters: u64,
}

/// A batch synthesis as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchSynthesis {
    pub v: u32,
    pub id: String,
    pub operation_id: String,
    #[serde(default)]
    pub description: Option<String>,
    pub input_kind: InputKind,
    #[serde(default)]
    pub synthesis_config: Option<SynthesisConfig>,
    pub options: Options,
    pub status: Status,
    pub created: String,
    pub last_action: String,
    /// When it ended (what `timeToLiveInHours` counts from), Unix seconds.
    #[serde(default)]
    pub finished_at: Option<i64>,
    #[serde(default)]
    pub error: Option<(String, String)>,
    #[serde(default)]
    pub outputs: Option<Outputs>,
    #[serde(default)]
    pub totals: Option<Totals>,
    /// [`Secrets`], sealed under the root key (base64).
    sealed: String,
}

impl Entity for BatchSynthesis {
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> &str {
        &self.created
    }
}

/// Why a batch synthesis operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum BatchSynthesisError {
    /// The request is not one byos can run; the message says why.
    #[error("{0}")]
    Invalid(String),
    #[error("A batch synthesis with the id '{0}' already exists.")]
    Exists(String),
    #[error("The operation id '{0}' is already used by another batch synthesis.")]
    OperationExists(String),
    #[error("The batch synthesis '{0}' does not exist.")]
    NotFound(String),
    #[error("The operation '{0}' does not exist.")]
    OperationNotFound(String),
    /// The account's storage (its BYOS storage account, or its service storage) failed.
    #[error(transparent)]
    Storage(Box<ArtifactError>),
    /// The door refused a background task.
    #[error("{}", .0.reason)]
    Denied(Box<Denial>),
    /// byos's own store failed (logged where it happened).
    #[error("byos could not keep or read the batch synthesis")]
    Internal,
}

impl BatchSynthesisError {
    /// The answer in the spec's `ErrorResponse` shape (`{"error":{"code","message"}}`) with its
    /// `x-ms-error-code` header.
    pub fn to_api_error(&self) -> ApiError {
        let error = match self {
            BatchSynthesisError::Invalid(_)
            | BatchSynthesisError::Exists(_)
            | BatchSynthesisError::OperationExists(_) => ApiError::new(400, "BadRequest", self.to_string()),
            BatchSynthesisError::NotFound(_) | BatchSynthesisError::OperationNotFound(_) => {
                ApiError::new(404, "NotFound", self.to_string())
            }
            BatchSynthesisError::Storage(e) => e.to_api_error(),
            BatchSynthesisError::Denied(denial) => denial.to_api_error(),
            BatchSynthesisError::Internal => ApiError::new(500, "InternalServerError", self.to_string()),
        };
        let code = error.code.clone();
        error.with_header("x-ms-error-code", code)
    }

    /// A record's error: its absence, else the store's failure (already logged).
    fn of_record(e: ApiError, id: &str) -> BatchSynthesisError {
        match e.status {
            404 => BatchSynthesisError::NotFound(id.to_owned()),
            _ => BatchSynthesisError::Internal,
        }
    }
}

impl From<ArtifactError> for BatchSynthesisError {
    fn from(e: ArtifactError) -> Self {
        BatchSynthesisError::Storage(Box::new(e))
    }
}

type Result<T, E = BatchSynthesisError> = std::result::Result<T, E>;

fn now() -> String {
    byos_core::time::rfc3339_now()
}

/// Whether `id` is a valid job or operation id: 3-64 letters, digits, `.`, `_`, `-`, starting and
/// ending with a letter or digit (the spec's pattern).
pub fn valid_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    let inner = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    (3..=64).contains(&bytes.len())
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.iter().all(inner)
}

fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(text)
}

/// Whether a prosody attribute's value is one byos's SSML reader takes (Azure ignores invalid
/// `synthesisConfig` prosody values rather than refusing the job, so byos does too).
fn prosody_valid(attribute: &str, value: &str) -> bool {
    let probe = format!("<speak><voice name='v'><prosody {attribute}='{}'>x</prosody></voice></speak>", escape(value));
    byos_speech::ssml::parse(&probe).is_ok()
}

/// A plain text input as SSML: the configured voice, with the configured prosody it can use.
fn plain_text_ssml(config: &SynthesisConfig, text: &str) -> String {
    let prosody: String = [("rate", &config.rate), ("pitch", &config.pitch), ("volume", &config.volume)]
        .into_iter()
        .filter_map(|(attribute, value)| {
            let value = value.as_deref().filter(|v| prosody_valid(attribute, v))?;
            Some(format!(" {attribute}='{}'", escape(value)))
        })
        .collect();
    format!(
        "<speak version='1.0' xml:lang='en-US'><voice name='{}'><prosody{prosody}>{}</prosody></voice></speak>",
        escape(&config.voice),
        escape(text)
    )
}

/// An input read into what the engine speaks, or why it cannot be (for the client).
pub fn prepare(kind: InputKind, config: Option<&SynthesisConfig>, content: &str) -> Result<Ssml, String> {
    let document = match (kind, config) {
        (InputKind::Ssml, _) => std::borrow::Cow::Borrowed(content),
        (InputKind::PlainText, Some(config)) => std::borrow::Cow::Owned(plain_text_ssml(config, content)),
        (InputKind::PlainText, None) => return Err("PlainText inputs need synthesisConfig.voice".into()),
    };
    let ssml = byos_speech::tts::request(&document).map_err(|e| e.to_string())?;
    if ssml.pieces.iter().all(|p| matches!(p, Piece::Pause { .. })) {
        return Err("the input has nothing to say".into());
    }
    Ok(ssml)
}

/// One input spoken: its audio in the job's format without a WAV header, its length and where its
/// words and sentences are.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Spoken {
    pub(crate) audio: Vec<u8>,
    pub(crate) duration_ms: u64,
    pub(crate) words: Vec<WordBoundary>,
    pub(crate) text: String,
}

/// An input's outcome: spoken, or why not.
pub(crate) type Outcome = Result<Spoken, String>;

/// A boundary as Azure's `[nnnn].word.json` and `[nnnn].sentence.json` give it (milliseconds).
fn boundary_json(text: &str, offset_ms: u64, duration_ms: u64) -> Value {
    json!({"Text": text, "AudioOffset": offset_ms, "Duration": duration_ms})
}

/// A file of a job's outputs.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct OutputFile {
    pub(crate) name: String,
    pub(crate) content: Vec<u8>,
}

/// `audio` (in `format`, headerless) as the file Azure gives: with a WAV header for `riff-*`.
fn audio_file(format: OutputFormat, audio: &[u8]) -> Result<Vec<u8>, String> {
    if !format.riff {
        return Ok(audio.to_vec());
    }
    // The header of no audio, its two lengths then set for this audio (byos_speech writes the
    // header; only its RIFF and data sizes depend on the length).
    let mut file = format.encode(format.sample_rate, &[]).map_err(|e| e.to_string())?;
    let header = file.len();
    let data = u32::try_from(audio.len()).map_err(|_| "the audio is longer than a WAV file holds".to_owned())?;
    let riff = u32::try_from(header - 8).unwrap_or(0).saturating_add(data);
    file[4..8].copy_from_slice(&riff.to_le_bytes());
    file[header - 4..header].copy_from_slice(&data.to_le_bytes());
    file.extend_from_slice(audio);
    Ok(file)
}

/// The audio file's name for input `number` (from 1): `0001.wav` (`.pcm` for headerless formats).
fn audio_name(number: usize, format: OutputFormat) -> String {
    format!("{number:04}.{}", if format.riff { "wav" } else { "pcm" })
}

/// The files of a job's outputs (numbered audio, boundaries when asked for, `summary.json`
/// last) and what they amount to. `inputs` are the job's contents, `outcomes` what became of each.
pub(crate) fn build_outputs(
    job_id: &str,
    format: OutputFormat,
    options: &Options,
    inputs: &[String],
    outcomes: Vec<Outcome>,
) -> Result<(Vec<OutputFile>, Totals), String> {
    let mut totals = Totals::default();
    for outcome in &outcomes {
        match outcome {
            Ok(spoken) => {
                totals.succeeded_audio_count += 1;
                totals.duration_in_milliseconds += spoken.duration_ms;
                totals.characters += spoken.text.chars().count() as u64;
            }
            Err(_) => totals.failed_audio_count += 1,
        }
    }
    let groups: Vec<(Vec<&str>, Outcome)> = if options.concatenate_result {
        vec![(inputs.iter().map(String::as_str).collect(), concatenated(outcomes))]
    } else {
        inputs.iter().map(|i| vec![i.as_str()]).zip(outcomes).collect()
    };
    let mut files = Vec::new();
    let mut results = Vec::new();
    for (index, (contents, outcome)) in groups.into_iter().enumerate() {
        let number = index + 1;
        let spoken = match outcome {
            Ok(spoken) => spoken,
            Err(message) => {
                results.push(json!({"contents": contents, "status": "Failed", "error": {"message": message}}));
                continue;
            }
        };
        let name = audio_name(number, format);
        let audio = audio_file(format, &spoken.audio)?;
        totals.size_in_bytes += audio.len() as u64;
        results.push(json!({"contents": contents, "status": "Succeeded", "audioFileName": name,
            // Strings, as Azure's documented summary has them.
            "properties": {"sizeInBytes": audio.len().to_string(), "durationInMilliseconds": spoken.duration_ms.to_string()}}));
        files.push(OutputFile { name, content: audio });
        if options.word_boundary_enabled {
            let words: Vec<Value> =
                spoken.words.iter().map(|w| boundary_json(&w.text, w.offset_ms, w.duration_ms)).collect();
            files.push(OutputFile { name: format!("{number:04}.word.json"), content: json_bytes(&json!(words)) });
        }
        if options.sentence_boundary_enabled {
            let sentences: Vec<Value> = byos_speech::tts::sentences(&spoken.text, &spoken.words)
                .iter()
                .map(|s| boundary_json(&s.text, s.offset_ms, s.duration_ms))
                .collect();
            files.push(OutputFile {
                name: format!("{number:04}.sentence.json"),
                content: json_bytes(&json!(sentences)),
            });
        }
    }
    let status = if totals.succeeded_audio_count > 0 { "Succeeded" } else { "Failed" };
    let summary = json!({"jobID": job_id, "status": status, "results": results});
    files.push(OutputFile { name: SUMMARY.into(), content: json_bytes(&summary) });
    Ok((files, totals))
}

fn json_bytes(value: &Value) -> Vec<u8> {
    value.to_string().into_bytes()
}

/// Every input spoken, one after the other in one audio (`concatenateResult`), the boundaries
/// moved to where their input starts; inputs that failed are left out (a failure only when all did).
fn concatenated(outcomes: Vec<Outcome>) -> Outcome {
    let mut failures = Vec::new();
    let mut out = Spoken { audio: Vec::new(), duration_ms: 0, words: Vec::new(), text: String::new() };
    for (index, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(spoken) => {
                let start = out.duration_ms;
                out.words
                    .extend(spoken.words.into_iter().map(|w| WordBoundary { offset_ms: w.offset_ms + start, ..w }));
                out.audio.extend(spoken.audio);
                out.duration_ms += spoken.duration_ms;
                if !out.text.is_empty() {
                    out.text.push(' ');
                }
                out.text.push_str(&spoken.text);
            }
            Err(message) => failures.push(format!("input {}: {message}", index + 1)),
        }
    }
    if out.audio.is_empty() && !failures.is_empty() {
        return Err(failures.join("; "));
    }
    Ok(out)
}

/// The files as one zip (audio stored as it is, JSON deflated).
pub(crate) fn zip(files: &[OutputFile]) -> Result<Vec<u8>, String> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for file in files {
        let method = if file.name.ends_with(".json") {
            zip::CompressionMethod::Deflated
        } else {
            zip::CompressionMethod::Stored
        };
        let options = zip::write::SimpleFileOptions::default().compression_method(method);
        writer.start_file(file.name.as_str(), options).map_err(|e| e.to_string())?;
        writer.write_all(&file.content).map_err(|e| e.to_string())?;
    }
    Ok(writer.finish().map_err(|e| e.to_string())?.into_inner())
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("json") => "application/json",
        Some("zip") => "application/zip",
        Some("wav") => "audio/wav",
        _ => "application/octet-stream",
    }
}

/// Where a job's outputs go: the destination container (under `destinationPath`) or the
/// account's artifacts, in a folder named by the job's id.
fn output_folder(job: &BatchSynthesis) -> (Place, String) {
    match (&job.options.destination_path, job.options.to_destination) {
        (Some(path), true) => (Place::Destination, format!("{}/{}", path.trim_matches('/'), job.id)),
        (None, true) => (Place::Destination, job.id.clone()),
        (_, false) => (Place::Artifact, job.id.clone()),
    }
}

/// What stops a job: its outputs cannot be written, or it was deleted meanwhile.
enum Stop {
    Failed(String, String),
    Deleted,
}

impl Stop {
    fn failed(e: &ApiError) -> Stop {
        Stop::Failed(e.code.clone(), e.message.clone())
    }
}

impl CognitiveService {
    async fn put_batch_synthesis(&self, account: &LiveAccount, job: &BatchSynthesis) -> Result<()> {
        SYNTHESES.put(&self.store, account, job).await.map_err(|e| BatchSynthesisError::of_record(e, &job.id))
    }

    /// The batch synthesis `id` of the account.
    pub async fn batch_synthesis(&self, account: &LiveAccount, id: &str) -> Result<BatchSynthesis> {
        SYNTHESES.get(&self.store, account, id).await.map_err(|e| BatchSynthesisError::of_record(e, id))
    }

    /// Every batch synthesis of the account, newest first (as Azure lists them).
    pub async fn batch_syntheses(&self, account: &LiveAccount) -> Result<Vec<BatchSynthesis>> {
        let mut all: Vec<BatchSynthesis> =
            SYNTHESES.list(&self.store, account).await.map_err(|_| BatchSynthesisError::Internal)?;
        all.reverse();
        Ok(all)
    }

    /// The batch synthesis whose `Operation-Id` is `operation_id`.
    pub async fn batch_synthesis_operation(&self, account: &LiveAccount, operation_id: &str) -> Result<BatchSynthesis> {
        self.batch_syntheses(account)
            .await?
            .into_iter()
            .find(|job| job.operation_id.eq_ignore_ascii_case(operation_id))
            .ok_or_else(|| BatchSynthesisError::OperationNotFound(operation_id.to_owned()))
    }

    /// Records a new batch synthesis (`NotStarted`) and starts it in the background; an id (or
    /// operation id) the account already has is refused.
    pub async fn create_batch_synthesis(
        self: &Arc<Self>,
        account: Arc<LiveAccount>,
        new: NewBatchSynthesis,
    ) -> Result<BatchSynthesis> {
        let _serialized = self.synthesis_writes.lock().await;
        match self.batch_synthesis(&account, &new.id).await {
            Ok(_) => return Err(BatchSynthesisError::Exists(new.id)),
            Err(BatchSynthesisError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let operation_id = new.operation_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        match self.batch_synthesis_operation(&account, &operation_id).await {
            Ok(_) => return Err(BatchSynthesisError::OperationExists(operation_id)),
            Err(BatchSynthesisError::OperationNotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let created = now();
        let job = BatchSynthesis {
            v: 1,
            id: new.id,
            operation_id,
            description: new.description,
            input_kind: new.input_kind,
            synthesis_config: new.synthesis_config,
            options: new.options,
            status: Status::NotStarted,
            created: created.clone(),
            last_action: created,
            finished_at: None,
            error: None,
            outputs: None,
            totals: None,
            sealed: self.seal_job_secrets(&new.secrets).map_err(|_| BatchSynthesisError::Internal)?,
        };
        self.put_batch_synthesis(&account, &job).await?;
        self.start_batch_synthesis(account, job.id.clone());
        Ok(job)
    }

    fn start_batch_synthesis(self: &Arc<Self>, account: Arc<LiveAccount>, id: String) {
        let service = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = service.run_batch_synthesis(&account, &id).await {
                tracing::warn!(account = %account.id, synthesis = %id, error = %e, "batch synthesis failed");
            }
        });
    }

    /// Runs a job to its end: `Succeeded` or `Failed`, never left `Running`.
    async fn run_batch_synthesis(&self, account: &LiveAccount, id: &str) -> Result<()> {
        let (job, secrets) = {
            let _serialized = self.synthesis_writes.lock().await;
            let mut job = self.batch_synthesis(account, id).await?;
            job.status = Status::Running;
            job.last_action = now();
            self.put_batch_synthesis(account, &job).await?;
            let secrets: Secrets = self.open_job_secrets(&job.sealed).map_err(|_| BatchSynthesisError::Internal)?;
            (job, secrets)
        };
        tracing::info!(account = %account.id, synthesis = id, inputs = secrets.inputs.len(), "batch synthesis started");
        let mut written = Vec::new();
        let outcome = self.synthesize_job(account, &job, &secrets, &mut written).await;
        self.finish_batch_synthesis(account, &job, written, outcome).await
    }

    /// The record of the job `run` runs, while it is still that job's: none once it was deleted,
    /// also when its id names a job created again since (ids are the client's, so they recur).
    async fn current(&self, account: &LiveAccount, run: &BatchSynthesis) -> Result<Option<BatchSynthesis>> {
        match self.batch_synthesis(account, &run.id).await {
            Ok(job) if job.created == run.created => Ok(Some(job)),
            Ok(_) | Err(BatchSynthesisError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Speaks every input (a few at a time, in order), then writes the outputs.
    async fn synthesize_job(
        &self,
        account: &LiveAccount,
        job: &BatchSynthesis,
        secrets: &Secrets,
        written: &mut Vec<String>,
    ) -> std::result::Result<(Outputs, Totals), Stop> {
        let format = OutputFormat::parse(&job.options.output_format)
            .map_err(|e| Stop::Failed("BadRequest".into(), e.to_string()))?;
        // Owned contents: futures borrowing the stream's own items fail the spawned task's lifetime check.
        let mut spoken = stream::iter(secrets.inputs.clone())
            .map(|content| async move { self.speak_input(job, &content, format).await })
            .buffered(IN_FLIGHT);
        let mut outcomes = Vec::with_capacity(secrets.inputs.len());
        while let Some(outcome) = spoken.next().await {
            outcomes.push(outcome);
            if matches!(self.current(account, job).await, Ok(None)) {
                return Err(Stop::Deleted);
            }
        }
        drop(spoken);
        // Files one by one only where the client can reach them so (Azure's rule).
        let byos = !account.settings.user_owned_storage.is_empty();
        let decompressed = job.options.decompress_output_files && (job.options.to_destination || byos);
        let (id, options, inputs) = (job.id.clone(), job.options.clone(), secrets.inputs.clone());
        let built = tokio::task::spawn_blocking(move || {
            let (files, totals) = build_outputs(&id, format, &options, &inputs, outcomes)?;
            let files =
                if decompressed { files } else { vec![OutputFile { name: RESULTS_ZIP.into(), content: zip(&files)? }] };
            Ok::<_, String>((files, totals))
        })
        .await
        .map_err(|e| Stop::Failed("InternalServerError".into(), e.to_string()))?
        .map_err(|e| Stop::Failed("InternalServerError".into(), format!("The outputs could not be built: {e}.")))?;
        let (files, totals) = built;
        self.keep_outputs(account, job, secrets, files, written).await?;
        let (place, folder) = output_folder(job);
        Ok((Outputs { place, folder, decompressed, paths: written.clone() }, totals))
    }

    /// One input: read, spoken on the TTS workers (waiting for room), encoded in the job's format.
    async fn speak_input(&self, job: &BatchSynthesis, content: &str, format: OutputFormat) -> Outcome {
        let ssml = prepare(job.input_kind, job.synthesis_config.as_ref(), content)?;
        let speech = self.tts.synthesize_waiting(&ssml).await.map_err(|e| e.to_string())?;
        let raw = OutputFormat { riff: false, ..format };
        let audio = raw.encode(speech.sample_rate, &speech.samples).map_err(|e| e.to_string())?;
        let duration_ms = speech.samples.len() as u64 * 1000 / u64::from(speech.sample_rate.max(1));
        let (text, mut words) = (ssml.spoken_text(), speech.words);
        byos_speech::tts::as_written(&text, &mut words);
        Ok(Spoken { audio, duration_ms, words, text })
    }

    /// Writes the output files into the job's folder, in the destination container or as
    /// artifacts, noting each path written.
    async fn keep_outputs(
        &self,
        account: &LiveAccount,
        job: &BatchSynthesis,
        secrets: &Secrets,
        files: Vec<OutputFile>,
        written: &mut Vec<String>,
    ) -> std::result::Result<(), Stop> {
        let destination = secrets.destination_container_url.as_deref().filter(|_| job.options.to_destination);
        let (_, folder) = output_folder(job);
        for file in files {
            let path = format!("{folder}/{}", file.name);
            let content = Bytes::from(file.content);
            let kind = content_type(&file.name);
            let kept = match destination {
                Some(container) => self.put_destination(container, &path, content, kind).await,
                None => self
                    .artifacts
                    .put(account, Area::Synthesis, &path, content, kind)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_api_error()),
            };
            kept.map_err(|e| Stop::failed(&e))?;
            written.push(path);
        }
        Ok(())
    }

    /// Records a job's end; a job deleted meanwhile stays deleted, and what it wrote as artifacts
    /// goes too (a destination container is the client's).
    async fn finish_batch_synthesis(
        &self,
        account: &LiveAccount,
        run: &BatchSynthesis,
        written: Vec<String>,
        outcome: std::result::Result<(Outputs, Totals), Stop>,
    ) -> Result<()> {
        let _serialized = self.synthesis_writes.lock().await;
        let current = self.current(account, run).await?;
        let (Some(mut job), Ok(_) | Err(Stop::Failed(..))) = (current, &outcome) else {
            if output_folder(run).0 == Place::Artifact {
                self.delete_artifact_outputs(account, &written).await;
            }
            tracing::info!(synthesis = %run.id, "a batch synthesis deleted while it ran: its outputs are gone too");
            return Ok(());
        };
        job.last_action = now();
        job.finished_at = Some(byos_core::time::unix_now());
        match outcome {
            Ok((outputs, totals)) => {
                job.status = if totals.succeeded_audio_count > 0 { Status::Succeeded } else { Status::Failed };
                if job.status == Status::Failed {
                    job.error = Some((
                        "BadRequest".into(),
                        format!(
                            "None of the {} inputs could be synthesized; see summary.json.",
                            totals.failed_audio_count
                        ),
                    ));
                }
                job.outputs = Some(outputs);
                job.totals = Some(totals);
            }
            Err(Stop::Failed(code, message)) => {
                job.status = Status::Failed;
                job.error = Some((code, message));
                // What was written before the failure is still the job's, to delete with it.
                let (place, folder) = output_folder(&job);
                job.outputs =
                    (!written.is_empty()).then_some(Outputs { place, folder, decompressed: true, paths: written });
            }
            Err(Stop::Deleted) => return Ok(()),
        }
        tracing::info!(account = %account.id, synthesis = %job.id, status = ?job.status, "batch synthesis finished");
        self.put_batch_synthesis(account, &job).await
    }

    async fn delete_artifact_outputs(&self, account: &LiveAccount, paths: &[String]) {
        for path in paths {
            if let Err(e) = self.artifacts.delete(account, Area::Synthesis, path).await
                && !matches!(e, ArtifactError::NotFound)
            {
                tracing::warn!(account = %account.id, path, error = %e, "a batch synthesis output was not deleted");
            }
        }
    }

    /// Deletes a batch synthesis and its outputs kept as artifacts (in the customer's storage
    /// too; a destination container is the client's and is left alone). A running job notices and
    /// removes what it wrote. Deleting one that does not exist is no error (Azure answers 204).
    pub async fn delete_batch_synthesis(&self, account: &LiveAccount, id: &str) -> Result<()> {
        let _serialized = self.synthesis_writes.lock().await;
        let job = match self.batch_synthesis(account, id).await {
            Ok(job) => job,
            Err(BatchSynthesisError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        if let Some(outputs) = job.outputs.as_ref().filter(|o| o.place == Place::Artifact) {
            for path in &outputs.paths {
                match self.artifacts.delete(account, Area::Synthesis, path).await {
                    Ok(()) | Err(ArtifactError::NotFound) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        SYNTHESES.delete(&self.store, account, id).await.map_err(|_| BatchSynthesisError::Internal)
    }

    /// Links to a finished job's outputs: `result` (the zip, or the folder of decompressed files)
    /// and, for decompressed files, `summary`. Artifacts are linked as the artifact store links
    /// them (a user delegation SAS in BYOS storage, valid `validity`); outputs in a destination
    /// container are named by their path in it, as Azure does.
    pub async fn batch_synthesis_links(
        &self,
        account: &LiveAccount,
        outputs: &Outputs,
        validity: std::time::Duration,
    ) -> Result<(String, Option<String>)> {
        let summary_path = format!("{}/{SUMMARY}", outputs.folder);
        match (outputs.place, outputs.decompressed) {
            (Place::Destination, false) => Ok((format!("{}/{RESULTS_ZIP}", outputs.folder), None)),
            (Place::Destination, true) => Ok((outputs.folder.clone(), Some(summary_path))),
            (Place::Artifact, false) => {
                let zip = format!("{}/{RESULTS_ZIP}", outputs.folder);
                Ok((self.artifacts.link(account, Area::Synthesis, &zip, validity).await?, None))
            }
            (Place::Artifact, true) => {
                // The folder as a plain URL (listing it takes the reader's own access); the summary signed.
                let folder =
                    self.artifacts.link(account, Area::Synthesis, &outputs.folder, std::time::Duration::ZERO).await?;
                let summary = self.artifacts.link(account, Area::Synthesis, &summary_path, validity).await?;
                Ok((folder, Some(summary)))
            }
        }
    }

    /// Adds the deletion of every batch synthesis record of `account_id` to `batch` (its purge;
    /// their outputs go with the account's artifacts).
    pub(crate) async fn batch_syntheses_purge_ops(&self, account_id: &str, batch: Batch) -> Result<Batch, ApiError> {
        SYNTHESES.purge_ops(&self.store, account_id, batch).await
    }

    /// Starts over the jobs a restart interrupted (at start, once the accounts are live).
    pub(crate) async fn resume_batch_syntheses(self: &Arc<Self>) -> Result<usize, ApiError> {
        let mut resumed = 0;
        for (account_key, mut job) in SYNTHESES.all::<BatchSynthesis>(&self.store).await? {
            if !matches!(job.status, Status::NotStarted | Status::Running) {
                continue;
            }
            // A soft-deleted account's job waits: restored, it starts over at the next start; purged, it goes with it.
            let Some(account) = self.account(&account_key) else { continue };
            job.status = Status::NotStarted;
            job.outputs = None;
            SYNTHESES.put(&self.store, &account, &job).await?;
            self.start_batch_synthesis(account, job.id);
            resumed += 1;
        }
        Ok(resumed)
    }

    /// Deletes the finished batch syntheses whose `timeToLiveInHours` has passed at `now` (Unix
    /// seconds), with their outputs, as `watch` (the retention watch), which the door must admit
    /// for each; returns how many went.
    pub async fn expire_batch_syntheses(&self, watch: &byos_core::Caller, now: i64) -> Result<usize> {
        let mut expired = 0;
        let all = SYNTHESES.all::<BatchSynthesis>(&self.store).await.map_err(|_| BatchSynthesisError::Internal)?;
        for (account_key, job) in all {
            let Some(finished) = job.finished_at else { continue };
            if finished.saturating_add(i64::from(job.options.time_to_live_in_hours) * 3600) > now {
                continue;
            }
            // A soft-deleted account's jobs wait: restored, it has them back; purged, they go with it.
            let Some(account) = self.account(&account_key) else { continue };
            let scope = byos_core::Scope::parse(&account.id).map_err(|_| BatchSynthesisError::Internal)?;
            self.door.authorize(watch, &EXPIRE, &scope).map_err(BatchSynthesisError::Denied)?;
            self.delete_batch_synthesis(&account, &job.id).await?;
            tracing::info!(account = %account.id, synthesis = %job.id, "batch synthesis expired (timeToLiveInHours)");
            expired += 1;
        }
        Ok(expired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn format(name: &str) -> OutputFormat {
        OutputFormat::parse(name).unwrap_or_else(|e| panic!("{e}"))
    }

    fn word(text: &str, offset_ms: u64, duration_ms: u64) -> WordBoundary {
        WordBoundary { text: text.into(), offset_ms, duration_ms }
    }

    fn spoken(audio_len: usize, duration_ms: u64, words: Vec<WordBoundary>, text: &str) -> Outcome {
        Ok(Spoken { audio: vec![7; audio_len], duration_ms, words, text: text.into() })
    }

    fn summary(files: &[OutputFile]) -> Value {
        let last = files.last().unwrap_or_else(|| panic!("no files"));
        assert_eq!(last.name, "summary.json");
        serde_json::from_slice(&last.content).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn ids_follow_the_specs_pattern() {
        for ok in ["abc", "my-batch-synthesis-job-text-input-1", "a.b_c-d", &"x".repeat(64)] {
            assert!(valid_id(ok), "{ok}");
        }
        for bad in ["ab", "-abc", "abc-", "a b c", "a/bc", "ab\u{e9}c", &"x".repeat(65), ""] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn inputs_are_read_as_their_kind_says() {
        let config = SynthesisConfig { voice: "en-US-SltFlite".into(), ..SynthesisConfig::default() };
        let plain = prepare(InputKind::PlainText, Some(&config), "Fish & <chips>.").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plain.spoken_text(), "Fish & <chips>.", "plain text is escaped, not read as markup");
        assert!(prepare(InputKind::PlainText, None, "hi").is_err_and(|e| e.contains("synthesisConfig.voice")));
        let unknown = SynthesisConfig { voice: "en-US-JennyNeural".into(), ..SynthesisConfig::default() };
        let refused = prepare(InputKind::PlainText, Some(&unknown), "hi").err().unwrap_or_default();
        assert!(refused.contains("en-US-JennyNeural") && refused.contains("en-US-RmsFlite"), "{refused}");
        assert!(prepare(InputKind::Ssml, None, "<speak><voice name='en-US-RmsFlite'>hi").is_err());
        assert!(prepare(InputKind::Ssml, None, "not xml at all").is_err());
        let ssml = "<speak version='1.0'><voice name='en-US-RmsFlite'>one</voice><voice name='en-US-AwbFlite'>two</voice></speak>";
        assert_eq!(prepare(InputKind::Ssml, None, ssml).map(|s| s.spoken_text()), Ok("one two".into()));
        assert!(
            prepare(InputKind::Ssml, None, "<speak><voice name='en-US-RmsFlite'><break time='1s'/></voice></speak>")
                .is_err_and(|e| e.contains("nothing to say"))
        );
    }

    #[test]
    fn invalid_prosody_in_the_config_is_ignored_and_valid_prosody_used() {
        let config = SynthesisConfig {
            voice: "en-US-RmsFlite".into(),
            rate: Some("+50%".into()),
            pitch: Some("very wobbly".into()),
            volume: Some("50".into()),
            style: Some("cheerful".into()),
        };
        let ssml = prepare(InputKind::PlainText, Some(&config), "hello").unwrap_or_else(|e| panic!("{e}"));
        let Some(Piece::Speech { prosody, .. }) = ssml.pieces.first() else { panic!("no speech: {ssml:?}") };
        assert!((prosody.rate - 1.5).abs() < 1e-3 && prosody.volume < 1.0, "{prosody:?}");
        assert!((prosody.pitch_factor - 1.0).abs() < 1e-6, "the invalid pitch is ignored: {prosody:?}");
    }

    #[test]
    fn outputs_are_numbered_from_one_with_boundaries_and_a_summary() {
        let options = Options { word_boundary_enabled: true, sentence_boundary_enabled: true, ..Options::default() };
        let inputs = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let outcomes = vec![
            spoken(48, 1, vec![word("a", 0, 1)], "a."),
            Err("the voice x is not available".into()),
            spoken(96, 2, vec![word("c", 0, 2)], "c."),
        ];
        let (files, totals) = build_outputs("job", format("riff-24khz-16bit-mono-pcm"), &options, &inputs, outcomes)
            .unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "0001.wav",
                "0001.word.json",
                "0001.sentence.json",
                "0003.wav",
                "0003.word.json",
                "0003.sentence.json",
                "summary.json"
            ]
        );
        assert_eq!(
            (totals.succeeded_audio_count, totals.failed_audio_count, totals.duration_in_milliseconds),
            (2, 1, 3)
        );
        assert_eq!(totals.size_in_bytes, (44 + 48) + (44 + 96));
        let wav = &files[0].content;
        assert_eq!((&wav[..4], &wav[8..12]), (&b"RIFF"[..], &b"WAVE"[..]));
        assert_eq!(u32::from_le_bytes([wav[4], wav[5], wav[6], wav[7]]) as usize, wav.len() - 8);
        assert_eq!(u32::from_le_bytes([wav[40], wav[41], wav[42], wav[43]]), 48);
        assert_eq!(u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]), 24_000);
        let words: Value = serde_json::from_slice(&files[1].content).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(words, json!([{"Text": "a", "AudioOffset": 0, "Duration": 1}]));
        let summary = summary(&files);
        assert_eq!((summary["jobID"].as_str(), summary["status"].as_str()), (Some("job"), Some("Succeeded")));
        let results = summary["results"].as_array().cloned().unwrap_or_default();
        assert_eq!(results.len(), 3);
        assert_eq!(results[0]["audioFileName"], "0001.wav");
        assert_eq!(results[0]["properties"]["sizeInBytes"], "92");
        assert_eq!((results[1]["status"].as_str(), results[1].get("audioFileName")), (Some("Failed"), None));
        assert_eq!(results[2]["contents"], json!(["c"]));
    }

    #[test]
    fn concatenated_outputs_are_one_audio_with_moved_boundaries() {
        let options = Options { concatenate_result: true, word_boundary_enabled: true, ..Options::default() };
        let inputs = vec!["a".to_owned(), "b".to_owned()];
        let outcomes = vec![spoken(10, 500, vec![word("a", 5, 10)], "a"), spoken(6, 300, vec![word("b", 7, 10)], "b")];
        let (files, totals) = build_outputs("j", format("raw-16khz-16bit-mono-pcm"), &options, &inputs, outcomes)
            .unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["0001.pcm", "0001.word.json", "summary.json"]);
        assert_eq!(files[0].content.len(), 16, "headerless, both inputs");
        let words: Value = serde_json::from_slice(&files[1].content).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(words[1], json!({"Text": "b", "AudioOffset": 507, "Duration": 10}));
        assert_eq!((totals.succeeded_audio_count, totals.duration_in_milliseconds), (2, 800));
        assert_eq!(summary(&files)["results"][0]["contents"], json!(["a", "b"]));
        let failed = build_outputs(
            "j",
            format("raw-16khz-16bit-mono-pcm"),
            &options,
            &inputs,
            vec![Err("x".into()), Err("y".into())],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(summary(&failed.0)["status"], "Failed");
        assert_eq!(failed.1.failed_audio_count, 2);
    }

    #[test]
    fn the_zip_holds_every_file() {
        let files = vec![
            OutputFile { name: "0001.wav".into(), content: vec![1, 2, 3] },
            OutputFile { name: "summary.json".into(), content: b"{\"jobID\":\"j\"}".to_vec() },
        ];
        let bytes = zip(&files).unwrap_or_else(|e| panic!("{e}"));
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(archive.len(), 2);
        for file in &files {
            let mut content = Vec::new();
            archive
                .by_name(&file.name)
                .unwrap_or_else(|e| panic!("{e}"))
                .read_to_end(&mut content)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(content, file.content, "{}", file.name);
        }
    }

    #[test]
    fn errors_have_the_specs_codes() {
        let cases = [
            (BatchSynthesisError::Invalid("x".into()), 400, "BadRequest"),
            (BatchSynthesisError::Exists("x".into()), 400, "BadRequest"),
            (BatchSynthesisError::NotFound("x".into()), 404, "NotFound"),
            (BatchSynthesisError::Internal, 500, "InternalServerError"),
        ];
        for (error, status, code) in cases {
            let api = error.to_api_error();
            assert_eq!((api.status, api.code.as_str(), api.format), (status, code, byos_core::ErrorFormat::Arm));
            assert!(api.headers.iter().any(|(n, v)| *n == "x-ms-error-code" && v == code), "{:?}", api.headers);
        }
    }
}
