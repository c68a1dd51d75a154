//! Document Intelligence custom template models (`documentModels:build` with `buildMode:
//! template`, 2023-07-31 and 2024-11-30), HTTP-free.
//!
//! A model is learned from the labeled documents of a container in the customer's storage (a SAS
//! container URL, or a plain one read and listed as the account's identity): each `X.labels.json`
//! (the labeling tool's format: per field, the page and the value's bounding boxes in page-relative
//! 0-1 coordinates) next to its document `X`. A field's region is the union of its labeled boxes;
//! analyzing a document of the same layout with the model reads its words, aligns the page to the
//! template by the printed text the training documents share (`template_anchors`, learned from each
//! document's `X.ocr.json` where the labeling tool left one, else from the document read by the
//! engine) and gives each field the words whose centres lie in its region. Models are service-held data: kept through the artifact
//! store under the account's keys (customer-managed keys included) and read again at every use, so
//! a revoked key makes the model unusable. `neural` build mode is refused: byos learns templates.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use byos_document::{Detail, PageText};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::artifacts::{Area, ArtifactError};
use crate::documents::DocumentError;
use crate::template_anchors::{self, Alignment, Anchor, Placed};
use crate::{CognitiveService, LiveAccount};

/// Template models an account may have (Azure: 5,000 on S0, 500 on F0).
const MAX_MODELS: usize = 5000;
const FREE_MAX_MODELS: usize = 500;
/// Labeled documents a build reads at most (Azure: 500 pages for template models).
const MAX_TRAINING_DOCUMENTS: usize = 500;
/// A labels file is at most this big (Azure: 10 MB).
const MAX_LABELS_BYTES: u64 = 10 << 20;
/// A labeling tool's `.ocr.json` is at most this big (a layout result: every word of up to 500
/// pages with its box).
const MAX_OCR_BYTES: u64 = 50 << 20;
/// How far (page-relative) outside its learned region a word's centre may lie and still count.
const MARGIN: f64 = 0.01;

/// A field's learned region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldRegion {
    /// 1-based.
    pub page: u32,
    /// x0, y0, x1, y1 in 0-1 page coordinates.
    pub region: [f64; 4],
    /// The share of the training documents that labeled it (its confidence).
    pub coverage: f64,
}

/// A template model as kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateModel {
    pub model_id: String,
    pub description: Option<String>,
    pub created: String,
    pub api_version: String,
    pub tags: Map<String, Value>,
    pub fields: BTreeMap<String, FieldRegion>,
    pub documents: usize,
    /// v2.1 unlabeled models: every key ("Name:") their training forms have, in the order found.
    #[serde(default)]
    pub keys: Vec<String>,
    /// ... and the forms' layouts: clusters of forms with (mostly) the same keys, each its keys.
    #[serde(default)]
    pub clusters: Vec<Vec<String>>,
    /// v2.1: the training documents and their page counts.
    #[serde(default)]
    pub training: Vec<(String, u32)>,
    /// A composed model: copies of its component models (analysis picks the one whose fields the
    /// document fills best).
    #[serde(default)]
    pub components: Vec<TemplateModel>,
    /// Labeled models: the printed text a document is aligned to the template by (models built
    /// before anchors were learned have none and use their regions as learned).
    #[serde(default)]
    pub anchors: Vec<Anchor>,
}

impl TemplateModel {
    /// `DocumentModelDetails` in the API's shape.
    pub fn details(&self) -> Value {
        let mut details = self.own_details();
        if !self.components.is_empty() {
            let mut doc_types = Map::new();
            for component in &self.components {
                doc_types.extend(component.own_details()["docTypes"].as_object().cloned().unwrap_or_default());
            }
            details["docTypes"] = json!(doc_types);
        }
        details
    }

    fn own_details(&self) -> Value {
        let schema: Map<String, Value> =
            self.fields.keys().map(|name| (name.clone(), json!({"type": "string"}))).collect();
        let confidence: Map<String, Value> =
            self.fields.iter().map(|(name, f)| (name.clone(), json!(round(f.coverage)))).collect();
        let mut details = json!({
            "modelId": self.model_id, "createdDateTime": self.created, "apiVersion": self.api_version,
            "tags": self.tags, "buildMode": "template",
            "docTypes": {self.model_id.clone(): {"buildMode": "template", "fieldSchema": schema, "fieldConfidence": confidence}},
        });
        if let Some(description) = &self.description {
            details["description"] = json!(description);
        }
        details
    }

    /// The `documents` entry of an analysis of `pages` (whose `analyzeResult` is `result`): each
    /// field with the words in its region, or absent words as an empty field.
    pub fn extract(&self, pages: &[PageText], result: &Value) -> Value {
        if self.components.is_empty() {
            return self.extract_own(pages, result);
        }
        let filled = |documents: &Value| {
            documents[0]["fields"]
                .as_object()
                .map_or(0, |f| f.values().filter(|v| v["valueString"].is_string()).count())
        };
        let best = self.components.iter().map(|c| c.extract_own(pages, result)).max_by_key(filled);
        best.unwrap_or_else(|| json!([]))
    }

    fn extract_own(&self, pages: &[PageText], result: &Value) -> Value {
        let mut fields = Map::new();
        let mut alignments: BTreeMap<u32, Alignment> = BTreeMap::new();
        for (name, field) in &self.fields {
            let Some((index, page)) = pages.iter().enumerate().find(|(_, p)| p.number == field.page) else {
                fields.insert(name.clone(), json!({"type": "string", "confidence": 0.0}));
                continue;
            };
            let alignment =
                alignments.entry(page.number).or_insert_with(|| template_anchors::align(&self.anchors, page));
            let region = alignment.region(&field.region);
            let words: Vec<usize> = (0..page.words.len()).filter(|w| inside(page, *w, &region)).collect();
            fields.insert(name.clone(), field_value(page, index, &words, field, result));
        }
        let spans = json!([{"offset": 0, "length": result["content"].as_str().map_or(0, |c| c.chars().count())}]);
        let regions: Vec<Value> = pages
            .iter()
            .map(|p| json!({"pageNumber": p.number, "polygon": [0.0, 0.0, p.width, 0.0, p.width, p.height, 0.0, p.height]}))
            .collect();
        let coverage = self.fields.values().map(|f| f.coverage).sum::<f64>() / self.fields.len().max(1) as f64;
        json!([{"docType": self.model_id, "boundingRegions": regions, "spans": spans,
                "fields": fields, "confidence": round(coverage)}])
    }
}

fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// Whether word `w`'s centre lies in `region` (page-relative, with a small margin).
fn inside(page: &PageText, w: usize, region: &[f64; 4]) -> bool {
    template_anchors::within(region, template_anchors::word_centre(page, &page.words[w]), MARGIN)
}

/// A string field of `words` (indices into the page's words), with the spans the result gave them.
fn field_value(page: &PageText, page_index: usize, words: &[usize], field: &FieldRegion, result: &Value) -> Value {
    if words.is_empty() {
        return json!({"type": "string", "confidence": round(field.coverage * 0.5)});
    }
    let text: Vec<&str> = words.iter().map(|w| page.words[*w].text.as_str()).collect();
    let spans: Vec<Value> = words
        .iter()
        .filter_map(|w| result["pages"][page_index]["words"].get(*w).map(|word| word["span"].clone()))
        .collect();
    let confidence = words.iter().map(|w| page.words[*w].confidence).sum::<f64>() / words.len() as f64;
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for w in words {
        let p = &page.words[*w].polygon;
        for corner in p.chunks(2) {
            (x0, y0, x1, y1) = (x0.min(corner[0]), y0.min(corner[1]), x1.max(corner[0]), y1.max(corner[1]));
        }
    }
    let value = text.join(" ");
    json!({"type": "string", "valueString": value, "content": value, "spans": spans,
           "boundingRegions": [{"pageNumber": page.number, "polygon": [x0, y0, x1, y0, x1, y1, x0, y1]}],
           "confidence": round(confidence * field.coverage)})
}

/// One labeled document's fields: name -> (page, the union of its boxes).
type Labeled = BTreeMap<String, (u32, [f64; 4])>;

/// A labels file's fields.
fn read_labels(bytes: &[u8]) -> Result<Labeled, String> {
    let labels: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let mut fields = BTreeMap::new();
    for label in labels["labels"].as_array().into_iter().flatten() {
        let Some(name) = label["label"].as_str() else { continue };
        let mut region: Option<(u32, [f64; 4])> = None;
        for value in label["value"].as_array().into_iter().flatten() {
            let page = value["page"].as_u64().unwrap_or(1) as u32;
            for boxed in value["boundingBoxes"].as_array().into_iter().flatten() {
                let numbers: Vec<f64> = boxed.as_array().into_iter().flatten().filter_map(Value::as_f64).collect();
                if numbers.len() != 8 || numbers.iter().any(|n| !(0.0..=1.0).contains(n)) {
                    return Err(format!("the bounding box of {name} is not 8 numbers from 0 to 1"));
                }
                let xs = [numbers[0], numbers[2], numbers[4], numbers[6]];
                let ys = [numbers[1], numbers[3], numbers[5], numbers[7]];
                let b = [min(&xs), min(&ys), max(&xs), max(&ys)];
                region = Some(match region {
                    Some((p, r)) if p == page => (p, [r[0].min(b[0]), r[1].min(b[1]), r[2].max(b[2]), r[3].max(b[3])]),
                    Some(other) => other,
                    None => (page, b),
                });
            }
        }
        if let Some(region) = region {
            fields.insert(name.to_owned(), region);
        }
    }
    Ok(fields)
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::MAX, f64::min)
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::MIN, f64::max)
}

/// The regions learned from every labeled document: per field the union of its boxes on its most
/// labeled page, and the share of documents that labeled it.
fn learn(examples: &[Labeled]) -> BTreeMap<String, FieldRegion> {
    let mut fields: BTreeMap<String, FieldRegion> = BTreeMap::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for example in examples {
        for (name, (page, b)) in example {
            *counts.entry(name.clone()).or_default() += 1;
            fields
                .entry(name.clone())
                .and_modify(|f| {
                    if f.page == *page {
                        let r = &mut f.region;
                        *r = [r[0].min(b[0]), r[1].min(b[1]), r[2].max(b[2]), r[3].max(b[3])];
                    }
                })
                .or_insert(FieldRegion { page: *page, region: *b, coverage: 0.0 });
        }
    }
    for (name, field) in &mut fields {
        field.coverage = counts.get(name).copied().unwrap_or(0) as f64 / examples.len().max(1) as f64;
    }
    fields
}

/// The keys of a page: each line's words up to and including the first that ends with `:`.
fn page_keys(page: &PageText) -> Vec<(String, usize, usize)> {
    let mut keys = Vec::new();
    for line in &page.lines {
        let words = line.words.start.min(page.words.len())..line.words.end.min(page.words.len());
        if let Some(end) = words.clone().find(|w| page.words[*w].text.ends_with(':')) {
            let text: Vec<&str> = (words.start..=end).map(|w| page.words[w].text.as_str()).collect();
            keys.push((text.join(" "), end + 1, words.end));
        }
    }
    keys
}

/// |a ∩ b| / |a ∪ b| of two key lists.
fn similarity(a: &[String], b: &[String]) -> f64 {
    let shared = a.iter().filter(|k| b.contains(k)).count();
    let all = a.len() + b.len() - shared;
    if all == 0 { 0.0 } else { shared as f64 / all as f64 }
}

fn bounding(page: &PageText, words: std::ops::Range<usize>) -> Value {
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for w in words {
        for corner in page.words[w].polygon.chunks(2) {
            (x0, y0, x1, y1) = (x0.min(corner[0]), y0.min(corner[1]), x1.max(corner[0]), y1.max(corner[1]));
        }
    }
    json!([x0, y0, x1, y0, x1, y1, x0, y1])
}

impl TemplateModel {
    /// The keys the unlabeled training forms share, in the order first found.
    pub fn learn_keys(pages: &[Vec<PageText>]) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        for page in pages.iter().flatten() {
            for (key, _, _) in page_keys(page) {
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        keys
    }

    /// The training forms clustered by layout: a form joins the first cluster whose keys it shares
    /// at least half of (by Jaccard similarity), else starts one.
    pub fn learn_clusters(forms: &[Vec<PageText>]) -> Vec<Vec<String>> {
        let mut clusters: Vec<Vec<String>> = Vec::new();
        for form in forms {
            let keys = Self::learn_keys(std::slice::from_ref(form));
            if keys.is_empty() {
                continue;
            }
            match clusters.iter_mut().find(|c| similarity(c, &keys) >= 0.5) {
                Some(cluster) => cluster.extend(keys.into_iter().filter(|k| !cluster.contains(k)).collect::<Vec<_>>()),
                None => clusters.push(keys),
            }
        }
        clusters
    }

    /// The cluster whose keys `page` has the most of (0 when none).
    fn cluster_of(&self, page: &PageText) -> usize {
        let found: Vec<String> = page_keys(page).into_iter().map(|(key, _, _)| key).collect();
        let score = |keys: &Vec<String>| keys.iter().filter(|k| found.contains(k)).count();
        (0..self.clusters.len()).max_by_key(|i| (score(&self.clusters[*i]), std::cmp::Reverse(*i))).unwrap_or(0)
    }

    /// v2.1 `pageResults` of an analysis: each page's cluster (the layout it matches best) and the
    /// key/value pairs of that cluster's keys (the value is the rest of the key's line).
    pub fn v2_page_results(&self, pages: &[PageText]) -> Value {
        let results: Vec<Value> = pages
            .iter()
            .map(|page| {
                let cluster = self.cluster_of(page);
                let keys = self.clusters.get(cluster).unwrap_or(&self.keys);
                let pairs: Vec<Value> = page_keys(page)
                    .into_iter()
                    .filter(|(key, _, _)| keys.contains(key))
                    .map(|(key, value_start, line_end)| {
                        let key_start = value_start - key.split(' ').count();
                        let value: Vec<&str> = (value_start..line_end).map(|w| page.words[w].text.as_str()).collect();
                        let mut value_element = json!({"text": value.join(" ")});
                        if value_start < line_end {
                            value_element["boundingBox"] = bounding(page, value_start..line_end);
                        }
                        json!({"key": {"text": key, "boundingBox": bounding(page, key_start..value_start)},
                               "value": value_element, "confidence": 0.9})
                    })
                    .collect();
                json!({"page": page.number, "clusterId": cluster, "keyValuePairs": pairs, "tables": []})
            })
            .collect();
        json!(results)
    }

    /// v2.1 `documentResults` (labeled models): the fields found in their regions.
    pub fn v2_document_results(&self, pages: &[PageText], result: &Value) -> Value {
        let documents = self.extract(pages, result);
        let mut fields = Map::new();
        for (name, field) in documents[0]["fields"].as_object().into_iter().flatten() {
            let mut value = json!({"type": "string", "confidence": field["confidence"]});
            if let Some(text) = field["valueString"].as_str() {
                let polygon = &field["boundingRegions"][0]["polygon"];
                value["valueString"] = json!(text);
                value["text"] = json!(text);
                value["boundingBox"] = polygon.clone();
                value["page"] = field["boundingRegions"][0]["pageNumber"].clone();
            }
            fields.insert(name.clone(), value);
        }
        let last = pages.iter().map(|p| p.number).max().unwrap_or(1);
        // A composed model answers with the component that fitted.
        let model_id = documents[0]["docType"].as_str().unwrap_or(&self.model_id).to_owned();
        json!([{"docType": format!("custom:{model_id}"), "modelId": model_id, "pageRange": [1, last],
                "fields": fields, "docTypeConfidence": documents[0]["confidence"]}])
    }

    /// The v2.1 `Model` (with `keys` when asked; a composed model with its components' results).
    pub fn v2_model(&self, include_keys: bool) -> Value {
        if self.components.is_empty() {
            return self.v2_own_model(include_keys);
        }
        let results: Vec<Value> = self
            .components
            .iter()
            .map(|c| {
                let mut train = c.v2_own_model(false)["trainResult"].take();
                train["modelId"] = json!(c.model_id);
                train
            })
            .collect();
        let mut info =
            v2_model_info(&self.model_id, "ready", &self.created, &self.created, self.description.as_deref());
        info["attributes"]["isComposed"] = json!(true);
        json!({"modelInfo": info, "composedTrainResults": results})
    }

    fn v2_own_model(&self, include_keys: bool) -> Value {
        let documents: Vec<Value> = self
            .training
            .iter()
            .map(|(name, pages)| json!({"documentName": name, "pages": pages, "errors": [], "status": "succeeded"}))
            .collect();
        let mut train = json!({"trainingDocuments": documents, "errors": []});
        if self.keys.is_empty() {
            let fields: Vec<Value> =
                self.fields.iter().map(|(n, f)| json!({"fieldName": n, "accuracy": round(f.coverage)})).collect();
            let average = self.fields.values().map(|f| f.coverage).sum::<f64>() / self.fields.len().max(1) as f64;
            train["fields"] = json!(fields);
            train["averageModelAccuracy"] = json!(round(average));
        }
        let mut model = json!({"modelInfo": v2_model_info(&self.model_id, "ready", &self.created, &self.created, self.description.as_deref()),
                               "trainResult": train});
        if include_keys && !self.keys.is_empty() {
            let clusters: Map<String, Value> = match self.clusters.is_empty() {
                true => std::iter::once(("0".to_owned(), json!(self.keys))).collect(),
                false => self.clusters.iter().enumerate().map(|(i, keys)| (i.to_string(), json!(keys))).collect(),
            };
            model["keys"] = json!({"clusters": clusters});
        }
        model
    }
}

/// v2.1 `modelInfo`.
pub fn v2_model_info(id: &str, status: &str, created: &str, updated: &str, name: Option<&str>) -> Value {
    let mut info = json!({"modelId": id, "status": status, "createdDateTime": created, "lastUpdatedDateTime": updated,
                          "attributes": {"isComposed": false}});
    if let Some(name) = name {
        info["modelName"] = json!(name);
    }
    info
}

/// The model an operation makes, as asked.
#[derive(Debug, Clone)]
pub struct NewModel {
    /// What the operation is polled by (v2.1 polls the model itself: its id).
    pub operation_id: String,
    pub model_id: String,
    pub description: Option<String>,
    pub tags: Map<String, Value>,
    pub api_version: String,
}

impl NewModel {
    /// A model the client names (v3/v4): its operation has an id of its own.
    pub fn named(model_id: &str, description: Option<&str>, tags: Map<String, Value>, api_version: &str) -> Self {
        Self {
            operation_id: uuid::Uuid::new_v4().to_string(),
            model_id: model_id.to_owned(),
            description: description.map(str::to_owned),
            tags,
            api_version: api_version.to_owned(),
        }
    }

    /// A v2.1 model: byos names it, and it is polled by that name.
    pub fn v2(name: Option<&str>) -> Self {
        let id = uuid::Uuid::new_v4().to_string();
        Self { operation_id: id.clone(), ..Self::named(&id, name, Map::new(), "2.1") }
    }
}

/// A build as asked: the model, and the training container it learns from.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub model: NewModel,
    pub container_url: String,
    pub prefix: String,
    /// From `.labels.json` files (v3/v4 always; v2.1 `useLabelFile`), else from the forms' keys.
    pub labeled: bool,
    /// v2.1 `sourceFilter.includeSubFolders` (v3/v4: every blob under the prefix).
    pub include_subfolders: bool,
}

/// A compose as asked: the model, and the ids of the account's models it is made of.
#[derive(Debug, Clone)]
pub struct ComposeRequest {
    pub model: NewModel,
    pub components: Vec<String>,
}

/// A model operation as its poller sees it.
#[derive(Debug, Clone)]
pub struct ModelOperation {
    /// `documentModelBuild` or `documentModelCopyTo`.
    pub kind: &'static str,
    /// The listener port of the account the model is made in, when not the operation's own (a copy).
    pub target_port: Option<u16>,
    pub model_id: String,
    pub api_version: String,
    pub status: &'static str,
    pub created: String,
    pub updated: String,
    pub tags: Map<String, Value>,
    pub result: Option<TemplateModel>,
    pub error: Option<DocumentError>,
}

/// Build operations, by (account id, operation id); in memory (a restart forgets them; the models
/// they made are kept).
#[derive(Default)]
pub struct ModelOperations {
    kept: Mutex<BTreeMap<(String, String), ModelOperation>>,
}

impl ModelOperations {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), ModelOperation>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A copy authorization a target account issued (in memory, 48 hours, used once).
#[derive(Debug, Clone)]
pub struct CopyAuthorization {
    pub target_account: String,
    pub model_id: String,
    pub description: Option<String>,
    pub tags: Map<String, Value>,
    pub token: String,
    pub expires: time::OffsetDateTime,
}

fn model_path(id: &str) -> String {
    format!("{id}/model.json")
}

/// A model id as Azure takes it: `^[a-zA-Z0-9][a-zA-Z0-9._~-]{1,63}$`, not a prebuilt one.
pub fn valid_model_id(id: &str) -> bool {
    let mut chars = id.chars();
    id.len() >= 2
        && id.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "._~-".contains(c))
        && !id.starts_with("prebuilt-")
}

impl CognitiveService {
    /// Starts building a template model; answers the operation id.
    pub async fn start_build(
        self: &Arc<Self>,
        account: Arc<LiveAccount>,
        request: BuildRequest,
    ) -> Result<String, DocumentError> {
        self.check_new_model(&account, &request.model).await?;
        let most = if account.settings.sku == "F0" { FREE_MAX_MODELS } else { MAX_MODELS };
        if self.document_model_ids(&account).await?.len() >= most {
            return Err(DocumentError::new(
                400,
                "InvalidRequest",
                "DocumentModelLimit",
                format!("The account has {most} models, the most its tier allows."),
            ));
        }
        let operation = self.new_operation("documentModelBuild", &request.model);
        let id = request.model.operation_id.clone();
        let service = Arc::clone(self);
        let builder = Arc::clone(&account);
        self.run_operation(&account, &id, operation, async move { service.build_template(&builder, &request).await });
        Ok(id)
    }

    /// Refuses a model id the account already has.
    async fn check_new_model(&self, account: &LiveAccount, model: &NewModel) -> Result<(), DocumentError> {
        match self.document_model(account, &model.model_id).await? {
            Some(_) => Err(model_exists(&model.model_id)),
            None => Ok(()),
        }
    }

    fn new_operation(&self, kind: &'static str, model: &NewModel) -> ModelOperation {
        let created = crate::documents::now();
        ModelOperation {
            kind,
            target_port: None,
            model_id: model.model_id.clone(),
            api_version: model.api_version.clone(),
            status: "running",
            created: created.clone(),
            updated: created,
            tags: model.tags.clone(),
            result: None,
            error: None,
        }
    }

    /// Keeps `model` in `account`'s service storage (encrypted under the account's keys).
    async fn keep_model(&self, account: &LiveAccount, model: &TemplateModel) -> Result<(), DocumentError> {
        let bytes = Bytes::from(serde_json::to_vec(model).map_err(|_| internal())?);
        self.artifacts
            .put(account, Area::DocumentModels, &model_path(&model.model_id), bytes, "application/json")
            .await
            .map_err(|e| storage_error(&e))?;
        Ok(())
    }

    /// Registers `operation` as `id` of `account` and runs `work` to its end in the background.
    fn run_operation(
        self: &Arc<Self>,
        account: &LiveAccount,
        id: &str,
        operation: ModelOperation,
        work: impl std::future::Future<Output = Result<TemplateModel, DocumentError>> + Send + 'static,
    ) {
        let key = (account.id.to_ascii_lowercase(), id.to_owned());
        let kind = operation.kind;
        self.model_operations.lock().insert(key.clone(), operation);
        let service = Arc::clone(self);
        tokio::spawn(async move {
            let outcome = work.await;
            let mut kept = service.model_operations.lock();
            let Some(operation) = kept.get_mut(&key) else { return };
            operation.updated = crate::documents::now();
            match outcome {
                Ok(model) => (operation.status, operation.result) = ("succeeded", Some(model)),
                Err(e) => {
                    tracing::info!(account = %key.0, operation = %key.1, kind, code = e.inner, "a model operation failed");
                    (operation.status, operation.error) = ("failed", Some(e));
                }
            }
        });
    }

    /// A copy authorization for model `model_id` in `target` (`documentModels:authorizeCopy`): the
    /// token the source account presents to copy a model in, valid 48 hours.
    pub async fn authorize_copy(
        &self,
        target: &LiveAccount,
        model_id: &str,
        description: Option<String>,
        tags: Map<String, Value>,
    ) -> Result<CopyAuthorization, DocumentError> {
        if self.document_model(target, model_id).await?.is_some() {
            return Err(model_exists(model_id));
        }
        let token = byos_crypto::random_bytes::<32>().map_err(|_| internal())?;
        let authorization = CopyAuthorization {
            target_account: target.id.clone(),
            model_id: model_id.to_owned(),
            description,
            tags,
            token: base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, token),
            expires: time::OffsetDateTime::now_utc() + time::Duration::hours(48),
        };
        let mut kept = self.copy_authorizations.lock().unwrap_or_else(|e| e.into_inner());
        kept.retain(|a| a.expires > time::OffsetDateTime::now_utc());
        kept.push(authorization.clone());
        Ok(authorization)
    }

    /// Starts copying `model_id` of `source` into the account that issued `token` for
    /// `target_model_id` (`documentModels/{id}:copyTo`); answers the operation id.
    pub async fn start_copy(
        self: &Arc<Self>,
        source: Arc<LiveAccount>,
        model_id: &str,
        (target_account, target_model_id, token): (&str, &str, &str),
        api_version: &str,
    ) -> Result<String, DocumentError> {
        let model = self.document_model(&source, model_id).await?.ok_or_else(|| model_not_found(model_id))?;
        let authorization = {
            let mut kept = self.copy_authorizations.lock().unwrap_or_else(|e| e.into_inner());
            let now = time::OffsetDateTime::now_utc();
            let found = kept.iter().position(|a| {
                a.expires > now
                    && a.target_account.eq_ignore_ascii_case(target_account)
                    && a.model_id == target_model_id
                    && byos_crypto::constant_time_eq(a.token.as_bytes(), token.as_bytes())
            });
            found.map(|at| kept.remove(at))
        };
        let authorization = authorization.ok_or_else(|| {
            DocumentError::new(
                401,
                "Unauthorized",
                "InvalidCopyAuthorization",
                "The copy authorization is not valid: unknown, used or expired.",
            )
        })?;
        let target = self.account(&target_account.to_ascii_lowercase()).ok_or_else(|| {
            DocumentError::new(400, "InvalidArgument", "InvalidParameter", "The target resource does not exist.")
        })?;
        let target_model = NewModel::named(target_model_id, None, authorization.tags.clone(), api_version);
        let mut operation = self.new_operation("documentModelCopyTo", &target_model);
        operation.target_port = Some(target.settings.port);
        let id = target_model.operation_id;
        let service = Arc::clone(self);
        let copied = TemplateModel {
            model_id: authorization.model_id.clone(),
            description: authorization.description.clone().or(model.description.clone()),
            tags: authorization.tags.clone(),
            created: crate::documents::now(),
            ..model
        };
        self.run_operation(&source, &id, operation, async move {
            service.keep_model(&target, &copied).await?;
            Ok(copied)
        });
        Ok(id)
    }

    pub fn model_operation(&self, account: &LiveAccount, id: &str) -> Option<ModelOperation> {
        self.model_operations.lock().get(&(account.id.to_ascii_lowercase(), id.to_owned())).cloned()
    }

    async fn build_template(
        &self,
        account: &LiveAccount,
        request: &BuildRequest,
    ) -> Result<TemplateModel, DocumentError> {
        let mut files = self.training_files(account, &request.container_url, &request.prefix).await?;
        if !request.include_subfolders {
            files.retain(|n| !n[request.prefix.len().min(n.len())..].contains('/'));
        }
        let mut model = match request.labeled {
            true => self.learn_labeled(account, request, &files).await?,
            false => self.learn_unlabeled(account, request, &files).await?,
        };
        model.created = crate::documents::now();
        self.keep_model(account, &model).await?;
        Ok(model)
    }

    fn empty_model(model: &NewModel) -> TemplateModel {
        TemplateModel {
            model_id: model.model_id.clone(),
            description: model.description.clone(),
            created: String::new(),
            api_version: model.api_version.clone(),
            tags: model.tags.clone(),
            fields: BTreeMap::new(),
            documents: 0,
            keys: Vec::new(),
            clusters: Vec::new(),
            training: Vec::new(),
            components: Vec::new(),
            anchors: Vec::new(),
        }
    }

    /// Starts composing the request's components (model ids of the account) into its model; answers
    /// the operation id.
    pub async fn start_compose(
        self: &Arc<Self>,
        account: Arc<LiveAccount>,
        request: ComposeRequest,
    ) -> Result<String, DocumentError> {
        self.check_new_model(&account, &request.model).await?;
        let mut models = Vec::new();
        for id in &request.components {
            let model = self.document_model(&account, id).await?.ok_or_else(|| model_not_found(id))?;
            if !model.components.is_empty() {
                return Err(DocumentError::new(
                    400,
                    "InvalidRequest",
                    "ModelComposeError",
                    format!("The model '{id}' is itself composed."),
                ));
            }
            models.push(model);
        }
        let operation = self.new_operation("documentModelCompose", &request.model);
        let id = request.model.operation_id.clone();
        let service = Arc::clone(self);
        let composer = Arc::clone(&account);
        self.run_operation(&account, &id, operation, async move {
            let composed = TemplateModel {
                components: models,
                created: crate::documents::now(),
                ..Self::empty_model(&request.model)
            };
            service.keep_model(&composer, &composed).await?;
            Ok(composed)
        });
        Ok(id)
    }

    /// A model of the keys the training forms share (v2.1 unlabeled training): each form is read.
    async fn learn_unlabeled(
        &self,
        account: &LiveAccount,
        request: &BuildRequest,
        files: &[String],
    ) -> Result<TemplateModel, DocumentError> {
        const FORMS: [&str; 7] = [".pdf", ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"];
        let forms = files.iter().filter(|n| FORMS.iter().any(|e| n.to_ascii_lowercase().ends_with(e)));
        let mut read = Vec::new();
        let mut training = Vec::new();
        for name in forms.take(MAX_TRAINING_DOCUMENTS) {
            let limit = byos_document::MAX_DOCUMENT_BYTES;
            let bytes = self.training_file(account, &request.container_url, name, limit).await?;
            // A form the engine cannot read is left out, as Azure leaves out invalid blobs.
            let Ok(pages) = byos_document::read(&self.ocr, &bytes, None, Detail::Text).await else { continue };
            training.push((name.clone(), pages.len() as u32));
            read.push(pages);
        }
        if read.is_empty() {
            return Err(no_training_content("No forms (PDF, JPEG, PNG, TIFF, BMP) byos can read were found"));
        }
        let keys = TemplateModel::learn_keys(&read);
        let clusters = TemplateModel::learn_clusters(&read);
        Ok(TemplateModel { documents: read.len(), keys, clusters, training, ..Self::empty_model(&request.model) })
    }

    /// A model of the labeled regions (`X.labels.json` next to each document `X`).
    async fn learn_labeled(
        &self,
        account: &LiveAccount,
        request: &BuildRequest,
        files: &[String],
    ) -> Result<TemplateModel, DocumentError> {
        let mut examples = Vec::new();
        let mut training = Vec::new();
        let mut placed = Vec::new();
        for labels_name in files.iter().filter(|n| n.ends_with(".labels.json")).take(MAX_TRAINING_DOCUMENTS) {
            let document = labels_name.trim_end_matches(".labels.json");
            if !files.iter().any(|n| n == document) {
                continue;
            }
            let bytes = self.training_file(account, &request.container_url, labels_name, MAX_LABELS_BYTES).await?;
            let fields = read_labels(&bytes).map_err(|why| {
                DocumentError::new(
                    400,
                    "InvalidRequest",
                    "InvalidContent",
                    format!("The labels file {labels_name} is invalid: {why}."),
                )
            })?;
            if !fields.is_empty() {
                let words = self.training_words(account, request, files, document).await?;
                let labeled_pages = fields.values().map(|(page, _)| *page).max().unwrap_or(1);
                let pages = words.iter().map(|(page, _, _)| *page).max().unwrap_or(0).max(labeled_pages);
                training.push((document.to_owned(), pages));
                examples.push(fields);
                placed.push(words);
            }
        }
        if examples.is_empty() {
            return Err(no_training_content(
                "No labeled documents were found: the container needs documents with their .labels.json files",
            ));
        }
        let fields = learn(&examples);
        let regions: Vec<(u32, [f64; 4])> = fields.values().map(|f| (f.page, f.region)).collect();
        Ok(TemplateModel {
            anchors: template_anchors::learn(&placed, &regions),
            fields,
            documents: examples.len(),
            training,
            ..Self::empty_model(&request.model)
        })
    }

    /// A labeled training document's words, to learn the template's anchors from: its
    /// `.ocr.json` (the labeling tool's layout result) where there is one, else the document read by
    /// the engine (none if it cannot be read: its labels still count).
    async fn training_words(
        &self,
        account: &LiveAccount,
        request: &BuildRequest,
        files: &[String],
        document: &str,
    ) -> Result<Placed, DocumentError> {
        let ocr_name = format!("{document}.ocr.json");
        if files.contains(&ocr_name) {
            let bytes = self.training_file(account, &request.container_url, &ocr_name, MAX_OCR_BYTES).await?;
            return template_anchors::from_ocr_json(&bytes).map_err(|why| {
                DocumentError::new(
                    400,
                    "InvalidRequest",
                    "InvalidContent",
                    format!("The OCR file {ocr_name} is invalid: {why}."),
                )
            });
        }
        let bytes =
            self.training_file(account, &request.container_url, document, byos_document::MAX_DOCUMENT_BYTES).await?;
        match byos_document::read(&self.ocr, &bytes, None, Detail::Text).await {
            Ok(pages) => Ok(template_anchors::placed(&pages)),
            Err(_) => Ok(Placed::new()),
        }
    }

    /// The names of the training container's blobs under `prefix`.
    async fn training_files(
        &self,
        account: &LiveAccount,
        container_url: &str,
        prefix: &str,
    ) -> Result<Vec<String>, DocumentError> {
        let inaccessible = |why: String| {
            DocumentError::new(
                400,
                "InvalidRequest",
                "ContentSourceNotAccessible",
                format!("The training container is not accessible: {why}."),
            )
        };
        let names = match self.artifacts.identity_container(container_url) {
            Some((name, container)) => {
                let listed = self.artifacts.list_as_identity(account, (&name, &container), prefix).await;
                listed.map_err(|e| from_storage(&e))?.into_iter().map(|info| info.name).collect()
            }
            None => self.list_container(container_url).await.map_err(|e| inaccessible(e.message))?,
        };
        Ok(names.into_iter().filter(|n| n.starts_with(prefix)).collect())
    }

    async fn training_file(
        &self,
        account: &LiveAccount,
        container_url: &str,
        name: &str,
        limit: u64,
    ) -> Result<Bytes, DocumentError> {
        if let Some((storage, container)) = self.artifacts.identity_container(container_url) {
            return self
                .artifacts
                .read_as_identity(account, (&storage, &container, name), limit)
                .await
                .map_err(|e| from_storage(&e));
        }
        let url = crate::transcriptions::blob_url(container_url, name);
        crate::fetch::fetch_limited(&self.http, &url, limit).await.map_err(|e| {
            DocumentError::new(
                400,
                "InvalidRequest",
                "ContentSourceNotAccessible",
                format!("{name} could not be read: {e}."),
            )
        })
    }

    /// The account's template model `id`, read from where it is kept (at every use).
    pub async fn document_model(
        &self,
        account: &LiveAccount,
        id: &str,
    ) -> Result<Option<TemplateModel>, DocumentError> {
        match self.artifacts.read(account, Area::DocumentModels, &model_path(id)).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|_| internal()),
            Err(ArtifactError::NotFound) => Ok(None),
            Err(e) => Err(storage_error(&e)),
        }
    }

    pub async fn document_model_ids(&self, account: &LiveAccount) -> Result<Vec<String>, DocumentError> {
        let listed = self.artifacts.list(account, Area::DocumentModels, "").await.map_err(|e| storage_error(&e))?;
        Ok(listed.into_iter().filter_map(|info| info.name.strip_suffix("/model.json").map(str::to_owned)).collect())
    }

    pub async fn delete_document_model(&self, account: &LiveAccount, id: &str) -> Result<bool, DocumentError> {
        if self.document_model(account, id).await?.is_none() {
            return Ok(false);
        }
        self.artifacts.delete(account, Area::DocumentModels, &model_path(id)).await.map_err(|e| storage_error(&e))?;
        Ok(true)
    }
}

fn model_exists(id: &str) -> DocumentError {
    DocumentError::new(409, "Conflict", "ModelExists", format!("A model with the id '{id}' already exists."))
}

pub(crate) fn model_not_found(id: &str) -> DocumentError {
    DocumentError::new(404, "NotFound", "ModelNotFound", format!("The requested model '{id}' was not found."))
}

fn no_training_content(why: &str) -> DocumentError {
    DocumentError::new(400, "InvalidRequest", "TrainingContentMissing", format!("{why}."))
}

fn internal() -> DocumentError {
    DocumentError::new(500, "InternalServerError", "Unknown", "byos could not keep or read the model.")
}

/// A failure of the account's own storage (the model's keeping): the CMK revoked is its own code.
fn storage_error(e: &ArtifactError) -> DocumentError {
    match e {
        ArtifactError::KeyUnavailable(reason) => DocumentError::new(
            403,
            "Forbidden",
            "InvalidDataProtectionKey",
            format!("The account's customer-managed key cannot be used, so its models cannot be read: {reason}."),
        ),
        _ => internal(),
    }
}

/// A failure of the customer's storage (the training data).
fn from_storage(e: &ArtifactError) -> DocumentError {
    let mut error = DocumentError::new(
        400,
        "InvalidRequest",
        "ContentSourceNotAccessible",
        format!("The training data is not accessible: {e}."),
    );
    if let ArtifactError::Inaccessible { explanation, .. } = e {
        error.explanation = Some(explanation.clone());
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;
    use byos_document::{Line, Unit, Word};

    fn labels(name_box: [f64; 4]) -> Vec<u8> {
        let [x0, y0, x1, y1] = name_box;
        json!({"document": "form.png", "labels": [
            {"label": "Name", "value": [{"page": 1, "text": "x", "boundingBoxes": [[x0, y0, x1, y0, x1, y1, x0, y1]]}]},
        ]})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn regions_are_the_union_of_the_labeled_boxes_and_coverage_is_shared() {
        let a = read_labels(&labels([0.1, 0.2, 0.3, 0.25])).unwrap_or_else(|e| panic!("{e}"));
        let b = read_labels(&labels([0.12, 0.19, 0.35, 0.24])).unwrap_or_else(|e| panic!("{e}"));
        let learned = learn(&[a, b, BTreeMap::new()]);
        let name = &learned["Name"];
        assert_eq!((name.page, name.region), (1, [0.1, 0.19, 0.35, 0.25]));
        assert!((name.coverage - 2.0 / 3.0).abs() < 1e-9);
        assert!(
            read_labels(
                b"{\"labels\":[{\"label\":\"X\",\"value\":[{\"page\":1,\"boundingBoxes\":[[2,0,0,0,0,0,0,0]]}]}]}"
            )
            .is_err()
        );
    }

    #[test]
    fn a_field_gets_the_words_in_its_region() {
        let word = |text: &str, x: f64, y: f64| Word {
            text: text.into(),
            polygon: [x, y, x + 40.0, y, x + 40.0, y + 10.0, x, y + 10.0],
            confidence: 0.9,
        };
        let page = PageText {
            number: 1,
            width: 1000.0,
            height: 1000.0,
            unit: Unit::Pixel,
            angle: 0.0,
            words: vec![word("Name:", 100.0, 200.0), word("Ada", 300.0, 200.0), word("Lovelace", 350.0, 200.0)],
            lines: vec![Line { words: 0..3, polygon: [0.0; 8] }],
            paragraphs: vec![],
            tables: vec![],
            selection_marks: vec![],
        };
        let mut fields = BTreeMap::new();
        fields.insert("Name".to_owned(), FieldRegion { page: 1, region: [0.29, 0.19, 0.45, 0.22], coverage: 1.0 });
        let model = TemplateModel {
            model_id: "forms".into(),
            description: None,
            created: String::new(),
            api_version: "2024-11-30".into(),
            tags: Map::new(),
            fields,
            documents: 5,
            keys: Vec::new(),
            clusters: Vec::new(),
            training: Vec::new(),
            components: Vec::new(),
            anchors: Vec::new(),
        };
        let shape = crate::document_result::Shape {
            api_version: "2024-11-30".into(),
            model_id: "forms".into(),
            string_index: crate::document_result::StringIndex::TextElements,
            markdown: false,
            content_format: true,
        };
        let result = crate::document_result::analyze_result(std::slice::from_ref(&page), &shape);
        let documents = model.extract(&[page], &result);
        let name = &documents[0]["fields"]["Name"];
        assert_eq!(name["valueString"], "Ada Lovelace");
        assert_eq!(name["spans"][0], json!({"offset": 6, "length": 3}));
        assert_eq!(documents[0]["docType"], "forms");
    }

    #[test]
    fn model_ids_follow_azures_pattern() {
        assert!(valid_model_id("my-model_1.0~x"));
        for bad in ["", "a", "-model", "prebuilt-read", "has space", &"x".repeat(65)] {
            assert!(!valid_model_id(bad), "{bad:?}");
        }
    }
}
