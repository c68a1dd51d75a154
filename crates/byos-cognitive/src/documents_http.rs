//! Document Intelligence analyze over HTTP: parse, call [`crate::documents`], render. One account
//! (kinds FormRecognizer and CognitiveServices) serves both families the clients use:
//! `/documentintelligence` (`DocumentIntelligenceClient`, 2024-11-30; also 2023-07-31 there) and
//! `/formrecognizer` (`DocumentAnalysisClient`, 2023-07-31 and 2022-08-31).
//!
//! `POST …/documentModels/{modelId}:analyze` answers 202 with an absolute `Operation-Location`
//! and `Retry-After: 1` (the v4 client polls every 30 s without it); `GET …/analyzeResults/{id}`
//! the operation; v4 `DELETE` forgets it. Errors are `{"error":{"code","message","innererror"}}`.

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use byos_authz::Action;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::account::Kind;
use crate::dataplane::{Plane, admitted};
use crate::document_models::{BuildRequest, ComposeRequest, NewModel, model_not_found};
use crate::document_result::{Shape, StringIndex};
use crate::documents::{AnalyzeRequest, DocumentError, PREBUILT_MODELS, Source, Status, parse_pages};
use crate::{CognitiveService, LiveAccount};

const ANALYZE: Action =
    Action::data("Microsoft.CognitiveServices/accounts/FormRecognizer/documentmodels:analyze/action");
const READ_RESULT: Action =
    Action::data("Microsoft.CognitiveServices/accounts/FormRecognizer/documentmodels/analyzeresults/read");
const DELETE_RESULT: Action =
    Action::data("Microsoft.CognitiveServices/accounts/FormRecognizer/documentmodels/analyzeresults/delete");
/// The largest request: a 500 MB document as base64 in JSON.
const MAX_BODY_BYTES: usize = 700 << 20;
/// The features byos honours (`ocrHighResolution`: Tesseract reads at the page's full resolution anyway).
const FEATURES: [&str; 1] = ["ocrHighResolution"];

/// Which family a route belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// `/documentintelligence`
    Intelligence,
    /// `/formrecognizer`
    Recognizer,
}

impl Family {
    fn base(self) -> &'static str {
        match self {
            Family::Intelligence => "/documentintelligence",
            Family::Recognizer => "/formrecognizer",
        }
    }

    fn versions(self) -> &'static [&'static str] {
        match self {
            Family::Intelligence => &["2024-11-30", "2023-07-31", "2022-08-31"],
            Family::Recognizer => &["2023-07-31", "2022-08-31"],
        }
    }
}

pub(crate) fn routes() -> Router<Plane> {
    let mut router = Router::new();
    for family in [Family::Intelligence, Family::Recognizer] {
        let base = family.base();
        router = router
            .route(
                &format!("{base}/documentModels/{{model}}"),
                axum::routing::post(move |s, e, h, p, q, b| analyze(family, s, e, h, p, q, b))
                    .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
                    .get(move |s, e, h, p, q| get_model(family, s, e, h, p, q))
                    .delete(move |s, e, h, p, q| delete_model(family, s, e, h, p, q)),
            )
            .route(
                &format!("{base}/documentModels:build"),
                axum::routing::post(move |s, e, h, q, b| build(family, s, e, h, q, b)),
            )
            .route(
                &format!("{base}/documentModels"),
                axum::routing::get(move |s, e, h, q| list_models(family, s, e, h, q)),
            )
            .route(
                &format!("{base}/documentModels:compose"),
                axum::routing::post(move |s, e, h, q, b| compose(family, s, e, h, q, b)),
            )
            .route(
                &format!("{base}/documentModels:authorizeCopy"),
                axum::routing::post(move |s, e, h, q, b| authorize_copy(family, s, e, h, q, b)),
            )
            .route(
                &format!("{base}/operations/{{id}}"),
                axum::routing::get(move |s, e, h, p, q| operation(family, s, e, h, p, q)),
            )
            .route(
                &format!("{base}/documentModels/{{model}}/analyzeResults/{{id}}"),
                axum::routing::get(move |s, e, h, p, q| result(family, s, e, h, p, q))
                    .delete(move |s, e, h, p, q| delete(family, s, e, h, p, q)),
            );
    }
    router
        .route(
            "/formrecognizer/v2.1/layout/analyze",
            axum::routing::post(v2_analyze).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
        )
        .route("/formrecognizer/v2.1/layout/analyzeResults/{id}", axum::routing::get(v2_result))
        .route("/formrecognizer/v2.1/custom/models", axum::routing::post(v2_train).get(v2_list_models))
        .route("/formrecognizer/v2.1/custom/models/compose", axum::routing::post(v2_compose))
        .route("/formrecognizer/v2.1/custom/models/copyAuthorization", axum::routing::post(v2_copy_authorization))
        .route("/formrecognizer/v2.1/custom/models/{model}/copy", axum::routing::post(v2_copy))
        .route("/formrecognizer/v2.1/custom/models/{model}/copyResults/{id}", axum::routing::get(v2_copy_result))
        .route("/formrecognizer/v2.1/custom/models/{model}", axum::routing::get(v2_get_model).delete(v2_delete_model))
        .route(
            "/formrecognizer/v2.1/custom/models/{model}/analyze",
            axum::routing::post(v2_analyze_custom).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
        )
        .route("/formrecognizer/v2.1/custom/models/{model}/analyzeResults/{id}", axum::routing::get(v2_custom_result))
}

#[derive(Deserialize)]
struct AnalyzeQuery {
    #[serde(rename = "api-version")]
    api_version: Option<String>,
    pages: Option<String>,
    #[serde(rename = "stringIndexType")]
    string_index_type: Option<String>,
    #[serde(rename = "outputContentFormat")]
    output_content_format: Option<String>,
    features: Option<String>,
}

#[derive(Deserialize)]
struct VersionQuery {
    #[serde(rename = "api-version")]
    api_version: Option<String>,
}

fn render(outcome: Result<Response, DocumentError>) -> Response {
    outcome.unwrap_or_else(|e| {
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
        (status, [("x-ms-error-code", e.code)], axum::Json(e.body())).into_response()
    })
}

/// A request's JSON body.
fn json_body(body: &[u8]) -> Result<Value, DocumentError> {
    serde_json::from_slice(body)
        .map_err(|e| invalid("InvalidParameter", format!("The request body is not valid JSON: {e}.")))
}

fn invalid(inner: &'static str, message: impl Into<String>) -> DocumentError {
    DocumentError::new(400, "InvalidArgument", inner, message)
}

/// The api-version, checked against the family's.
fn version(family: Family, asked: Option<&str>) -> Result<String, DocumentError> {
    let Some(asked) = asked else {
        return Err(invalid("ParameterMissing", "The api-version query parameter is required."));
    };
    if !family.versions().contains(&asked) {
        let supported = family.versions().join(", ");
        return Err(DocumentError::new(
            404,
            "NotFound",
            "NotSupportedApiVersion",
            format!("The API version '{asked}' is not supported on {}; use one of {supported}.", family.base()),
        ));
    }
    Ok(asked.to_owned())
}

/// The account, when it serves Document Intelligence, with the caller admitted for `action`.
fn document_account(
    plane: &Plane,
    extensions: &Extensions,
    headers: &HeaderMap,
    action: &Action,
) -> Result<std::sync::Arc<LiveAccount>, DocumentError> {
    let account = admitted(plane, extensions, headers, action).map_err(|e| {
        let (code, inner) = match e.status {
            401 => ("Unauthorized", "Unauthorized"),
            404 => ("NotFound", "ResourceNotFound"),
            _ => ("Forbidden", "AuthorizationFailed"),
        };
        let mut error = DocumentError::new(e.status, code, inner, e.message.clone());
        error.explanation = e.additional_info.first().map(|info| info["info"].clone());
        error
    })?;
    match account.settings.kind {
        Kind::FormRecognizer | Kind::CognitiveServices => Ok(account),
        Kind::SpeechServices => Err(DocumentError::new(404, "NotFound", "ResourceNotFound", "Resource not found.")),
    }
}

async fn analyze(
    family: Family,
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(segment): Path<String>,
    Query(query): Query<AnalyzeQuery>,
    body: Bytes,
) -> Response {
    render(
        async {
            if let Some(model) = segment.strip_suffix(":copyTo") {
                return copy_to(family, &plane, &extensions, &headers, model, &query, &body).await;
            }
            let Some(model) = segment.strip_suffix(":analyze") else {
                return Err(DocumentError::new(404, "NotFound", "ResourceNotFound", "Resource not found."));
            };
            let account = document_account(&plane, &extensions, &headers, &ANALYZE)?;
            let api_version = version(family, query.api_version.as_deref())?;
            let custom = match PREBUILT_MODELS.contains(&model) {
                true => None,
                false => {
                    Some(plane.service.document_model(&account, model).await?.ok_or_else(|| model_not_found(model))?)
                }
            };
            let mut request = analyze_request(family, model, &api_version, &query, &headers, body)?;
            request.model = custom.map(std::sync::Arc::new);
            let id = plane.service.start_analysis(account.clone(), request);
            let location = format!(
                "{}{}/documentModels/{model}/analyzeResults/{id}?api-version={api_version}",
                CognitiveService::endpoint(account.settings.port).trim_end_matches('/'),
                family.base()
            );
            Ok((
                StatusCode::ACCEPTED,
                [("operation-location", location), (header::RETRY_AFTER.as_str(), "1".into()), ("apim-request-id", id)],
            )
                .into_response())
        }
        .await,
    )
}

/// The request as the query and body describe it.
fn analyze_request(
    family: Family,
    model: &str,
    api_version: &str,
    query: &AnalyzeQuery,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<AnalyzeRequest, DocumentError> {
    let v4 = family == Family::Intelligence && api_version == "2024-11-30";
    let string_index = match query.string_index_type.as_deref() {
        None => StringIndex::TextElements,
        Some(name) => StringIndex::parse(name).ok_or_else(|| {
            invalid("InvalidParameter", format!("The parameter stringIndexType '{name}' is invalid."))
        })?,
    };
    let markdown = match query.output_content_format.as_deref() {
        None | Some("text") => false,
        Some("markdown") if v4 && model == "prebuilt-layout" => true,
        Some("markdown") => {
            return Err(invalid(
                "InvalidParameter",
                "outputContentFormat=markdown is available for prebuilt-layout in 2024-11-30.",
            ));
        }
        Some(other) => {
            return Err(invalid(
                "InvalidParameter",
                format!("The parameter outputContentFormat '{other}' is invalid."),
            ));
        }
    };
    if let Some(features) = &query.features {
        let unsupported: Vec<&str> = features.split(',').map(str::trim).filter(|f| !FEATURES.contains(f)).collect();
        if !unsupported.is_empty() {
            return Err(invalid(
                "InvalidParameter",
                format!(
                    "byos does not extract the features {}; it supports {}.",
                    unsupported.join(", "),
                    FEATURES.join(", ")
                ),
            ));
        }
    }
    let pages = query.pages.as_deref().map(parse_pages).transpose()?;
    let source = source(headers, body)?;
    let shape = Shape {
        api_version: api_version.to_owned(),
        model_id: model.to_owned(),
        string_index,
        markdown,
        content_format: v4,
    };
    Ok(AnalyzeRequest { source, pages, shape, model: None })
}

/// The document: JSON `urlSource` / `base64Source`, or the body's own bytes (sniffed: the v4
/// client sends every document as `application/octet-stream`).
fn source(headers: &HeaderMap, body: Bytes) -> Result<Source, DocumentError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("application/json"));
    let bytes = if json {
        let value: Value = json_body(&body)?;
        if let Some(url) = value["urlSource"].as_str() {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(invalid(
                    "InvalidContentSourceFormat",
                    "Invalid content source: urlSource must be an absolute http(s) URL.",
                ));
            }
            return Ok(Source::Url(url.to_owned()));
        }
        let Some(encoded) = value["base64Source"].as_str() else {
            return Err(invalid("ParameterMissing", "The request has neither urlSource nor base64Source."));
        };
        Bytes::from(base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| {
            invalid("InvalidContentSourceFormat", "Invalid content source: base64Source is not valid base64.")
        })?)
    } else {
        body
    };
    if bytes.is_empty() {
        return Err(DocumentError::new(400, "InvalidRequest", "InvalidContentLength", "The document is empty."));
    }
    if byos_document::sniff(&bytes).is_none() {
        return Err(DocumentError::new(
            400,
            "InvalidRequest",
            "UnsupportedContent",
            "The content is not a supported document: byos reads PDF, JPEG, PNG, BMP and TIFF.",
        ));
    }
    Ok(Source::Bytes(bytes))
}

fn result_not_found(id: &str) -> DocumentError {
    DocumentError::new(404, "NotFound", "OperationNotFound", format!("The analyze result '{id}' was not found."))
}

/// What every poll answers: the status and its times.
fn poll_body(analysis: &crate::documents::Analysis) -> Value {
    json!({"status": analysis.status.name(), "createdDateTime": analysis.created,
           "lastUpdatedDateTime": analysis.updated})
}

async fn result(
    family: Family,
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Path((model, id)): Path<(String, String)>,
    Query(query): Query<VersionQuery>,
) -> Response {
    render((|| {
        let account = document_account(&plane, &extensions, &headers, &READ_RESULT)?;
        version(family, query.api_version.as_deref())?;
        let analysis = plane
            .service
            .analysis(&account, &id)
            .filter(|a| a.model_id == model)
            .ok_or_else(|| result_not_found(&id))?;
        let mut body = poll_body(&analysis);
        if let Some(result) = analysis.result() {
            body["analyzeResult"] = result;
        }
        if let Some(error) = &analysis.error {
            body["error"] = error.body()["error"].take();
        }
        let retry = if analysis.status == Status::Running { Some([(header::RETRY_AFTER, "1")]) } else { None };
        Ok(match retry {
            Some(retry) => (retry, axum::Json(body)).into_response(),
            None => axum::Json(body).into_response(),
        })
    })())
}

async fn delete(
    family: Family,
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Path((_model, id)): Path<(String, String)>,
    Query(query): Query<VersionQuery>,
) -> Response {
    render((|| {
        let account = document_account(&plane, &extensions, &headers, &DELETE_RESULT)?;
        let api_version = version(family, query.api_version.as_deref())?;
        if family != Family::Intelligence || api_version != "2024-11-30" {
            return Err(DocumentError::new(
                405,
                "MethodNotAllowed",
                "MethodNotAllowed",
                "Deleting an analyze result needs 2024-11-30.",
            ));
        }
        match plane.service.delete_analysis(&account, &id) {
            true => Ok(StatusCode::NO_CONTENT.into_response()),
            false => Err(result_not_found(&id)),
        }
    })())
}

// ---- Form Recognizer v2.1 (`FormRecognizerClient(api_version="2.1")`): layout ------------------------------

#[derive(Deserialize)]
struct V2Query {
    pages: Option<String>,
}

/// v2.1 errors: `{"error":{"code","message"}}` with v2's codes.
fn render_v2(outcome: Result<Response, DocumentError>) -> Response {
    outcome.unwrap_or_else(|e| {
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
        (status, axum::Json(json!({"error": e.v2_body()}))).into_response()
    })
}

async fn v2_analyze(
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Query(query): Query<V2Query>,
    body: Bytes,
) -> Response {
    render_v2((|| {
        let account = document_account(&plane, &extensions, &headers, &ANALYZE)?;
        let pages = query.pages.as_deref().map(parse_pages).transpose()?;
        let source = v2_source(&headers, body)?;
        let shape = Shape {
            api_version: "2.1".into(),
            model_id: "prebuilt-layout".into(),
            string_index: StringIndex::TextElements,
            markdown: false,
            content_format: false,
        };
        let id = plane.service.start_analysis(account.clone(), AnalyzeRequest { source, pages, shape, model: None });
        let location = format!(
            "{}/formrecognizer/v2.1/layout/analyzeResults/{id}",
            CognitiveService::endpoint(account.settings.port).trim_end_matches('/')
        );
        Ok((StatusCode::ACCEPTED, [("operation-location", location), ("apim-request-id", id)]).into_response())
    })())
}

/// v2.1's document: JSON `{"source": url}` or the bytes themselves.
fn v2_source(headers: &HeaderMap, body: Bytes) -> Result<Source, DocumentError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("application/json"));
    if !json {
        return source(headers, body);
    }
    let value: Value = json_body(&body)?;
    match value["source"].as_str() {
        Some(url) if url.starts_with("https://") || url.starts_with("http://") => Ok(Source::Url(url.to_owned())),
        Some(_) => Err(invalid("InvalidContentSourceFormat", "The source is not a valid absolute http(s) URL.")),
        None => Err(invalid("ParameterMissing", "The request has no source.")),
    }
}

async fn v2_result(
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    render_v2((|| {
        let account = document_account(&plane, &extensions, &headers, &READ_RESULT)?;
        let analysis = plane
            .service
            .analysis(&account, &id)
            .filter(|a| a.shape.api_version == "2.1")
            .ok_or_else(|| result_not_found(&id))?;
        let mut body = poll_body(&analysis);
        if let Some(pages) = &analysis.pages {
            body["analyzeResult"] = crate::document_result::v2_analyze_result(pages);
        }
        if let Some(error) = &analysis.error {
            body["analyzeResult"] = json!({"version": "2.1.0", "readResults": [], "errors": [error.v2_body()]});
        }
        Ok(axum::Json(body).into_response())
    })())
}

// ---- custom template models: build, operations, get, list, delete ------------------------------------------

const READ_MODEL: Action = Action::data("Microsoft.CognitiveServices/accounts/FormRecognizer/documentmodels/read");
const WRITE_MODEL: Action = Action::data("Microsoft.CognitiveServices/accounts/FormRecognizer/documentmodels/write");
const DELETE_MODEL: Action = Action::data("Microsoft.CognitiveServices/accounts/FormRecognizer/documentmodels/delete");
/// When the prebuilt models were made, as their details say.
const PREBUILT_CREATED: &str = "2024-11-30T00:00:00Z";

fn base_url(account: &LiveAccount, family: Family) -> String {
    format!("{}{}", CognitiveService::endpoint(account.settings.port).trim_end_matches('/'), family.base())
}

fn prebuilt_details(model: &str, api_version: &str) -> Value {
    let description = match model {
        "prebuilt-read" => "Extract text from documents.",
        _ => "Extract text and layout information from documents.",
    };
    json!({"modelId": model, "description": description, "createdDateTime": PREBUILT_CREATED, "apiVersion": api_version})
}

async fn build(
    family: Family,
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Query(query): Query<VersionQuery>,
    body: Bytes,
) -> Response {
    render(
        async {
            let account = document_account(&plane, &extensions, &headers, &WRITE_MODEL)?;
            let api_version = version(family, query.api_version.as_deref())?;
            let request = build_request(&body, &api_version)?;
            let id = plane.service.start_build(account.clone(), request).await?;
            Ok(operation_accepted(&account, family, &id, &api_version))
        }
        .await,
    )
}

/// 202 with the model operation to poll.
fn operation_accepted(account: &LiveAccount, family: Family, id: &str, api_version: &str) -> Response {
    let location = format!("{}/operations/{id}?api-version={api_version}", base_url(account, family));
    (StatusCode::ACCEPTED, [("operation-location", location), (header::RETRY_AFTER.as_str(), "1".into())])
        .into_response()
}

/// The model a v3/v4 body asks for (`description`, `tags`).
fn new_model(value: &Value, model_id: &str, api_version: &str) -> NewModel {
    let tags = value["tags"].as_object().cloned().unwrap_or_default();
    NewModel::named(model_id, value["description"].as_str(), tags, api_version)
}

/// The component model ids of a compose request (`field` names them: 2 to 200).
fn component_ids<'a>(named: impl Iterator<Item = &'a Value>, field: &str) -> Result<Vec<String>, DocumentError> {
    let components: Vec<String> = named.filter_map(|id| id.as_str().map(str::to_owned)).collect();
    match components.len() {
        2..=200 => Ok(components),
        _ => Err(invalid("InvalidParameter", format!("{field} must name 2 to 200 models."))),
    }
}

fn build_request(body: &[u8], api_version: &str) -> Result<BuildRequest, DocumentError> {
    let value: Value = json_body(body)?;
    let model_id = value["modelId"].as_str().ok_or_else(|| invalid("ParameterMissing", "The modelId is required."))?;
    if !crate::document_models::valid_model_id(model_id) {
        return Err(invalid(
            "InvalidParameter",
            format!(
                "The modelId '{model_id}' is invalid: 2-64 letters, digits and ._~- starting with a letter or digit, not prebuilt-."
            ),
        ));
    }
    match value["buildMode"].as_str() {
        Some("template") => {}
        Some("neural") => {
            return Err(invalid(
                "InvalidParameter",
                "byos builds template models only: neural models are not available.",
            ));
        }
        _ => return Err(invalid("InvalidParameter", "The buildMode must be template.")),
    }
    let source = &value["azureBlobSource"];
    let Some(container_url) = source["containerUrl"].as_str() else {
        let other = if value["azureBlobFileListSource"].is_object() {
            " (azureBlobFileListSource is not supported)"
        } else {
            ""
        };
        return Err(invalid("ParameterMissing", format!("The azureBlobSource.containerUrl is required{other}.")));
    };
    if !container_url.starts_with("https://") {
        return Err(invalid("InvalidContentSourceFormat", "The containerUrl must be an absolute https URL."));
    }
    Ok(BuildRequest {
        model: new_model(&value, model_id, api_version),
        container_url: container_url.to_owned(),
        prefix: source["prefix"].as_str().unwrap_or_default().to_owned(),
        labeled: true,
        include_subfolders: true,
    })
}

async fn operation(
    family: Family,
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<VersionQuery>,
) -> Response {
    render((|| {
        let account = document_account(&plane, &extensions, &headers, &READ_MODEL)?;
        let api_version = version(family, query.api_version.as_deref())?;
        let op = plane.service.model_operation(&account, &id).ok_or_else(|| {
            DocumentError::new(404, "NotFound", "OperationNotFound", format!("The operation '{id}' was not found."))
        })?;
        let port = op.target_port.unwrap_or(account.settings.port);
        let base = format!("{}{}", CognitiveService::endpoint(port).trim_end_matches('/'), family.base());
        let resource = format!("{base}/documentModels/{}?api-version={api_version}", op.model_id);
        let mut body = json!({"operationId": id, "status": op.status, "createdDateTime": op.created,
                              "lastUpdatedDateTime": op.updated, "kind": op.kind,
                              "resourceLocation": resource, "apiVersion": op.api_version, "tags": op.tags,
                              "percentCompleted": if op.status == "running" { 0 } else { 100 }});
        if let Some(model) = &op.result {
            body["result"] = model.details();
        }
        if let Some(error) = &op.error {
            body["error"] = error.body()["error"].take();
        }
        Ok(axum::Json(body).into_response())
    })())
}

async fn get_model(
    family: Family,
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(model): Path<String>,
    Query(query): Query<VersionQuery>,
) -> Response {
    render(
        async {
            let account = document_account(&plane, &extensions, &headers, &READ_MODEL)?;
            let api_version = version(family, query.api_version.as_deref())?;
            if PREBUILT_MODELS.contains(&model.as_str()) {
                return Ok(axum::Json(prebuilt_details(&model, &api_version)).into_response());
            }
            let found = plane.service.document_model(&account, &model).await?.ok_or_else(|| model_not_found(&model))?;
            Ok(axum::Json(found.details()).into_response())
        }
        .await,
    )
}

async fn list_models(
    family: Family,
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Query(query): Query<VersionQuery>,
) -> Response {
    render(
        async {
            let account = document_account(&plane, &extensions, &headers, &READ_MODEL)?;
            let api_version = version(family, query.api_version.as_deref())?;
            let mut value: Vec<Value> = PREBUILT_MODELS.iter().map(|m| prebuilt_details(m, &api_version)).collect();
            for id in plane.service.document_model_ids(&account).await? {
                if let Some(model) = plane.service.document_model(&account, &id).await? {
                    value.push(model.details());
                }
            }
            Ok(axum::Json(json!({"value": value})).into_response())
        }
        .await,
    )
}

async fn delete_model(
    family: Family,
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(model): Path<String>,
    Query(query): Query<VersionQuery>,
) -> Response {
    render(
        async {
            let account = document_account(&plane, &extensions, &headers, &DELETE_MODEL)?;
            version(family, query.api_version.as_deref())?;
            if PREBUILT_MODELS.contains(&model.as_str()) {
                return Err(DocumentError::new(
                    400,
                    "InvalidRequest",
                    "ModelReadOnly",
                    format!("The model '{model}' is prebuilt and cannot be deleted."),
                ));
            }
            match plane.service.delete_document_model(&account, &model).await? {
                true => Ok(StatusCode::NO_CONTENT.into_response()),
                false => Err(model_not_found(&model)),
            }
        }
        .await,
    )
}

// ---- v2.1 custom models (`FormTrainingClient` / `FormRecognizerClient`, api_version 2.1) ---------------------

#[derive(Deserialize)]
struct V2ModelQuery {
    #[serde(rename = "includeKeys")]
    include_keys: Option<bool>,
    op: Option<String>,
}

fn v2_base(account: &LiveAccount) -> String {
    format!("{}/formrecognizer/v2.1", CognitiveService::endpoint(account.settings.port).trim_end_matches('/'))
}

async fn v2_train(State(plane): State<Plane>, extensions: Extensions, headers: HeaderMap, body: Bytes) -> Response {
    render_v2(
        async {
            let account = document_account(&plane, &extensions, &headers, &WRITE_MODEL)?;
            let value: Value = json_body(&body)?;
            let Some(source) = value["source"].as_str().filter(|s| s.starts_with("https://")) else {
                return Err(invalid(
                    "InvalidContentSourceFormat",
                    "The source must be an absolute https container URL.",
                ));
            };
            let filter = &value["sourceFilter"];
            let request = BuildRequest {
                model: NewModel::v2(value["modelName"].as_str()),
                container_url: source.to_owned(),
                prefix: filter["prefix"].as_str().unwrap_or_default().to_owned(),
                labeled: value["useLabelFile"].as_bool().unwrap_or(false),
                include_subfolders: filter["includeSubFolders"].as_bool().unwrap_or(false),
            };
            let id = plane.service.start_build(account.clone(), request).await?;
            let location = format!("{}/custom/models/{id}", v2_base(&account));
            Ok((StatusCode::CREATED, [(header::LOCATION, location)]).into_response())
        }
        .await,
    )
}

async fn v2_get_model(
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(model): Path<String>,
    Query(query): Query<V2ModelQuery>,
) -> Response {
    render_v2(
        async {
            let account = document_account(&plane, &extensions, &headers, &READ_MODEL)?;
            if let Some(op) = plane.service.model_operation(&account, &model).filter(|op| op.status != "succeeded") {
                let name = op.result.as_ref().and_then(|m| m.description.as_deref());
                let status = if op.status == "running" { "creating" } else { "invalid" };
                let mut body = json!({"modelInfo": crate::document_models::v2_model_info(&model, status, &op.created, &op.updated, name)});
                if let Some(error) = &op.error {
                    body["trainResult"] = json!({"trainingDocuments": [], "errors": [error.v2_body()]});
                }
                return Ok(axum::Json(body).into_response());
            }
            let found = plane.service.document_model(&account, &model).await?.ok_or_else(|| model_not_found(&model))?;
            Ok(axum::Json(found.v2_model(query.include_keys.unwrap_or(false))).into_response())
        }
        .await,
    )
}

async fn v2_list_models(
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Query(query): Query<V2ModelQuery>,
) -> Response {
    render_v2(
        async {
            let account = document_account(&plane, &extensions, &headers, &READ_MODEL)?;
            let ids = plane.service.document_model_ids(&account).await?;
            if query.op.as_deref() == Some("summary") {
                let summary =
                    json!({"count": ids.len(), "limit": 5000, "lastUpdatedDateTime": crate::documents::now()});
                return Ok(axum::Json(json!({"summary": summary})).into_response());
            }
            let mut list = Vec::new();
            for id in ids {
                if let Some(model) = plane.service.document_model(&account, &id).await? {
                    list.push(model.v2_model(false)["modelInfo"].take());
                }
            }
            Ok(axum::Json(json!({"modelList": list, "nextLink": ""})).into_response())
        }
        .await,
    )
}

async fn v2_delete_model(
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(model): Path<String>,
) -> Response {
    render_v2(
        async {
            let account = document_account(&plane, &extensions, &headers, &DELETE_MODEL)?;
            match plane.service.delete_document_model(&account, &model).await? {
                true => Ok(StatusCode::NO_CONTENT.into_response()),
                false => Err(model_not_found(&model)),
            }
        }
        .await,
    )
}

async fn v2_analyze_custom(
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(model): Path<String>,
    Query(query): Query<V2Query>,
    body: Bytes,
) -> Response {
    render_v2(
        async {
            let account = document_account(&plane, &extensions, &headers, &ANALYZE)?;
            let found = plane.service.document_model(&account, &model).await?.ok_or_else(|| model_not_found(&model))?;
            let pages = query.pages.as_deref().map(parse_pages).transpose()?;
            let source = v2_source(&headers, body)?;
            let shape = Shape {
                api_version: "2.1".into(),
                model_id: model.clone(),
                string_index: StringIndex::TextElements,
                markdown: false,
                content_format: false,
            };
            let request = AnalyzeRequest { source, pages, shape, model: Some(std::sync::Arc::new(found)) };
            let id = plane.service.start_analysis(account.clone(), request);
            let location = format!("{}/custom/models/{model}/analyzeResults/{id}", v2_base(&account));
            Ok((StatusCode::ACCEPTED, [("operation-location", location), ("apim-request-id", id)]).into_response())
        }
        .await,
    )
}

async fn v2_custom_result(
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Path((model, id)): Path<(String, String)>,
) -> Response {
    render_v2((|| {
        let account = document_account(&plane, &extensions, &headers, &READ_RESULT)?;
        let analysis = plane
            .service
            .analysis(&account, &id)
            .filter(|a| a.shape.api_version == "2.1" && a.model_id == model)
            .ok_or_else(|| result_not_found(&id))?;
        let mut body = poll_body(&analysis);
        if let (Some(pages), Some(custom)) = (&analysis.pages, analysis.model()) {
            let mut result = crate::document_result::v2_analyze_result(pages);
            match custom.keys.is_empty() {
                true => {
                    result["documentResults"] =
                        custom.v2_document_results(pages, &analysis.result().unwrap_or_default())
                }
                false => result["pageResults"] = custom.v2_page_results(pages),
            }
            body["analyzeResult"] = result;
        }
        if let Some(error) = &analysis.error {
            body["analyzeResult"] = json!({"version": "2.1.0", "readResults": [], "errors": [error.v2_body()]});
        }
        Ok(axum::Json(body).into_response())
    })())
}

async fn authorize_copy(
    family: Family,
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Query(query): Query<VersionQuery>,
    body: Bytes,
) -> Response {
    render(
        async {
            let account = document_account(&plane, &extensions, &headers, &WRITE_MODEL)?;
            let api_version = version(family, query.api_version.as_deref())?;
            let value: Value = json_body(&body)?;
            let model_id = value["modelId"].as_str().filter(|id| crate::document_models::valid_model_id(id));
            let model_id = model_id.ok_or_else(|| invalid("InvalidParameter", "A valid modelId is required."))?;
            let description = value["description"].as_str().map(str::to_owned);
            let tags = value["tags"].as_object().cloned().unwrap_or_default();
            let granted = plane.service.authorize_copy(&account, model_id, description, tags).await?;
            let location =
                format!("{}/documentModels/{model_id}?api-version={api_version}", base_url(&account, family));
            let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
            Ok(axum::Json(json!({
                "targetResourceId": account.id, "targetResourceRegion": account.location,
                "targetModelId": model_id, "targetModelLocation": location, "accessToken": granted.token,
                "expirationDateTime": granted.expires.format(&format).unwrap_or_default(),
            }))
            .into_response())
        }
        .await,
    )
}

async fn copy_to(
    family: Family,
    plane: &Plane,
    extensions: &Extensions,
    headers: &HeaderMap,
    model: &str,
    query: &AnalyzeQuery,
    body: &[u8],
) -> Result<Response, DocumentError> {
    let account = document_account(plane, extensions, headers, &WRITE_MODEL)?;
    let api_version = version(family, query.api_version.as_deref())?;
    let value: Value = json_body(body)?;
    let field = |name: &str| {
        value[name]
            .as_str()
            .ok_or_else(|| invalid("ParameterMissing", format!("The copy authorization has no {name}.")))
    };
    let target = (field("targetResourceId")?, field("targetModelId")?, field("accessToken")?);
    let id = plane.service.start_copy(account.clone(), model, target, &api_version).await?;
    Ok(operation_accepted(&account, family, &id, &api_version))
}

/// `documentModels:compose` with `componentModels` (2023-07-31); 2024-11-30 composes through a
/// document classifier, which byos does not have.
async fn compose(
    family: Family,
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Query(query): Query<VersionQuery>,
    body: Bytes,
) -> Response {
    render(
        async {
            let account = document_account(&plane, &extensions, &headers, &WRITE_MODEL)?;
            let api_version = version(family, query.api_version.as_deref())?;
            let value: Value = json_body(&body)?;
            if value["classifierId"].is_string() || api_version == "2024-11-30" {
                return Err(invalid(
                    "InvalidParameter",
                    "Composing with a document classifier (2024-11-30) is not available: byos has no classifiers; compose with componentModels in 2023-07-31.",
                ));
            }
            let model_id = value["modelId"].as_str().filter(|id| crate::document_models::valid_model_id(id));
            let model_id = model_id.ok_or_else(|| invalid("InvalidParameter", "A valid modelId is required."))?;
            let named = value["componentModels"].as_array().into_iter().flatten().map(|c| &c["modelId"]);
            let components = component_ids(named, "componentModels")?;
            let request = ComposeRequest { model: new_model(&value, model_id, &api_version), components };
            let id = plane.service.start_compose(account.clone(), request).await?;
            Ok(operation_accepted(&account, family, &id, &api_version))
        }
        .await,
    )
}

async fn v2_compose(State(plane): State<Plane>, extensions: Extensions, headers: HeaderMap, body: Bytes) -> Response {
    render_v2(
        async {
            let account = document_account(&plane, &extensions, &headers, &WRITE_MODEL)?;
            let value: Value = json_body(&body)?;
            let components = component_ids(value["modelIds"].as_array().into_iter().flatten(), "modelIds")?;
            let request = ComposeRequest { model: NewModel::v2(value["modelName"].as_str()), components };
            let id = plane.service.start_compose(account.clone(), request).await?;
            Ok((StatusCode::CREATED, [(header::LOCATION, format!("{}/custom/models/{id}", v2_base(&account)))])
                .into_response())
        }
        .await,
    )
}

async fn v2_copy_authorization(State(plane): State<Plane>, extensions: Extensions, headers: HeaderMap) -> Response {
    render_v2(
        async {
            let account = document_account(&plane, &extensions, &headers, &WRITE_MODEL)?;
            let id = uuid::Uuid::new_v4().to_string();
            let granted = plane.service.authorize_copy(&account, &id, None, serde_json::Map::new()).await?;
            let body = json!({"modelId": id, "accessToken": granted.token,
                              "expirationDateTimeTicks": granted.expires.unix_timestamp()});
            let location = format!("{}/custom/models/{id}", v2_base(&account));
            Ok((StatusCode::CREATED, [(header::LOCATION, location)], axum::Json(body)).into_response())
        }
        .await,
    )
}

async fn v2_copy(
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(model): Path<String>,
    body: Bytes,
) -> Response {
    render_v2(
        async {
            let account = document_account(&plane, &extensions, &headers, &WRITE_MODEL)?;
            let value: Value = json_body(&body)?;
            let missing = |name: &str| invalid("ParameterMissing", format!("The copy request has no {name}."));
            let target = value["targetResourceId"].as_str().ok_or_else(|| missing("targetResourceId"))?;
            let authorization = &value["copyAuthorization"];
            let target_model = authorization["modelId"].as_str().ok_or_else(|| missing("copyAuthorization.modelId"))?;
            let token =
                authorization["accessToken"].as_str().ok_or_else(|| missing("copyAuthorization.accessToken"))?;
            let id = plane.service.start_copy(account.clone(), &model, (target, target_model, token), "2.1").await?;
            let location = format!("{}/custom/models/{model}/copyResults/{id}", v2_base(&account));
            Ok((StatusCode::ACCEPTED, [("operation-location", location)]).into_response())
        }
        .await,
    )
}

async fn v2_copy_result(
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Path((_model, id)): Path<(String, String)>,
) -> Response {
    render_v2((|| {
        let account = document_account(&plane, &extensions, &headers, &READ_MODEL)?;
        let op = plane.service.model_operation(&account, &id).ok_or_else(|| result_not_found(&id))?;
        let mut copy = json!({"modelId": op.model_id});
        if let Some(error) = &op.error {
            copy["errors"] = json!([error.v2_body()]);
        }
        Ok(axum::Json(json!({"status": op.status, "createdDateTime": op.created, "lastUpdatedDateTime": op.updated,
                              "copyResult": copy}))
        .into_response())
    })())
}
