//! Speech to text over the Speech SDK's WebSocket protocol ("USP"), as
//! `../shared/reference/speech-sdk.md` section 5 records it, on the short-audio paths
//! (`/speech/recognition/{interactive,conversation,dictation}/cognitiveservices/v1`, GET) and
//! `/stt/speech/universal/v2`.
//!
//! Recognition is live: each turn (`speech.context` + audio under one `X-RequestId`) is answered
//! with `turn.start`, its audio (the source's own PCM format, announced by a RIFF header in the
//! first audio message) is resampled as it arrives and cut into utterances as soon as the pause
//! after each is heard ([`Endpointer`]); each utterance is recognized while the rest streams in.
//! Interactive mode answers the first utterance (`speech.endDetected`, so that the SDK stops
//! sending) and ends the turn; conversation and dictation answer each phrase as it is recognized,
//! then, at the client's end of audio, `EndOfDictation` at the exact length received. While an
//! utterance is open, `speech.hypothesis` partial results are recognized on spare engine capacity
//! only, so that they never delay a final result. `turn.end` closes every turn, an empty one too.
//! A phrase list (`dgi`) becomes a small adapted model that biases the engine towards its phrases;
//! `cid=` selects an endpoint (its model, and its logging: the turn's audio and phrases are logged
//! as a REST recognition's); `storeAudio=true` logs too, under the endpoint or the base model. Offsets are ticks from the turn's first byte. Only the audio of the
//! utterance being heard is kept (all of the turn only when it is to be logged).

use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{Extensions, HeaderMap};
use axum::response::{IntoResponse, Response};
use byos_speech::adapt::AdaptedModel;
use byos_speech::audio::ENGINE_RATE;
use byos_speech::engine::RecognizeError;
use byos_speech::live::LiveAudio;
use byos_speech::pocketsphinx::Recognition;
use byos_speech::segment::{Endpointer, Heard};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::dataplane::Plane;
use crate::endpoints::{Endpoint, LogOwner};
use crate::speech_http::{LOCALES, known_locale, speech_account};
use crate::tts_socket::{IDLE, INVALID_PAYLOAD, idle_reason, live_session, parse, refuse, text};
use crate::{CognitiveService, LiveAccount};

/// The most audio a logged turn may carry (10 minutes of 48 kHz stereo 16-bit): its log is kept
/// in memory until the turn ends.
const MAX_LOGGED_TURN_BYTES: usize = 10 * 60 * 48_000 * 4;
const TICKS_PER_SECOND: u64 = 10_000_000;
/// The largest client message taken (the SDK sends audio in 100 ms messages of a few KiB).
const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// The close code of a turn byos failed to finish (RFC 6455: internal error).
const INTERNAL_ERROR: u16 = 1011;
/// The close code the SDK reports as TooManyRequests.
const TOO_MANY_REQUESTS: u16 = 4429;
/// How long a single-shot turn waits for speech when its context does not say (Azure: 5 s).
const INITIAL_SILENCE_MS: u64 = 5_000;
/// A partial result is worth recognizing again once this much more audio has come (0.5 s).
const HYPOTHESIS_STEP: usize = ENGINE_RATE as usize / 2;
/// The most phrase-list entries taken (Azure: 500).
const MAX_PHRASES: usize = 500;

/// Why a session ends: the close code and reason.
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

fn bad_audio(why: impl std::fmt::Display) -> Ending {
    Ending::Refused(Refusal(INVALID_PAYLOAD, why.to_string()))
}

#[derive(Deserialize)]
pub(crate) struct SocketQuery {
    language: Option<String>,
    format: Option<String>,
    cid: Option<String>,
    #[serde(rename = "storeAudio")]
    store_audio: Option<String>,
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
        // universal/v2 names the language in each speech.context: byos recognizes one.
        let language = query.language.as_deref().unwrap_or(LOCALES[0]);
        let Some(locale) = known_locale(language) else {
            return Err(crate::datasets::speech_error(
                400,
                "BadRequest",
                format!("The language '{language}' is not supported."),
            ));
        };
        let endpoint = match &query.cid {
            Some(cid) => Some(crate::endpoints::endpoint_for_recognition(&plane.service, &account, cid).await?),
            None => None,
        };
        let store_audio = crate::endpoints::asks_to_store(query.store_audio.as_deref());
        let log = crate::endpoints::log_owner(endpoint.as_ref(), store_audio, locale);
        Ok((account, endpoint, log))
    }
    .await;
    let (account, endpoint, log) = match admitted {
        Ok(admitted) => admitted,
        Err(e) => return byos_http::render_error(&e),
    };
    let permit = match live_session(&plane.service) {
        Ok(permit) => permit,
        Err(refused) => return refused,
    };
    let settings = Settings {
        interactive: mode.as_deref().is_some_and(|m| m.eq_ignore_ascii_case("interactive")),
        detailed: query.format.as_deref().is_some_and(|f| f.eq_ignore_ascii_case("detailed")),
        initial_silence_ms: INITIAL_SILENCE_MS,
    };
    let connection = headers.get("x-connectionid").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    ws.protocols(["USP"])
        .max_message_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            let _open = permit;
            tracing::info!(connection, "speech to text session started");
            let session = Session { service: plane.service, account, endpoint, log, settings };
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
    /// Single shot: a turn with no speech this long ends with `InitialSilenceTimeout`.
    initial_silence_ms: u64,
}

struct Session {
    service: Arc<CognitiveService>,
    account: Arc<LiveAccount>,
    endpoint: Option<Endpoint>,
    /// Where each turn is logged (its owner and locale), when it is.
    log: Option<(LogOwner, String)>,
    settings: Settings,
}

/// An utterance's recognition, and where it lies in the turn's engine audio.
type Recognized = (Range<usize>, Result<Recognition, RecognizeError>);
type Pending = Pin<Box<dyn Future<Output = Recognized> + Send>>;

/// The turn being received.
struct Turn {
    request_id: String,
    settings: Settings,
    /// The model this turn's audio is recognized with (the endpoint's, or the phrase list's).
    model: Option<Arc<AdaptedModel>>,
    /// None until the first audio message (its RIFF header) came.
    audio: Option<LiveAudio>,
    endpointer: Endpointer,
    /// The turn's audio as sent (RIFF header and PCM), kept only when the turn is logged.
    log: Option<Vec<u8>>,
    /// The phrases answered, for the log.
    results: Vec<Value>,
    /// Speech was heard (single shot: no initial silence timeout any more).
    speech_heard: bool,
    /// Single shot: its utterance was told; what comes after it is not listened to.
    utterance_told: bool,
    /// Where the engine audio stood when the last partial result was asked for.
    hypothesized_at: usize,
    /// Utterances told, and those whose final result was sent: a partial result of an utterance
    /// is sent only before its final one.
    utterances: usize,
    answered: usize,
    /// The client's end of audio came.
    ended: bool,
}

/// The recognitions in flight for the current turn: the final ones in the order their utterances
/// were heard, and at most one partial result (with the number of its utterance).
#[derive(Default)]
struct InFlight {
    finals: FuturesOrdered<Pending>,
    hypothesis: Option<(usize, Pending)>,
}

/// An audio message: its request id and body; None when its header is malformed.
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

/// Engine samples as ticks.
fn ticks(samples: usize) -> u64 {
    samples as u64 * TICKS_PER_SECOND / u64::from(ENGINE_RATE)
}

/// A final phrase in the SDK's shape: its span narrowed to its words, offsets from the turn's start.
fn phrase_json(span: &Range<usize>, heard: &Recognition, detailed: bool) -> Value {
    let base_ms = span.start as u64 * 1000 / u64::from(ENGINE_RATE);
    let ms = |ms: u64| ms * 10_000;
    let (offset, duration) = match (heard.words.first(), heard.words.last()) {
        (Some(first), Some(last)) => {
            (ms(base_ms + first.offset_ms), ms((last.offset_ms + last.duration_ms).saturating_sub(first.offset_ms)))
        }
        _ => (ticks(span.start), ticks(span.len())),
    };
    let display = crate::recognition::display(&heard.text);
    let mut out =
        json!({"RecognitionStatus": "Success", "DisplayText": display, "Offset": offset, "Duration": duration});
    if detailed {
        let words: Vec<Value> = heard
            .words
            .iter()
            .map(|w| {
                json!({"Word": w.text, "Offset": ms(base_ms + w.offset_ms), "Duration": ms(w.duration_ms),
                       "Confidence": heard.confidence})
            })
            .collect();
        let text = &heard.text;
        out["NBest"] = json!([{"Confidence": heard.confidence, "Lexical": text, "ITN": text,
                               "MaskedITN": text, "Display": display, "Words": words}]);
    }
    out
}

/// The phrase-list entries of a `speech.context` (`dgi.Groups[].Items[].Text`).
fn phrase_list(context: &Value) -> Vec<String> {
    let groups = context["dgi"]["Groups"].as_array().map(Vec::as_slice).unwrap_or_default();
    groups
        .iter()
        .flat_map(|g| g["Items"].as_array().map(Vec::as_slice).unwrap_or_default())
        .filter_map(|item| item["Text"].as_str())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .take(MAX_PHRASES)
        .map(str::to_owned)
        .collect()
}

impl Session {
    async fn run(self, mut socket: WebSocket) -> Result<(), axum::Error> {
        let mut turn: Option<Turn> = None;
        let mut flight = InFlight::default();
        let mut had_context = false;
        let idle = self.service.live_idle_timeout;
        let mut active_at = tokio::time::Instant::now();
        loop {
            let waiting = flight.finals.is_empty() && flight.hypothesis.is_none();
            let step = tokio::select! {
                message = socket.recv() => match message {
                    None | Some(Ok(Message::Close(_))) => return Ok(()),
                    Some(Err(e)) => return Err(e),
                    Some(Ok(message)) => {
                        active_at = tokio::time::Instant::now();
                        self.receive(&mut socket, &mut turn, &mut flight, &mut had_context, message).await
                    }
                },
                // Idle: nothing from the client, and nothing in flight to answer it with.
                () = tokio::time::sleep_until(active_at + idle), if waiting => {
                    Err(Ending::Refused(Refusal(IDLE, idle_reason(idle))))
                }
                Some(recognized) = flight.finals.next(), if !flight.finals.is_empty() => {
                    active_at = tokio::time::Instant::now();
                    self.final_result(&mut socket, &mut turn, &mut flight, recognized).await
                }
                Some(recognized) = next_hypothesis(&mut flight.hypothesis) => {
                    active_at = tokio::time::Instant::now();
                    self.partial_result(&mut socket, &turn, recognized).await
                }
            };
            let step = match step {
                Ok(()) => self.maybe_end_turn(&mut socket, &mut turn, flight.finals.is_empty()).await,
                Err(e) => Err(e),
            };
            match step {
                Ok(()) => {}
                Err(Ending::Socket(e)) => return Err(e),
                Err(Ending::Refused(Refusal(code, reason))) => return refuse(socket, code, &reason).await,
            }
        }
    }

    /// A client message: a new turn's context, or audio of the current turn.
    async fn receive(
        &self,
        socket: &mut WebSocket,
        turn: &mut Option<Turn>,
        flight: &mut InFlight,
        had_context: &mut bool,
        message: Message,
    ) -> Result<(), Ending> {
        match message {
            Message::Text(body) => {
                let Some(incoming) = parse(body.as_str()) else { return Ok(()) };
                if incoming.path.eq_ignore_ascii_case("speech.context") {
                    let request_id = incoming.request_id.to_owned();
                    let next = self.new_turn(request_id.clone(), incoming.body).await?;
                    // A new turn replaces one the client gave up on; its recognitions are dropped.
                    *flight = InFlight::default();
                    *turn = Some(next);
                    *had_context = true;
                    let tag = json!({"context": {"serviceTag": request_id}});
                    socket.send(text(&request_id, "turn.start", &tag)).await?;
                }
                Ok(())
            }
            Message::Binary(bytes) => {
                let (request_id, body) =
                    audio_message(&bytes).ok_or_else(|| bad_audio("an audio message's header is malformed"))?;
                let Some(current) = turn.as_mut().filter(|t| t.request_id == request_id) else {
                    // Audio of a finished turn (the SDK may send its end marker after turn.end) is
                    // ignored; audio before any speech.context is out of order.
                    return match had_context {
                        true => Ok(()),
                        false => Err(bad_audio("audio came before speech.context")),
                    };
                };
                if body.is_empty() {
                    return self.end_of_audio(current, flight);
                }
                if self.audio(socket, current, flight, body).await?
                    && let Some(done) = turn.take()
                {
                    *flight = InFlight::default();
                    return self.initial_silence(socket, done).await;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// A turn as its `speech.context` describes it (universal/v2 names the mode and the output
    /// format there; any path may carry a phrase list and silence timeouts).
    async fn new_turn(&self, request_id: String, body: &str) -> Result<Turn, Ending> {
        let context: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let mut settings = self.settings;
        if let Some(mode) = context["phraseDetection"]["mode"].as_str() {
            settings.interactive = mode.eq_ignore_ascii_case("interactive");
        }
        if context["phraseOutput"]["format"].as_str().is_some_and(|f| f.eq_ignore_ascii_case("detailed")) {
            settings.detailed = true;
        }
        if let Some(ms) = context["phraseDetection"]["initialSilenceTimeout"].as_u64() {
            settings.initial_silence_ms = ms;
        }
        let model = self.model(&phrase_list(&context)).await?;
        Ok(Turn {
            request_id,
            settings,
            model,
            audio: None,
            endpointer: Endpointer::new(),
            log: self.log.is_some().then(Vec::new),
            results: Vec::new(),
            speech_heard: false,
            utterance_told: false,
            hypothesized_at: 0,
            utterances: 0,
            answered: 0,
            ended: false,
        })
    }

    /// The endpoint's model (read from where it is kept, at every turn), else the phrase list's.
    async fn model(&self, phrases: &[String]) -> Result<Option<Arc<AdaptedModel>>, Ending> {
        if let Some(id) = self.endpoint.as_ref().and_then(|e| e.model.as_deref()) {
            let model = self.service.adapted_model(&self.account, id).await;
            let model = model.map_err(|e| Refusal(INTERNAL_ERROR, format!("the endpoint's model: {}", e.message)))?;
            return Ok(Some(Arc::new(model)));
        }
        if phrases.is_empty() {
            return Ok(None);
        }
        match self.service.phrase_list_model(phrases.to_vec()).await {
            Ok(model) => Ok(Some(Arc::new(model))),
            Err(why) => {
                // A hint the engine cannot take (no word of it is in its dictionary) is no error.
                tracing::info!(why, "a phrase list was left unused");
                Ok(None)
            }
        }
    }

    /// A message of the turn's audio: resampled, listened to for utterances and speech. True when
    /// a single shot has waited for speech longer than its initial silence timeout.
    async fn audio(
        &self,
        socket: &mut WebSocket,
        turn: &mut Turn,
        flight: &mut InFlight,
        body: &[u8],
    ) -> Result<bool, Ending> {
        if let Some(log) = turn.log.as_mut() {
            if log.len() + body.len() > MAX_LOGGED_TURN_BYTES {
                return Err(bad_audio("the turn's audio is longer than byos logs (10 minutes)"));
            }
            log.extend_from_slice(body);
        }
        let made = match turn.audio.as_mut() {
            Some(audio) => audio.push(body).map_err(bad_audio)?,
            None => {
                let audio = LiveAudio::start(body).map_err(bad_audio)?;
                let made = 0..audio.heard();
                turn.audio = Some(audio);
                made
            }
        };
        if turn.utterance_told {
            return Ok(false);
        }
        let Some(audio) = turn.audio.as_ref() else { return Ok(false) };
        let heard = turn.endpointer.hear(audio.samples(made));
        self.heard(socket, turn, flight, heard).await?;
        if turn.settings.interactive && !turn.speech_heard {
            let waited_ms = turn.audio.as_ref().map_or(0, |a| a.received_ticks() / 10_000);
            if waited_ms >= turn.settings.initial_silence_ms {
                return Ok(true);
            }
        }
        self.hypothesize(turn, flight);
        self.forget(turn);
        Ok(false)
    }

    /// Acts on what the endpointer heard: speech starting, utterances to recognize.
    async fn heard(
        &self,
        socket: &mut WebSocket,
        turn: &mut Turn,
        flight: &mut InFlight,
        heard: Vec<Heard>,
    ) -> Result<(), Ending> {
        for event in heard {
            if turn.utterance_told {
                break;
            }
            match event {
                Heard::SpeechStarted(at) => {
                    turn.speech_heard = true;
                    let started = json!({"Offset": ticks(at)});
                    socket.send(text(&turn.request_id, "speech.startDetected", &started)).await?;
                }
                Heard::Utterance(span) => {
                    let samples = turn.audio.as_ref().map(|a| a.samples(span.clone()).to_vec()).unwrap_or_default();
                    flight.finals.push_back(self.recognize(span, samples, turn.model.clone(), false));
                    turn.utterances += 1;
                    turn.utterance_told = turn.settings.interactive;
                }
            }
        }
        Ok(())
    }

    /// Asks for a partial result of the open utterance when enough new audio came and a worker
    /// is idle (the engine answers Busy otherwise, and the partial result is skipped).
    fn hypothesize(&self, turn: &mut Turn, flight: &mut InFlight) {
        let (Some(audio), Some(since)) = (turn.audio.as_ref(), turn.endpointer.open_since()) else { return };
        let now = audio.heard();
        let due = turn.hypothesized_at.max(since) + HYPOTHESIS_STEP;
        if flight.hypothesis.is_some() || !flight.finals.is_empty() || now < due {
            return;
        }
        turn.hypothesized_at = now;
        let samples = audio.samples(since..now).to_vec();
        flight.hypothesis = Some((turn.utterances, self.recognize(since..now, samples, turn.model.clone(), true)));
    }

    /// Drops the audio no utterance needs any more (all of it is in the log when there is one).
    fn forget(&self, turn: &mut Turn) {
        let needed = turn.endpointer.needed_from();
        if let Some(audio) = turn.audio.as_mut() {
            audio.forget_before(needed);
        }
    }

    fn recognize(
        &self,
        span: Range<usize>,
        samples: Vec<i16>,
        model: Option<Arc<AdaptedModel>>,
        spare: bool,
    ) -> Pending {
        let service = Arc::clone(&self.service);
        Box::pin(async move {
            let engine = &service.speech;
            // A final result waits for a worker (an admitted session is answered late rather than
            // cut off when the engine is momentarily full); a partial one takes only an idle worker.
            let heard = match spare {
                true => engine.recognize_spare_with(&samples, model.as_deref()).await,
                false => engine.recognize_waiting_with(&samples, model.as_deref()).await,
            };
            (span, heard)
        })
    }

    /// The client's end of audio: the utterance being heard ends with it.
    fn end_of_audio(&self, turn: &mut Turn, flight: &mut InFlight) -> Result<(), Ending> {
        turn.ended = true;
        let Some(audio) = turn.audio.as_mut() else { return Ok(()) };
        if turn.utterance_told {
            return Ok(());
        }
        let made = audio.finish().map_err(bad_audio)?;
        let mut heard = turn.endpointer.hear(audio.samples(made));
        heard.extend(turn.endpointer.finish(audio.heard()));
        for event in heard {
            if let Heard::Utterance(span) = event
                && !turn.utterance_told
            {
                let samples = audio.samples(span.clone()).to_vec();
                flight.finals.push_back(self.recognize(span, samples, turn.model.clone(), false));
                turn.utterances += 1;
                turn.utterance_told = turn.settings.interactive;
            }
        }
        Ok(())
    }

    /// An utterance recognized: its phrase now (conversation), or the single shot's answer.
    async fn final_result(
        &self,
        socket: &mut WebSocket,
        turn: &mut Option<Turn>,
        flight: &mut InFlight,
        (span, heard): Recognized,
    ) -> Result<(), Ending> {
        let heard = heard.map_err(|e| match e {
            RecognizeError::Busy => Refusal(TOO_MANY_REQUESTS, "the speech engine is busy; retry later".into()),
            RecognizeError::Engine(why) => Refusal(INTERNAL_ERROR, format!("the audio cannot be recognized: {why}")),
        })?;
        let Some(current) = turn.as_mut() else { return Ok(()) };
        let rid = current.request_id.clone();
        current.answered += 1;
        if current.settings.interactive {
            let phrase = match heard.text.is_empty() {
                true => {
                    json!({"RecognitionStatus": "NoMatch", "Offset": ticks(span.start), "Duration": ticks(span.len())})
                }
                false => phrase_json(&span, &heard, current.settings.detailed),
            };
            socket.send(text(&rid, "speech.endDetected", &json!({"Offset": ticks(span.end)}))).await?;
            socket.send(text(&rid, "speech.phrase", &phrase)).await?;
            current.results.push(phrase);
            let done = turn.take();
            *flight = InFlight::default();
            return match done {
                Some(done) => self.close_turn(socket, done).await,
                None => Ok(()),
            };
        }
        if !heard.text.is_empty() {
            let phrase = phrase_json(&span, &heard, current.settings.detailed);
            socket.send(text(&rid, "speech.phrase", &phrase)).await?;
            current.results.push(phrase);
        }
        Ok(())
    }

    /// A partial result, told only before its utterance's final result.
    async fn partial_result(
        &self,
        socket: &mut WebSocket,
        turn: &Option<Turn>,
        (utterance, (span, heard)): (usize, Recognized),
    ) -> Result<(), Ending> {
        let Some(current) = turn.as_ref() else { return Ok(()) };
        let Ok(heard) = heard else { return Ok(()) };
        if heard.text.is_empty() || utterance < current.answered {
            return Ok(());
        }
        let partial = json!({"Text": heard.text, "Offset": ticks(span.start), "Duration": ticks(span.len())});
        Ok(socket.send(text(&current.request_id, "speech.hypothesis", &partial)).await?)
    }

    /// A conversation turn whose audio ended and whose utterances are all answered ends; so does a
    /// single shot whose audio ended without an utterance.
    async fn maybe_end_turn(
        &self,
        socket: &mut WebSocket,
        turn: &mut Option<Turn>,
        answered: bool,
    ) -> Result<(), Ending> {
        if !answered || !turn.as_ref().is_some_and(|t| t.ended) {
            return Ok(());
        }
        let Some(done) = turn.take() else { return Ok(()) };
        let rid = done.request_id.clone();
        let end = done.audio.as_ref().map_or(0, LiveAudio::received_ticks);
        if done.settings.interactive {
            // Nothing was said before the audio ran out.
            return self.initial_silence(socket, done).await;
        }
        socket.send(text(&rid, "speech.endDetected", &json!({"Offset": end}))).await?;
        let eod = json!({"RecognitionStatus": "EndOfDictation", "Offset": end, "Duration": 0});
        socket.send(text(&rid, "speech.phrase", &eod)).await?;
        self.close_turn(socket, done).await
    }

    /// A single shot with no speech: `InitialSilenceTimeout` over all the audio heard.
    async fn initial_silence(&self, socket: &mut WebSocket, mut turn: Turn) -> Result<(), Ending> {
        let end = turn.audio.as_ref().map_or(0, LiveAudio::received_ticks);
        let rid = turn.request_id.clone();
        let phrase = json!({"RecognitionStatus": "InitialSilenceTimeout", "Offset": 0, "Duration": end});
        socket.send(text(&rid, "speech.endDetected", &json!({"Offset": end}))).await?;
        socket.send(text(&rid, "speech.phrase", &phrase)).await?;
        turn.results.push(phrase);
        self.close_turn(socket, turn).await
    }

    /// Logs the turn when its endpoint asks for it, then `turn.end`.
    async fn close_turn(&self, socket: &mut WebSocket, turn: Turn) -> Result<(), Ending> {
        if let (Some((owner, locale)), Some(log)) = (&self.log, turn.log)
            && let Some(wav) = as_wav(log)
        {
            let logged = self
                .service
                .log_recognition(&self.account, owner, locale, Bytes::from(wav), "wav", &json!(turn.results))
                .await;
            if let Err(e) = logged {
                // The customer asked for this turn to be logged: without its log it is not answered.
                return Err(
                    Refusal(INTERNAL_ERROR, format!("the recognition could not be logged: {}", e.message)).into()
                );
            }
        }
        Ok(socket.send(text(&turn.request_id, "turn.end", &json!({}))).await?)
    }
}

/// The partial result in flight, when there is one (a select! branch that never fires otherwise).
async fn next_hypothesis(hypothesis: &mut Option<(usize, Pending)>) -> Option<(usize, Recognized)> {
    match hypothesis.as_mut() {
        Some((utterance, pending)) => {
            let recognized = (*utterance, pending.await);
            *hypothesis = None;
            Some(recognized)
        }
        None => std::future::pending().await,
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
        assert_eq!(audio_message(&[0u8, 200, b'x']), None, "a header longer than its message");
    }

    #[test]
    fn a_phrase_list_is_read_from_the_context() {
        let context = json!({"dgi": {"Groups": [{"Type": "Generic", "Items": [{"Text": "eSpeak"}, {"Text": " "}]},
                                                {"Items": [{"Text": "byos cloud"}]}]}});
        assert_eq!(phrase_list(&context), vec!["eSpeak".to_owned(), "byos cloud".to_owned()]);
        assert!(phrase_list(&json!({})).is_empty());
    }

    #[test]
    fn a_phrase_spans_its_words_and_counts_from_the_turns_start() {
        let heard = Recognition {
            text: "hello world".into(),
            words: vec![
                byos_speech::recognizer::Word { text: "hello".into(), offset_ms: 200, duration_ms: 300 },
                byos_speech::recognizer::Word { text: "world".into(), offset_ms: 500, duration_ms: 400 },
            ],
            confidence: 0.9,
            alternatives: Vec::new(),
        };
        let phrase = phrase_json(&(16_000..48_000), &heard, true);
        assert_eq!((phrase["Offset"].as_u64(), phrase["Duration"].as_u64()), (Some(12_000_000), Some(7_000_000)));
        assert_eq!(phrase["NBest"][0]["Words"][1]["Offset"].as_u64(), Some(15_000_000));
        assert_eq!(phrase["DisplayText"], "Hello world.");
    }
}
