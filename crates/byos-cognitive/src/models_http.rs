//! The model and evaluation routes of both speech to text families: custom models (`/models`,
//! v3.2 `POST /models/{id}:copyto`), the base model (`/models/base`), evaluations (`/evaluations`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use byos_authz::Action;
use byos_core::ApiError;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::LiveAccount;
use crate::dataplane::Plane;
use crate::datasets::speech_error;
use crate::evaluations::{Evaluation, NewEvaluation, Score};
use crate::models::{CustomModel, NewModel};
use crate::speech_http::{Api, FileQuery, LOCALES, Page, render, speech_account};
use crate::transcriptions_http::{BASE_MODEL_ID, bad, check_model, model_url};

const MODELS_READ: Action = Action::data("Microsoft.CognitiveServices/accounts/SpeechServices/speechrest/models/read");
const MODELS_WRITE: Action =
    Action::data("Microsoft.CognitiveServices/accounts/SpeechServices/speechrest/models/write");
const MODELS_DELETE: Action =
    Action::data("Microsoft.CognitiveServices/accounts/SpeechServices/speechrest/models/delete");
const EVALUATIONS_READ: Action =
    Action::data("Microsoft.CognitiveServices/accounts/SpeechServices/speechrest/evaluations/read");
const EVALUATIONS_WRITE: Action =
    Action::data("Microsoft.CognitiveServices/accounts/SpeechServices/speechrest/evaluations/write");
const EVALUATIONS_DELETE: Action =
    Action::data("Microsoft.CognitiveServices/accounts/SpeechServices/speechrest/evaluations/delete");
/// When byos's models stop being usable, as Azure dates them: not foreseen.
const DEPRECATION: &str = "2099-12-31T00:00:00Z";

/// The model and evaluation routes of `api`'s family.
pub(crate) fn routes(api: Api) -> Router<Plane> {
    let models = format!("{}/models", api.base());
    let evaluations = format!("{}/evaluations", api.base());
    Router::new()
        .route(&models, axum::routing::get(list_models).post(create_model))
        .route(&format!("{models}/base"), axum::routing::get(base_models))
        .route(&format!("{models}/base/{{id}}"), axum::routing::get(base_model))
        .route(&format!("{models}/{{id}}"), crate::entity_http::by_id::<CustomModel>().post(copy_to))
        .route(&format!("{models}/{{id}}/files"), axum::routing::get(model_files))
        .route(&format!("{models}/{{id}}/files/{{file}}"), axum::routing::get(model_file))
        .route(&evaluations, axum::routing::get(list_evaluations).post(create_evaluation))
        .route(&format!("{evaluations}/{{id}}"), crate::entity_http::by_id::<Evaluation>())
        .route(&format!("{evaluations}/{{id}}/files"), axum::routing::get(evaluation_files))
        .route(&format!("{evaluations}/{{id}}/files/{{file}}"), axum::routing::get(evaluation_file))
        .layer(axum::Extension(api))
}

fn properties(features: Value) -> Value {
    json!({"deprecationDates": {"adaptationDateTime": DEPRECATION, "transcriptionDateTime": DEPRECATION},
           "features": features})
}

fn base_wire(api: Api, account: &LiveAccount) -> Value {
    let features = json!({"supportsAdaptationsWith": ["Language", "Pronunciation"], "supportsTranscriptions": true,
                          "supportsEndpoints": true, "supportsTranscriptionsOnSpeechContainers": false,
                          "supportedOutputFormats": ["Display", "Lexical"]});
    json!({"self": model_url(api, account, None), "links": {"manifest": Value::Null}, "properties": properties(features),
           "locale": LOCALES[0], "displayName": "byos PocketSphinx en-US", "status": "Succeeded",
           "description": "PocketSphinx's US English model (CMU), byos's base speech to text model.",
           "createdDateTime": "2026-01-01T00:00:00Z", "lastActionDateTime": "2026-01-01T00:00:00Z"})
}

fn model_wire(api: Api, account: &LiveAccount, m: &CustomModel) -> Value {
    let features = json!({"supportsTranscriptions": true, "supportsEndpoints": true,
                          "supportsTranscriptionsOnSpeechContainers": false,
                          "supportedOutputFormats": ["Display", "Lexical"]});
    let mut properties = properties(features);
    if let Some((code, message)) = &m.error {
        properties["error"] = json!({"code": code, "message": message});
    }
    let datasets: Vec<Value> =
        m.datasets.iter().map(|d| json!({"self": api.url(account, &format!("/datasets/{d}"))})).collect();
    let mut links = json!({"files": api.url(account, &format!("/models/{}/files", m.id))});
    if api == Api::V32 {
        links["copyTo"] = json!(api.url(account, &format!("/models/{}:copyto", m.id)));
    }
    let mut wire = json!({
        "self": model_url(api, account, Some(&m.id)), "baseModel": {"self": model_url(api, account, None)},
        "datasets": datasets, "links": links, "properties": properties,
        "lastActionDateTime": m.last_action, "status": m.status, "createdDateTime": m.created,
        "locale": m.locale, "displayName": m.display_name,
    });
    if let Some(description) = &m.description {
        wire["description"] = json!(description);
    }
    if !m.custom_properties.is_empty() {
        wire["customProperties"] = json!(m.custom_properties);
    }
    wire
}

#[derive(Deserialize)]
struct EntityReference {
    #[serde(rename = "self")]
    self_url: Option<String>,
}

impl EntityReference {
    /// The id at the end of the reference's URL.
    fn id(&self) -> Option<String> {
        let url = self.self_url.as_deref()?;
        let path = url.split('?').next().unwrap_or(url).trim_end_matches('/');
        path.rsplit('/').next().map(str::to_owned)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateModelBody {
    display_name: Option<String>,
    description: Option<String>,
    #[serde(default)]
    custom_properties: Map<String, Value>,
    locale: Option<String>,
    #[serde(default)]
    datasets: Vec<EntityReference>,
    dataset: Option<EntityReference>,
    base_model: Option<EntityReference>,
}

fn locale_of(locale: Option<&str>, what: &str) -> Result<String, ApiError> {
    let locale = locale.ok_or_else(|| bad("InvalidPayload", format!("The {what}'s locale is required.")))?;
    crate::speech_http::known_locale(locale).map(str::to_owned).ok_or_else(|| {
        bad("InvalidLocale", format!("The locale '{locale}' is not supported; byos recognizes {}.", LOCALES.join(", ")))
    })
}

fn display_name(name: Option<String>, what: &str) -> Result<String, ApiError> {
    name.filter(|n| !n.trim().is_empty())
        .ok_or_else(|| bad("InvalidPayload", format!("The {what}'s displayName is required.")))
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| bad("InvalidPayload", format!("The request body is not a valid {what}: {e}.")))
}

async fn create_model(
    State(plane): State<Plane>,
    axum::Extension(api): axum::Extension<Api>,
    extensions: Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    render(
        async {
            let account = speech_account(&plane, &extensions, &headers, &MODELS_WRITE)?;
            let body: CreateModelBody = parse(&body, "model")?;
            if let Some(base) = &body.base_model
                && !base.id().is_some_and(|id| id.eq_ignore_ascii_case(BASE_MODEL_ID))
            {
                return Err(bad("InvalidModel", "baseModel is not byos's base model (GET /models/base)."));
            }
            let datasets: Vec<String> =
                body.datasets.iter().chain(body.dataset.iter()).filter_map(EntityReference::id).collect();
            let new = NewModel {
                display_name: display_name(body.display_name, "model")?,
                description: body.description,
                custom_properties: body.custom_properties,
                locale: locale_of(body.locale.as_deref(), "model")?,
                datasets,
            };
            let model = plane.service.create_model(Arc::clone(&account), new).await?;
            let wire = model_wire(api, &account, &model);
            let location = wire["self"].as_str().unwrap_or_default().to_owned();
            Ok((StatusCode::CREATED, [(header::LOCATION, location)], axum::Json(wire)).into_response())
        }
        .await,
    )
}

async fn list_models(
    State(plane): State<Plane>,
    axum::Extension(api): axum::Extension<Api>,
    extensions: Extensions,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Response {
    render(
        async {
            let account = speech_account(&plane, &extensions, &headers, &MODELS_READ)?;
            let all = plane.service.custom_models(&account).await?;
            Ok(axum::Json(page.render(api, &account, "/models", &all, |m| model_wire(api, &account, m)))
                .into_response())
        }
        .await,
    )
}

async fn base_models(
    State(plane): State<Plane>,
    axum::Extension(api): axum::Extension<Api>,
    extensions: Extensions,
    headers: HeaderMap,
) -> Response {
    render((|| {
        let account = speech_account(&plane, &extensions, &headers, &MODELS_READ)?;
        Ok(axum::Json(json!({"values": [base_wire(api, &account)]})).into_response())
    })())
}

async fn base_model(
    State(plane): State<Plane>,
    axum::Extension(api): axum::Extension<Api>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    render((|| {
        let account = speech_account(&plane, &extensions, &headers, &MODELS_READ)?;
        if !id.eq_ignore_ascii_case(BASE_MODEL_ID) {
            return Err(speech_error(404, "NotFound", format!("The base model '{id}' does not exist.")));
        }
        Ok(axum::Json(base_wire(api, &account)).into_response())
    })())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CopyBody {
    target_subscription_key: Option<String>,
}

/// `POST /models/{id}:copyto` (v3.2) with `{"targetSubscriptionKey": ...}`: the copy is made in the
/// account that key belongs to (202 with its Location, as Azure); any other POST on a model is no
/// operation.
async fn copy_to(
    State(plane): State<Plane>,
    axum::Extension(api): axum::Extension<Api>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    render(
        async {
            let Some(id) = id.strip_suffix(":copyto").filter(|_| api == Api::V32) else {
                return Err(speech_error(405, "InvalidRequest", "POST is not an operation of a model here."));
            };
            let account = speech_account(&plane, &extensions, &headers, &MODELS_WRITE)?;
            let body: CopyBody = parse(&body, "copy request")?;
            let key = body.target_subscription_key.filter(|k| !k.is_empty());
            let key = key.ok_or_else(|| bad("InvalidPayload", "targetSubscriptionKey is required."))?;
            let target = plane.service.account_with_key(&key).ok_or_else(|| {
                speech_error(401, "Unauthorized", "targetSubscriptionKey is not a key of any Speech resource.")
            })?;
            let copy = plane.service.copy_model(&account, id, &target).await?;
            let wire = model_wire(api, &target, &copy);
            let location = wire["self"].as_str().unwrap_or_default().to_owned();
            Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], axum::Json(wire)).into_response())
        }
        .await,
    )
}

async fn model_files(
    State(plane): State<Plane>,
    axum::Extension(api): axum::Extension<Api>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<FileQuery>,
) -> Response {
    render(
        async {
            let account = speech_account(&plane, &extensions, &headers, &MODELS_READ)?;
            let model = plane.service.custom_model(&account, &id).await?;
            let files = match model.status {
                crate::datasets::Status::Succeeded => vec![report_file(&plane, api, &account, &model, &query).await?],
                _ => Vec::new(),
            };
            Ok(axum::Json(json!({"values": files})).into_response())
        }
        .await,
    )
}

async fn model_file(
    State(plane): State<Plane>,
    axum::Extension(api): axum::Extension<Api>,
    extensions: Extensions,
    headers: HeaderMap,
    Path((id, file)): Path<(String, String)>,
    Query(query): Query<FileQuery>,
) -> Response {
    render(
        async {
            let account = speech_account(&plane, &extensions, &headers, &MODELS_READ)?;
            let model = plane.service.custom_model(&account, &id).await?;
            if !file.eq_ignore_ascii_case(&model.id) || model.status != crate::datasets::Status::Succeeded {
                return Err(speech_error(404, "NotFound", format!("The file '{file}' does not exist.")));
            }
            Ok(axum::Json(report_file(&plane, api, &account, &model, &query).await?).into_response())
        }
        .await,
    )
}

/// A model's one file: its training report (`ModelReport`), named by the model's id.
async fn report_file(
    plane: &Plane,
    api: Api,
    account: &LiveAccount,
    model: &CustomModel,
    query: &FileQuery,
) -> Result<Value, ApiError> {
    let link = plane
        .service
        .artifacts
        .link(
            account,
            crate::artifacts::Area::Models,
            &crate::models::report_path(&model.id),
            Duration::from_secs(query.validity()),
        )
        .await
        .map_err(|e| e.to_speech_error())?;
    Ok(json!({"self": api.url(account, &format!("/models/{}/files/{}", model.id, model.id)), "name": "report.json",
              "kind": "ModelReport", "createdDateTime": model.last_action, "links": {"contentUrl": link},
              "properties": {}}))
}

fn score_properties(scores: &[Score], error: Option<&(String, String)>) -> Value {
    let mut properties = Map::new();
    for (i, s) in scores.iter().enumerate() {
        let n = i + 1;
        properties.insert(format!("wordErrorRate{n}"), json!(s.word_error_rate()));
        properties.insert(format!("sentenceErrorRate{n}"), json!(s.sentence_error_rate()));
        properties.insert(format!("sentenceCount{n}"), json!(s.sentences));
        properties.insert(format!("wordCount{n}"), json!(s.reference_words));
        properties.insert(format!("correctWordCount{n}"), json!(s.correct));
        properties.insert(format!("wordSubstitutionCount{n}"), json!(s.substitutions));
        properties.insert(format!("wordDeletionCount{n}"), json!(s.deletions));
        properties.insert(format!("wordInsertionCount{n}"), json!(s.insertions));
    }
    if let Some((code, message)) = error {
        properties.insert("error".into(), json!({"code": code, "message": message}));
    }
    Value::Object(properties)
}

fn evaluation_wire(api: Api, account: &LiveAccount, e: &Evaluation) -> Value {
    let mut wire = json!({
        "self": api.url(account, &format!("/evaluations/{}", e.id)),
        "dataset": {"self": api.url(account, &format!("/datasets/{}", e.dataset))},
        "links": {"files": api.url(account, &format!("/evaluations/{}/files", e.id))},
        "properties": score_properties(&e.scores, e.error.as_ref()),
        "lastActionDateTime": e.last_action, "status": e.status, "createdDateTime": e.created,
        "locale": e.locale, "displayName": e.display_name,
    });
    for (i, model) in e.models.iter().enumerate() {
        wire[format!("model{}", i + 1)] = json!({"self": model_url(api, account, model.as_deref())});
    }
    if let Some(description) = &e.description {
        wire["description"] = json!(description);
    }
    if !e.custom_properties.is_empty() {
        wire["customProperties"] = json!(e.custom_properties);
    }
    wire
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateEvaluationBody {
    display_name: Option<String>,
    description: Option<String>,
    #[serde(default)]
    custom_properties: Map<String, Value>,
    locale: Option<String>,
    dataset: Option<EntityReference>,
    model1: Option<EntityReference>,
    model2: Option<EntityReference>,
}

async fn create_evaluation(
    State(plane): State<Plane>,
    axum::Extension(api): axum::Extension<Api>,
    extensions: Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    render(
        async {
            let account = speech_account(&plane, &extensions, &headers, &EVALUATIONS_WRITE)?;
            let body: CreateEvaluationBody = parse(&body, "evaluation")?;
            let dataset = body.dataset.as_ref().and_then(EntityReference::id);
            let dataset = dataset.ok_or_else(|| bad("InvalidPayload", "The evaluation's dataset is required."))?;
            let first = body.model1.as_ref().and_then(|m| m.self_url.as_deref());
            let first = first.ok_or_else(|| bad("InvalidPayload", "The evaluation's model1 is required."))?;
            let mut models = vec![check_model(&plane.service, &account, Some(first)).await?];
            if let Some(second) = body.model2.as_ref().and_then(|m| m.self_url.as_deref()) {
                models.push(check_model(&plane.service, &account, Some(second)).await?);
            }
            let new = NewEvaluation {
                display_name: display_name(body.display_name, "evaluation")?,
                description: body.description,
                custom_properties: body.custom_properties,
                locale: locale_of(body.locale.as_deref(), "evaluation")?,
                dataset,
                models,
            };
            let evaluation = plane.service.create_evaluation(Arc::clone(&account), new).await?;
            let location = api.url(&account, &format!("/evaluations/{}", evaluation.id));
            Ok((
                StatusCode::CREATED,
                [(header::LOCATION, location)],
                axum::Json(evaluation_wire(api, &account, &evaluation)),
            )
                .into_response())
        }
        .await,
    )
}

async fn list_evaluations(
    State(plane): State<Plane>,
    axum::Extension(api): axum::Extension<Api>,
    extensions: Extensions,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Response {
    render(
        async {
            let account = speech_account(&plane, &extensions, &headers, &EVALUATIONS_READ)?;
            let all = plane.service.evaluations(&account).await?;
            let body = page.render(api, &account, "/evaluations", &all, |e| evaluation_wire(api, &account, e));
            Ok(axum::Json(body).into_response())
        }
        .await,
    )
}

async fn evaluation_file_wire(
    plane: &Plane,
    api: Api,
    account: &LiveAccount,
    evaluation: &Evaluation,
    file: &crate::evaluations::EvaluationFile,
    query: &FileQuery,
) -> Result<Value, ApiError> {
    let link = plane.service.evaluation_file_link(account, file, Duration::from_secs(query.validity())).await?;
    Ok(json!({"self": api.url(account, &format!("/evaluations/{}/files/{}", evaluation.id, file.id)),
              "name": file.name, "kind": file.kind, "properties": {"size": file.size},
              "createdDateTime": file.created, "links": {"contentUrl": link}}))
}

async fn evaluation_files(
    State(plane): State<Plane>,
    axum::Extension(api): axum::Extension<Api>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<FileQuery>,
) -> Response {
    render(
        async {
            let account = speech_account(&plane, &extensions, &headers, &EVALUATIONS_READ)?;
            let evaluation = plane.service.evaluation(&account, &id).await?;
            let mut values = Vec::new();
            for file in &evaluation.files {
                values.push(evaluation_file_wire(&plane, api, &account, &evaluation, file, &query).await?);
            }
            Ok(axum::Json(json!({"values": values})).into_response())
        }
        .await,
    )
}

async fn evaluation_file(
    State(plane): State<Plane>,
    axum::Extension(api): axum::Extension<Api>,
    extensions: Extensions,
    headers: HeaderMap,
    Path((id, file_id)): Path<(String, String)>,
    Query(query): Query<FileQuery>,
) -> Response {
    render(
        async {
            let account = speech_account(&plane, &extensions, &headers, &EVALUATIONS_READ)?;
            let evaluation = plane.service.evaluation(&account, &id).await?;
            let file = evaluation
                .files
                .iter()
                .find(|f| f.id.eq_ignore_ascii_case(&file_id))
                .ok_or_else(|| speech_error(404, "NotFound", format!("The file '{file_id}' does not exist.")))?;
            Ok(axum::Json(evaluation_file_wire(&plane, api, &account, &evaluation, file, &query).await?)
                .into_response())
        }
        .await,
    )
}

crate::entity_http::speech_entity!(CustomModel {
    actions: (MODELS_READ, MODELS_WRITE, MODELS_DELETE),
    update: "model update",
    service: (custom_model, update_model, delete_model),
    wire: model_wire,
});

crate::entity_http::speech_entity!(Evaluation {
    actions: (EVALUATIONS_READ, EVALUATIONS_WRITE, EVALUATIONS_DELETE),
    update: "evaluation update",
    service: (evaluation, update_evaluation, delete_evaluation),
    wire: evaluation_wire,
});
