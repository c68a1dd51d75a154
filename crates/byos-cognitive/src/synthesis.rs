//! Text to speech REST on an account's data plane: `POST /cognitiveservices/v1` (SSML in, audio in
//! the `X-Microsoft-OutputFormat` out, synthesized by Flite or eSpeak NG in the TTS worker processes) and
//! `GET /cognitiveservices/voices/list` (byos's own voices, in Azure's shape). Both also under `/tts/`,
//! as the Speech SDK addresses them with an `endpoint=` configuration. Nothing is kept.

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use byos_authz::Action;
use byos_core::ApiError;
use byos_speech::tts::{OutputFormat, SynthesizeError};
use bytes::Bytes;
use serde_json::json;

use crate::dataplane::Plane;
use crate::speech_http::speech_account;

pub(crate) const SYNTHESIZE: Action =
    Action::data("Microsoft.CognitiveServices/accounts/SpeechServices/texttospeech/frontend/action");
const VOICES: Action = Action::data("Microsoft.CognitiveServices/accounts/SpeechServices/texttospeech/voices/read");
/// The largest SSML document taken (Azure's limit for a request's SSML is 64 KiB of text).
pub(crate) const MAX_SSML_BYTES: usize = 64 << 10;
/// The format a request without `X-Microsoft-OutputFormat` gets.
const DEFAULT_FORMAT: &str = "riff-16khz-16bit-mono-pcm";

/// The text to speech routes.
pub(crate) fn routes() -> Router<Plane> {
    let synthesize = axum::routing::post(synthesize).layer(DefaultBodyLimit::max(MAX_SSML_BYTES));
    Router::new()
        .route("/cognitiveservices/v1", synthesize.clone())
        .route("/tts/cognitiveservices/v1", synthesize)
        .route("/cognitiveservices/voices/list", axum::routing::get(voices))
        .route("/tts/cognitiveservices/voices/list", axum::routing::get(voices))
        .route("/cognitiveservices/websocket/v1", axum::routing::get(crate::tts_socket::upgrade))
        .route("/tts/cognitiveservices/websocket/v1", axum::routing::get(crate::tts_socket::upgrade))
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("BadRequest", message)
}

async fn voices(State(plane): State<Plane>, extensions: Extensions, headers: HeaderMap) -> Response {
    match speech_account(&plane, &extensions, &headers, &VOICES) {
        Ok(_) => axum::Json(json!(byos_speech::tts::voices())).into_response(),
        Err(e) => byos_http::render_error(&e),
    }
}

async fn synthesize(State(plane): State<Plane>, extensions: Extensions, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        speech_account(&plane, &extensions, &headers, &SYNTHESIZE)?;
        let format = headers.get("x-microsoft-outputformat").and_then(|v| v.to_str().ok()).unwrap_or(DEFAULT_FORMAT);
        let format = OutputFormat::parse(format).map_err(|e| {
            bad(format!("The output format '{}' is not one byos produces (PCM, mu-law or A-law).", e.0))
        })?;
        let text = std::str::from_utf8(&body).map_err(|_| bad("The SSML is not UTF-8 text."))?;
        let ssml = byos_speech::tts::request(text).map_err(|e| bad(format!("The SSML is invalid: {e}.")))?;
        let speech = match plane.service.tts.synthesize(&ssml).await {
            Ok(speech) => speech,
            Err(SynthesizeError::Busy) => {
                return Ok((StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1")]).into_response());
            }
            Err(SynthesizeError::Voice(e)) => return Err(bad(e.to_string())),
            Err(SynthesizeError::Engine(e)) => {
                tracing::warn!(error = %e, "text to speech failed in the engine");
                return Err(ApiError::new(500, "InternalServerError", "The speech synthesis engine failed."));
            }
        };
        let audio = format.encode(speech.sample_rate, &speech.samples).map_err(|e| {
            tracing::warn!(error = %e, "synthesized audio could not be encoded");
            ApiError::internal()
        })?;
        Ok(([(header::CONTENT_TYPE, format.content_type())], audio).into_response())
    }
    .await;
    result.unwrap_or_else(|e: ApiError| byos_http::render_error(&e))
}
