//! The batch synthesis routes (text to speech 2024-04-01): parse, call [`crate::batch_synthesis`],
//! render in the spec's shapes (errors as `ErrorResponse`, `{"error":{"code","message"}}` with
//! `x-ms-error-code`; lists as `value` and `nextLink`). Served under `/texttospeech` only, the
//! spec's base (`{endpoint}/texttospeech`), for requests naming `api-version=2024-04-01`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use byos_authz::Action;
use byos_core::ApiError;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::batch_synthesis::{
    BatchSynthesis, BatchSynthesisError, DEFAULT_OUTPUT_FORMAT, InputKind, MAX_INPUTS, MAX_TTL_HOURS,
    NewBatchSynthesis, Options, Secrets, SynthesisConfig, prepare, valid_id,
};
use crate::dataplane::Plane;
use crate::speech_http::{DEFAULT_SAS_VALIDITY_SECS, render, speech_account};
use crate::{CognitiveService, LiveAccount};

const READ: Action = Action::data("Microsoft.CognitiveServices/accounts/BatchTextToSpeech/batchsyntheses/read");
const WRITE: Action = Action::data("Microsoft.CognitiveServices/accounts/BatchTextToSpeech/batchsyntheses/write");
const DELETE: Action = Action::data("Microsoft.CognitiveServices/accounts/BatchTextToSpeech/batchsyntheses/delete");
const API_VERSION: &str = "2024-04-01";
/// The largest request body taken (Azure's documented 2 MB).
const MAX_PAYLOAD_BYTES: usize = 2 << 20;
/// A list's largest and default page.
const MAX_PAGE: usize = 100;
const NEEDS_VOICE: &str = "PlainText inputs need synthesisConfig.voice.";

/// The batch synthesis routes.
pub(crate) fn routes() -> Router<Plane> {
    // A larger body than the limit reaches the handler, which refuses it in the spec's format.
    let one = axum::routing::get(get).put(create).delete(delete).layer(DefaultBodyLimit::max(2 * MAX_PAYLOAD_BYTES));
    Router::new()
        .route("/texttospeech/batchsyntheses", axum::routing::get(list))
        .route("/texttospeech/batchsyntheses/{id}", one)
        .route("/texttospeech/operations/{id}", axum::routing::get(operation))
        .layer(axum::middleware::from_fn(require_api_version))
}

/// A request validation refuses, with the reason.
fn refused(message: impl Into<String>) -> BatchSynthesisError {
    BatchSynthesisError::Invalid(message.into())
}

fn invalid(message: impl Into<String>) -> ApiError {
    refused(message).to_api_error()
}

fn failed(e: BatchSynthesisError) -> ApiError {
    e.to_api_error()
}

/// Only requests naming the api-version this API is are answered.
async fn require_api_version(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let named = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|pair| pair.eq_ignore_ascii_case(&format!("api-version={API_VERSION}"))));
    if named {
        return next.run(request).await;
    }
    byos_http::render_error(&invalid(format!(
        "The api-version query parameter is missing or not supported; byos serves batch synthesis at api-version={API_VERSION}."
    )))
}

#[derive(Deserialize)]
struct InputBody {
    /// Azure's older documentation names it `text`.
    #[serde(alias = "text")]
    content: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ConfigBody {
    voice: Option<String>,
    style: Option<String>,
    rate: Option<String>,
    pitch: Option<String>,
    volume: Option<String>,
    background_audio: Option<Value>,
    speaker_profile_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PropertiesBody {
    time_to_live_in_hours: Option<i64>,
    output_format: Option<String>,
    #[serde(default)]
    concatenate_result: bool,
    #[serde(default)]
    decompress_output_files: bool,
    #[serde(default)]
    word_boundary_enabled: bool,
    #[serde(default)]
    sentence_boundary_enabled: bool,
    destination_container_url: Option<String>,
    destination_path: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    input_kind: Option<String>,
    inputs: Option<Vec<InputBody>>,
    synthesis_config: Option<ConfigBody>,
    #[serde(default)]
    custom_voices: Map<String, Value>,
    description: Option<String>,
    #[serde(default)]
    properties: PropertiesBody,
}

fn synthesis_config(
    kind: InputKind,
    config: Option<ConfigBody>,
) -> Result<Option<SynthesisConfig>, BatchSynthesisError> {
    let config = match (kind, config) {
        (InputKind::PlainText, None) => {
            return Err(refused(NEEDS_VOICE));
        }
        // SSML says its own voices: Azure applies synthesisConfig to plain text only.
        (InputKind::Ssml, _) => return Ok(None),
        (InputKind::PlainText, Some(config)) => config,
    };
    if config.background_audio.is_some() || config.speaker_profile_id.is_some() {
        return Err(refused("Background audio and personal voices (speakerProfileId) are not supported by byos."));
    }
    let voice = config.voice.filter(|v| !v.trim().is_empty());
    let voice = voice.ok_or_else(|| refused(NEEDS_VOICE))?;
    byos_speech::tts::find_voice(&voice).map_err(|e| refused(format!("synthesisConfig.voice: {e}.")))?;
    Ok(Some(SynthesisConfig {
        voice,
        style: config.style,
        rate: config.rate,
        pitch: config.pitch,
        volume: config.volume,
    }))
}

fn options(p: &PropertiesBody) -> Result<Options, BatchSynthesisError> {
    let format = p.output_format.as_deref().filter(|f| !f.trim().is_empty()).unwrap_or(DEFAULT_OUTPUT_FORMAT);
    byos_speech::tts::OutputFormat::parse(format)
        .map_err(|e| refused(format!("The outputFormat is not supported: {e}.")))?;
    let ttl = p.time_to_live_in_hours.unwrap_or(i64::from(MAX_TTL_HOURS));
    let ttl = u32::try_from(ttl)
        .ok()
        .filter(|h| *h <= MAX_TTL_HOURS)
        .ok_or_else(|| refused(format!("timeToLiveInHours {ttl} is not between 0 and {MAX_TTL_HOURS} (31 days).")))?;
    if let Some(url) = &p.destination_container_url
        && !url.starts_with("https://")
    {
        return Err(refused("The destinationContainerUrl must be an https URL with a SAS."));
    }
    if p.destination_path.is_some() && p.destination_container_url.is_none() {
        return Err(refused("destinationPath can only be set with destinationContainerUrl."));
    }
    Ok(Options {
        output_format: format.trim().to_owned(),
        concatenate_result: p.concatenate_result,
        decompress_output_files: p.decompress_output_files,
        word_boundary_enabled: p.word_boundary_enabled,
        sentence_boundary_enabled: p.sentence_boundary_enabled,
        time_to_live_in_hours: ttl,
        destination_path: p.destination_path.clone().filter(|path| !path.trim_matches('/').is_empty()),
        to_destination: p.destination_container_url.is_some(),
    })
}

/// Validates the request into what the domain takes: every input must be one byos can speak.
fn new_batch_synthesis(
    id: &str,
    operation_id: Option<String>,
    body: CreateBody,
) -> Result<NewBatchSynthesis, BatchSynthesisError> {
    let pattern = "3 to 64 letters, digits, '.', '_' or '-', starting and ending with a letter or digit";
    if !valid_id(id) {
        return Err(refused(format!("The id '{id}' is not valid: {pattern}.")));
    }
    if let Some(operation) = operation_id.as_deref().filter(|o| !valid_id(o)) {
        return Err(refused(format!("The Operation-Id '{operation}' is not valid: {pattern}.")));
    }
    let kind = body.input_kind.ok_or_else(|| refused("The inputKind is required."))?;
    let kind =
        InputKind::parse(&kind).ok_or_else(|| refused(format!("The inputKind '{kind}' is not PlainText or SSML.")))?;
    let inputs = body.inputs.filter(|i| !i.is_empty()).ok_or_else(|| refused("The inputs is required."))?;
    if inputs.len() > MAX_INPUTS {
        return Err(refused(format!(
            "{} inputs were given; a batch synthesis takes at most {MAX_INPUTS}.",
            inputs.len()
        )));
    }
    if !body.custom_voices.is_empty() {
        return Err(refused("Custom voices are not available in byos; use one of byos's voices."));
    }
    let config = synthesis_config(kind, body.synthesis_config)?;
    let options = options(&body.properties)?;
    let mut contents = Vec::with_capacity(inputs.len());
    for (index, input) in inputs.into_iter().enumerate() {
        let number = index + 1;
        let content = input.content.filter(|c| !c.trim().is_empty());
        let content = content.ok_or_else(|| refused(format!("Input {number} has no content.")))?;
        prepare(kind, config.as_ref(), &content)
            .map_err(|e| refused(format!("Input {number} cannot be synthesized: {e}.")))?;
        contents.push(content);
    }
    Ok(NewBatchSynthesis {
        id: id.to_owned(),
        operation_id,
        description: body.description,
        input_kind: kind,
        synthesis_config: config,
        options,
        secrets: Secrets { inputs: contents, destination_container_url: body.properties.destination_container_url },
    })
}

/// A batch synthesis as the API returns it (never the destination's SAS URL, nor the inputs, as
/// Azure's responses leave them out).
fn wire(job: &BatchSynthesis, links: Option<(String, Option<String>)>) -> Value {
    let o = &job.options;
    let mut properties = json!({
        "timeToLiveInHours": o.time_to_live_in_hours, "outputFormat": o.output_format,
        "concatenateResult": o.concatenate_result, "decompressOutputFiles": o.decompress_output_files,
        "wordBoundaryEnabled": o.word_boundary_enabled, "sentenceBoundaryEnabled": o.sentence_boundary_enabled,
    });
    if let Some(path) = &o.destination_path {
        properties["destinationPath"] = json!(path);
    }
    if let Some(t) = &job.totals {
        properties["sizeInBytes"] = json!(t.size_in_bytes);
        properties["succeededAudioCount"] = json!(t.succeeded_audio_count);
        properties["failedAudioCount"] = json!(t.failed_audio_count);
        properties["durationInMilliseconds"] = json!(t.duration_in_milliseconds);
        // byos's voices are its prebuilt voices: their characters count where Azure counts those.
        properties["billingDetails"] = json!({"neuralCharacters": t.characters});
    }
    if let Some((code, message)) = &job.error {
        properties["error"] = json!({"code": code, "message": message});
    }
    let mut wire = json!({
        "id": job.id, "status": job.status, "createdDateTime": job.created,
        "lastActionDateTime": job.last_action, "inputKind": job.input_kind.name(), "customVoices": {},
        "properties": properties,
    });
    if let Some(config) = &job.synthesis_config {
        wire["synthesisConfig"] = json!(config);
    }
    if let Some(description) = &job.description {
        wire["description"] = json!(description);
    }
    if let Some((result, summary)) = links {
        wire["outputs"] = json!({"result": result});
        if let Some(summary) = summary {
            wire["outputs"]["summary"] = json!(summary);
        }
    }
    wire
}

/// The job as the API returns it, with links to its outputs once it has them.
async fn rendered(plane: &Plane, account: &LiveAccount, job: &BatchSynthesis) -> Result<Value, ApiError> {
    let links = match (&job.outputs, &job.totals) {
        (Some(outputs), Some(_)) => {
            let validity = Duration::from_secs(DEFAULT_SAS_VALIDITY_SECS);
            Some(plane.service.batch_synthesis_links(account, outputs, validity).await.map_err(failed)?)
        }
        _ => None,
    };
    Ok(wire(job, links))
}

async fn create(
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    render(
        async {
            let account = speech_account(&plane, &extensions, &headers, &WRITE)?;
            if body.len() > MAX_PAYLOAD_BYTES {
                return Err(invalid(format!("The request body is larger than {MAX_PAYLOAD_BYTES} bytes (2 MB).")));
            }
            let body: CreateBody = serde_json::from_slice(&body)
                .map_err(|e| invalid(format!("The request body is not a valid batch synthesis: {e}.")))?;
            let operation_id = match headers.get("operation-id") {
                Some(value) => Some(value.to_str().map_err(|_| invalid("The Operation-Id is not text."))?.to_owned()),
                None => None,
            };
            let new = new_batch_synthesis(&id, operation_id, body).map_err(failed)?;
            let job = plane.service.create_batch_synthesis(Arc::clone(&account), new).await.map_err(failed)?;
            let endpoint = CognitiveService::endpoint(account.settings.port);
            let location = format!("{endpoint}texttospeech/operations/{}?api-version={API_VERSION}", job.operation_id);
            let headers = [("operation-location", location), ("operation-id", job.operation_id.clone())];
            Ok((StatusCode::CREATED, headers, axum::Json(wire(&job, None))).into_response())
        }
        .await,
    )
}

async fn get(
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    render(
        async {
            let account = speech_account(&plane, &extensions, &headers, &READ)?;
            let job = plane.service.batch_synthesis(&account, &id).await.map_err(failed)?;
            Ok(axum::Json(rendered(&plane, &account, &job).await?).into_response())
        }
        .await,
    )
}

#[derive(Deserialize)]
struct ListQuery {
    skip: Option<usize>,
    maxpagesize: Option<usize>,
}

async fn list(
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    render(
        async {
            let account = speech_account(&plane, &extensions, &headers, &READ)?;
            let all = plane.service.batch_syntheses(&account).await.map_err(failed)?;
            let (skip, size) = (query.skip.unwrap_or(0), query.maxpagesize.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE));
            // Links are signed for the page asked for only.
            let mut value = Vec::new();
            for job in all.iter().skip(skip).take(size) {
                value.push(rendered(&plane, &account, job).await?);
            }
            let mut body = json!({"value": value});
            if skip + size < all.len() {
                let endpoint = CognitiveService::endpoint(account.settings.port);
                body["nextLink"] = json!(format!(
                    "{endpoint}texttospeech/batchsyntheses?skip={}&maxpagesize={size}&api-version={API_VERSION}",
                    skip + size
                ));
            }
            Ok(axum::Json(body).into_response())
        }
        .await,
    )
}

async fn delete(
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    render(
        async {
            let account = speech_account(&plane, &extensions, &headers, &DELETE)?;
            plane.service.delete_batch_synthesis(&account, &id).await.map_err(failed)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

/// `GET /texttospeech/operations/{id}`: the status of the job a create's `Operation-Location` names.
async fn operation(
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    render(
        async {
            let account = speech_account(&plane, &extensions, &headers, &READ)?;
            let job = plane.service.batch_synthesis_operation(&account, &id).await.map_err(failed)?;
            Ok(axum::Json(json!({"id": job.operation_id, "status": job.status})).into_response())
        }
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: Value) -> CreateBody {
        serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"))
    }

    fn refusal(id: &str, json: Value) -> String {
        match new_batch_synthesis(id, None, body(json)) {
            Ok(_) => panic!("accepted"),
            Err(e) => {
                assert_eq!(e.to_api_error().code, "BadRequest");
                e.to_string()
            }
        }
    }

    const SSML: &str =
        "<speak version='1.0' xml:lang='en-US'><voice name='en-US-SltFlite'>Hello there.</voice></speak>";

    #[test]
    fn valid_requests_are_taken_with_azures_defaults() {
        let plain = json!({"inputKind": "plaintext", "synthesisConfig": {"voice": "en-US-RmsFlite", "rate": "+10%"},
                           "inputs": [{"content": "The rainbow has seven colors."}, {"text": "Two."}]});
        let new = new_batch_synthesis("job-1", None, body(plain)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((new.input_kind, new.secrets.inputs.len()), (InputKind::PlainText, 2));
        assert_eq!(new.options, Options::default(), "riff-24khz-16bit-mono-pcm, 744 hours, nothing else");
        assert_eq!(new.synthesis_config.map(|c| c.rate), Some(Some("+10%".into())));
        let ssml = json!({"inputKind": "SSML", "inputs": [{"content": SSML}],
            "properties": {"outputFormat": "riff-16khz-16bit-mono-pcm", "timeToLiveInHours": 0, "concatenateResult": true,
                           "destinationContainerUrl": "https://h/c?sig=s", "destinationPath": "out"}});
        let new = new_batch_synthesis("j.2_x", Some("op-1".into()), body(ssml)).unwrap_or_else(|e| panic!("{e}"));
        assert!(new.synthesis_config.is_none());
        let o = &new.options;
        assert_eq!((o.time_to_live_in_hours, o.concatenate_result, o.to_destination), (0, true, true));
        assert_eq!(o.destination_path.as_deref(), Some("out"));
    }

    #[test]
    fn bad_requests_are_refused_with_the_reason() {
        let ssml =
            |properties: Value| json!({"inputKind": "SSML", "inputs": [{"content": SSML}], "properties": properties});
        assert!(refusal("ab", ssml(json!({}))).contains("'ab' is not valid"));
        assert!(refusal("job", json!({"inputKind": "SSML"})).contains("inputs is required"));
        assert!(refusal("job", json!({"inputKind": "SSML", "inputs": []})).contains("inputs is required"));
        assert!(refusal("job", json!({"inputs": [{"content": "x"}]})).contains("inputKind is required"));
        assert!(refusal("job", json!({"inputKind": "Markdown", "inputs": [{"content": "x"}]})).contains("Markdown"));
        let no_voice = json!({"inputKind": "PlainText", "inputs": [{"content": "x"}]});
        assert!(refusal("job", no_voice).contains("synthesisConfig.voice"));
        let jenny = json!({"inputKind": "PlainText", "synthesisConfig": {"voice": "en-US-JennyNeural"}, "inputs": [{"content": "x"}]});
        let message = refusal("job", jenny);
        assert!(message.contains("en-US-JennyNeural") && message.contains("en-US-SltFlite"), "{message}");
        let broken = json!({"inputKind": "SSML", "inputs": [{"content": SSML}, {"content": "<speak><voice name='en-US-RmsFlite'>x"}]});
        assert!(refusal("job", broken).starts_with("Input 2 cannot be synthesized"));
        assert!(
            refusal("job", ssml(json!({"outputFormat": "audio-24khz-48kbitrate-mono-mp3"}))).contains("outputFormat")
        );
        assert!(refusal("job", ssml(json!({"timeToLiveInHours": 745}))).contains("timeToLiveInHours"));
        assert!(refusal("job", ssml(json!({"timeToLiveInHours": -1}))).contains("timeToLiveInHours"));
        assert!(refusal("job", ssml(json!({"destinationContainerUrl": "http://h/c"}))).contains("https"));
        assert!(refusal("job", ssml(json!({"destinationPath": "p"}))).contains("destinationContainerUrl"));
        let many: Vec<Value> = (0..=MAX_INPUTS).map(|_| json!({"content": SSML})).collect();
        assert!(refusal("job", json!({"inputKind": "SSML", "inputs": many})).contains("at most 10000"));
        let custom = json!({"inputKind": "SSML", "inputs": [{"content": SSML}], "customVoices": {"v": "dep-1"}});
        assert!(refusal("job", custom).contains("Custom voices"));
        let empty = json!({"inputKind": "SSML", "inputs": [{"content": " "}]});
        assert!(refusal("job", empty).contains("Input 1 has no content"));
        let bad_operation = new_batch_synthesis("job", Some("-x".into()), body(ssml(json!({}))));
        assert!(bad_operation.is_err_and(|e| e.to_string().contains("Operation-Id")));
    }
}
