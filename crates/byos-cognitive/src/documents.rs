//! Document Intelligence analyze (2024-11-30 under `/documentintelligence`, 2023-07-31 and
//! 2022-08-31 under `/formrecognizer` and `/documentintelligence`), HTTP-free: an analysis reads
//! its document (the bytes sent, or a URL), has the engine read every page it asks for, and keeps
//! its result for 24 hours, in memory only (results are customer data: nothing of them is written
//! to disk, and a restart forgets them as a finished operation's 24 hours would).
//!
//! A source URL into one of byos's storage accounts given without a SAS is read as the account's
//! managed identity (system-assigned, or the user-assigned one when it has no system-assigned one)
//! through the storage service and the door; a SAS URL is fetched as given (HTTPS, byos's CA).
//! Every failure is the documented error code with byos's explanation of what refused.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use byos_document::{Detail, PageText, ReadError};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::artifacts::ArtifactError;
use crate::document_models::TemplateModel;
use crate::document_result::{Shape, analyze_result};
use crate::fetch::FetchError;
use crate::{CognitiveService, LiveAccount};

/// The prebuilt models byos runs.
pub const PREBUILT_MODELS: [&str; 2] = ["prebuilt-read", "prebuilt-layout"];
/// Results are kept this long after they finish (Azure: 24 hours).
const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Analyses kept at once, over every account (the oldest finished go first).
const MAX_KEPT: usize = 2000;
/// The free tier (F0) takes documents of at most 4 MB and analyzes their first two pages (Azure's limits).
const FREE_MAX_BYTES: u64 = 4 << 20;
const FREE_PAGES: u32 = 2;

/// The pages a free-tier analysis reads: those asked for, within the first two.
fn free_pages(asked: Option<&[RangeInclusive<u32>]>) -> Vec<RangeInclusive<u32>> {
    let asked = asked.map(<[_]>::to_vec).unwrap_or_else(|| vec![1..=FREE_PAGES]);
    asked.into_iter().filter(|r| *r.start() <= FREE_PAGES).map(|r| *r.start()..=(*r.end()).min(FREE_PAGES)).collect()
}

/// An Azure error of the v3/v4 shape: top-level code, inner code, message, HTTP status.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentError {
    pub status: u16,
    pub code: &'static str,
    pub inner: &'static str,
    pub message: String,
    /// byos's explanation of a refusal (which rule, what would grant access).
    pub explanation: Option<Value>,
}

impl DocumentError {
    pub fn new(status: u16, code: &'static str, inner: &'static str, message: impl Into<String>) -> Self {
        DocumentError { status, code, inner, message: message.into(), explanation: None }
    }

    /// The `error` object of the body.
    pub fn body(&self) -> Value {
        let mut error = json!({"code": self.code, "message": self.message,
                               "innererror": {"code": self.inner, "message": self.message}});
        if let Some(explanation) = &self.explanation {
            error["innererror"]["byosExplanation"] = explanation.clone();
        }
        json!({"error": error})
    }

    /// The code of a v2.1 error (`{"error":{"code","message"}}`, and `analyzeResult.errors`).
    pub fn v2_code(&self) -> &'static str {
        match self.inner {
            "UnsupportedContent" => "UnsupportedImageFormat",
            "InvalidContent" => "InvalidImage",
            "InvalidContentLength" => "InvalidImageSize",
            "InvalidContentDimensions" => "InvalidImageDimension",
            "ContentSourceNotAccessible" => "FailedToDownloadImage",
            "InvalidContentSourceFormat" => "InvalidImageURL",
            "InvalidParameter" | "ParameterMissing" => "BadArgument",
            "TrainingContentMissing" => "2014",
            "ModelNotFound" | "OperationNotFound" | "ResourceNotFound" => "NotFound",
            "Unauthorized" => "401",
            "AuthorizationFailed" => "403",
            _ => "InternalServerError",
        }
    }

    /// The v2.1 `{code, message}` entry.
    pub fn v2_body(&self) -> Value {
        json!({"code": self.v2_code(), "message": self.message})
    }

    fn from_read(e: &ReadError) -> Self {
        let message = format!("{}.", capitalized(&e.to_string()));
        match e {
            ReadError::Unsupported(_) => Self::new(400, "InvalidRequest", "UnsupportedContent", message),
            ReadError::Corrupt(_) | ReadError::Encrypted | ReadError::TooManyPages { .. } => {
                Self::new(400, "InvalidRequest", "InvalidContent", message)
            }
            ReadError::Empty | ReadError::TooLarge { .. } => {
                Self::new(400, "InvalidRequest", "InvalidContentLength", message)
            }
            ReadError::Dimensions { .. } => Self::new(400, "InvalidRequest", "InvalidContentDimensions", message),
            ReadError::Pages(_) => Self::new(400, "InvalidArgument", "InvalidParameter", message),
            ReadError::Busy => Self::new(503, "ServiceUnavailable", "ServiceUnavailable", message),
            ReadError::Engine(_) => Self::new(500, "InternalServerError", "Unknown", message),
        }
    }

    fn from_storage(e: &ArtifactError) -> Self {
        let mut error = match e {
            ArtifactError::NotFound => Self::new(
                400,
                "InvalidRequest",
                "ContentSourceNotAccessible",
                "Content is not accessible: the blob does not exist.",
            ),
            ArtifactError::TooLarge { .. } => {
                Self::new(400, "InvalidRequest", "InvalidContentLength", format!("{}.", capitalized(&e.to_string())))
            }
            other => Self::new(
                400,
                "InvalidRequest",
                "ContentSourceNotAccessible",
                format!("Content is not accessible: {}.", other),
            ),
        };
        if let ArtifactError::Inaccessible { explanation, .. } = e {
            error.explanation = Some(explanation.clone());
        }
        error
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// Where the document comes from.
#[derive(Debug, Clone)]
pub enum Source {
    Bytes(Bytes),
    Url(String),
}

/// One analysis as asked.
#[derive(Debug, Clone)]
pub struct AnalyzeRequest {
    pub source: Source,
    pub pages: Option<Vec<RangeInclusive<u32>>>,
    pub shape: Shape,
    /// A custom template model (read when the analysis was asked for), else a prebuilt one.
    pub model: Option<Arc<TemplateModel>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Running,
    Succeeded,
    Failed,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
        }
    }
}

/// An analysis as its poller sees it: the pages read (rendered in the shape of the API family
/// that polls), or why none were.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub model_id: String,
    pub shape: Shape,
    pub status: Status,
    pub created: String,
    pub updated: String,
    pub pages: Option<Arc<Vec<PageText>>>,
    pub error: Option<DocumentError>,
    model: Option<Arc<TemplateModel>>,
    finished: Option<Instant>,
}

impl Analysis {
    /// The custom model it runs, if any.
    pub fn model(&self) -> Option<&TemplateModel> {
        self.model.as_deref()
    }

    /// The v3/v4 `analyzeResult`, once it succeeded (with a custom model: its `documents`).
    pub fn result(&self) -> Option<Value> {
        let pages = self.pages.as_ref()?;
        let mut result = analyze_result(pages, &self.shape);
        if let Some(model) = &self.model {
            result["documents"] = model.extract(pages, &result);
        }
        Some(result)
    }
}

/// The analyses of every account, by (account id, result id).
#[derive(Default)]
pub struct Analyses {
    kept: Mutex<HashMap<(String, String), Analysis>>,
}

impl Analyses {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Analysis>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, key: (String, String), analysis: Analysis) {
        let mut kept = self.lock();
        kept.retain(|_, a| a.finished.is_none_or(|at| at.elapsed() < RETENTION));
        while kept.len() >= MAX_KEPT {
            let oldest = kept.iter().filter_map(|(k, a)| a.finished.map(|at| (at, k.clone()))).min();
            match oldest {
                Some((_, key)) => kept.remove(&key),
                None => break,
            };
        }
        kept.insert(key, analysis);
    }

    fn finish(&self, key: &(String, String), outcome: Result<Vec<PageText>, DocumentError>) {
        let mut kept = self.lock();
        // Deleted meanwhile (v4 DELETE): nothing to keep.
        let Some(analysis) = kept.get_mut(key) else { return };
        analysis.updated = now();
        analysis.finished = Some(Instant::now());
        match outcome {
            Ok(pages) => {
                analysis.status = Status::Succeeded;
                analysis.pages = Some(Arc::new(pages));
            }
            Err(error) => {
                analysis.status = Status::Failed;
                analysis.error = Some(error);
            }
        }
    }
}

/// Now, to the second (the 3.x clients parse `%Y-%m-%dT%H:%M:%SZ` and fail on fractions).
pub(crate) fn now() -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::now_utc().format(&format).unwrap_or_default()
}

impl CognitiveService {
    /// Starts analyzing a document with a prebuilt model; answers the result id to poll.
    pub fn start_analysis(self: &Arc<Self>, account: Arc<LiveAccount>, request: AnalyzeRequest) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let key = (account.id.to_ascii_lowercase(), id.clone());
        let created = now();
        let analysis = Analysis {
            model_id: request.shape.model_id.clone(),
            shape: request.shape.clone(),
            status: Status::Running,
            created: created.clone(),
            updated: created,
            pages: None,
            error: None,
            model: request.model.clone(),
            finished: None,
        };
        self.analyses.insert(key.clone(), analysis);
        let service = Arc::clone(self);
        tokio::spawn(async move {
            let outcome = service.analyze(&account, &request).await;
            if let Err(e) = &outcome {
                tracing::info!(account = %account.id, result = %key.1, code = e.inner, "an analysis failed");
            }
            service.analyses.finish(&key, outcome);
        });
        id
    }

    /// The analysis `id` of the account, while it is kept.
    pub fn analysis(&self, account: &LiveAccount, id: &str) -> Option<Analysis> {
        let key = (account.id.to_ascii_lowercase(), id.to_owned());
        let kept = self.analyses.lock();
        kept.get(&key).filter(|a| a.finished.is_none_or(|at| at.elapsed() < RETENTION)).cloned()
    }

    /// Forgets the analysis `id` (v4 DELETE); false when there was none.
    pub fn delete_analysis(&self, account: &LiveAccount, id: &str) -> bool {
        let key = (account.id.to_ascii_lowercase(), id.to_owned());
        self.analyses.lock().remove(&key).is_some()
    }

    async fn analyze(&self, account: &LiveAccount, request: &AnalyzeRequest) -> Result<Vec<PageText>, DocumentError> {
        let bytes = match &request.source {
            Source::Bytes(bytes) => bytes.clone(),
            Source::Url(url) => self.fetch_document(account, url).await?,
        };
        let free = account.settings.sku == "F0";
        if free && bytes.len() as u64 > FREE_MAX_BYTES {
            let too_large = ReadError::TooLarge { size: bytes.len() as u64, limit: FREE_MAX_BYTES };
            return Err(DocumentError::from_read(&too_large));
        }
        let pages = if free { Some(free_pages(request.pages.as_deref())) } else { request.pages.clone() };
        // prebuilt-read gives no tables or selection marks: a text PDF's pages need not be rendered for them.
        let detail = if request.shape.model_id == "prebuilt-read" { Detail::Text } else { Detail::Layout };
        byos_document::read(&self.ocr, &bytes, pages.as_deref(), detail).await.map_err(|e| DocumentError::from_read(&e))
    }

    /// The document at `url`: as the account's identity when it is a blob of byos's storage given
    /// without a SAS, else fetched as given.
    async fn fetch_document(&self, account: &LiveAccount, url: &str) -> Result<Bytes, DocumentError> {
        let limit = byos_document::MAX_DOCUMENT_BYTES;
        if let Some((name, container, blob)) = self.artifacts.identity_location(url) {
            return self
                .artifacts
                .read_as_identity(account, (&name, &container, &blob), limit)
                .await
                .map_err(|e| DocumentError::from_storage(&e));
        }
        crate::fetch::fetch_limited(&self.http, url, limit).await.map_err(|e| match e {
            FetchError::TooLarge { limit } => DocumentError::new(
                400,
                "InvalidRequest",
                "InvalidContentLength",
                format!("The document is larger than the {limit} bytes that are taken."),
            ),
            FetchError::Unreachable(why) => DocumentError::new(
                400,
                "InvalidRequest",
                "ContentSourceNotAccessible",
                format!("Content is not accessible: {why}."),
            ),
        })
    }
}

/// `pages` as the API takes it (`1-3,5,7-9`): 1-based inclusive ranges.
pub fn parse_pages(text: &str) -> Result<Vec<RangeInclusive<u32>>, DocumentError> {
    let invalid = || {
        DocumentError::new(
            400,
            "InvalidArgument",
            "InvalidParameter",
            format!("The parameter pages '{text}' is invalid: use page numbers and ranges such as 1-3,5."),
        )
    };
    text.split(',')
        .map(|part| {
            let part = part.trim();
            let (from, to) = part.split_once('-').unwrap_or((part, part));
            let (from, to) =
                (from.trim().parse::<u32>().map_err(|_| invalid())?, to.trim().parse::<u32>().map_err(|_| invalid())?);
            if from == 0 || to < from {
                return Err(invalid());
            }
            Ok(from..=to)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_read_as_ranges_and_nonsense_is_refused() {
        assert_eq!(parse_pages("1-3,5, 7-9").ok(), Some(vec![1..=3, 5..=5, 7..=9]));
        for bad in ["", "0", "3-1", "a", "1-", "1,,2"] {
            let refused = parse_pages(bad).err().map(|e| e.inner);
            assert_eq!(refused, Some("InvalidParameter"), "{bad:?}");
        }
    }

    #[test]
    fn the_free_tier_reads_at_most_the_first_two_pages() {
        assert_eq!(free_pages(None), vec![1..=2]);
        assert_eq!(free_pages(Some(&[2..=5, 7..=7])), vec![2..=2]);
        assert!(free_pages(Some(&[3..=4])).is_empty());
    }

    #[test]
    fn engine_refusals_are_azures_codes() {
        let dims = DocumentError::from_read(&ReadError::Dimensions { width: 100_000, height: 100_000 });
        assert_eq!((dims.status, dims.code, dims.inner), (400, "InvalidRequest", "InvalidContentDimensions"));
        let body = DocumentError::from_read(&ReadError::Encrypted).body();
        assert_eq!(body["error"]["innererror"]["code"], "InvalidContent");
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.starts_with("The document is encrypted")));
    }

    #[test]
    fn a_full_store_forgets_the_oldest_finished_analysis_first() {
        let analyses = Analyses::default();
        let shape = Shape {
            api_version: "2024-11-30".into(),
            model_id: "prebuilt-read".into(),
            string_index: crate::document_result::StringIndex::TextElements,
            markdown: false,
            content_format: true,
        };
        let analysis = |finished: Option<Instant>| Analysis {
            model_id: "prebuilt-read".into(),
            shape: shape.clone(),
            status: Status::Running,
            created: String::new(),
            updated: String::new(),
            pages: None,
            error: None,
            model: None,
            finished,
        };
        let start = Instant::now();
        for i in 0..MAX_KEPT {
            analyses.insert(("a".into(), i.to_string()), analysis(Some(start + Duration::from_millis(i as u64))));
        }
        analyses.insert(("a".into(), "new".into()), analysis(None));
        let kept = analyses.lock();
        assert_eq!(kept.len(), MAX_KEPT);
        assert!(
            !kept.contains_key(&("a".to_owned(), "0".to_owned()))
                && kept.contains_key(&("a".to_owned(), "1".to_owned()))
        );
    }
}
