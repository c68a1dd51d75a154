//! What every speech-to-text engine answers and the trait it implements, so that the worker
//! ([`crate::engine::serve_worker`]) runs any of them: PocketSphinx today, another (such as
//! whisper.cpp) later.

use crate::adapt::AdaptedModel;

/// Why the engine cannot recognize.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("the speech engine is not installed: {0}")]
    Unavailable(String),
    #[error("the speech engine failed: {0}")]
    Failed(String),
}

/// One recognized word and where it is.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Word {
    pub text: String,
    pub offset_ms: u64,
    pub duration_ms: u64,
}

/// One of the engine's hypotheses for an utterance.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Alternative {
    pub text: String,
    /// The hypothesis' share of the likelihood among the alternatives, 0 to 1 (the engine says how).
    pub confidence: f32,
}

/// What the engine heard in one utterance (the default: nothing).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Recognition {
    /// The words, space separated (empty: nothing was recognized).
    pub text: String,
    pub words: Vec<Word>,
    /// The posterior probability of the hypothesis, 0 to 1.
    pub confidence: f64,
    /// Up to [`MAX_ALTERNATIVES`] distinct hypotheses, best first; the first is `text` (none when
    /// nothing was recognized). Absent in answers of engines from before alternatives existed.
    #[serde(default)]
    pub alternatives: Vec<Alternative>,
}

/// The most alternatives a recognition lists (Azure's NBest has up to five).
pub const MAX_ALTERNATIVES: usize = 5;

/// A speech-to-text engine: recognizes one utterance of 16 kHz 16-bit mono samples, with the base
/// model or with a Custom Speech adapted model.
pub trait Recognizer {
    fn recognize(&mut self, samples: &[i16], model: Option<&AdaptedModel>) -> Result<Recognition, EngineError>;
}
