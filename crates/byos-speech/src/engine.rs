//! The speech-to-text engine as services use it: PocketSphinx in supervised worker processes
//! (`byos engine-worker`), fed 16 kHz mono audio, answering a [`Recognition`].

use std::path::Path;
use std::time::Duration;

use crate::pocketsphinx::{Model, PocketSphinx, Recognition};
use crate::workers::{self, PoolError, WorkerCommand, WorkerPool};

/// Why a recognition did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecognizeError {
    /// Every worker is busy and the queue is full (answer 429 with Retry-After).
    #[error("the speech engine is busy")]
    Busy,
    /// The engine failed this job (crashed, hung, not installed); the message says which.
    #[error("{0}")]
    Engine(String),
}

/// The pool of speech-to-text workers.
pub struct SpeechEngine {
    pool: WorkerPool,
    size: usize,
}

impl SpeechEngine {
    /// Starts a pool of `size` workers of `command` (each loads the model on its first job).
    pub fn start(command: WorkerCommand, size: usize, timeout: Duration) -> Self {
        let size = size.max(1);
        SpeechEngine { pool: WorkerPool::start(command, size, size * 2, timeout), size }
    }

    /// How many workers recognize at once (how much work a batch keeps in flight).
    pub fn workers(&self) -> usize {
        self.size
    }

    /// Recognizes one utterance of 16 kHz mono samples ([`RecognizeError::Busy`] when the queue is full).
    pub async fn recognize(&self, samples: &[i16]) -> Result<Recognition, RecognizeError> {
        Self::answer(self.pool.run(Self::request(samples)).await)
    }

    /// Recognizes one utterance, waiting for a place in the queue (batch work).
    pub async fn recognize_waiting(&self, samples: &[i16]) -> Result<Recognition, RecognizeError> {
        Self::answer(self.pool.run_waiting(Self::request(samples)).await)
    }

    fn request(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    fn answer(outcome: Result<Vec<u8>, PoolError>) -> Result<Recognition, RecognizeError> {
        let answer = outcome.map_err(|e| match e {
            PoolError::Busy => RecognizeError::Busy,
            other => RecognizeError::Engine(other.to_string()),
        })?;
        serde_json::from_slice(&answer)
            .map_err(|e| RecognizeError::Engine(format!("the engine's answer is unreadable: {e}")))
    }
}

/// The worker process: loads PocketSphinx with the model in `model_dir` once, then recognizes every
/// request (16 kHz mono samples, little-endian i16) until its stdin closes. Without the engine it
/// answers every job that it is unavailable (rather than dying and being restarted in a loop).
pub fn serve_worker(model_dir: &Path) -> std::io::Result<()> {
    let mut engine = PocketSphinx::load(&Model::en_us(model_dir));
    workers::serve(|request| {
        let engine = engine.as_mut().map_err(|e| e.to_string())?;
        let samples: Vec<i16> = request.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
        let heard = engine.recognize(&samples).map_err(|e| e.to_string())?;
        serde_json::to_vec(&heard).map_err(|e| e.to_string())
    })
}
