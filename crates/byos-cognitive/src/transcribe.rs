//! One audio file transcribed: decoded, each requested channel cut into utterances at its pauses,
//! every utterance recognized by the engine workers. Batch and fast transcription render the
//! same [`Transcript`] in their own shapes.

use byos_speech::adapt::AdaptedModel;
use byos_speech::audio::{self, AudioError, ENGINE_RATE};
use byos_speech::engine::{RecognizeError, SpeechEngine};
use byos_speech::pocketsphinx::Recognition;
use futures_util::{StreamExt, stream};

/// A recognized utterance of one channel.
#[derive(Debug, Clone)]
pub struct Phrase {
    pub channel: u32,
    /// From the start of the audio.
    pub offset_ms: u64,
    pub duration_ms: u64,
    /// Word offsets are from the start of the audio too.
    pub heard: Recognition,
}

/// What a file said.
#[derive(Debug, Clone)]
pub struct Transcript {
    pub duration_ms: u64,
    /// The channels transcribed, in order.
    pub channels: Vec<u32>,
    /// In order of channel, then time.
    pub phrases: Vec<Phrase>,
}

impl Transcript {
    /// A channel's phrases, joined (`combinedRecognizedPhrases`).
    pub fn combined(&self, channel: u32) -> String {
        let texts: Vec<&str> =
            self.phrases.iter().filter(|p| p.channel == channel).map(|p| p.heard.text.as_str()).collect();
        texts.join(" ")
    }
}

/// Why a file was not transcribed (its entry in the report).
#[derive(Debug, thiserror::Error)]
pub enum TranscribeError {
    #[error("{0}")]
    Audio(#[from] AudioError),
    #[error("the speech engine failed: {0}")]
    Engine(String),
}

impl TranscribeError {
    /// The `errorKind` Azure's reports use.
    pub fn kind(&self) -> &'static str {
        match self {
            TranscribeError::Audio(_) => "InvalidAudioFormat",
            TranscribeError::Engine(_) => "TranscriptionFailed",
        }
    }
}

/// Which channels of a file are transcribed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channels {
    /// Each of these that the file has, on its own (batch: 0 and 1 by default).
    Separate(Vec<u32>),
    /// All of them mixed into one, reported as channel 0 (fast transcription's default).
    Mixed,
}

/// Transcribes `bytes` (`extension` hints the container) with `model` (none: the base model), waiting for the workers rather than
/// refusing when they are busy; at most the pool's size of utterances are in flight.
pub async fn transcribe(
    engine: &SpeechEngine,
    bytes: bytes::Bytes,
    extension: &str,
    wanted: &Channels,
    model: Option<&AdaptedModel>,
) -> Result<Transcript, TranscribeError> {
    let decoded = decode(bytes, extension).await?;
    let (channels, tracks): (Vec<u32>, Vec<Vec<i16>>) = match wanted {
        Channels::Separate(wanted) => {
            let present: Vec<u32> = wanted.iter().copied().filter(|c| (*c as usize) < decoded.channels.len()).collect();
            let tracks = present.iter().map(|c| decoded.channels[*c as usize].clone()).collect();
            (present, tracks)
        }
        Channels::Mixed => (vec![0], vec![mix(&decoded.channels)]),
    };
    let mut utterances = Vec::new();
    for (&channel, samples) in channels.iter().zip(&tracks) {
        for range in byos_speech::segment::utterances(samples) {
            utterances.push((channel, range.start, samples[range].to_vec()));
        }
    }
    let heard: Vec<Result<Phrase, RecognizeError>> = stream::iter(utterances)
        .map(|(channel, start, samples)| async move {
            let mut heard = engine.recognize_waiting_with(&samples, model).await?;
            let start_ms = start as u64 * 1000 / u64::from(ENGINE_RATE);
            for word in &mut heard.words {
                word.offset_ms += start_ms;
            }
            let duration_ms = samples.len() as u64 * 1000 / u64::from(ENGINE_RATE);
            Ok(Phrase { channel, offset_ms: start_ms, duration_ms, heard })
        })
        .buffered(engine.workers())
        .collect()
        .await;
    let mut phrases = Vec::new();
    for phrase in heard {
        let phrase = phrase.map_err(|e| TranscribeError::Engine(e.to_string()))?;
        if !phrase.heard.text.is_empty() {
            phrases.push(trimmed(phrase));
        }
    }
    Ok(Transcript { duration_ms: decoded.duration_ms, channels, phrases })
}

/// Decodes and resamples off the async threads (a long file takes a while).
pub(crate) async fn decode(bytes: bytes::Bytes, extension: &str) -> Result<audio::EngineAudio, TranscribeError> {
    let extension = extension.to_owned();
    tokio::task::spawn_blocking(move || audio::decode(&bytes, &extension))
        .await
        .map_err(|e| TranscribeError::Engine(format!("the decoder stopped: {e}")))?
        .map_err(TranscribeError::Audio)
}

/// The channels averaged into one.
fn mix(channels: &[Vec<i16>]) -> Vec<i16> {
    let count = channels.len().max(1) as i32;
    let frames = channels.iter().map(Vec::len).min().unwrap_or(0);
    (0..frames).map(|i| (channels.iter().map(|c| i32::from(c[i])).sum::<i32>() / count) as i16).collect()
}

/// The phrase's span narrowed to its words (the utterance was padded around them).
fn trimmed(mut phrase: Phrase) -> Phrase {
    if let (Some(first), Some(last)) = (phrase.heard.words.first(), phrase.heard.words.last()) {
        phrase.offset_ms = first.offset_ms;
        phrase.duration_ms = (last.offset_ms + last.duration_ms).saturating_sub(first.offset_ms);
    }
    phrase
}
