//! Short-audio recognition (`POST /speech/recognition/{conversation,interactive,dictation}/cognitiveservices/v1`):
//! up to 60 seconds of WAV or OGG, recognized by the engine workers, answered in the simple or the
//! detailed format with Azure's `RecognitionStatus` values.

use axum::extract::{Path, Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use byos_authz::Action;
use byos_core::ApiError;
use byos_speech::engine::RecognizeError;
use byos_speech::pocketsphinx::Recognition;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::dataplane::Plane;
use crate::datasets::speech_error;
use crate::speech_http::{LOCALES, known_locale, speech_account};

pub(crate) const RECOGNIZE: Action =
    Action::data("Microsoft.CognitiveServices/accounts/SpeechServices/speechrest/frontend/action");
/// The longest short audio (Azure: 60 seconds).
const MAX_AUDIO_MS: u64 = 60_000;
/// The largest request body: a little over 60 seconds of 48 kHz stereo 32-bit audio, so that
/// too-long audio is told so (400) rather than refused for its size.
pub(crate) const MAX_BODY_BYTES: usize = 32 << 20;
/// Below this peak amplitude the audio counts as silence (about -40 dBFS).
const SILENCE_PEAK: i16 = 330;
const TICKS_PER_MS: u64 = 10_000;

#[derive(Deserialize)]
pub(crate) struct RecognizeQuery {
    language: Option<String>,
    format: Option<String>,
    cid: Option<String>,
    #[serde(rename = "storeAudio")]
    store_audio: Option<String>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    speech_error(400, "InvalidArgument", message)
}

/// The container the client says it sends (`Content-Type: audio/wav; codecs=audio/pcm; samplerate=16000`).
fn extension(headers: &HeaderMap) -> &'static str {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if content_type.contains("ogg") { "ogg" } else { "wav" }
}

/// `hello world` as Azure displays it: `Hello world.`
pub(crate) fn display(lexical: &str) -> String {
    let mut chars = lexical.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

fn status(status: &str) -> Value {
    json!({"RecognitionStatus": status, "Offset": 0, "Duration": 0})
}

fn answer(heard: &Recognition, detailed: bool, duration_ms: u64) -> Value {
    if heard.text.is_empty() {
        return json!({"RecognitionStatus": "NoMatch", "Offset": 0, "Duration": duration_ms * TICKS_PER_MS});
    }
    let start_ms = heard.words.first().map_or(0, |w| w.offset_ms);
    let end_ms = heard.words.last().map_or(duration_ms, |w| w.offset_ms + w.duration_ms);
    let (offset, duration) = (start_ms * TICKS_PER_MS, end_ms.saturating_sub(start_ms) * TICKS_PER_MS);
    let shown = display(&heard.text);
    if !detailed {
        return json!({"RecognitionStatus": "Success", "DisplayText": shown, "Offset": offset, "Duration": duration});
    }
    let mut n_best = vec![json!({
        "Confidence": heard.confidence, "Lexical": heard.text, "ITN": heard.text, "MaskedITN": heard.text, "Display": shown,
    })];
    n_best.extend(crate::transcriptions::alternatives(heard).map(|(confidence, text)| {
        json!({"Confidence": confidence, "Lexical": text, "ITN": text, "MaskedITN": text, "Display": display(text)})
    }));
    json!({"RecognitionStatus": "Success", "Offset": offset, "Duration": duration, "NBest": n_best})
}

pub(crate) async fn recognize(
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(mode): Path<String>,
    Query(query): Query<RecognizeQuery>,
    body: Bytes,
) -> Response {
    let result = async {
        let account = speech_account(&plane, &extensions, &headers, &RECOGNIZE)?;
        if !["conversation", "interactive", "dictation"].contains(&mode.as_str()) {
            return Err(ApiError::not_found("404", "Resource not found"));
        }
        let language = query.language.as_deref().ok_or_else(|| invalid("The language query parameter is required."))?;
        let Some(locale) = known_locale(language) else {
            return Err(invalid(format!(
                "The language '{language}' is not supported; byos recognizes {}.",
                LOCALES.join(", ")
            )));
        };
        let detailed = match query.format.as_deref().unwrap_or("simple") {
            f if f.eq_ignore_ascii_case("simple") => false,
            f if f.eq_ignore_ascii_case("detailed") => true,
            other => return Err(invalid(format!("The format '{other}' is not simple or detailed."))),
        };
        let endpoint = match &query.cid {
            Some(cid) => Some(crate::endpoints::endpoint_for_recognition(&plane.service, &account, cid).await?),
            None => None,
        };
        let ext = extension(&headers);
        let audio = crate::transcribe::decode(body.clone(), ext)
            .await
            .map_err(|e| invalid(format!("The audio cannot be recognized: {e}.")))?;
        if audio.duration_ms > MAX_AUDIO_MS {
            return Err(invalid(format!(
                "The audio is {} ms long; short audio is at most {MAX_AUDIO_MS} ms.",
                audio.duration_ms
            )));
        }
        let samples = &audio.channels[0];
        let result = if samples.iter().all(|s| s.unsigned_abs() < SILENCE_PEAK.unsigned_abs()) {
            status("InitialSilenceTimeout")
        } else {
            let model = match endpoint.as_ref().and_then(|e| e.model.as_deref()) {
                Some(id) => Some(plane.service.adapted_model(&account, id).await?),
                None => None,
            };
            match plane.service.speech.recognize_with(samples, model.as_ref()).await {
                Ok(heard) => answer(&heard, detailed, audio.duration_ms),
                Err(RecognizeError::Busy) => {
                    return Ok((
                        StatusCode::TOO_MANY_REQUESTS,
                        [(header::RETRY_AFTER, "1")],
                        axum::Json(
                            json!({"code": "TooManyRequests", "message": "The speech engine is busy; retry later."}),
                        ),
                    )
                        .into_response());
                }
                Err(RecognizeError::Engine(e)) => {
                    tracing::warn!(error = %e, "short-audio recognition failed in the engine");
                    status("Error")
                }
            }
        };
        // The customer asked for this recognition to be logged: without its log it is not answered.
        let store_audio = crate::endpoints::asks_to_store(query.store_audio.as_deref());
        if let Some((owner, locale)) = crate::endpoints::log_owner(endpoint.as_ref(), store_audio, locale) {
            plane.service.log_recognition(&account, &owner, &locale, body, ext, &result).await?;
        }
        Ok(axum::Json(result).into_response())
    }
    .await;
    result.unwrap_or_else(|e| byos_http::render_error(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use byos_speech::pocketsphinx::Word;

    #[test]
    fn answers_follow_azures_shapes() {
        let heard = Recognition {
            text: "hello world".into(),
            words: vec![
                Word { text: "hello".into(), offset_ms: 200, duration_ms: 300 },
                Word { text: "world".into(), offset_ms: 500, duration_ms: 400 },
            ],
            confidence: 0.8,
            alternatives: vec![],
        };
        let simple = answer(&heard, false, 1500);
        assert_eq!(simple["DisplayText"], "Hello world.");
        assert_eq!((simple["Offset"].as_u64(), simple["Duration"].as_u64()), (Some(2_000_000), Some(7_000_000)));
        let detailed = answer(&heard, true, 1500);
        assert_eq!(detailed["NBest"][0]["Lexical"], "hello world");
        let nothing = Recognition::default();
        assert_eq!(answer(&nothing, false, 1000)["RecognitionStatus"], "NoMatch");
    }
}
