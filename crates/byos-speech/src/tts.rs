//! Text to speech as services use it: byos's voices (listed in Azure's voices-list shape), the
//! output formats byos makes, and [`TtsEngine`], the engines in supervised worker processes
//! (`byos tts-worker`, [`serve_tts_worker`]): Flite for English, eSpeak NG for the other languages.
//!
//! Voices are byos's own, named for their engine: `en-US-RmsFlite` is Flite's `rms`,
//! `de-DE-FemaleEspeakNg` eSpeak NG's German with its female variant. Their `Name` has the form
//! Azure's voices have ("Microsoft Server Speech Text to Speech Voice (en-US, RmsFlite)"), because
//! that is the form the Speech SDK was seen to parse; the voice part of it, the ShortName and the
//! DisplayName all say the engine. An Azure voice byos does not have is refused, naming it and
//! listing byos's: nothing is mapped silently. English is Flite's only (PocketSphinx recognizes
//! Flite's English, not eSpeak's).
//!
//! A request crossing the pipe is [`PROTOCOL`] then the [`Ssml`] as JSON (voices already checked).
//! The answer is the sample rate (4 bytes, big-endian), the length of the word boundaries' JSON
//! (4 bytes, big-endian), that JSON, then the samples (little-endian i16).

use std::time::Duration;

use crate::espeak::{self, Espeak, EspeakVoice};
use crate::flite::{Flite, FliteVoice};
use crate::recognizer::EngineError;
use crate::ssml::{self, Piece, Prosody, Ssml, SsmlError};
use crate::workers::{self, PoolError, WorkerCommand, WorkerPool};

/// The version of the request and answer bodies.
pub const PROTOCOL: u8 = 1;

/// Where a word is in the audio.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WordBoundary {
    pub text: String,
    pub offset_ms: u64,
    pub duration_ms: u64,
}

/// The words as `text` writes them (Flite reports `good` for `Good`; Azure gives the text's own):
/// each word takes the next written token it equals but for case, looking a few tokens ahead; a
/// word the text does not write so (a number said as words) keeps the engine's spelling.
pub fn as_written(text: &str, words: &mut [WordBoundary]) {
    const LOOK_AHEAD: usize = 3;
    let tokens: Vec<&str> = text
        .split_whitespace()
        .map(|t| t.trim_matches(|c: char| !c.is_alphanumeric() && c != '\''))
        .filter(|t| !t.is_empty())
        .collect();
    let mut next = 0;
    for word in words {
        let ahead = tokens.iter().enumerate().skip(next).take(LOOK_AHEAD);
        if let Some((at, token)) = ahead.into_iter().find(|(_, t)| t.eq_ignore_ascii_case(&word.text)) {
            word.text = (*token).to_owned();
            next = at + 1;
        }
    }
}

/// The sentences of `text` (ended by `.`, `!` or `?` before a space or the end).
fn split_sentences(text: &str) -> Vec<&str> {
    let mut sentences = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for (i, &(at, c)) in chars.iter().enumerate() {
        let ends = matches!(c, '.' | '!' | '?') && chars.get(i + 1).is_none_or(|(_, next)| next.is_whitespace());
        if ends {
            let end = at + c.len_utf8();
            sentences.push(text[start..end].trim());
            start = end;
        }
    }
    sentences.push(text[start..].trim());
    sentences.retain(|s| !s.is_empty());
    sentences
}

/// Where each sentence of `text` is in its audio, from the words' boundaries: a sentence takes as
/// many of the engine's words as it has written words (tokens with a letter or digit), the last
/// sentence the rest. The engine says a written number as several words, so a sentence with numbers
/// ends a little early: the engines report words, not sentences.
pub fn sentences(text: &str, words: &[WordBoundary]) -> Vec<WordBoundary> {
    let sentences = split_sentences(text);
    let mut rest = words;
    let mut out = Vec::new();
    for (i, sentence) in sentences.iter().enumerate() {
        let written = sentence.split_whitespace().filter(|t| t.chars().any(char::is_alphanumeric)).count();
        let take = if i + 1 == sentences.len() { rest.len() } else { written.min(rest.len()) };
        let (mine, after) = rest.split_at(take);
        rest = after;
        if let (Some(first), Some(last)) = (mine.first(), mine.last()) {
            let end = last.offset_ms + last.duration_ms;
            let duration_ms = end.saturating_sub(first.offset_ms);
            out.push(WordBoundary { text: (*sentence).to_owned(), offset_ms: first.offset_ms, duration_ms });
        }
    }
    out
}

/// What an engine says for one text: mono samples at its voice's rate and where the words are.
#[derive(Debug, Clone, PartialEq)]
pub struct Speech {
    pub sample_rate: u32,
    pub samples: Vec<i16>,
    pub words: Vec<WordBoundary>,
}

/// A text-to-speech engine: speaks `text` with its voice `voice` (the engine's name of it).
pub trait Synthesizer {
    fn speak(&mut self, voice: &str, text: &str, prosody: &Prosody) -> Result<Speech, EngineError>;
}

/// A synthesized request: every piece one after the other, at one rate.
pub type Synthesis = Speech;

/// One of byos's voices, serialized as an entry of Azure's voices list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Voice {
    pub name: String,
    pub display_name: String,
    pub local_name: String,
    pub short_name: String,
    pub gender: String,
    pub locale: String,
    pub locale_name: String,
    /// Azure's list has these three as strings.
    pub sample_rate_hertz: String,
    pub voice_type: String,
    pub status: String,
    pub words_per_minute: String,
    /// The engine's voice (not listed).
    #[serde(skip)]
    pub engine_voice: EngineVoice,
}

/// The engine that speaks a voice, and its voice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EngineVoice {
    Flite(FliteVoice),
    Espeak(EspeakVoice),
}

impl EngineVoice {
    /// The engine's name of the voice.
    pub fn name(self) -> String {
        match self {
            EngineVoice::Flite(voice) => voice.name().to_owned(),
            EngineVoice::Espeak(voice) => voice.name(),
        }
    }
}

/// The Flite voices: (voice, its ShortName's speaker part, gender, words a minute as measured on a
/// 50-word paragraph at the voice's own rate).
const FLITE_VOICES: [(FliteVoice, &str, &str, u32); 4] = [
    (FliteVoice::Rms, "Rms", "Male", 189),
    (FliteVoice::Slt, "Slt", "Female", 225),
    (FliteVoice::Awb, "Awb", "Male", 226),
    (FliteVoice::Kal16, "Kal16", "Male", 232),
];
/// Every Flite voice speaks at 16 kHz.
const FLITE_RATE: u32 = 16_000;

/// The locales byos speaks with eSpeak NG: (locale, eSpeak's language voice, Azure's LocaleName).
/// Each was heard to be read as its language by the installed espeak-ng-data 1.51 (phonemes, not
/// letter names, from a sentence of it); eSpeak's Japanese (kanji are spelled out as "Chinese
/// letter"), Mandarin, Thai, Hebrew, Arabic and Korean were not, and are left out.
const ESPEAK_LOCALES: [(&str, &str, &str); 33] = [
    ("bg-BG", "bg", "Bulgarian (Bulgaria)"),
    ("ca-ES", "ca", "Catalan"),
    ("cs-CZ", "cs", "Czech (Czechia)"),
    ("da-DK", "da", "Danish (Denmark)"),
    ("de-DE", "de", "German (Germany)"),
    ("el-GR", "el", "Greek (Greece)"),
    ("es-ES", "es", "Spanish (Spain)"),
    ("es-MX", "es-419", "Spanish (Mexico)"),
    ("et-EE", "et", "Estonian (Estonia)"),
    ("fi-FI", "fi", "Finnish (Finland)"),
    ("fr-FR", "fr", "French (France)"),
    ("hi-IN", "hi", "Hindi (India)"),
    ("hr-HR", "hr", "Croatian (Croatia)"),
    ("hu-HU", "hu", "Hungarian (Hungary)"),
    ("id-ID", "id", "Indonesian (Indonesia)"),
    ("it-IT", "it", "Italian (Italy)"),
    ("lt-LT", "lt", "Lithuanian (Lithuania)"),
    ("lv-LV", "lv", "Latvian (Latvia)"),
    ("ms-MY", "ms", "Malay (Malaysia)"),
    ("nb-NO", "nb", "Norwegian Bokmål (Norway)"),
    ("nl-NL", "nl", "Dutch (Netherlands)"),
    ("pl-PL", "pl", "Polish (Poland)"),
    ("pt-BR", "pt-br", "Portuguese (Brazil)"),
    ("pt-PT", "pt", "Portuguese (Portugal)"),
    ("ro-RO", "ro", "Romanian (Romania)"),
    ("ru-RU", "ru", "Russian (Russia)"),
    ("sk-SK", "sk", "Slovak (Slovakia)"),
    ("sl-SI", "sl", "Slovenian (Slovenia)"),
    ("sr-RS", "sr", "Serbian (Cyrillic, Serbia)"),
    ("sv-SE", "sv", "Swedish (Sweden)"),
    ("tr-TR", "tr", "Turkish (Türkiye)"),
    ("uk-UA", "uk", "Ukrainian (Ukraine)"),
    ("vi-VN", "vi", "Vietnamese (Vietnam)"),
];
/// eSpeak NG speaks at 22.05 kHz (what espeak_Initialize answers with Debian's data).
const ESPEAK_RATE: u32 = 22_050;

/// byos's voices, in the order they are listed: Flite's, then eSpeak NG's by locale.
pub fn voices() -> Vec<Voice> {
    let flite = FLITE_VOICES.iter().map(|&(voice, speaker, gender, words_per_minute)| {
        let locale = ("en-US", "English (United States)");
        listed(locale, speaker, FLITE_NAMES, gender, FLITE_RATE, words_per_minute, EngineVoice::Flite(voice))
    });
    let espeak = ESPEAK_LOCALES.iter().flat_map(|&(locale, language, locale_name)| {
        [("Male", false), ("Female", true)].map(|(gender, female)| {
            let voice = EngineVoice::Espeak(EspeakVoice { language, female });
            let words_per_minute = espeak::NORMAL_WORDS_PER_MINUTE;
            listed((locale, locale_name), gender, ESPEAK_NAMES, gender, ESPEAK_RATE, words_per_minute, voice)
        })
    });
    flite.chain(espeak).collect()
}

/// An engine's names in voice names: in a ShortName (`RmsFlite`) and in a DisplayName ("Rms (Flite)").
const FLITE_NAMES: (&str, &str) = ("Flite", "Flite");
const ESPEAK_NAMES: (&str, &str) = ("EspeakNg", "eSpeak NG");

/// A voice's entry: `speaker` and the engine's names make its names.
fn listed(
    (locale, locale_name): (&str, &str),
    speaker: &str,
    (engine, engine_display): (&str, &str),
    gender: &str,
    sample_rate: u32,
    words_per_minute: u32,
    engine_voice: EngineVoice,
) -> Voice {
    let voice = format!("{speaker}{engine}");
    let display_name = format!("{speaker} ({engine_display})");
    Voice {
        name: format!("Microsoft Server Speech Text to Speech Voice ({locale}, {voice})"),
        display_name: display_name.clone(),
        local_name: display_name,
        short_name: format!("{locale}-{voice}"),
        gender: gender.into(),
        locale: locale.into(),
        locale_name: locale_name.into(),
        sample_rate_hertz: sample_rate.to_string(),
        voice_type: "Standard".into(),
        status: "GA".into(),
        words_per_minute: words_per_minute.to_string(),
        engine_voice,
    }
}

/// A voice name byos does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the voice {requested} is not available; byos has {available}")]
pub struct VoiceError {
    pub requested: String,
    pub available: String,
}

/// The voice a request names: its ShortName or Name, in any case.
pub fn find_voice(name: &str) -> Result<Voice, VoiceError> {
    let name = name.trim();
    let voices = voices();
    let available = voices.iter().map(|v| v.short_name.as_str()).collect::<Vec<_>>().join(", ");
    voices
        .iter()
        .find(|v| v.short_name.eq_ignore_ascii_case(name) || v.name.eq_ignore_ascii_case(name))
        .cloned()
        .ok_or_else(|| VoiceError { requested: name.to_owned(), available })
}

/// SSML read and its voices checked: what [`TtsEngine::synthesize`] takes.
pub fn request(ssml_text: &str) -> Result<Ssml, SsmlError> {
    let ssml = ssml::parse(ssml_text)?;
    check_voices(&ssml).map_err(|e| SsmlError::UnknownVoice(e.to_string()))?;
    Ok(ssml)
}

fn check_voices(ssml: &Ssml) -> Result<(), VoiceError> {
    ssml.voices().into_iter().try_for_each(|name| find_voice(name).map(drop))
}

/// How samples are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Pcm16,
    MuLaw,
    ALaw,
}

/// An output format byos makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputFormat {
    pub sample_rate: u32,
    pub encoding: Encoding,
    /// With a WAV header (`riff-*`), or headerless (`raw-*`).
    pub riff: bool,
}

/// An output format byos does not make (MP3, Opus, WebM, ...), or a name that is none.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the output format {0} is not supported; byos makes raw-/riff- 8khz, 16khz, 22050hz, 24khz, 44100hz and 48khz 16bit-mono-pcm, and 8khz 8bit-mono-mulaw/alaw"
)]
pub struct FormatError(pub String);

/// The PCM rates by their names in Azure's format names.
const PCM_RATES: [(&str, u32); 6] = [
    ("8khz", 8_000),
    ("16khz", 16_000),
    ("22050hz", 22_050),
    ("24khz", 24_000),
    ("44100hz", 44_100),
    ("48khz", 48_000),
];

impl OutputFormat {
    /// Reads an Azure output format name (`X-Microsoft-OutputFormat`, `outputFormat`), in any case.
    pub fn parse(name: &str) -> Result<OutputFormat, FormatError> {
        let lower = name.trim().to_ascii_lowercase();
        let refused = || FormatError(name.trim().to_owned());
        let (riff, rest) = match lower.split_once('-') {
            Some(("raw", rest)) => (false, rest),
            Some(("riff", rest)) => (true, rest),
            _ => return Err(refused()),
        };
        let format = |sample_rate, encoding| OutputFormat { sample_rate, encoding, riff };
        match rest {
            "8khz-8bit-mono-mulaw" => Ok(format(8_000, Encoding::MuLaw)),
            "8khz-8bit-mono-alaw" => Ok(format(8_000, Encoding::ALaw)),
            _ => {
                let rate = rest.strip_suffix("-16bit-mono-pcm").ok_or_else(refused)?;
                let (_, rate) = PCM_RATES.iter().find(|(n, _)| *n == rate).ok_or_else(refused)?;
                Ok(format(*rate, Encoding::Pcm16))
            }
        }
    }

    /// The Content-Type of audio in this format.
    pub fn content_type(&self) -> &'static str {
        match (self.riff, self.encoding) {
            (true, _) => "audio/wav",
            (false, Encoding::Pcm16) => "audio/pcm",
            (false, Encoding::MuLaw) => "audio/basic",
            (false, Encoding::ALaw) => "audio/x-alaw-basic",
        }
    }

    /// `samples` at `rate` in this format (resampled, encoded, with a WAV header for riff).
    pub fn encode(&self, rate: u32, samples: &[i16]) -> Result<Vec<u8>, EngineError> {
        let samples = resampled(samples, rate, self.sample_rate)?;
        let body: Vec<u8> = match self.encoding {
            Encoding::Pcm16 => samples.iter().flat_map(|s| s.to_le_bytes()).collect(),
            Encoding::MuLaw => samples.iter().map(|&s| mulaw(s)).collect(),
            Encoding::ALaw => samples.iter().map(|&s| alaw(s)).collect(),
        };
        if !self.riff {
            return Ok(body);
        }
        let mut out = self.wav_header(body.len());
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// A WAV header for `data` bytes: a 16-byte fmt chunk for PCM, 18 (with an empty extension)
    /// for μ-law and A-law, as the format's spec has for non-PCM data.
    fn wav_header(&self, data: usize) -> Vec<u8> {
        let (tag, bytes_per_sample, fmt_len): (u16, u16, u32) = match self.encoding {
            Encoding::Pcm16 => (1, 2, 16),
            Encoding::ALaw => (6, 1, 18),
            Encoding::MuLaw => (7, 1, 18),
        };
        let data = data as u32;
        let mut header = Vec::with_capacity(46);
        header.extend_from_slice(b"RIFF");
        header.extend_from_slice(&(4 + 8 + fmt_len + 8 + data).to_le_bytes());
        header.extend_from_slice(b"WAVEfmt ");
        header.extend_from_slice(&fmt_len.to_le_bytes());
        header.extend_from_slice(&tag.to_le_bytes());
        header.extend_from_slice(&1u16.to_le_bytes());
        header.extend_from_slice(&self.sample_rate.to_le_bytes());
        header.extend_from_slice(&(self.sample_rate * u32::from(bytes_per_sample)).to_le_bytes());
        header.extend_from_slice(&bytes_per_sample.to_le_bytes());
        header.extend_from_slice(&(bytes_per_sample * 8).to_le_bytes());
        if fmt_len == 18 {
            header.extend_from_slice(&0u16.to_le_bytes());
        }
        header.extend_from_slice(b"data");
        header.extend_from_slice(&data.to_le_bytes());
        header
    }
}

fn resampled(samples: &[i16], from: u32, to: u32) -> Result<Vec<i16>, EngineError> {
    if from == to || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let floats: Vec<f32> = samples.iter().map(|&s| f32::from(s) / f32::from(i16::MAX)).collect();
    let out = crate::audio::resample(&floats, from, to).map_err(|e| EngineError::Failed(e.to_string()))?;
    Ok(crate::audio::to_i16(&out))
}

/// G.711 μ-law of a 16-bit sample (as the ITU's reference code: 14 bits, bias 33, eight segments).
pub fn mulaw(sample: i16) -> u8 {
    const SEGMENT_ENDS: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
    let mut pcm = i32::from(sample) >> 2;
    let mask = if pcm < 0 {
        pcm = -pcm;
        0x7F
    } else {
        0xFF
    };
    pcm = pcm.min(8159) + 33;
    let code = match SEGMENT_ENDS.iter().position(|&end| pcm <= end) {
        Some(segment) => ((segment as i32) << 4) | ((pcm >> (segment + 1)) & 0x0F),
        None => 0x7F,
    };
    (code ^ mask) as u8
}

/// G.711 A-law of a 16-bit sample (13 bits, eight segments, even bits inverted).
pub fn alaw(sample: i16) -> u8 {
    const SEGMENT_ENDS: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let mut pcm = i32::from(sample) >> 3;
    let mask = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    let code = match SEGMENT_ENDS.iter().position(|&end| pcm <= end) {
        Some(0) => (pcm >> 1) & 0x0F,
        Some(segment) => ((segment as i32) << 4) | ((pcm >> segment) & 0x0F),
        None => 0x7F,
    };
    (code ^ mask) as u8
}

/// Why a synthesis did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SynthesizeError {
    /// Every worker is busy and the queue is full (answer 429 with Retry-After).
    #[error("the speech engine is busy")]
    Busy,
    /// A voice the request names is not byos's.
    #[error(transparent)]
    Voice(#[from] VoiceError),
    /// The engine failed this job (crashed, hung, not installed); the message says which.
    #[error("{0}")]
    Engine(String),
}

/// The pool of text-to-speech workers.
pub struct TtsEngine {
    pool: WorkerPool,
}

impl TtsEngine {
    /// Starts a pool of `size` workers of `command` (each loads an engine on the first job for one of its voices).
    pub fn start(command: WorkerCommand, size: usize, timeout: Duration) -> Self {
        let size = size.max(1);
        TtsEngine { pool: WorkerPool::start(command, size, size * 2, timeout) }
    }

    /// Speaks `ssml` ([`SynthesizeError::Busy`] when the queue is full).
    pub async fn synthesize(&self, ssml: &Ssml) -> Result<Synthesis, SynthesizeError> {
        let request = encode_request(ssml)?;
        parse_answer(&self.pool.run(request).await.map_err(pool_error)?)
    }

    /// Speaks `ssml`, waiting for a place in the queue (batch synthesis).
    pub async fn synthesize_waiting(&self, ssml: &Ssml) -> Result<Synthesis, SynthesizeError> {
        let request = encode_request(ssml)?;
        parse_answer(&self.pool.run_waiting(request).await.map_err(pool_error)?)
    }
}

fn pool_error(e: PoolError) -> SynthesizeError {
    match e {
        PoolError::Busy => SynthesizeError::Busy,
        other => SynthesizeError::Engine(other.to_string()),
    }
}

fn encode_request(ssml: &Ssml) -> Result<Vec<u8>, SynthesizeError> {
    check_voices(ssml)?;
    let mut request = vec![PROTOCOL];
    serde_json::to_writer(&mut request, ssml).map_err(|e| SynthesizeError::Engine(e.to_string()))?;
    Ok(request)
}

fn encode_answer(synthesis: &Synthesis) -> Result<Vec<u8>, String> {
    let words = serde_json::to_vec(&synthesis.words).map_err(|e| e.to_string())?;
    let mut answer = Vec::with_capacity(8 + words.len() + synthesis.samples.len() * 2);
    answer.extend_from_slice(&synthesis.sample_rate.to_be_bytes());
    answer.extend_from_slice(&(words.len() as u32).to_be_bytes());
    answer.extend_from_slice(&words);
    answer.extend(synthesis.samples.iter().flat_map(|s| s.to_le_bytes()));
    Ok(answer)
}

fn parse_answer(answer: &[u8]) -> Result<Synthesis, SynthesizeError> {
    let unreadable = |why: &str| SynthesizeError::Engine(format!("the engine's answer is unreadable: {why}"));
    let (rate, rest) = answer.split_first_chunk::<4>().ok_or_else(|| unreadable("truncated"))?;
    let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(|| unreadable("truncated"))?;
    let len = u32::from_be_bytes(*len) as usize;
    let words = rest.get(..len).ok_or_else(|| unreadable("truncated"))?;
    let words = serde_json::from_slice(words).map_err(|e| unreadable(&e.to_string()))?;
    let samples = rest[len..].chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
    Ok(Synthesis { sample_rate: u32::from_be_bytes(*rate), samples, words })
}

/// An engine of a worker, loaded on the first request for one of its voices (so that an English
/// request never loads eSpeak NG, nor another Flite), or why it could not be.
struct Lazy<S> {
    load: fn() -> Result<S, EngineError>,
    engine: Option<Result<S, EngineError>>,
}

impl<S> Lazy<S> {
    fn new(load: fn() -> Result<S, EngineError>) -> Self {
        Lazy { load, engine: None }
    }

    fn get(&mut self) -> Result<&mut S, EngineError> {
        self.engine.get_or_insert_with(self.load).as_mut().map_err(|e| e.clone())
    }

    #[cfg(test)]
    fn is_loaded(&self) -> bool {
        self.engine.is_some()
    }
}

/// A worker's engines: Flite's voices and eSpeak NG's.
struct Engines<F, E> {
    flite: Lazy<F>,
    espeak: Lazy<E>,
}

impl<F: Synthesizer, E: Synthesizer> Engines<F, E> {
    /// The engines, each to be loaded by its function on first use.
    fn new(flite: fn() -> Result<F, EngineError>, espeak: fn() -> Result<E, EngineError>) -> Self {
        Engines { flite: Lazy::new(flite), espeak: Lazy::new(espeak) }
    }

    /// Speaks `text` with the engine of `voice`.
    fn speak(&mut self, voice: EngineVoice, text: &str, prosody: &Prosody) -> Result<Speech, EngineError> {
        match voice {
            EngineVoice::Flite(v) => self.flite.get()?.speak(v.name(), text, prosody),
            EngineVoice::Espeak(v) => self.espeak.get()?.speak(&v.name(), text, prosody),
        }
    }
}

/// Speaks every piece of `ssml` with its voice's engine, one after the other at the first piece's
/// rate, the word boundaries moved to where their piece starts.
fn speak_all<F: Synthesizer, E: Synthesizer>(engines: &mut Engines<F, E>, ssml: &Ssml) -> Result<Synthesis, String> {
    let mut spoken: Vec<Result<Speech, u32>> = Vec::with_capacity(ssml.pieces.len());
    for piece in &ssml.pieces {
        spoken.push(match piece {
            Piece::Speech { voice, text, prosody } => {
                let voice = find_voice(voice).map_err(|e| e.to_string())?;
                Ok(engines.speak(voice.engine_voice, text, prosody).map_err(|e| e.to_string())?)
            }
            Piece::Pause { ms } => Err(*ms),
        });
    }
    let rate = spoken.iter().find_map(|s| s.as_ref().ok().map(|s| s.sample_rate)).unwrap_or(FLITE_RATE);
    let mut out = Synthesis { sample_rate: rate, samples: Vec::new(), words: Vec::new() };
    for piece in spoken {
        let start_ms = out.samples.len() as u64 * 1000 / u64::from(rate);
        match piece {
            Ok(speech) => {
                out.samples.extend(resampled(&speech.samples, speech.sample_rate, rate).map_err(|e| e.to_string())?);
                out.words
                    .extend(speech.words.into_iter().map(|w| WordBoundary { offset_ms: w.offset_ms + start_ms, ..w }));
            }
            Err(ms) => out.samples.resize(out.samples.len() + (u64::from(ms) * u64::from(rate) / 1000) as usize, 0),
        }
    }
    Ok(out)
}

/// The worker's answer to one request.
fn handle<F: Synthesizer, E: Synthesizer>(engines: &mut Engines<F, E>, body: &[u8]) -> Result<Vec<u8>, String> {
    let (&version, json) = body.split_first().ok_or("the request is empty")?;
    if version != PROTOCOL {
        return Err(format!("the request's protocol {version} is not {PROTOCOL}"));
    }
    let ssml: Ssml = serde_json::from_slice(json).map_err(|e| format!("the request is unreadable: {e}"))?;
    encode_answer(&speak_all(engines, &ssml)?)
}

/// The worker process: loads each engine on the first request for one of its voices, then
/// speaks every request until its stdin closes. Without an engine it answers every job needing
/// it that it is unavailable (rather than dying and being restarted in a loop).
pub fn serve_tts_worker() -> std::io::Result<()> {
    let mut engines = Engines::new(Flite::load, Espeak::load);
    workers::serve(|body| handle(&mut engines, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(text: &str, offset_ms: u64, duration_ms: u64) -> WordBoundary {
        WordBoundary { text: text.into(), offset_ms, duration_ms }
    }

    #[test]
    fn words_take_the_texts_casing_where_it_writes_them() {
        let mut words =
            [word("good", 0, 1), word("morning", 1, 1), word("forty", 2, 1), word("two", 3, 1), word("ada", 4, 1)];
        as_written("Good MORNING, 42 Ada!", &mut words);
        let texts: Vec<&str> = words.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(texts, ["Good", "MORNING", "forty", "two", "Ada"]);
    }

    #[test]
    fn sentences_take_their_words() {
        assert_eq!(split_sentences("One two. Three?  Four 4.5 five"), ["One two.", "Three?", "Four 4.5 five"]);
        let words = [word("one", 10, 100), word("two", 120, 100), word("three", 400, 200), word("four", 700, 50)];
        assert_eq!(
            sentences("One two. Three four.", &words),
            [word("One two.", 10, 210), word("Three four.", 400, 350)]
        );
        assert!(sentences("Nothing said.", &[]).is_empty());
    }

    #[test]
    fn azure_format_names_byos_makes_are_read_and_others_refused() {
        let pcm = |sample_rate, riff| OutputFormat { sample_rate, encoding: Encoding::Pcm16, riff };
        for (name, rate) in [
            ("8khz", 8_000),
            ("16khz", 16_000),
            ("22050hz", 22_050),
            ("24khz", 24_000),
            ("44100hz", 44_100),
            ("48khz", 48_000),
        ] {
            for riff in [false, true] {
                let name = format!("{}-{name}-16bit-mono-pcm", if riff { "riff" } else { "raw" });
                assert_eq!(OutputFormat::parse(&name), Ok(pcm(rate, riff)), "{name}");
            }
        }
        let law = |encoding, riff| Ok(OutputFormat { sample_rate: 8_000, encoding, riff });
        assert_eq!(OutputFormat::parse("raw-8khz-8bit-mono-mulaw"), law(Encoding::MuLaw, false));
        assert_eq!(OutputFormat::parse("Raw-8kHz-8bit-Mono-ALaw"), law(Encoding::ALaw, false));
        assert_eq!(OutputFormat::parse("riff-8khz-8bit-mono-mulaw"), law(Encoding::MuLaw, true));
        assert_eq!(OutputFormat::parse("riff-8khz-8bit-mono-alaw"), law(Encoding::ALaw, true));
        for refused in [
            "audio-16khz-32kbitrate-mono-mp3",
            "audio-24khz-48kbitrate-mono-mp3",
            "ogg-16khz-16bit-mono-opus",
            "webm-24khz-16bit-mono-opus",
            "raw-16khz-16bit-mono-truesilk",
            "raw-32khz-16bit-mono-pcm",
            "riff-16khz-8bit-mono-mulaw",
            "",
        ] {
            assert_eq!(OutputFormat::parse(refused), Err(FormatError(refused.into())), "{refused}");
        }
    }

    #[test]
    fn mulaw_and_alaw_are_the_g711_codes() {
        // (sample, μ-law, A-law) as the ITU's reference code (and Python's audioop) encode them.
        for (sample, mu, a) in [
            (0, 0xFF, 0xD5),
            (-1, 0x7E, 0x55),
            (100, 0xF2, 0xD3),
            (1000, 0xCE, 0xFA),
            (-1000, 0x4E, 0x7A),
            (5000, 0xAB, 0x86),
            (32767, 0x80, 0xAA),
            (-32768, 0x00, 0x2A),
        ] {
            assert_eq!((mulaw(sample), alaw(sample)), (mu, a), "{sample}");
        }
    }

    #[test]
    fn encoding_at_each_rate_gives_its_length_and_header() {
        let second: Vec<i16> = (0..16_000).map(|n| ((n as f32 * 0.05).sin() * 10_000.0) as i16).collect();
        for name in [
            "raw-8khz-16bit-mono-pcm",
            "raw-16khz-16bit-mono-pcm",
            "raw-22050hz-16bit-mono-pcm",
            "riff-24khz-16bit-mono-pcm",
            "riff-44100hz-16bit-mono-pcm",
            "raw-48khz-16bit-mono-pcm",
            "raw-8khz-8bit-mono-mulaw",
            "riff-8khz-8bit-mono-alaw",
        ] {
            let format = OutputFormat::parse(name).unwrap_or_else(|e| panic!("{e}"));
            let bytes = format.encode(16_000, &second).unwrap_or_else(|e| panic!("{name}: {e}"));
            let sample_bytes = if format.encoding == Encoding::Pcm16 { 2 } else { 1 };
            let header = match (format.riff, format.encoding) {
                (false, _) => 0,
                (true, Encoding::Pcm16) => 44,
                (true, _) => 46,
            };
            assert_eq!(bytes.len(), header + format.sample_rate as usize * sample_bytes, "{name}");
            if format.riff {
                let data =
                    u32::from_le_bytes([bytes[header - 4], bytes[header - 3], bytes[header - 2], bytes[header - 1]]);
                assert_eq!((&bytes[..4], data as usize), (&b"RIFF"[..], bytes.len() - header), "{name}");
                assert_eq!(u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]), format.sample_rate);
            }
        }
    }

    #[test]
    fn voices_are_found_by_either_name_in_any_case_and_others_refused() {
        assert_eq!(find_voice("en-us-rmsflite").map(|v| v.engine_voice), Ok(EngineVoice::Flite(FliteVoice::Rms)));
        let long = "Microsoft Server Speech Text to Speech Voice (en-US, Kal16Flite)";
        assert_eq!(find_voice(long).map(|v| v.engine_voice), Ok(EngineVoice::Flite(FliteVoice::Kal16)));
        let german = EspeakVoice { language: "de", female: true };
        assert_eq!(find_voice("de-de-femaleespeakng").map(|v| v.engine_voice), Ok(EngineVoice::Espeak(german)));
        let mexican = "Microsoft Server Speech Text to Speech Voice (es-MX, MaleEspeakNg)";
        let spanish = EspeakVoice { language: "es-419", female: false };
        assert_eq!(find_voice(mexican).map(|v| v.engine_voice), Ok(EngineVoice::Espeak(spanish)));
        // English is Flite's only; an Azure voice of a locale eSpeak speaks is not mapped to it.
        for lacking in ["en-US-MaleEspeakNg", "de-DE-KatjaNeural", "ja-JP-MaleEspeakNg"] {
            let refused = find_voice(lacking).err().unwrap_or_else(|| panic!("{lacking} was found"));
            assert!(refused.to_string().contains("de-DE-MaleEspeakNg"), "{refused}");
        }
        let refused = find_voice("en-US-AvaMultilingualNeural").err().unwrap_or_else(|| panic!("Ava was found"));
        let message = refused.to_string();
        assert!(message.contains("en-US-AvaMultilingualNeural") && message.contains("en-US-SltFlite"), "{message}");
        let ssml = "<speak version='1.0' xml:lang='en-US'><voice name='en-US-AvaMultilingualNeural'>hi</voice></speak>";
        assert!(matches!(request(ssml), Err(SsmlError::UnknownVoice(m)) if m.contains("en-US-AwbFlite")));
    }

    #[test]
    fn the_voices_list_has_azures_fields() {
        let list = serde_json::to_value(voices()).unwrap_or_else(|e| panic!("{e}"));
        let first = &list[0];
        assert_eq!(first["ShortName"], "en-US-RmsFlite");
        assert_eq!(first["Name"], "Microsoft Server Speech Text to Speech Voice (en-US, RmsFlite)");
        for field in ["DisplayName", "LocalName", "Gender", "Locale", "LocaleName", "VoiceType", "Status"] {
            assert!(first[field].is_string(), "{field}");
        }
        assert_eq!((&first["SampleRateHertz"], &first["WordsPerMinute"]), (&"16000".into(), &"189".into()));
        assert!(first.get("EngineVoice").is_none());
        let german = list
            .as_array()
            .and_then(|l| l.iter().find(|v| v["ShortName"] == "de-DE-FemaleEspeakNg"))
            .unwrap_or_else(|| panic!("no German voice in {list}"));
        assert_eq!(german["Name"], "Microsoft Server Speech Text to Speech Voice (de-DE, FemaleEspeakNg)");
        assert_eq!((&german["DisplayName"], &german["Gender"]), (&"Female (eSpeak NG)".into(), &"Female".into()));
        assert_eq!((&german["Locale"], &german["LocaleName"]), (&"de-DE".into(), &"German (Germany)".into()));
        assert_eq!((&german["SampleRateHertz"], &german["WordsPerMinute"]), (&"22050".into(), &"175".into()));
        let all = voices();
        let espeak = all.iter().filter(|v| matches!(v.engine_voice, EngineVoice::Espeak(_)));
        assert_eq!(espeak.clone().count(), ESPEAK_LOCALES.len() * 2);
        assert!(espeak.clone().all(|v| v.locale != "en-US" && v.display_name.ends_with("(eSpeak NG)")));
        assert!(all.iter().filter(|v| v.locale == "en-US").all(|v| matches!(v.engine_voice, EngineVoice::Flite(_))));
    }

    /// A sentence of each locale byos speaks with eSpeak NG.
    const SENTENCES: [(&str, &str); 33] = [
        ("bg-BG", "Бързата кафява лисица прескача мързеливото куче."),
        ("ca-ES", "La guineu marró ràpida salta per sobre del gos mandrós."),
        ("cs-CZ", "Rychlá hnědá liška skáče přes líného psa."),
        ("da-DK", "Den hurtige brune ræv springer over den dovne hund."),
        ("de-DE", "Der schnelle braune Fuchs springt über den faulen Hund."),
        ("el-GR", "Η γρήγορη καφέ αλεπού πηδά πάνω από το τεμπέλικο σκυλί."),
        ("es-ES", "El rápido zorro marrón salta sobre el perro perezoso."),
        ("es-MX", "El rápido zorro marrón salta sobre el perro perezoso."),
        ("et-EE", "Kiire pruun rebane hüppab üle laisa koera."),
        ("fi-FI", "Nopea ruskea kettu hyppää laiskan koiran yli."),
        ("fr-FR", "Le renard brun rapide saute par-dessus le chien paresseux."),
        ("hi-IN", "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।"),
        ("hr-HR", "Brza smeđa lisica preskače lijenog psa."),
        ("hu-HU", "A gyors barna róka átugrik a lusta kutya felett."),
        ("id-ID", "Rubah cokelat yang cepat melompati anjing yang malas."),
        ("it-IT", "La volpe marrone veloce salta sopra il cane pigro."),
        ("lt-LT", "Greita ruda lapė peršoka tinginį šunį."),
        ("lv-LV", "Ātrā brūnā lapsa pārlec pāri slinkajam sunim."),
        ("ms-MY", "Musang coklat yang pantas melompati anjing yang malas."),
        ("nb-NO", "Den raske brune reven hopper over den late hunden."),
        ("nl-NL", "De snelle bruine vos springt over de luie hond."),
        ("pl-PL", "Szybki brązowy lis przeskakuje nad leniwym psem."),
        ("pt-BR", "A rápida raposa marrom pula sobre o cão preguiçoso."),
        ("pt-PT", "A rápida raposa castanha salta sobre o cão preguiçoso."),
        ("ro-RO", "Vulpea maro rapidă sare peste câinele leneș."),
        ("ru-RU", "Быстрая коричневая лиса прыгает через ленивую собаку."),
        ("sk-SK", "Rýchla hnedá líška skáče cez lenivého psa."),
        ("sl-SI", "Hitra rjava lisica skoči čez lenega psa."),
        ("sr-RS", "Брза смеђа лисица прескаче лењог пса."),
        ("sv-SE", "Den snabba bruna räven hoppar över den lata hunden."),
        ("tr-TR", "Hızlı kahverengi tilki tembel köpeğin üzerinden atlar."),
        ("uk-UA", "Швидка коричнева лисиця стрибає через ледачого собаку."),
        ("vi-VN", "Con cáo nâu nhanh nhẹn nhảy qua con chó lười."),
    ];

    #[test]
    fn every_espeak_voice_speaks_a_sentence_of_its_locale_word_by_word() {
        let mut espeak = Espeak::load().unwrap_or_else(|e| panic!("{e}: scripts/test.sh installs eSpeak NG"));
        for voice in voices() {
            let EngineVoice::Espeak(engine_voice) = voice.engine_voice else { continue };
            let (_, sentence) = SENTENCES
                .iter()
                .find(|(locale, _)| *locale == voice.locale)
                .unwrap_or_else(|| panic!("no sentence of {}", voice.locale));
            let speech = espeak
                .speak(&engine_voice.name(), sentence, &Prosody::default())
                .unwrap_or_else(|e| panic!("{}: {e}", voice.short_name));
            let seconds = speech.samples.len() as f32 / speech.sample_rate as f32;
            // Some eight words: eSpeak's normal rate says them in about three seconds, a language
            // it spelled out letter by letter would take far longer.
            assert!((1.5..5.0).contains(&seconds), "{}: {seconds} s", voice.short_name);
            let loudest = speech.samples.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
            assert!(loudest > 2_000, "{}: the loudest sample is {loudest}", voice.short_name);
            let words = sentence.split_whitespace().count();
            assert!(speech.words.len().abs_diff(words) <= 1, "{}: {:?}", voice.short_name, speech.words);
            assert_eq!(voice.sample_rate_hertz, speech.sample_rate.to_string());
        }
    }

    /// An engine that says each text as one sample per character, at 8 kHz for kal16 and 16 kHz
    /// otherwise, with one word at its start.
    struct Counting;

    impl Synthesizer for Counting {
        fn speak(&mut self, voice: &str, text: &str, prosody: &Prosody) -> Result<Speech, EngineError> {
            let sample_rate = if voice == "kal16" { 8_000 } else { 16_000 };
            let samples = vec![(prosody.volume * 100.0) as i16; text.len() * (sample_rate as usize / 1000)];
            let words = vec![WordBoundary { text: text.into(), offset_ms: 1, duration_ms: text.len() as u64 }];
            Ok(Speech { sample_rate, samples, words })
        }
    }

    #[test]
    fn pieces_are_spoken_in_order_at_one_rate_with_their_words_moved() {
        let ssml = request(
            "<speak><voice name='en-US-RmsFlite'>abcd<break time='10ms'/>\
             <prosody volume='50'>ef</prosody></voice><voice name='en-US-Kal16Flite'>ghij</voice></speak>",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut engines = Engines::new(|| Ok(Counting), || Ok(Counting));
        let answer = handle(&mut engines, &encode_request(&ssml).unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
        let synthesis = parse_answer(&answer).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(synthesis.sample_rate, 16_000);
        // 4 ms, 10 ms of pause, 2 ms, then 4 ms of 8 kHz speech resampled to 16 kHz.
        assert_eq!(synthesis.samples.len(), (4 + 10 + 2 + 4) * 16);
        assert_eq!((synthesis.samples[0], synthesis.samples[4 * 16 + 1], synthesis.samples[14 * 16 + 1]), (100, 0, 50));
        let offsets: Vec<(&str, u64)> = synthesis.words.iter().map(|w| (w.text.as_str(), w.offset_ms)).collect();
        assert_eq!(offsets, [("abcd", 1), ("ef", 15), ("ghij", 17)]);
    }

    #[test]
    fn bad_requests_and_a_missing_engine_are_answered_as_errors() {
        let mut engines = Engines::new(|| Ok(Counting), || Ok(Counting));
        assert!(handle(&mut engines, &[]).is_err());
        assert!(handle(&mut engines, &[PROTOCOL + 1]).is_err());
        assert!(handle(&mut engines, &[PROTOCOL, b'{']).is_err());
        let unknown = Ssml {
            language: None,
            pieces: vec![Piece::Speech { voice: "en-US-Ava".into(), text: "hi".into(), prosody: Prosody::default() }],
        };
        assert!(matches!(encode_request(&unknown), Err(SynthesizeError::Voice(_))));
        let mut missing: Engines<Counting, Counting> = Engines::new(
            || Err(EngineError::Unavailable("no flite".into())),
            || Err(EngineError::Unavailable("no espeak".into())),
        );
        let english = encode_request(&ssml::plain_text("hi", "en-US-SltFlite")).unwrap_or_else(|e| panic!("{e}"));
        assert!(handle(&mut missing, &english).is_err_and(|e| e.contains("no flite")));
        let german = encode_request(&ssml::plain_text("hallo", "de-DE-MaleEspeakNg")).unwrap_or_else(|e| panic!("{e}"));
        assert!(handle(&mut missing, &german).is_err_and(|e| e.contains("no espeak")));
    }

    #[test]
    fn each_engine_is_loaded_on_the_first_request_for_one_of_its_voices() {
        let mut engines = Engines::new(|| Ok(Counting), || Ok(Counting));
        let english = encode_request(&ssml::plain_text("hi", "en-US-RmsFlite")).unwrap_or_else(|e| panic!("{e}"));
        handle(&mut engines, &english).unwrap_or_else(|e| panic!("{e}"));
        assert!(engines.flite.is_loaded() && !engines.espeak.is_loaded());
        let mut engines = Engines::new(|| Ok(Counting), || Ok(Counting));
        let french =
            encode_request(&ssml::plain_text("salut", "fr-FR-FemaleEspeakNg")).unwrap_or_else(|e| panic!("{e}"));
        handle(&mut engines, &french).unwrap_or_else(|e| panic!("{e}"));
        assert!(!engines.flite.is_loaded() && engines.espeak.is_loaded());
    }

    #[test]
    fn one_worker_speaks_a_flite_voice_and_an_espeak_voice_in_one_request() {
        let ssml = request(
            "<speak version='1.0' xml:lang='en-US'><voice name='en-US-SltFlite'>hello world</voice>\
             <voice name='de-DE-MaleEspeakNg'>Guten Morgen</voice></speak>",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let _flite = crate::testing::flite_to_myself();
        let mut engines = Engines::new(Flite::load, Espeak::load);
        let answer = handle(&mut engines, &encode_request(&ssml).unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}: scripts/test.sh installs Flite and eSpeak NG"));
        let synthesis = parse_answer(&answer).unwrap_or_else(|e| panic!("{e}"));
        // Flite's 16 kHz first, so the whole at 16 kHz: eSpeak's 22.05 kHz resampled.
        assert_eq!(synthesis.sample_rate, FLITE_RATE);
        let words: Vec<&str> = synthesis.words.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(words, ["hello", "world", "Guten", "Morgen"]);
        assert!(synthesis.words.windows(2).all(|w| w[1].offset_ms > w[0].offset_ms), "{:?}", synthesis.words);
        // The German words are in the second part, which is speech too.
        let guten = (synthesis.words[2].offset_ms * u64::from(FLITE_RATE) / 1000) as usize;
        let german_peak = synthesis.samples[guten..].iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!(german_peak > 2_000, "the German part's loudest sample is {german_peak}");
    }
}
