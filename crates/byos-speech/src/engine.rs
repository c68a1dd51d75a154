//! The speech-to-text engine as services use it: PocketSphinx in supervised worker processes
//! (`byos engine-worker`), fed 16 kHz mono audio, answering a [`Recognition`], with the base model
//! or a Custom Speech [`AdaptedModel`].
//!
//! A request (the body of one [`workers`] frame) is: the protocol version (1 byte, [`PROTOCOL`]),
//! what model it uses (1 byte: 0 the base model, 1 an adapted model by id, 2 an adapted model by id
//! with its bytes), for an adapted model its 32-byte id, for 2 the model's length (4 bytes,
//! big-endian) and bytes, then the samples (little-endian i16). An answer is 1 byte, 0 then the
//! recognition as JSON, or 1: the worker does not have the model (it keeps a few by id), and the
//! request is sent again with the model's bytes. So a model travels to each worker once, not with
//! every utterance of a batch.

use std::path::Path;
use std::time::Duration;

use crate::adapt::{AdaptedModel, ModelCache, ModelId};
use crate::pocketsphinx::{Model, PocketSphinx};
use crate::recognizer::{EngineError, Recognition, Recognizer};
use crate::workers::{self, PoolError, WorkerCommand, WorkerPool};

/// The version of the request and answer bodies.
pub const PROTOCOL: u8 = 1;
const BASE_MODEL: u8 = 0;
const MODEL_BY_ID: u8 = 1;
const MODEL_WITH_BYTES: u8 = 2;
const RECOGNIZED: u8 = 0;
const MODEL_NEEDED: u8 = 1;
/// Adapted models a worker keeps.
const CACHED_MODELS: usize = 4;

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

/// Whether a job that finds the queue full fails or waits, or runs only on an idle worker.
#[derive(Clone, Copy)]
enum Queueing {
    Busy,
    Wait,
    Spare,
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
        self.recognize_with(samples, None).await
    }

    /// Recognizes one utterance, waiting for a place in the queue (batch work).
    pub async fn recognize_waiting(&self, samples: &[i16]) -> Result<Recognition, RecognizeError> {
        self.recognize_waiting_with(samples, None).await
    }

    /// Recognizes one utterance with `model` (None: the base model); [`RecognizeError::Busy`] when
    /// the queue is full.
    pub async fn recognize_with(
        &self,
        samples: &[i16],
        model: Option<&AdaptedModel>,
    ) -> Result<Recognition, RecognizeError> {
        exchange(samples, model, |request| self.run(request, Queueing::Busy)).await
    }

    /// Recognizes one utterance with `model`, waiting for a place in the queue (batch work).
    pub async fn recognize_waiting_with(
        &self,
        samples: &[i16],
        model: Option<&AdaptedModel>,
    ) -> Result<Recognition, RecognizeError> {
        exchange(samples, model, |request| self.run(request, Queueing::Wait)).await
    }

    /// Recognizes one utterance with `model` only if a worker is idle now ([`RecognizeError::Busy`]
    /// otherwise): a live recognition's partial results, worth having only on spare capacity.
    pub async fn recognize_spare_with(
        &self,
        samples: &[i16],
        model: Option<&AdaptedModel>,
    ) -> Result<Recognition, RecognizeError> {
        exchange(samples, model, |request| self.run(request, Queueing::Spare)).await
    }

    async fn run(&self, request: Vec<u8>, queueing: Queueing) -> Result<Vec<u8>, RecognizeError> {
        let outcome = match queueing {
            Queueing::Busy => self.pool.run(request).await,
            Queueing::Wait => self.pool.run_waiting(request).await,
            Queueing::Spare => self.pool.run_spare(request).await,
        };
        outcome.map_err(|e| match e {
            PoolError::Busy => RecognizeError::Busy,
            other => RecognizeError::Engine(other.to_string()),
        })
    }
}

/// Asks `run` (a worker) for the recognition naming the model by id, and again with its bytes if
/// the worker that took the job does not have it.
async fn exchange<F, Fut>(samples: &[i16], model: Option<&AdaptedModel>, run: F) -> Result<Recognition, RecognizeError>
where
    F: Fn(Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<u8>, RecognizeError>>,
{
    let answer = match (Answer::parse(&run(request(samples, model, false)).await?)?, model) {
        (Answer::ModelNeeded, Some(model)) => Answer::parse(&run(request(samples, Some(model), true)).await?)?,
        (answer, _) => answer,
    };
    match answer {
        Answer::Recognized(recognition) => Ok(recognition),
        Answer::ModelNeeded => Err(RecognizeError::Engine("the engine worker did not take the adapted model".into())),
    }
}

/// A request for `samples` with `model`, its bytes included or not.
fn request(samples: &[i16], model: Option<&AdaptedModel>, with_bytes: bool) -> Vec<u8> {
    let mut request = vec![PROTOCOL];
    match model {
        None => request.push(BASE_MODEL),
        Some(model) if with_bytes => {
            let bytes = model.to_bytes();
            request.push(MODEL_WITH_BYTES);
            request.extend_from_slice(&model.id().0);
            request.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            request.extend_from_slice(&bytes);
        }
        Some(model) => {
            request.push(MODEL_BY_ID);
            request.extend_from_slice(&model.id().0);
        }
    }
    request.extend(samples.iter().flat_map(|s| s.to_le_bytes()));
    request
}

/// What a worker answered.
#[derive(Debug)]
enum Answer {
    Recognized(Recognition),
    ModelNeeded,
}

impl Answer {
    fn parse(answer: &[u8]) -> Result<Answer, RecognizeError> {
        let unreadable = |why: String| RecognizeError::Engine(format!("the engine's answer is unreadable: {why}"));
        match answer.split_first() {
            Some((&RECOGNIZED, json)) => {
                serde_json::from_slice(json).map(Answer::Recognized).map_err(|e| unreadable(e.to_string()))
            }
            Some((&MODEL_NEEDED, _)) => Ok(Answer::ModelNeeded),
            _ => Err(unreadable("unknown answer".into())),
        }
    }

    fn to_bytes(&self) -> Result<Vec<u8>, String> {
        match self {
            Answer::Recognized(recognition) => {
                let mut bytes = vec![RECOGNIZED];
                serde_json::to_writer(&mut bytes, recognition).map_err(|e| e.to_string())?;
                Ok(bytes)
            }
            Answer::ModelNeeded => Ok(vec![MODEL_NEEDED]),
        }
    }
}

/// A request read: which model, and the samples.
struct Request<'a> {
    model: RequestedModel<'a>,
    samples: Vec<i16>,
}

enum RequestedModel<'a> {
    Base,
    ById(ModelId),
    WithBytes(ModelId, &'a [u8]),
}

impl<'a> Request<'a> {
    fn parse(body: &'a [u8]) -> Result<Request<'a>, String> {
        let truncated = || "the request is truncated".to_owned();
        let (&[version, kind], rest) = body.split_first_chunk::<2>().ok_or_else(truncated)?;
        if version != PROTOCOL {
            return Err(format!("the request's protocol {version} is not {PROTOCOL}"));
        }
        let (model, samples) = match kind {
            BASE_MODEL => (RequestedModel::Base, rest),
            MODEL_BY_ID | MODEL_WITH_BYTES => {
                let (id, rest) = rest.split_first_chunk::<32>().ok_or_else(truncated)?;
                if kind == MODEL_BY_ID {
                    (RequestedModel::ById(ModelId(*id)), rest)
                } else {
                    let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(truncated)?;
                    let len = u32::from_be_bytes(*len) as usize;
                    let (bytes, rest) = (rest.get(..len).ok_or_else(truncated)?, &rest[len..]);
                    (RequestedModel::WithBytes(ModelId(*id), bytes), rest)
                }
            }
            other => return Err(format!("unknown model kind {other}")),
        };
        Ok(Request { model, samples: samples.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect() })
    }
}

/// The worker's state: its engine and the adapted models it was sent.
struct Worker<R> {
    engine: Result<R, EngineError>,
    models: ModelCache<AdaptedModel>,
}

impl<R: Recognizer> Worker<R> {
    fn new(engine: Result<R, EngineError>) -> Self {
        Worker { engine, models: ModelCache::new(CACHED_MODELS) }
    }

    fn handle(&mut self, body: &[u8]) -> Result<Vec<u8>, String> {
        let engine = self.engine.as_mut().map_err(|e| e.to_string())?;
        let request = Request::parse(body)?;
        let model = match request.model {
            RequestedModel::Base => None,
            RequestedModel::ById(id) => match self.models.get(id) {
                Some(model) => Some(&*model),
                None => return Answer::ModelNeeded.to_bytes(),
            },
            RequestedModel::WithBytes(id, bytes) => {
                let model = AdaptedModel::from_bytes(bytes).map_err(|e| e.to_string())?;
                if model.id() != id {
                    return Err(format!("the adapted model sent is not {id}"));
                }
                Some(&*self.models.insert(id, model))
            }
        };
        let recognition = engine.recognize(&request.samples, model).map_err(|e| e.to_string())?;
        Answer::Recognized(recognition).to_bytes()
    }
}

/// The worker process: loads PocketSphinx with the model in `model_dir` once, then recognizes every
/// request until its stdin closes. Without the engine it answers every job that it is unavailable
/// (rather than dying and being restarted in a loop).
pub fn serve_worker(model_dir: &Path) -> std::io::Result<()> {
    serve_recognizer(PocketSphinx::load(&Model::en_us(model_dir)))
}

/// The worker process of any engine (`engine` is its loading, or why it could not be loaded).
pub fn serve_recognizer(engine: Result<impl Recognizer, EngineError>) -> std::io::Result<()> {
    let mut worker = Worker::new(engine);
    workers::serve(|body| worker.handle(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapt::Dictionary;
    use crate::recognizer::{Alternative, Word};

    /// An engine that says how many samples it got and which model's report it was given.
    struct Echo;

    impl Recognizer for Echo {
        fn recognize(&mut self, samples: &[i16], model: Option<&AdaptedModel>) -> Result<Recognition, EngineError> {
            let model = model.map_or("base".to_owned(), |m| format!("{} sentences", m.report().sentences));
            let text = format!("{} samples {model} first {}", samples.len(), samples.first().copied().unwrap_or(0));
            Ok(Recognition {
                alternatives: vec![Alternative { text: text.clone(), confidence: 1.0 }],
                words: vec![Word { text: text.clone(), offset_ms: 0, duration_ms: 10 }],
                text,
                confidence: 1.0,
            })
        }
    }

    fn model() -> AdaptedModel {
        let base = Dictionary::parse("hello HH AH L OW\nworld W ER L D\n");
        AdaptedModel::build("hello world\nhello\n", "", &base).unwrap_or_else(|e| panic!("{e}"))
    }

    fn answer(worker: &mut Worker<Echo>, request: &[u8]) -> Answer {
        let bytes = worker.handle(request).unwrap_or_else(|e| panic!("{e}"));
        Answer::parse(&bytes).unwrap_or_else(|e| panic!("{e}"))
    }

    fn text(answer: Answer) -> String {
        match answer {
            Answer::Recognized(recognition) => recognition.text,
            Answer::ModelNeeded => panic!("the worker asked for the model"),
        }
    }

    #[test]
    fn the_base_model_needs_no_model_bytes() {
        let mut worker = Worker::new(Ok(Echo));
        assert_eq!(text(answer(&mut worker, &request(&[7, -2, 3], None, false))), "3 samples base first 7");
    }

    #[test]
    fn a_model_is_sent_once_and_then_named_by_its_id() {
        let (mut worker, model) = (Worker::new(Ok(Echo)), model());
        assert!(matches!(answer(&mut worker, &request(&[1], Some(&model), false)), Answer::ModelNeeded));
        assert_eq!(text(answer(&mut worker, &request(&[1, 2], Some(&model), true))), "2 samples 2 sentences first 1");
        assert_eq!(text(answer(&mut worker, &request(&[5], Some(&model), false))), "1 samples 2 sentences first 5");
    }

    #[test]
    fn bad_requests_are_refused_and_an_engine_missing_is_said() {
        let mut worker = Worker::new(Ok(Echo));
        assert!(worker.handle(&[]).is_err());
        assert!(worker.handle(&[PROTOCOL + 1, BASE_MODEL]).is_err());
        assert!(worker.handle(&[PROTOCOL, 9]).is_err());
        assert!(worker.handle(&[PROTOCOL, MODEL_BY_ID, 1, 2]).is_err());
        // Bytes that are not the model of the id they come with.
        let mut forged = request(&[1], Some(&model()), true);
        forged[2] ^= 1;
        assert!(worker.handle(&forged).is_err_and(|e| e.contains("is not")));
        let mut missing = Worker::<Echo>::new(Err(EngineError::Unavailable("no library".into())));
        assert!(missing.handle(&request(&[1], None, false)).is_err_and(|e| e.contains("no library")));
    }

    #[test]
    fn answers_of_engines_without_alternatives_still_read() {
        let old = br#"{"text":"hi","words":[],"confidence":0.5}"#;
        let recognition: Recognition = serde_json::from_slice(old).unwrap_or_else(|e| panic!("{e}"));
        assert!(recognition.alternatives.is_empty());
    }

    #[tokio::test]
    async fn the_model_is_resent_only_to_a_worker_that_lacks_it() {
        let (worker, model) = (std::cell::RefCell::new(Worker::new(Ok(Echo))), model());
        let sent = std::cell::RefCell::new(Vec::new());
        let transport = |request: Vec<u8>| {
            sent.borrow_mut().push(request[1]);
            let answer = worker.borrow_mut().handle(&request).map_err(RecognizeError::Engine);
            async move { answer }
        };
        let first = exchange(&[4, 4], Some(&model), transport).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first.text, "2 samples 2 sentences first 4");
        let again = exchange(&[4], Some(&model), transport).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.text, "1 samples 2 sentences first 4");
        let base = exchange(&[4], None, transport).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(base.text, "1 samples base first 4");
        assert_eq!(*sent.borrow(), [MODEL_BY_ID, MODEL_WITH_BYTES, MODEL_BY_ID, BASE_MODEL]);
    }
}
