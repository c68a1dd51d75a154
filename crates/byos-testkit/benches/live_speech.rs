//! Live speech benchmark (issue 11): the Speech SDK's sockets, driven as the SDK drives them (USP
//! framing, audio at real time in 100 ms messages), in one run on the same sentences:
//!
//! 1. recognition latency: each sentence streamed on its own turn; from its last audio byte to its
//!    last `speech.phrase`, against the engine alone recognizing the same last utterance (what is
//!    left to do once the last byte is in): the overhead is the difference;
//! 2. text to speech: first audio and the whole answer over the socket, against the engine alone
//!    (a `TtsEngine` pool) speaking the same sentences; audio seconds per wall second;
//! 3. sessions sustained at real time: N sessions at once (their starts spread over a sentence), each streaming sentences for
//!    `BENCH_SESSION_SECONDS`; sustained when every session's turn ends within [`MAX_LAG`] of its
//!    last byte (the server kept up) and none was refused; N grows until it is not.
//!
//! Run: `cargo build --release -p byos-server && cargo bench -p byos-testkit --bench live_speech`.
//! Workers are the release binary's (`BYOS_BIN` to choose another). Knobs: `BENCH_SENTENCES`
//! (default 12), `BENCH_SESSION_SECONDS` (default 12), `BENCH_MAX_SESSIONS` (default 32). Needs
//! `flite` and Debian's `libpocketsphinx3` + `pocketsphinx-en-us`.

#[path = "support/speech.rs"]
mod spoken;
mod support;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use byos_speech::engine::SpeechEngine;
use byos_speech::tts::TtsEngine;
use byos_speech::workers::WorkerCommand;
use byos_testkit::{TestServer, WebSocket};
use futures_util::{SinkExt, StreamExt};
use spoken::{Utterance, speak};
use support::{SENTENCES, byos_binary, env_usize, percentile, sorted};
use tokio_tungstenite::tungstenite::Message;

const JOB_TIMEOUT: Duration = Duration::from_secs(120);
/// A session whose turn ends later than this after its last byte fell behind real time.
const MAX_LAG: Duration = Duration::from_secs(2);
/// Audio goes out in messages of 100 ms, as the SDK sends it (16 kHz 16-bit mono).
const CHUNK_BYTES: usize = 3200;
const CHUNK_TIME: Duration = Duration::from_millis(100);
/// Quiet between the sentences of a long session (long enough to end an utterance).
const PAUSE_SAMPLES: usize = 16_000 * 6 / 10;
/// Over how long the sessions of a step start (about a sentence).
const STAGGER: Duration = Duration::from_secs(5);
const RECOGNITION_PATH: &str = "speech/recognition/conversation/cognitiveservices/v1?language=en-US";
const SYNTHESIS_PATH: &str = "cognitiveservices/websocket/v1";

fn request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn text_message(path: &str, request_id: &str, body: &str) -> Message {
    Message::text(format!("X-RequestId:{request_id}\r\nPath:{path}\r\nContent-Type:application/json\r\n\r\n{body}"))
}

fn audio_message(request_id: &str, body: &[u8]) -> Message {
    let head = format!("Path:audio\r\nX-RequestId:{request_id}\r\nX-StreamId:1\r\n");
    let mut out = (head.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
    Message::binary(out)
}

/// A server text message's path and body.
fn incoming(message: &Message) -> Option<(&str, &str)> {
    let Message::Text(text) = message else { return None };
    let (head, body) = text.as_str().split_once("\r\n\r\n")?;
    let path = head.split("\r\n").find_map(|line| line.strip_prefix("Path:"))?;
    Some((path, body))
}

/// A sentence as the server will hear it: its speech with 200 ms around it and no more (so that
/// its last utterance ends with the audio, not at a pause heard before the last byte).
fn trimmed(utterance: &Utterance) -> Vec<i16> {
    let pieces = byos_speech::segment::utterances(&utterance.samples);
    let (start, end) = match (pieces.first(), pieces.last()) {
        (Some(first), Some(last)) => (first.start, last.end),
        _ => (0, utterance.samples.len()),
    };
    utterance.samples[start..end].to_vec()
}

fn pcm(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// When a streamed turn's last byte went out and when its answers came.
struct Turn {
    last_byte: Instant,
    last_phrase: Option<Instant>,
    end: Instant,
    phrases: usize,
}

/// One turn on `socket`: `header` (a WAV header), then `pcm` at real time, then the end of audio;
/// read until `turn.end`.
async fn stream_turn(socket: &mut WebSocket, header: &[u8], pcm: &[u8]) -> anyhow::Result<Turn> {
    let rid = request_id();
    let (mut tx, mut rx) = socket.split();
    tx.send(text_message("speech.context", &rid, r#"{"phraseDetection":{"language":"en-US"}}"#)).await?;
    tx.send(audio_message(&rid, header)).await?;
    let send = async {
        let start = Instant::now();
        for (i, chunk) in pcm.chunks(CHUNK_BYTES).enumerate() {
            tokio::time::sleep_until((start + CHUNK_TIME * i as u32).into()).await;
            tx.send(audio_message(&rid, chunk)).await?;
        }
        let last_byte = Instant::now();
        tx.send(audio_message(&rid, b"")).await?;
        anyhow::Ok(last_byte)
    };
    let receive = async {
        let (mut last_phrase, mut phrases) = (None, 0);
        while let Some(message) = rx.next().await {
            let message = message?;
            match incoming(&message) {
                Some(("speech.phrase", body)) if body.contains("\"Success\"") => {
                    last_phrase = Some(Instant::now());
                    phrases += 1;
                }
                Some(("turn.end", _)) => return Ok((last_phrase, Instant::now(), phrases)),
                _ => {}
            }
            if let Message::Close(frame) = message {
                bail!("the server closed the session: {frame:?}");
            }
        }
        bail!("the socket ended before turn.end")
    };
    let (last_byte, (last_phrase, end, phrases)) = tokio::try_join!(send, receive)?;
    Ok(Turn { last_byte, last_phrase, end, phrases })
}

/// One figure's line: its p50 and p95.
fn report(label: &str, values: &[f64]) {
    let values = sorted(values.to_vec());
    println!("   {label:<36} p50 {:7.1} ms  p95 {:7.1} ms", percentile(&values, 0.5), percentile(&values, 0.95));
}

fn median(values: &[f64]) -> f64 {
    percentile(&sorted(values.to_vec()), 0.5)
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Signed milliseconds from `from` to `to`.
fn signed_ms(from: Instant, to: Instant) -> f64 {
    if to >= from { millis(to - from) } else { -millis(from - to) }
}

struct Speech {
    server: TestServer,
    endpoint: String,
    key: String,
}

impl Speech {
    async fn open(&self, path: &str) -> anyhow::Result<WebSocket> {
        let url = format!("{}{path}", self.endpoint.replacen("https://", "wss://", 1));
        let id = request_id();
        let headers = [
            ("Ocp-Apim-Subscription-Key", self.key.as_str()),
            ("Sec-WebSocket-Protocol", "USP"),
            ("X-ConnectionId", id.as_str()),
        ];
        self.server.websocket(&url, &headers).await
    }
}

async fn recognition_latency(speech: &Speech, engine: &SpeechEngine, sentences: &[Utterance]) -> anyhow::Result<()> {
    println!("\n1. recognition latency, each sentence streamed at real time on its own turn");
    let mut alone = Vec::new();
    let mut served = Vec::new();
    for sentence in sentences {
        let samples = trimmed(sentence);
        let last = byos_speech::segment::utterances(&samples).last().cloned().unwrap_or(0..samples.len());
        let started = Instant::now();
        engine.recognize(&samples[last]).await?;
        alone.push(millis(started.elapsed()));
    }
    let mut socket = speech.open(RECOGNITION_PATH).await?;
    for sentence in sentences {
        let turn = stream_turn(&mut socket, &sentence.wav[..44], &pcm(&trimmed(sentence))).await?;
        let answered = turn.last_phrase.context("no phrase was recognized")?;
        served.push(signed_ms(turn.last_byte, answered));
    }
    let overhead: Vec<f64> = served.iter().zip(&alone).map(|(s, a)| s - a).collect();
    report("engine alone, last utterance:", &alone);
    report("last byte -> final speech.phrase:", &served);
    report("overhead over the engine alone:", &overhead);
    println!("   (target: overhead p50 <= 50 ms)");
    Ok(())
}

/// Sentences one after the other with a pause between, for `seconds` of audio.
fn long_session(sentences: &[Utterance], seconds: usize) -> Vec<u8> {
    let mut samples = Vec::new();
    for sentence in sentences.iter().cycle() {
        if samples.len() >= seconds * 16_000 {
            break;
        }
        samples.extend(trimmed(sentence));
        samples.extend(std::iter::repeat_n(0i16, PAUSE_SAMPLES));
    }
    pcm(&samples)
}

/// `count` sessions at once streaming `audio`: the worst lag (turn end after the last byte), or
/// why one failed.
async fn sessions_at_once(speech: &Speech, header: &[u8], audio: &[u8], count: usize) -> anyhow::Result<Duration> {
    // Speakers do not pause in step: session i starts i/count of a sentence (5 s) after the first.
    let runs = (0..count).map(|i| async move {
        tokio::time::sleep(STAGGER * i as u32 / count as u32).await;
        let mut socket = speech.open(RECOGNITION_PATH).await?;
        let turn = stream_turn(&mut socket, header, audio).await?;
        anyhow::ensure!(turn.phrases > 0, "a session recognized nothing");
        Ok(turn.end.saturating_duration_since(turn.last_byte))
    });
    let lags = futures_util::future::try_join_all(runs).await?;
    Ok(lags.into_iter().max().unwrap_or_default())
}

async fn sessions_sustained(
    speech: &Speech,
    sentences: &[Utterance],
    seconds: usize,
    most: usize,
) -> anyhow::Result<()> {
    println!(
        "\n3. sessions at once, each streaming {seconds} s of speech at real time (sustained: every turn ends within {:?} of its last byte)",
        MAX_LAG
    );
    let audio = long_session(sentences, seconds);
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    let mut sustained = 0;
    let mut count = 1;
    while count <= most {
        match sessions_at_once(speech, &sentences[0].wav[..44], &audio, count).await {
            Ok(lag) if lag <= MAX_LAG => {
                println!("   {count:3} sessions: worst lag {:7.1} ms  sustained", millis(lag));
                sustained = count;
            }
            Ok(lag) => {
                println!("   {count:3} sessions: worst lag {:7.1} ms  fell behind", millis(lag));
                break;
            }
            Err(e) => {
                println!("   {count:3} sessions: failed: {e:#}");
                break;
            }
        }
        count = if count < 4 { count + 1 } else { count + count / 2 };
    }
    println!(
        "   sustained: {sustained} sessions on {cores} cores = {:.1} per core (Microsoft recommends at most 2 per core for its container)",
        sustained as f64 / cores as f64
    );
    Ok(())
}

fn ssml(sentence: &str) -> String {
    format!("<speak version='1.0' xml:lang='en-US'><voice name='en-US-RmsFlite'>{sentence}</voice></speak>")
}

async fn synthesis(speech: &Speech, tts: &TtsEngine, count: usize) -> anyhow::Result<()> {
    println!("\n2. text to speech, {count} sentences one after the other (raw 16 kHz PCM)");
    let mut alone = Vec::new();
    let mut alone_audio = 0.0;
    let started_all = Instant::now();
    for sentence in SENTENCES.iter().cycle().take(count) {
        let request = byos_speech::tts::request(&ssml(sentence))?;
        let started = Instant::now();
        let spoken = tts.synthesize(&request).await?;
        alone.push(millis(started.elapsed()));
        alone_audio += spoken.samples.len() as f64 / f64::from(spoken.sample_rate);
    }
    let alone_rate = alone_audio / started_all.elapsed().as_secs_f64();
    let mut socket = speech.open(SYNTHESIS_PATH).await?;
    let (mut first, mut whole, mut served_audio) = (Vec::new(), Vec::new(), 0.0);
    let started_all = Instant::now();
    let context = r#"{"synthesis":{"audio":{"outputFormat":"raw-16khz-16bit-mono-pcm","metadataOptions":{"sessionEndEnabled":true}}}}"#;
    for sentence in SENTENCES.iter().cycle().take(count) {
        let rid = request_id();
        socket.send(text_message("synthesis.context", &rid, context)).await?;
        let started = Instant::now();
        socket
            .send(Message::text(format!(
                "X-RequestId:{rid}\r\nPath:ssml\r\nContent-Type:application/ssml+xml\r\n\r\n{}",
                ssml(sentence)
            )))
            .await?;
        let mut first_audio = None;
        while let Some(message) = socket.next().await {
            let message = message?;
            if let Message::Binary(bytes) = &message {
                first_audio.get_or_insert_with(Instant::now);
                let head = usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
                served_audio += (bytes.len() - 2 - head) as f64 / 32_000.0;
            }
            if matches!(incoming(&message), Some(("turn.end", _))) {
                break;
            }
        }
        first.push(millis(first_audio.context("no audio came")? - started));
        whole.push(millis(started.elapsed()));
    }
    let served_rate = served_audio / started_all.elapsed().as_secs_f64();
    report("engine alone, whole synthesis:", &alone);
    report("socket, first audio:", &first);
    report("socket, turn.end:", &whole);
    println!(
        "   first audio: engine/socket = {:.2}x; throughput {served_rate:.1} vs {alone_rate:.1} audio s per s = {:.2}x (targets >= 0.9x)",
        median(&alone) / median(&first),
        served_rate / alone_rate
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count = env_usize("BENCH_SENTENCES", 12)?.max(1);
    let seconds = env_usize("BENCH_SESSION_SECONDS", 12)?.max(1);
    let most = env_usize("BENCH_MAX_SESSIONS", 32)?.max(1);
    let binary = byos_binary()?;
    let stt = WorkerCommand { program: binary.clone(), args: vec!["engine-worker".into()] };
    let tts_command = WorkerCommand { program: binary.clone(), args: vec!["tts-worker".into()] };
    let workers = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    println!("live speech benchmark: {count} sentences, {workers} workers per pool ({})", binary.display());
    let dir = tempfile::tempdir()?;
    let mut sentences = Vec::new();
    for (index, sentence) in SENTENCES.iter().cycle().take(count).enumerate() {
        sentences.push(speak(dir.path(), &format!("sentence{index}.wav"), sentence, "rms")?);
    }
    let seconds_of_speech: f64 = sentences.iter().map(|s| s.seconds).sum();
    println!(
        "  {} sentences spoken by Flite rms, {seconds_of_speech:.1} s in all ({} first)",
        sentences.len(),
        sentences[0].name
    );

    let engine = SpeechEngine::start(stt.clone(), workers, JOB_TIMEOUT);
    let tts = TtsEngine::start(tts_command.clone(), workers, JOB_TIMEOUT);
    // Workers load their engines on their first job: warm both pools and the server's first.
    engine.recognize(&sentences[0].samples).await?;
    tts.synthesize(&byos_speech::tts::request(&ssml("warm up"))?).await?;
    let server = TestServer::start_with(|config| {
        config.speech_worker = Some(stt.clone());
        config.tts_worker = Some(tts_command.clone());
    })
    .await?;
    let client = server.client()?;
    let (endpoint, key) = server.speech_account(&client, "livebench", "livebench").await?;
    let speech = Speech { server, endpoint, key };
    let mut warm = speech.open(RECOGNITION_PATH).await?;
    for sentence in sentences.iter().take(workers) {
        stream_turn(&mut warm, &sentence.wav[..44], &pcm(&trimmed(sentence)[..16_000.min(sentence.samples.len())]))
            .await?;
    }
    drop(warm);

    recognition_latency(&speech, &engine, &sentences).await?;
    drop(engine);
    // Before the sessions: what a step that fell behind leaves queued must not weigh on it.
    synthesis(&speech, &tts, count).await?;
    sessions_sustained(&speech, &sentences, seconds, most).await?;
    Ok(())
}
