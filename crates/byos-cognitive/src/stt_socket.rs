//! Speech to text over the Speech SDK's WebSocket protocol ("USP"), as
//! `../shared/reference/speech-sdk.md` section 5 records it, on the short-audio paths
//! (`/speech/recognition/{interactive,conversation,dictation}/cognitiveservices/v1`, GET) and
//! `/stt/speech/universal/v2`. Each turn (`speech.context` + audio under one `X-RequestId`) is
//! answered with `turn.start`; its audio (the source's own PCM format, announced by a RIFF header in
//! the first audio message) is collected until the client's empty audio message, then recognized as
//! a batch file is (downmixed, resampled, cut at its pauses): interactive mode answers the first
//! phrase, conversation and dictation every phrase then `EndOfDictation`; `turn.end` closes every
//! turn, an empty one too. `cid=` selects an endpoint (its model, and its logging: the turn's audio
//! and phrases are logged as a REST recognition's). Offsets are ticks from the turn's first byte.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{Extensions, HeaderMap};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::LiveAccount;
use crate::dataplane::Plane;
use crate::endpoints::{Endpoint, LogOwner};
use crate::speech_http::{LOCALES, speech_account};
use crate::transcribe::{Channels, Transcript};
use crate::tts_socket::{INVALID_PAYLOAD, parse, refuse, text};

/// The most audio a turn may carry (10 minutes of 48 kHz stereo 16-bit): beyond, the turn is refused.
const MAX_TURN_BYTES: usize = 10 * 60 * 48_000 * 4;
const TICKS_PER_MS: u64 = 10_000;
/// The close code of a turn byos failed to finish (RFC 6455: internal error).
const INTERNAL_ERROR: u16 = 1011;

/// Why a turn ends the session: the close code and reason.
struct Refusal(u16, String);

/// How answering a turn can end the session.
enum Ending {
    Socket(axum::Error),
    Refused(Refusal),
}

impl From<axum::Error> for Ending {
    fn from(e: axum::Error) -> Self {
        Ending::Socket(e)
    }
}

impl From<Refusal> for Ending {
    fn from(r: Refusal) -> Self {
        Ending::Refused(r)
    }
}

#[derive(Deserialize)]
pub(crate) struct SocketQuery {
    language: Option<String>,
    format: Option<String>,
    cid: Option<String>,
}

/// GET on a short-audio path: the SDK's recognition socket.
pub(crate) async fn upgrade_v1(
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(mode): Path<String>,
    Query(query): Query<SocketQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    start(plane, extensions, headers, Some(mode), query, ws).await
}

/// `/stt/speech/universal/v2`: the mode and language come in each `speech.context`.
pub(crate) async fn upgrade_v2(
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Query(query): Query<SocketQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    start(plane, extensions, headers, None, query, ws).await
}

async fn start(
    plane: Plane,
    extensions: Extensions,
    headers: HeaderMap,
    mode: Option<String>,
    query: SocketQuery,
    ws: WebSocketUpgrade,
) -> Response {
    let admitted = async {
        let account = speech_account(&plane, &extensions, &headers, &crate::recognition::RECOGNIZE)?;
        if let Some(language) = &query.language
            && !LOCALES.iter().any(|l| l.eq_ignore_ascii_case(language))
        {
            return Err(crate::datasets::speech_error(
                400,
                "BadRequest",
                format!("The language '{language}' is not supported."),
            ));
        }
        let endpoint = match &query.cid {
            Some(cid) => Some(crate::endpoints::endpoint_for_recognition(&plane.service, &account, cid).await?),
            None => None,
        };
        Ok((account, endpoint))
    }
    .await;
    let (account, endpoint) = match admitted {
        Ok(admitted) => admitted,
        Err(e) => return byos_http::render_error(&e),
    };
    let settings = Settings {
        interactive: mode.as_deref().is_some_and(|m| m.eq_ignore_ascii_case("interactive")),
        detailed: query.format.as_deref().is_some_and(|f| f.eq_ignore_ascii_case("detailed")),
    };
    let connection = headers.get("x-connectionid").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    ws.protocols(["USP"])
        .on_upgrade(move |socket| async move {
            tracing::info!(connection, "speech to text session started");
            let session = Session { plane, account, endpoint, settings };
            if let Err(e) = session.run(socket).await {
                tracing::info!(connection, error = %e, "speech to text session ended");
            }
        })
        .into_response()
}

#[derive(Clone, Copy)]
struct Settings {
    interactive: bool,
    detailed: bool,
}

struct Session {
    plane: Plane,
    account: std::sync::Arc<LiveAccount>,
    endpoint: Option<Endpoint>,
    settings: Settings,
}

/// The turn being received.
struct Turn {
    request_id: String,
    settings: Settings,
    /// The RIFF header of the first audio message, then the PCM.
    audio: Vec<u8>,
}

/// An audio message: its request id and body.
fn audio_message(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let length = usize::from(u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]));
    let head = std::str::from_utf8(bytes.get(2..2 + length)?).ok()?;
    let request_id = head
        .split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("X-RequestId"))
        .map(|(_, v)| v.trim())?;
    Some((request_id, &bytes[2 + length..]))
}

/// The turn's audio as a WAV file: its own RIFF header (whose sizes the SDK leaves at 0) with the
/// sizes set.
fn as_wav(mut audio: Vec<u8>) -> Option<Vec<u8>> {
    let data_at = audio.windows(4).position(|w| w == b"data")? + 8;
    if audio.len() < data_at || &audio[..4] != b"RIFF" {
        return None;
    }
    let data = u32::try_from(audio.len() - data_at).ok()?;
    let riff = u32::try_from(audio.len() - 8).ok()?;
    audio[4..8].copy_from_slice(&riff.to_le_bytes());
    audio[data_at - 4..data_at].copy_from_slice(&data.to_le_bytes());
    Some(audio)
}

fn phrase_json(transcript: &Transcript, index: usize, detailed: bool) -> Value {
    let phrase = &transcript.phrases[index];
    let ticks = |ms: u64| ms * TICKS_PER_MS;
    let display = crate::recognition::display(&phrase.heard.text);
    let mut out = json!({"RecognitionStatus": "Success", "DisplayText": display,
                         "Offset": ticks(phrase.offset_ms), "Duration": ticks(phrase.duration_ms)});
    if detailed {
        let words: Vec<Value> = phrase
            .heard
            .words
            .iter()
            .map(|w| {
                json!({"Word": w.text, "Offset": ticks(w.offset_ms), "Duration": ticks(w.duration_ms),
                            "Confidence": phrase.heard.confidence})
            })
            .collect();
        let text = &phrase.heard.text;
        out["NBest"] = json!([{"Confidence": phrase.heard.confidence, "Lexical": text, "ITN": text,
                               "MaskedITN": text, "Display": display, "Words": words}]);
    }
    out
}

impl Session {
    async fn run(self, mut socket: WebSocket) -> Result<(), axum::Error> {
        let mut turn: Option<Turn> = None;
        while let Some(message) = socket.recv().await {
            match message? {
                Message::Text(body) => {
                    let Some(incoming) = parse(body.as_str()) else { continue };
                    if incoming.path.eq_ignore_ascii_case("speech.context") {
                        let settings = self.turn_settings(incoming.body);
                        let request_id = incoming.request_id.to_owned();
                        socket
                            .send(text(&request_id, "turn.start", &json!({"context": {"serviceTag": request_id}})))
                            .await?;
                        turn = Some(Turn { request_id, settings, audio: Vec::new() });
                    }
                }
                Message::Binary(bytes) => {
                    let Some((request_id, body)) = audio_message(&bytes) else { continue };
                    // Audio of a finished turn (the SDK may send its end marker after turn.end).
                    let Some(current) = turn.as_mut().filter(|t| t.request_id == request_id) else { continue };
                    if !body.is_empty() {
                        if current.audio.len() + body.len() > MAX_TURN_BYTES {
                            let reason = "the turn's audio is longer than byos takes (10 minutes)";
                            return refuse(socket, INVALID_PAYLOAD, reason).await;
                        }
                        current.audio.extend_from_slice(body);
                        continue;
                    }
                    if let Some(done) = turn.take() {
                        match self.answer(&mut socket, done).await {
                            Ok(()) => {}
                            Err(Ending::Socket(e)) => return Err(e),
                            Err(Ending::Refused(Refusal(code, reason))) => return refuse(socket, code, &reason).await,
                        }
                    }
                }
                Message::Close(_) => return Ok(()),
                _ => {}
            }
        }
        Ok(())
    }

    /// The connection's settings as this turn's `speech.context` refines them (universal/v2 names
    /// the mode and the output format there).
    fn turn_settings(&self, body: &str) -> Settings {
        let context: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let mut settings = self.settings;
        if let Some(mode) = context["phraseDetection"]["mode"].as_str() {
            settings.interactive = mode.eq_ignore_ascii_case("interactive");
        }
        if context["phraseOutput"]["format"].as_str().is_some_and(|f| f.eq_ignore_ascii_case("detailed")) {
            settings.detailed = true;
        }
        settings
    }

    /// Recognizes a turn's audio and answers it to its `turn.end`.
    async fn answer(&self, socket: &mut WebSocket, turn: Turn) -> Result<(), Ending> {
        let rid = turn.request_id.clone();
        let Some(wav) = as_wav(turn.audio) else {
            // No audio in this turn (the SDK's hand-over turn): nothing more was said.
            socket.send(text(&rid, "speech.endDetected", &json!({"Offset": 0}))).await?;
            socket
                .send(text(
                    &rid,
                    "speech.phrase",
                    &json!({"RecognitionStatus": "EndOfDictation", "Offset": 0, "Duration": 0}),
                ))
                .await?;
            return Ok(socket.send(text(&rid, "turn.end", &json!({}))).await?);
        };
        let wav = Bytes::from(wav);
        let model = match self.endpoint.as_ref().and_then(|e| e.model.as_deref()) {
            Some(id) => self.plane.service.adapted_model(&self.account, id).await.ok(),
            None => None,
        };
        let heard = crate::transcribe::transcribe(
            &self.plane.service.speech,
            wav.clone(),
            "wav",
            &Channels::Mixed,
            model.as_ref(),
        )
        .await;
        let mut results = Vec::new();
        match heard {
            Ok(transcript) => {
                let end = transcript.duration_ms * TICKS_PER_MS;
                let count =
                    if turn.settings.interactive { transcript.phrases.len().min(1) } else { transcript.phrases.len() };
                if count == 0 {
                    results.push(json!({"RecognitionStatus": "InitialSilenceTimeout", "Offset": 0, "Duration": end}));
                }
                for index in 0..count {
                    results.push(phrase_json(&transcript, index, turn.settings.detailed));
                }
                socket.send(text(&rid, "speech.endDetected", &json!({"Offset": end}))).await?;
                for result in &results {
                    socket.send(text(&rid, "speech.phrase", result)).await?;
                }
                if !turn.settings.interactive {
                    let eod = json!({"RecognitionStatus": "EndOfDictation", "Offset": end, "Duration": 0});
                    socket.send(text(&rid, "speech.phrase", &eod)).await?;
                }
            }
            Err(e) => {
                tracing::info!(error = %e, "a speech turn could not be recognized");
                return Err(Refusal(INVALID_PAYLOAD, format!("the audio cannot be recognized: {e}")).into());
            }
        }
        if let Some(endpoint) = self.endpoint.as_ref().filter(|e| e.logging) {
            let owner = LogOwner::Endpoint(endpoint.id.clone());
            let logged = self
                .plane
                .service
                .log_recognition(&self.account, &owner, &endpoint.locale, wav, "wav", &json!(results))
                .await;
            if let Err(e) = logged {
                // The customer asked for this turn to be logged: without its log it is not answered.
                return Err(
                    Refusal(INTERNAL_ERROR, format!("the recognition could not be logged: {}", e.message)).into()
                );
            }
        }
        Ok(socket.send(text(&rid, "turn.end", &json!({}))).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdks_riff_header_gets_its_sizes() {
        let mut audio =
            b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x80\x3e\0\0\0\x7d\0\0\x02\0\x10\0data\0\0\0\0".to_vec();
        audio.extend_from_slice(&[1, 0, 2, 0]);
        let wav = as_wav(audio).unwrap_or_else(|| panic!("a wav"));
        assert_eq!(u32::from_le_bytes([wav[40], wav[41], wav[42], wav[43]]), 4);
        assert_eq!(u32::from_le_bytes([wav[4], wav[5], wav[6], wav[7]]), 40);
        assert!(as_wav(Vec::new()).is_none());
        let message = [&[0u8, 17][..], b"X-RequestId:abc\r\n", b"pcm"].concat();
        assert_eq!(audio_message(&message), Some(("abc", &b"pcm"[..])));
    }
}
