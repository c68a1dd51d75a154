//! Custom Speech evaluations (speech to text `/evaluations`): every audio file of an Acoustic dataset
//! transcribed by one or two models and scored against its transcript (word error rate with its
//! insertions, deletions and substitutions, per file and overall, as percentages like Azure's), the
//! per-file details kept as an `EvaluationDetails` file through the artifact store
//! (`customspeech-artifacts/EvaluationData/{id}/details.json`). Runs in the background; an
//! evaluation a restart interrupted starts over.

use std::sync::Arc;

use byos_core::ApiError;
use byos_speech::wer::{WordErrors, align};
use byos_store::{Batch, Table};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::artifacts::{Area, ArtifactError};
use crate::datasets::{DatasetKind, Status, speech_error, transcribed_audio};
use crate::records::{Entity, Records};
use crate::transcribe::{Channels, transcribe};
use crate::{CognitiveService, LiveAccount};

pub(crate) const EVALUATIONS: Records = Records::new(Table("cs_evaluations"), "evaluation");

/// One model's score over the dataset.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Score {
    pub sentences: usize,
    pub sentences_with_errors: usize,
    pub reference_words: usize,
    pub correct: usize,
    pub substitutions: usize,
    pub deletions: usize,
    pub insertions: usize,
}

impl Score {
    fn add(&mut self, errors: &WordErrors) {
        self.sentences += 1;
        self.sentences_with_errors += usize::from(errors.errors() > 0);
        self.reference_words += errors.reference_words;
        self.correct += errors.correct;
        self.substitutions += errors.substitutions;
        self.deletions += errors.deletions;
        self.insertions += errors.insertions;
    }

    /// The word error rate, in percent.
    pub fn word_error_rate(&self) -> f64 {
        percent(self.substitutions + self.deletions + self.insertions, self.reference_words)
    }

    pub fn sentence_error_rate(&self) -> f64 {
        percent(self.sentences_with_errors, self.sentences)
    }
}

fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 { 0.0 } else { (part as f64 * 10_000.0 / whole as f64).round() / 100.0 }
}

/// A result file of an evaluation.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationFile {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub path: String,
    pub size: u64,
    pub created: String,
}

/// An evaluation as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    pub v: u32,
    pub id: String,
    pub display_name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub custom_properties: Map<String, Value>,
    pub locale: String,
    pub dataset: String,
    /// The models compared, one or two (none: the base model).
    pub models: Vec<Option<String>>,
    pub status: Status,
    pub created: String,
    pub last_action: String,
    #[serde(default)]
    pub error: Option<(String, String)>,
    /// One per model, when it succeeded.
    #[serde(default)]
    pub scores: Vec<Score>,
    #[serde(default)]
    pub files: Vec<EvaluationFile>,
}

impl Entity for Evaluation {
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> &str {
        &self.created
    }
}

/// What a client asks for when it creates an evaluation.
pub struct NewEvaluation {
    pub display_name: String,
    pub description: Option<String>,
    pub custom_properties: Map<String, Value>,
    pub locale: String,
    pub dataset: String,
    pub models: Vec<Option<String>>,
}

fn now() -> String {
    byos_core::time::rfc3339_now()
}

impl CognitiveService {
    pub async fn evaluation(&self, account: &LiveAccount, id: &str) -> Result<Evaluation, ApiError> {
        EVALUATIONS.get(&self.store, account, id).await
    }

    pub async fn evaluations(&self, account: &LiveAccount) -> Result<Vec<Evaluation>, ApiError> {
        EVALUATIONS.list(&self.store, account).await
    }

    /// Records a new evaluation of a succeeded Acoustic dataset of this account and runs it in
    /// the background (the models were checked by the caller).
    pub async fn create_evaluation(
        self: &Arc<Self>,
        account: Arc<LiveAccount>,
        new: NewEvaluation,
    ) -> Result<Evaluation, ApiError> {
        let refused = |why: String| speech_error(400, "InvalidRequest", why).with_inner_code("InvalidDataset");
        let dataset = self.dataset(&account, &new.dataset).await.map_err(|e| {
            if e.status == 404 {
                refused(format!("The dataset '{}' does not exist in this account.", new.dataset))
            } else {
                e
            }
        })?;
        if dataset.kind != DatasetKind::Acoustic || dataset.status != Status::Succeeded {
            return Err(refused(format!(
                "The dataset '{}' must be a succeeded Acoustic dataset (audio with its transcripts).",
                new.dataset
            )));
        }
        let created = now();
        let evaluation = Evaluation {
            v: 1,
            id: uuid::Uuid::new_v4().to_string(),
            display_name: new.display_name,
            description: new.description,
            custom_properties: new.custom_properties,
            locale: new.locale,
            dataset: dataset.id,
            models: new.models,
            status: Status::NotStarted,
            created: created.clone(),
            last_action: created,
            error: None,
            scores: Vec::new(),
            files: Vec::new(),
        };
        EVALUATIONS.put(&self.store, &account, &evaluation).await?;
        self.start_evaluation(account, evaluation.id.clone());
        Ok(evaluation)
    }

    fn start_evaluation(self: &Arc<Self>, account: Arc<LiveAccount>, id: String) {
        let service = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = service.run_evaluation(&account, &id).await {
                tracing::warn!(account = %account.id, evaluation = %id, error = %e.message, "evaluation failed");
            }
        });
    }

    async fn run_evaluation(&self, account: &LiveAccount, id: &str) -> Result<(), ApiError> {
        let evaluation = {
            let _serialized = self.transcription_writes.lock().await;
            let mut evaluation = self.evaluation(account, id).await?;
            evaluation.status = Status::Running;
            evaluation.last_action = now();
            EVALUATIONS.put(&self.store, account, &evaluation).await?;
            evaluation
        };
        let outcome = self.score(account, &evaluation).await;
        let _serialized = self.transcription_writes.lock().await;
        let mut evaluation = match self.evaluation(account, id).await {
            Ok(evaluation) => evaluation,
            Err(e) if e.status == 404 => {
                let path = details_path(id);
                if let Err(e) = self.artifacts.delete(account, Area::Artifacts, &path).await
                    && !matches!(e, ArtifactError::NotFound)
                {
                    tracing::warn!(evaluation = id, error = %e, "the details of a deleted evaluation were not deleted");
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        evaluation.last_action = now();
        match outcome {
            Ok((scores, file)) => {
                evaluation.status = Status::Succeeded;
                evaluation.scores = scores;
                evaluation.files = vec![file];
            }
            Err(e) => {
                evaluation.status = Status::Failed;
                evaluation.error = Some((e.code, e.message));
            }
        }
        EVALUATIONS.put(&self.store, account, &evaluation).await
    }

    /// Transcribes every file of the dataset with each model and scores it.
    async fn score(
        &self,
        account: &LiveAccount,
        evaluation: &Evaluation,
    ) -> Result<(Vec<Score>, EvaluationFile), ApiError> {
        let dataset = self.dataset(account, &evaluation.dataset).await?;
        let archive = dataset
            .files
            .iter()
            .find(|f| f.kind == "AcousticDataArchive")
            .ok_or_else(|| speech_error(400, "InvalidRequest", "The dataset has no audio archive."))?;
        let bytes =
            self.artifacts.read(account, Area::Artifacts, &archive.path).await.map_err(|e| e.to_speech_error())?;
        let files = transcribed_audio(&bytes).map_err(|e| speech_error(400, "InvalidRequest", e.0))?;
        let mut models = Vec::new();
        for model in &evaluation.models {
            models.push(match model {
                Some(id) => Some(self.adapted_model(account, id).await?),
                None => None,
            });
        }
        let mut scores = vec![Score::default(); models.len()];
        let mut details = Vec::new();
        for (name, reference, audio) in &files {
            let mut entry = json!({"fileName": name, "reference": reference});
            for (i, model) in models.iter().enumerate() {
                let audio = Bytes::from(audio.clone());
                let heard = transcribe(&self.speech, audio, "wav", &Channels::Mixed, model.as_ref()).await;
                let hypothesis = match heard {
                    Ok(transcript) => transcript.combined(0),
                    Err(e) => {
                        tracing::warn!(evaluation = %evaluation.id, file = name, error = %e, "a file was not transcribed");
                        String::new()
                    }
                };
                let errors = align(reference, &hypothesis);
                scores[i].add(&errors);
                entry[format!("model{}", i + 1)] = json!({
                    "hypothesis": hypothesis, "wordErrorRate": percent(errors.errors(), errors.reference_words),
                    "referenceWordCount": errors.reference_words, "correctWordCount": errors.correct,
                    "wordSubstitutionCount": errors.substitutions, "wordDeletionCount": errors.deletions,
                    "wordInsertionCount": errors.insertions,
                });
            }
            details.push(entry);
        }
        let body = Bytes::from(json!({"audioFiles": details}).to_string());
        let size = body.len() as u64;
        let path = details_path(&evaluation.id);
        self.artifacts
            .put(account, Area::Artifacts, &path, body, "application/json")
            .await
            .map_err(|e| e.to_speech_error())?;
        let file = EvaluationFile {
            id: uuid::Uuid::new_v4().to_string(),
            name: "details.json".into(),
            kind: "EvaluationDetails".into(),
            path,
            size,
            created: now(),
        };
        Ok((scores, file))
    }

    /// Changes what an evaluation says about itself (`displayName`, `description`, `customProperties`).
    pub async fn update_evaluation(
        &self,
        account: &LiveAccount,
        id: &str,
        update: &Map<String, Value>,
    ) -> Result<Evaluation, ApiError> {
        let _serialized = self.transcription_writes.lock().await;
        let mut evaluation = self.evaluation(account, id).await?;
        crate::records::apply_description(
            update,
            &mut evaluation.display_name,
            &mut evaluation.description,
            &mut evaluation.custom_properties,
        );
        evaluation.last_action = now();
        EVALUATIONS.put(&self.store, account, &evaluation).await?;
        Ok(evaluation)
    }

    /// Deletes an evaluation and its details; deleting one that does not exist is no error.
    pub async fn delete_evaluation(&self, account: &LiveAccount, id: &str) -> Result<(), ApiError> {
        let _serialized = self.transcription_writes.lock().await;
        let evaluation = match self.evaluation(account, id).await {
            Ok(evaluation) => evaluation,
            Err(e) if e.status == 404 => return Ok(()),
            Err(e) => return Err(e),
        };
        for file in &evaluation.files {
            match self.artifacts.delete(account, Area::Artifacts, &file.path).await {
                Ok(()) | Err(ArtifactError::NotFound) => {}
                Err(e) => return Err(e.to_speech_error()),
            }
        }
        EVALUATIONS.delete(&self.store, account, id).await
    }

    pub async fn evaluation_file_link(
        &self,
        account: &LiveAccount,
        file: &EvaluationFile,
        validity: std::time::Duration,
    ) -> Result<String, ApiError> {
        self.artifacts.link(account, Area::Artifacts, &file.path, validity).await.map_err(|e| e.to_speech_error())
    }

    pub(crate) async fn evaluations_purge_ops(&self, account_id: &str, batch: Batch) -> Result<Batch, ApiError> {
        EVALUATIONS.purge_ops(&self.store, account_id, batch).await
    }

    /// Starts over the evaluations a restart interrupted (at start, once the accounts are live).
    pub(crate) async fn resume_evaluations(self: &Arc<Self>) -> Result<usize, ApiError> {
        let mut resumed = 0;
        for (account_key, evaluation) in EVALUATIONS.all::<Evaluation>(&self.store).await? {
            if !matches!(evaluation.status, Status::NotStarted | Status::Running) {
                continue;
            }
            let Some(account) = self.account(&account_key) else { continue };
            self.start_evaluation(account, evaluation.id);
            resumed += 1;
        }
        Ok(resumed)
    }
}

fn details_path(id: &str) -> String {
    format!("EvaluationData/{id}/details.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_add_up_files_as_percentages() {
        let mut score = Score::default();
        score.add(&align("the quick brown fox", "the quick brown box"));
        score.add(&align("hello world", "hello world"));
        score.add(&align("one two", "one two three"));
        assert_eq!((score.sentences, score.sentences_with_errors, score.reference_words), (3, 2, 8));
        assert_eq!((score.substitutions, score.deletions, score.insertions, score.correct), (1, 0, 1, 7));
        assert_eq!(score.word_error_rate(), 25.0);
        assert_eq!(score.sentence_error_rate(), 66.67);
        assert_eq!(Score::default().word_error_rate(), 0.0);
    }
}
