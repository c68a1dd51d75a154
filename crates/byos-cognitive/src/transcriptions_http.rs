//! The batch transcription routes of both speech to text families: parse, call
//! [`crate::transcriptions`], render in the Speech format.
//!
//! v3.2 creates with `POST /speechtotext/v3.2/transcriptions` and takes `properties.timeToLive`
//! (ISO 8601); 2024-11-15 creates with `POST /speechtotext/transcriptions:submit` and requires
//! `properties.timeToLiveHours`. Everything else is the same in both.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use byos_authz::Action;
use byos_core::ApiError;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::LiveAccount;
use crate::dataplane::Plane;
use crate::datasets::{Status, iso_duration, speech_error};
use crate::speech_http::{Api, FileQuery, LOCALES, Page, render, speech_account};
use crate::transcribe::{Channels, Transcript};
use crate::transcriptions::{
    DEFAULT_CHANNELS, MAX_AUDIO_BYTES, MAX_CONTENT_URLS, NewTranscription, Options, ResultFile, Sources, TTL_SECS,
    Transcription,
};

const READ: Action = Action::data("Microsoft.CognitiveServices/accounts/SpeechServices/speechrest/transcriptions/read");
const WRITE: Action =
    Action::data("Microsoft.CognitiveServices/accounts/SpeechServices/speechrest/transcriptions/write");
const DELETE: Action =
    Action::data("Microsoft.CognitiveServices/accounts/SpeechServices/speechrest/transcriptions/delete");
/// The base model byos's engine is (PocketSphinx's US English model), as the API names it.
pub(crate) const BASE_MODEL_ID: &str = "6d9d4a5e-3bdc-4f3a-9c43-8f5a1a3b0e01";
const TRANSCRIBE: Action =
    Action::data("Microsoft.CognitiveServices/accounts/SpeechServices/speechrest/transcriptions/action");
/// A fast transcription's request: the audio (at most [`MAX_AUDIO_BYTES`]) and its definition.
const FAST_BODY_LIMIT: usize = MAX_AUDIO_BYTES as usize + (1 << 20);
const PUNCTUATION_MODES: [&str; 4] = ["None", "Dictated", "Automatic", "DictatedAndAutomatic"];
const PROFANITY_MODES: [&str; 4] = ["None", "Removed", "Tags", "Masked"];

/// The transcription routes of `api`'s family.
pub(crate) fn routes(api: Api) -> Router<Plane> {
    let base = api.base();
    let collection = format!("{base}/transcriptions");
    let router = match api {
        Api::V32 => Router::new().route(&collection, axum::routing::get(list).post(create_transcription)),
        Api::V20241115 => Router::new()
            .route(&collection, axum::routing::get(list))
            .route(&format!("{collection}:submit"), axum::routing::post(create_transcription))
            .route(
                &format!("{collection}:transcribe"),
                axum::routing::post(transcribe_now).layer(DefaultBodyLimit::max(FAST_BODY_LIMIT)),
            ),
    };
    let router = router
        .route(&format!("{collection}/locales"), axum::routing::get(locales))
        .route(&format!("{collection}/{{id}}"), crate::entity_http::by_id::<Transcription>())
        .route(&format!("{collection}/{{id}}/files"), axum::routing::get(files))
        .route(&format!("{collection}/{{id}}/files/{{file}}"), axum::routing::get(file));
    router.layer(axum::Extension(api))
}

/// A request Azure refuses as `InvalidRequest`, with the detailed code inside.
pub(crate) fn bad(inner: &str, message: impl Into<String>) -> ApiError {
    speech_error(400, "InvalidRequest", message).with_inner_code(inner)
}

/// The `self` URL of a custom model, or of the base model.
pub(crate) fn model_url(api: Api, account: &LiveAccount, custom: Option<&str>) -> String {
    match custom {
        Some(id) => api.url(account, &format!("/models/{id}")),
        None => api.url(account, &format!("/models/base/{BASE_MODEL_ID}")),
    }
}

fn wire(api: Api, account: &LiveAccount, t: &Transcription) -> Value {
    let o = &t.options;
    let channels = if o.channels.is_empty() { DEFAULT_CHANNELS.to_vec() } else { o.channels.clone() };
    let mut properties = json!({
        "wordLevelTimestampsEnabled": o.word_level_timestamps,
        "displayFormWordLevelTimestampsEnabled": o.display_form_word_level_timestamps,
        "channels": channels,
        "punctuationMode": o.punctuation_mode.as_deref().unwrap_or("DictatedAndAutomatic"),
        "profanityFilterMode": o.profanity_filter_mode.as_deref().unwrap_or("Masked"),
    });
    if let Some(ttl) = o.time_to_live_secs {
        match api {
            Api::V32 => properties["timeToLive"] = json!(iso_duration(ttl * 1000)),
            Api::V20241115 => properties["timeToLiveHours"] = json!(ttl / 3600),
        }
    }
    if let Some(ms) = t.duration_ms {
        properties["duration"] = json!(iso_duration(ms));
        properties["durationMilliseconds"] = json!(ms);
    }
    if let Some((code, message)) = &t.error {
        properties["error"] = json!({"code": code, "message": message});
    }
    let mut wire = json!({
        "self": api.url(account, &format!("/transcriptions/{}", t.id)),
        "model": {"self": model_url(api, account, t.model.as_deref())},
        "links": {"files": api.url(account, &format!("/transcriptions/{}/files", t.id))},
        "properties": properties,
        "lastActionDateTime": t.last_action, "status": t.status, "createdDateTime": t.created,
        "locale": t.locale, "displayName": t.display_name,
    });
    if let Some(description) = &t.description {
        wire["description"] = json!(description);
    }
    if !t.custom_properties.is_empty() {
        wire["customProperties"] = json!(t.custom_properties);
    }
    wire
}

/// A duration in ISO 8601 (`P1DT12H`, `PT6H30M`, `PT45S`) in seconds.
fn parse_iso_duration(text: &str) -> Option<u64> {
    let rest = text.strip_prefix('P')?;
    let (days, time) = rest.split_once('T').unwrap_or((rest, ""));
    let mut seconds = 0u64;
    let mut add = |part: &str, units: &[(char, u64)]| -> Option<()> {
        let mut number = String::new();
        for c in part.chars() {
            match units.iter().find(|(u, _)| *u == c) {
                Some((_, scale)) => {
                    seconds = seconds.checked_add(number.parse::<u64>().ok()?.checked_mul(*scale)?)?;
                    number.clear();
                }
                None if c.is_ascii_digit() => number.push(c),
                None => return None,
            }
        }
        number.is_empty().then_some(())
    };
    add(days, &[('W', 7 * 86_400), ('D', 86_400)])?;
    add(time, &[('H', 3600), ('M', 60), ('S', 1)])?;
    (!(days.is_empty() && time.is_empty())).then_some(seconds)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PropertiesBody {
    #[serde(default)]
    word_level_timestamps_enabled: bool,
    #[serde(default)]
    display_form_word_level_timestamps_enabled: bool,
    channels: Option<Vec<u32>>,
    destination_container_url: Option<String>,
    punctuation_mode: Option<String>,
    profanity_filter_mode: Option<String>,
    time_to_live: Option<String>,
    time_to_live_hours: Option<u64>,
    #[serde(default)]
    diarization_enabled: bool,
    diarization: Option<Value>,
    language_identification: Option<Value>,
}

#[derive(Deserialize)]
struct EntityReference {
    #[serde(rename = "self")]
    self_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    display_name: Option<String>,
    description: Option<String>,
    #[serde(default)]
    custom_properties: Map<String, Value>,
    locale: Option<String>,
    content_urls: Option<Vec<String>>,
    content_container_url: Option<String>,
    model: Option<EntityReference>,
    dataset: Option<Value>,
    #[serde(default)]
    properties: PropertiesBody,
}

fn https(url: &str, what: &str) -> Result<(), ApiError> {
    if url.starts_with("https://") {
        return Ok(());
    }
    Err(bad(
        "InvalidParameterValue",
        format!("The {what} '{}' is not an https URL.", url.split('?').next().unwrap_or(url)),
    ))
}

/// The model a request names (`model.self`): the base model (`None`), a succeeded custom model of
/// this account (its id), or an endpoint of this account (the model it serves); anything else, a model of another account included, is `InvalidModel`.
pub(crate) async fn check_model(
    service: &crate::CognitiveService,
    account: &LiveAccount,
    url: Option<&str>,
) -> Result<Option<String>, ApiError> {
    let Some(url) = url else { return Ok(None) };
    let path = url.split('?').next().unwrap_or(url).trim_end_matches('/');
    let id = path.rsplit('/').next().unwrap_or_default();
    let refused = |why: &str| bad("InvalidModel", format!("The model '{url}' {why}."));
    if path.contains("/models/base/") {
        return if id.eq_ignore_ascii_case(BASE_MODEL_ID) {
            Ok(None)
        } else {
            Err(refused("is not a base model of byos"))
        };
    }
    if path.contains("/endpoints/") {
        // An endpoint stands for the model it serves (as Azure's batch transcription takes one).
        let endpoint = service
            .speech_endpoint(account, id)
            .await
            .map_err(|e| if e.status == 404 { refused("is not an endpoint of this account") } else { e })?;
        return Ok(endpoint.model);
    }
    if !path.contains("/models/") {
        return Err(refused("is not a model or endpoint URL"));
    }
    let model = service
        .custom_model(account, id)
        .await
        .map_err(|e| if e.status == 404 { refused("does not exist in this account") } else { e })?;
    if model.status != Status::Succeeded {
        return Err(refused("has not finished training"));
    }
    Ok(Some(model.id))
}

fn time_to_live(api: Api, p: &PropertiesBody) -> Result<Option<u64>, ApiError> {
    let seconds = match api {
        Api::V32 => match &p.time_to_live {
            None => return Ok(None),
            Some(text) => parse_iso_duration(text).ok_or_else(|| {
                bad("InvalidParameterValue", format!("timeToLive '{text}' is not an ISO 8601 duration."))
            })?,
        },
        Api::V20241115 => {
            let hours =
                p.time_to_live_hours.ok_or_else(|| bad("InvalidPayload", "properties.timeToLiveHours is required."))?;
            hours.saturating_mul(3600)
        }
    };
    if !TTL_SECS.contains(&seconds) {
        return Err(bad("InvalidParameterValue", "The time to live must be between 6 hours and 31 days (744 hours)."));
    }
    Ok(Some(seconds))
}

/// Validates the request into what the domain takes.
fn new_transcription(api: Api, body: CreateBody) -> Result<NewTranscription, ApiError> {
    let display_name = body
        .display_name
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| bad("InvalidPayload", "The transcription's displayName is required."))?;
    let locale = body.locale.ok_or_else(|| bad("InvalidPayload", "The transcription's locale is required."))?;
    let locale = LOCALES.iter().find(|l| l.eq_ignore_ascii_case(&locale)).ok_or_else(|| {
        bad(
            "InvalidLocale",
            format!("The locale '{locale}' is not supported; byos transcribes {}.", LOCALES.join(", ")),
        )
    })?;
    let urls = body.content_urls.unwrap_or_default();
    let container = body.content_container_url.filter(|u| !u.is_empty());
    match (urls.is_empty(), &container, &body.dataset) {
        (_, _, Some(_)) => {
            return Err(bad(
                "InvalidPayload",
                "Transcribing a dataset is not supported by byos; give contentUrls or contentContainerUrl.",
            ));
        }
        (true, None, None) => return Err(bad("InvalidPayload", "Give contentUrls or contentContainerUrl.")),
        (false, Some(_), None) => {
            return Err(bad("InvalidPayload", "Give contentUrls or contentContainerUrl, not both."));
        }
        _ => {}
    }
    if urls.len() > MAX_CONTENT_URLS {
        return Err(bad(
            "InvalidPayload",
            format!("{} contentUrls were given; a transcription takes at most {MAX_CONTENT_URLS}.", urls.len()),
        ));
    }
    for url in urls.iter().chain(container.iter()) {
        https(url, "content URL")?;
    }
    let p = body.properties;
    if p.diarization_enabled || p.diarization.is_some() || p.language_identification.is_some() {
        return Err(bad(
            "InvalidParameterValue",
            "Diarization and language identification are not supported by byos's speech engine.",
        ));
    }
    let channels = p.channels.clone().unwrap_or_default();
    if channels.iter().any(|c| *c > 1) || channels.len() > 2 {
        return Err(bad("InvalidParameterValue", "Only channels 0 and 1 can be transcribed."));
    }
    for (value, modes, name) in [
        (&p.punctuation_mode, &PUNCTUATION_MODES, "punctuationMode"),
        (&p.profanity_filter_mode, &PROFANITY_MODES, "profanityFilterMode"),
    ] {
        if let Some(v) = value
            && !modes.iter().any(|m| m.eq_ignore_ascii_case(v))
        {
            return Err(bad("InvalidParameterValue", format!("{name} '{v}' is not one of {}.", modes.join(", "))));
        }
    }
    if let Some(url) = &p.destination_container_url {
        https(url, "destinationContainerUrl")?;
    }
    let options = Options {
        word_level_timestamps: p.word_level_timestamps_enabled,
        display_form_word_level_timestamps: p.display_form_word_level_timestamps_enabled,
        channels,
        punctuation_mode: p.punctuation_mode.clone(),
        profanity_filter_mode: p.profanity_filter_mode.clone(),
        diarization_enabled: false,
        time_to_live_secs: time_to_live(api, &p)?,
        to_destination: p.destination_container_url.is_some(),
    };
    Ok(NewTranscription {
        model: None,
        display_name,
        description: body.description,
        custom_properties: body.custom_properties,
        locale: (*locale).to_owned(),
        options,
        sources: Sources {
            content_urls: urls,
            content_container_url: container,
            destination_container_url: p.destination_container_url,
        },
    })
}

async fn create_transcription(
    State(plane): State<Plane>,
    axum::Extension(api): axum::Extension<Api>,
    extensions: Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    render(
        async {
            let account = speech_account(&plane, &extensions, &headers, &WRITE)?;
            let body: CreateBody = serde_json::from_slice(&body)
                .map_err(|e| bad("InvalidPayload", format!("The request body is not a valid transcription: {e}.")))?;
            let model_url = body.model.as_ref().and_then(|m| m.self_url.clone());
            let mut new = new_transcription(api, body)?;
            new.model = check_model(&plane.service, &account, model_url.as_deref()).await?;
            let t = plane.service.create_transcription(Arc::clone(&account), new).await?;
            let location = api.url(&account, &format!("/transcriptions/{}", t.id));
            Ok((StatusCode::CREATED, [(header::LOCATION, location)], axum::Json(wire(api, &account, &t)))
                .into_response())
        }
        .await,
    )
}

async fn locales(State(plane): State<Plane>, extensions: Extensions, headers: HeaderMap) -> Response {
    render((|| {
        speech_account(&plane, &extensions, &headers, &READ)?;
        Ok(axum::Json(json!(LOCALES)).into_response())
    })())
}

async fn list(
    State(plane): State<Plane>,
    axum::Extension(api): axum::Extension<Api>,
    extensions: Extensions,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Response {
    render(
        async {
            let account = speech_account(&plane, &extensions, &headers, &READ)?;
            let all = plane.service.transcriptions(&account).await?;
            Ok(axum::Json(page.render(api, &account, "/transcriptions", &all, |t| wire(api, &account, t)))
                .into_response())
        }
        .await,
    )
}

async fn readable(
    plane: &Plane,
    extensions: &Extensions,
    headers: &HeaderMap,
    id: &str,
) -> Result<(Arc<LiveAccount>, Transcription), ApiError> {
    let account = speech_account(plane, extensions, headers, &READ)?;
    let t = plane.service.transcription(&account, id).await?;
    Ok((account, t))
}

/// How long a file's link lasts: 2024-11-15 gives a BYOS account's readers plain URLs (they need
/// their own access to the customer's storage), v3.2 a SAS unless `sasValidityInSeconds=0`.
fn link_validity(api: Api, account: &LiveAccount, query: &FileQuery) -> Duration {
    match api {
        Api::V20241115 if !account.settings.user_owned_storage.is_empty() => Duration::ZERO,
        _ => Duration::from_secs(query.validity()),
    }
}

async fn file_wire(
    plane: &Plane,
    api: Api,
    account: &LiveAccount,
    t: &Transcription,
    file: &ResultFile,
    validity: Duration,
) -> Result<Value, ApiError> {
    let link = plane.service.transcription_file_link(account, t, file, validity).await?;
    Ok(json!({
        "self": api.url(account, &format!("/transcriptions/{}/files/{}", t.id, file.id)),
        "name": file.name, "kind": file.kind, "properties": {"size": file.size},
        "createdDateTime": file.created, "links": {"contentUrl": link},
    }))
}

async fn files(
    State(plane): State<Plane>,
    axum::Extension(api): axum::Extension<Api>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<FileQuery>,
    Query(page): Query<Page>,
) -> Response {
    render(
        async {
            let (account, t) = readable(&plane, &extensions, &headers, &id).await?;
            if t.status != Status::Succeeded && t.status != Status::Failed {
                return Ok(axum::Json(json!({"values": []})).into_response());
            }
            let validity = link_validity(api, &account, &query);
            // Links are signed for the page asked for only.
            let mut values = Vec::new();
            for file in page.window(&t.files) {
                values.push(file_wire(&plane, api, &account, &t, file, validity).await?);
            }
            let path = format!("/transcriptions/{id}/files");
            Ok(axum::Json(page.body(api, &account, &path, values, t.files.len())).into_response())
        }
        .await,
    )
}

async fn file(
    State(plane): State<Plane>,
    axum::Extension(api): axum::Extension<Api>,
    extensions: Extensions,
    headers: HeaderMap,
    Path((id, file_id)): Path<(String, String)>,
    Query(query): Query<FileQuery>,
) -> Response {
    render(
        async {
            let (account, t) = readable(&plane, &extensions, &headers, &id).await?;
            let file = t
                .files
                .iter()
                .find(|f| f.id.eq_ignore_ascii_case(&file_id))
                .ok_or_else(|| speech_error(404, "NotFound", format!("The file '{file_id}' does not exist.")))?;
            let validity = link_validity(api, &account, &query);
            Ok(axum::Json(file_wire(&plane, api, &account, &t, file, validity).await?).into_response())
        }
        .await,
    )
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct FastDefinition {
    #[serde(default)]
    locales: Vec<String>,
    channels: Option<Vec<u32>>,
    profanity_filter_mode: Option<String>,
    diarization: Option<Value>,
}

/// Validates a fast transcription's definition into the channels to transcribe.
fn fast_channels(definition: &FastDefinition) -> Result<Channels, ApiError> {
    for locale in &definition.locales {
        if !LOCALES.iter().any(|l| l.eq_ignore_ascii_case(locale)) {
            return Err(bad(
                "InvalidLocale",
                format!("The locale '{locale}' is not supported; byos transcribes {}.", LOCALES.join(", ")),
            ));
        }
    }
    if definition.diarization.is_some() {
        return Err(bad("InvalidParameterValue", "Diarization is not supported by byos's speech engine."));
    }
    if let Some(v) = &definition.profanity_filter_mode
        && !PROFANITY_MODES.iter().any(|m| m.eq_ignore_ascii_case(v))
    {
        return Err(bad(
            "InvalidParameterValue",
            format!("profanityFilterMode '{v}' is not one of {}.", PROFANITY_MODES.join(", ")),
        ));
    }
    match &definition.channels {
        None => Ok(Channels::Mixed),
        Some(c) if c.is_empty() || c.len() > 2 || c.iter().any(|c| *c > 1) => {
            Err(bad("InvalidParameterValue", "channels names one or two of the channels 0 and 1."))
        }
        Some(c) => Ok(Channels::Separate(c.clone())),
    }
}

/// A fast transcription's answer: `durationMilliseconds`, `combinedPhrases`, `phrases` with words.
fn fast_json(transcript: &Transcript, channels: &Channels) -> Value {
    let separate = matches!(channels, Channels::Separate(_));
    let combined: Vec<Value> = transcript
        .channels
        .iter()
        .map(|&c| {
            let mut phrase = json!({"text": crate::recognition::display(&transcript.combined(c))});
            if separate {
                phrase["channel"] = json!(c);
            }
            phrase
        })
        .collect();
    let phrases: Vec<Value> = transcript
        .phrases
        .iter()
        .map(|p| {
            let words: Vec<Value> = p
                .heard
                .words
                .iter()
                .map(|w| json!({"text": w.text, "offsetMilliseconds": w.offset_ms, "durationMilliseconds": w.duration_ms}))
                .collect();
            let mut phrase = json!({"offsetMilliseconds": p.offset_ms, "durationMilliseconds": p.duration_ms,
                "text": crate::recognition::display(&p.heard.text), "words": words, "locale": LOCALES[0],
                "confidence": p.heard.confidence});
            if separate {
                phrase["channel"] = json!(p.channel);
            }
            phrase
        })
        .collect();
    json!({"durationMilliseconds": transcript.duration_ms, "combinedPhrases": combined, "phrases": phrases})
}

/// The `audio` file and the `definition` of a fast transcription's form.
async fn fast_form(mut form: Multipart) -> Result<(Bytes, String, FastDefinition), ApiError> {
    let (mut audio, mut name, mut definition) = (None, String::new(), FastDefinition::default());
    while let Some(field) =
        form.next_field().await.map_err(|e| bad("InvalidPayload", format!("The form is malformed: {e}.")))?
    {
        let field_name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().unwrap_or_default().to_owned();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| bad("InvalidPayload", format!("The form field '{field_name}' is unreadable: {e}.")))?;
        match field_name.as_str() {
            "audio" => (audio, name) = (Some(bytes), file_name),
            "definition" => {
                definition = serde_json::from_slice(&bytes)
                    .map_err(|e| bad("InvalidPayload", format!("The definition is not valid: {e}.")))?;
            }
            _ => {}
        }
    }
    let audio =
        audio.filter(|a| !a.is_empty()).ok_or_else(|| bad("InvalidPayload", "The form has no 'audio' file."))?;
    Ok((audio, name, definition))
}

/// `POST /speechtotext/transcriptions:transcribe` (fast transcription): the answer comes with the
/// response; nothing of the audio or the result is kept.
async fn transcribe_now(
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    form: Multipart,
) -> Response {
    render(
        async {
            speech_account(&plane, &extensions, &headers, &TRANSCRIBE)?;
            let (audio, name, definition) = fast_form(form).await?;
            let channels = fast_channels(&definition)?;
            let extension = name.rsplit_once('.').map_or("", |(_, ext)| ext);
            let transcript = crate::transcribe::transcribe(&plane.service.speech, audio, extension, &channels, None)
                .await
                .map_err(|e| match e {
                    crate::transcribe::TranscribeError::Audio(e) => {
                        bad("InvalidAudioFormat", format!("The audio cannot be transcribed: {e}."))
                    }
                    other => speech_error(500, "InternalServerError", other.to_string()),
                })?;
            Ok(axum::Json(fast_json(&transcript, &channels)).into_response())
        }
        .await,
    )
}

crate::entity_http::speech_entity!(Transcription {
    actions: (READ, WRITE, DELETE),
    update: "transcription update",
    service: (transcription, update_transcription, delete_transcription),
    wire: wire,
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_durations_parse_as_azure_writes_them() {
        assert_eq!(parse_iso_duration("PT12H"), Some(43_200));
        assert_eq!(parse_iso_duration("P1DT6H30M"), Some(109_800));
        assert_eq!(parse_iso_duration("P31D"), Some(2_678_400));
        assert_eq!(parse_iso_duration("PT45S"), Some(45));
        for bad in ["12H", "P", "PT", "PT5X", "PTH", "P1H"] {
            assert_eq!(parse_iso_duration(bad), None, "{bad}");
        }
    }

    fn body(json: Value) -> CreateBody {
        serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn requests_are_validated_as_azure_does() {
        let ok = json!({"displayName": "t", "locale": "en-US", "contentUrls": ["https://h/a.wav"]});
        assert!(new_transcription(Api::V32, body(ok.clone())).is_ok());
        let code = |api, json: Value| new_transcription(api, body(json)).err().and_then(|e| e.inner_code);
        assert_eq!(code(Api::V20241115, ok.clone()).as_deref(), Some("InvalidPayload"), "timeToLiveHours is required");
        let many: Vec<String> = (0..1001).map(|i| format!("https://h/{i}.wav")).collect();
        assert_eq!(
            code(Api::V32, json!({"displayName": "t", "locale": "en-US", "contentUrls": many})).as_deref(),
            Some("InvalidPayload")
        );
        assert_eq!(
            code(Api::V32, json!({"displayName": "t", "locale": "de-DE", "contentUrls": ["https://h/a"]})).as_deref(),
            Some("InvalidLocale")
        );
        let short_ttl = json!({"displayName": "t", "locale": "en-US", "contentUrls": ["https://h/a"], "properties": {"timeToLive": "PT1H"}});
        assert_eq!(code(Api::V32, short_ttl).as_deref(), Some("InvalidParameterValue"));
        assert_eq!(
            code(Api::V32, json!({"displayName": "t", "locale": "en-US", "contentUrls": ["http://h/a"]})).as_deref(),
            Some("InvalidParameterValue")
        );
    }
}
