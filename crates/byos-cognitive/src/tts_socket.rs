//! Text to speech over the Speech SDK's WebSocket protocol ("USP", `/cognitiveservices/websocket/v1`
//! and `/tts/cognitiveservices/websocket/v1`), as `../shared/reference/speech-sdk.md` section 6
//! records it: per request the client sends `synthesis.context` (the output format, whether it wants
//! word boundaries) and `ssml` under one `X-RequestId`; byos answers `turn.start`, `audio.metadata`
//! with the word boundaries when asked, the audio in binary messages, then `turn.end`. A request byos
//! cannot serve (a format it cannot make, invalid SSML, an unknown voice) closes the socket with 1007
//! and the reason, which the SDK reports as BadRequest with that text. The caller is authenticated and
//! admitted at the upgrade, so a refusal is an HTTP status the SDK reports without retrying.

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{Extensions, HeaderMap};
use axum::response::{IntoResponse, Response};
use byos_speech::tts::{OutputFormat, Synthesis, SynthesizeError};
use serde_json::{Value, json};

use crate::dataplane::Plane;
use crate::speech_http::speech_account;

/// The largest client message taken: well over the SSML limit, so that longer SSML is refused with
/// its reason rather than by the socket.
const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Audio goes out in messages of this size.
const AUDIO_CHUNK: usize = 8 << 10;
/// The close code the SDK reports as BadRequest with the reason (RFC 6455: invalid payload data).
pub(crate) const INVALID_PAYLOAD: u16 = 1007;
const TICKS_PER_MS: u64 = 10_000;

pub(crate) async fn upgrade(
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if let Err(e) = speech_account(&plane, &extensions, &headers, &crate::synthesis::SYNTHESIZE) {
        return byos_http::render_error(&e);
    }
    let permit = match live_session(&plane.service) {
        Ok(permit) => permit,
        Err(refused) => return refused,
    };
    let connection = headers.get("x-connectionid").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    ws.protocols(["USP"])
        .max_message_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            let _open = permit;
            tracing::info!(connection, "text to speech session started");
            if let Err(e) = session(plane, socket).await {
                tracing::info!(connection, error = %e, "text to speech session ended");
            }
        })
        .into_response()
}

/// The close code of a session the client left idle (the SDK reports ConnectionFailure and does
/// not retry).
pub(crate) const IDLE: u16 = 4000;

/// The reason an idle session is closed with.
pub(crate) fn idle_reason(timeout: std::time::Duration) -> String {
    format!("the client sent nothing for {} s", timeout.as_secs())
}

/// A permit for one more Speech SDK session, or the 429 the SDK reports as TooManyRequests (each
/// session holds a socket and some audio: their number bounds the memory they take).
pub(crate) fn live_session(service: &crate::CognitiveService) -> Result<tokio::sync::OwnedSemaphorePermit, Response> {
    std::sync::Arc::clone(&service.live_sessions).try_acquire_owned().map_err(|_| {
        let retry = [(axum::http::header::RETRY_AFTER, "1")];
        (axum::http::StatusCode::TOO_MANY_REQUESTS, retry, "Too many open speech sessions; retry later.")
            .into_response()
    })
}

/// A client text message: its headers (names as sent) and body.
pub(crate) struct Incoming<'a> {
    pub(crate) path: &'a str,
    pub(crate) request_id: &'a str,
    pub(crate) body: &'a str,
}

pub(crate) fn parse(text: &str) -> Option<Incoming<'_>> {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let header = |name: &str| {
        head.split("\r\n")
            .filter_map(|line| line.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    };
    Some(Incoming { path: header("Path")?, request_id: header("X-RequestId").unwrap_or_default(), body })
}

fn timestamp() -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    time::OffsetDateTime::now_utc().format(&format).unwrap_or_default()
}

/// A server text message, headers named exactly as the SDK needs them.
pub(crate) fn text(request_id: &str, path: &str, body: &Value) -> Message {
    let message = format!(
        "X-RequestId:{request_id}\r\nContent-Type:application/json; charset=utf-8\r\nX-Timestamp:{}\r\nPath:{path}\r\n\r\n{body}",
        timestamp()
    );
    Message::Text(message.into())
}

/// A server audio message: a big-endian u16 header length, the header block, the audio.
fn audio(request_id: &str, chunk: &[u8]) -> Message {
    let head = format!("X-RequestId:{request_id}\r\nX-Timestamp:{}\r\nPath:audio\r\n", timestamp());
    let length = u16::try_from(head.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(2 + head.len() + chunk.len());
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(chunk);
    Message::Binary(out.into())
}

/// What the client asked for in its `synthesis.context`.
#[derive(Default)]
struct Context {
    format: Option<String>,
    word_boundaries: bool,
    /// `SpeechServiceResponse_RequestSentenceBoundary`.
    sentence_boundaries: bool,
    /// `audio.metadata` SessionEnd (the audio's length) before `turn.end`.
    session_end: bool,
}

fn context(body: &str) -> Context {
    let value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let audio = &value["synthesis"]["audio"];
    Context {
        format: audio["outputFormat"].as_str().map(str::to_owned),
        word_boundaries: audio["metadataOptions"]["wordBoundaryEnabled"].as_bool().unwrap_or(false),
        sentence_boundaries: audio["metadataOptions"]["sentenceBoundaryEnabled"].as_bool().unwrap_or(false),
        session_end: audio["metadataOptions"]["sessionEndEnabled"].as_bool().unwrap_or(false),
    }
}

/// A close frame's reason holds at most 123 bytes (RFC 6455: control frames carry 125).
const MAX_CLOSE_REASON: usize = 123;

/// `reason` cut to what a close frame holds, on a character boundary (a longer reason breaks the
/// close handshake, and the SDK then reported the refusal only after its 40 s timeout).
fn close_reason(reason: &str) -> &str {
    let mut cut = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    &reason[..cut]
}

/// Ends the session with `code` and `reason` (cut to what a close frame holds), then waits a little
/// for the client's close so that it learns the reason at once rather than by a timeout.
pub(crate) async fn refuse(mut socket: WebSocket, code: u16, reason: &str) -> Result<(), axum::Error> {
    socket.send(Message::Close(Some(CloseFrame { code, reason: close_reason(reason).into() }))).await?;
    let closed = async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), closed).await;
    Ok(())
}

/// Why a request ends the session (the close reason the SDK shows).
struct Refusal(String);

async fn session(plane: Plane, mut socket: WebSocket) -> Result<(), axum::Error> {
    let mut asked = Context::default();
    let idle = plane.service.live_idle_timeout;
    loop {
        let Ok(message) = tokio::time::timeout(idle, socket.recv()).await else {
            return refuse(socket, IDLE, &idle_reason(idle)).await;
        };
        let Some(message) = message else { break };
        let Message::Text(body) = message? else { continue };
        let Some(incoming) = parse(body.as_str()) else { continue };
        match incoming.path.to_ascii_lowercase().as_str() {
            "synthesis.context" => asked = context(incoming.body),
            "ssml" => {
                let request_id = incoming.request_id.to_owned();
                let answered = match speak(&plane, &asked, incoming.body).await {
                    Ok((format, spoken)) => turn(&mut socket, &request_id, &format, &spoken, &asked).await?,
                    Err(refusal) => Err(refusal),
                };
                if let Err(Refusal(reason)) = answered {
                    return refuse(socket, INVALID_PAYLOAD, &reason).await;
                }
            }
            // speech.config, telemetry: nothing to answer.
            _ => {}
        }
    }
    Ok(())
}

/// A request spoken: its audio and word boundaries, and the text it said.
struct Spoken {
    speech: Synthesis,
    text: String,
}

async fn speak(plane: &Plane, asked: &Context, ssml: &str) -> Result<(OutputFormat, Spoken), Refusal> {
    if ssml.len() > crate::synthesis::MAX_SSML_BYTES {
        let limit = crate::synthesis::MAX_SSML_BYTES >> 10;
        return Err(Refusal(format!("the SSML is {} bytes; byos takes at most {limit} KiB", ssml.len())));
    }
    let name = asked.format.as_deref().unwrap_or("raw-16khz-16bit-mono-pcm");
    let format = OutputFormat::parse(name)
        .map_err(|e| Refusal(format!("byos cannot produce the output format '{}' (PCM, mu-law or A-law only)", e.0)))?;
    let ssml = byos_speech::tts::request(ssml).map_err(|e| Refusal(format!("the SSML is invalid: {e}")))?;
    let speech = plane.service.tts.synthesize(&ssml).await.map_err(|e| match e {
        SynthesizeError::Busy => Refusal("the speech synthesis engine is busy; retry later".into()),
        SynthesizeError::Voice(e) => Refusal(e.to_string()),
        SynthesizeError::Engine(e) => {
            tracing::warn!(error = %e, "text to speech failed in the engine");
            Refusal("the speech synthesis engine failed".into())
        }
    })?;
    let mut speech = speech;
    let text = ssml.spoken_text();
    byos_speech::tts::as_written(&text, &mut speech.words);
    Ok((format, Spoken { speech, text }))
}

/// A boundary as `audio.metadata` carries it (`kind`: WordBoundary or SentenceBoundary).
fn boundary(kind: &str, at: &byos_speech::tts::WordBoundary) -> Value {
    json!({"Type": kind, "Data": {"Offset": at.offset_ms * TICKS_PER_MS, "Duration": at.duration_ms * TICKS_PER_MS,
        "text": {"Text": at.text, "Length": at.text.chars().count(), "BoundaryType": kind}}})
}

/// The boundaries asked for, in the order they are heard (a sentence before its first word).
fn boundaries(spoken: &Spoken, asked: &Context) -> Vec<Value> {
    let mut at: Vec<(u64, Value)> = Vec::new();
    if asked.sentence_boundaries {
        let sentences = byos_speech::tts::sentences(&spoken.text, &spoken.speech.words);
        at.extend(sentences.iter().map(|s| (s.offset_ms, boundary("SentenceBoundary", s))));
    }
    if asked.word_boundaries {
        at.extend(spoken.speech.words.iter().map(|w| (w.offset_ms, boundary("WordBoundary", w))));
    }
    at.sort_by_key(|(offset, _)| *offset);
    at.into_iter().map(|(_, value)| value).collect()
}

/// One answered request: turn.start, the word boundaries, the audio, SessionEnd, turn.end; or,
/// when the audio cannot be encoded, a refusal (never an empty or garbled answer).
async fn turn(
    socket: &mut WebSocket,
    request_id: &str,
    format: &OutputFormat,
    spoken: &Spoken,
    asked: &Context,
) -> Result<Result<(), Refusal>, axum::Error> {
    let speech = &spoken.speech;
    // The SDK writes the WAV header of riff formats itself and asks for raw ones.
    let raw = OutputFormat { riff: false, ..*format };
    let bytes = match raw.encode(speech.sample_rate, &speech.samples) {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::warn!(error = %e, "synthesized audio could not be encoded");
            return Ok(Err(Refusal(format!("the audio could not be encoded: {e}"))));
        }
    };
    socket.send(text(request_id, "turn.start", &json!({"context": {"serviceTag": request_id}}))).await?;
    let metadata = boundaries(spoken, asked);
    if !metadata.is_empty() {
        socket.send(text(request_id, "audio.metadata", &json!({"Metadata": metadata}))).await?;
    }
    for chunk in bytes.chunks(AUDIO_CHUNK) {
        socket.send(audio(request_id, chunk)).await?;
    }
    if asked.session_end {
        let length = speech.samples.len() as u64 * 10_000_000 / u64::from(speech.sample_rate.max(1));
        let end = json!({"Metadata": [{"Type": "SessionEnd", "Data": {"Offset": length}}]});
        socket.send(text(request_id, "audio.metadata", &end)).await?;
    }
    socket.send(text(request_id, "turn.end", &json!({}))).await.map(Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_are_read_as_the_sdk_writes_them() {
        let message = "X-Timestamp:2026-12-02T15:43:42.493Z\r\nPath:ssml\r\nx-requestid: abc\r\nContent-Type:application/ssml+xml\r\n\r\n<speak/>";
        let incoming = parse(message).unwrap_or_else(|| panic!("parsed"));
        assert_eq!((incoming.path, incoming.request_id, incoming.body), ("ssml", "abc", "<speak/>"));
        let asked = context(
            r#"{"synthesis":{"audio":{"outputFormat":"raw-24khz-16bit-mono-pcm","metadataOptions":{"wordBoundaryEnabled":true}}}}"#,
        );
        assert_eq!((asked.format.as_deref(), asked.word_boundaries), (Some("raw-24khz-16bit-mono-pcm"), true));
        assert!(!asked.session_end);
        assert!(context(r#"{"synthesis":{"audio":{"metadataOptions":{"sessionEndEnabled":true}}}}"#).session_end);
        assert!(parse("no path here\r\n\r\n{}").is_none());
    }

    #[test]
    fn close_reasons_fit_a_close_frame() {
        let long = "é".repeat(100);
        let cut = close_reason(&long);
        assert!(cut.len() <= MAX_CLOSE_REASON && cut.len() >= MAX_CLOSE_REASON - 1 && long.starts_with(cut));
        assert_eq!(close_reason("short"), "short");
    }

    #[test]
    fn audio_messages_carry_their_header_length_big_endian() {
        let Message::Binary(bytes) = audio("rid", b"pcm") else { panic!("binary") };
        let length = usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
        let head = std::str::from_utf8(&bytes[2..2 + length]).unwrap_or_else(|e| panic!("{e}"));
        assert!(head.starts_with("X-RequestId:rid\r\n") && head.ends_with("Path:audio\r\n"), "{head}");
        assert_eq!(&bytes[2 + length..], b"pcm");
    }
}
