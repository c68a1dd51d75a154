//! The endpoint routes of both speech to text families: endpoints (create and GET say
//! `properties.loggingEnabled`, PATCH takes `properties.contentLoggingEnabled`, as Azure) and their
//! logs, plus the base model's logs (`/endpoints/base/{locale}/files/logs`).

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

use crate::dataplane::Plane;
use crate::datasets::speech_error;
use crate::endpoints::{Endpoint, LogFile, LogOwner, NewEndpoint, parse_end_date};
use crate::entity_http::SpeechEntity;
use crate::speech_http::{Api, FileQuery, LOCALES, Page, render, speech_account};
use crate::transcriptions_http::{bad, check_model, model_url};
use crate::{CognitiveService, LiveAccount};

const READ: Action = Action::data("Microsoft.CognitiveServices/accounts/SpeechServices/speechrest/endpoints/read");
const WRITE: Action = Action::data("Microsoft.CognitiveServices/accounts/SpeechServices/speechrest/endpoints/write");
const DELETE: Action = Action::data("Microsoft.CognitiveServices/accounts/SpeechServices/speechrest/endpoints/delete");
const FILES_READ: Action =
    Action::data("Microsoft.CognitiveServices/accounts/SpeechServices/speechrest/endpoints/files/read");
const FILES_DELETE: Action =
    Action::data("Microsoft.CognitiveServices/accounts/SpeechServices/speechrest/endpoints/files/delete");

/// The endpoint routes of `api`'s family.
pub(crate) fn routes(api: Api) -> Router<Plane> {
    let base = format!("{}/endpoints", api.base());
    Router::new()
        .route(&base, axum::routing::get(list).post(create))
        .route(&format!("{base}/{{id}}"), crate::entity_http::by_id::<Endpoint>())
        .route(&format!("{base}/{{id}}/files/logs"), axum::routing::get(logs).delete(delete_logs))
        .route(&format!("{base}/{{id}}/files/logs/{{log}}"), axum::routing::get(log).delete(delete_log))
        .route(&format!("{base}/base/{{locale}}/files/logs"), axum::routing::get(base_logs).delete(delete_base_logs))
        .route(
            &format!("{base}/base/{{locale}}/files/logs/{{log}}"),
            axum::routing::get(base_log).delete(delete_base_log),
        )
        .layer(axum::Extension(api))
}

fn wire(api: Api, account: &LiveAccount, e: &Endpoint) -> Value {
    let endpoint = crate::CognitiveService::endpoint(account.settings.port);
    let rest = |mode: &str| format!("{endpoint}speech/recognition/{mode}/cognitiveservices/v1?cid={}", e.id);
    let socket = |mode: &str| {
        format!("{}speech/recognition/{mode}/cognitiveservices/v1?cid={}", endpoint.replacen("https", "wss", 1), e.id)
    };
    let mut wire = json!({
        "self": api.url(account, &format!("/endpoints/{}", e.id)),
        "model": {"self": model_url(api, account, e.model.as_deref())},
        "links": {
            "restInteractive": rest("interactive"), "restConversation": rest("conversation"),
            "restDictation": rest("dictation"), "webSocketInteractive": socket("interactive"),
            "webSocketConversation": socket("conversation"), "webSocketDictation": socket("dictation"),
            "logs": api.url(account, &format!("/endpoints/{}/files/logs", e.id)),
        },
        "properties": {"loggingEnabled": e.logging},
        "lastActionDateTime": e.last_action, "status": e.status, "createdDateTime": e.created,
        "locale": e.locale, "displayName": e.display_name,
    });
    if let Some(description) = &e.description {
        wire["description"] = json!(description);
    }
    if !e.custom_properties.is_empty() {
        wire["customProperties"] = json!(e.custom_properties);
    }
    wire
}

#[derive(Deserialize)]
struct EntityReference {
    #[serde(rename = "self")]
    self_url: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CreateProperties {
    #[serde(default)]
    logging_enabled: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    display_name: Option<String>,
    description: Option<String>,
    #[serde(default)]
    custom_properties: Map<String, Value>,
    locale: Option<String>,
    model: Option<EntityReference>,
    #[serde(default)]
    properties: CreateProperties,
}

fn locale_of(locale: Option<&str>) -> Result<String, ApiError> {
    let locale = locale.ok_or_else(|| bad("InvalidPayload", "The endpoint's locale is required."))?;
    crate::speech_http::known_locale(locale).map(str::to_owned).ok_or_else(|| {
        bad("InvalidLocale", format!("The locale '{locale}' is not supported; byos recognizes {}.", LOCALES.join(", ")))
    })
}

async fn create(
    State(plane): State<Plane>,
    axum::Extension(api): axum::Extension<Api>,
    extensions: Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    render(
        async {
            let account = speech_account(&plane, &extensions, &headers, &WRITE)?;
            let body: CreateBody = serde_json::from_slice(&body)
                .map_err(|e| bad("InvalidPayload", format!("The request body is not a valid endpoint: {e}.")))?;
            let display_name = body
                .display_name
                .filter(|n| !n.trim().is_empty())
                .ok_or_else(|| bad("InvalidPayload", "The endpoint's displayName is required."))?;
            let locale = locale_of(body.locale.as_deref())?;
            let model_url = body
                .model
                .and_then(|m| m.self_url)
                .ok_or_else(|| bad("InvalidPayload", "The endpoint's model is required."))?;
            let model = check_model(&plane.service, &account, Some(&model_url)).await?;
            let new = NewEndpoint {
                display_name,
                description: body.description,
                custom_properties: body.custom_properties,
                locale,
                model,
                logging: body.properties.logging_enabled,
            };
            let endpoint = plane.service.create_endpoint(&account, new).await?;
            let location = api.url(&account, &format!("/endpoints/{}", endpoint.id));
            Ok((StatusCode::CREATED, [(header::LOCATION, location)], axum::Json(wire(api, &account, &endpoint)))
                .into_response())
        }
        .await,
    )
}

async fn list(
    State(plane): State<Plane>,
    axum::Extension(api): axum::Extension<Api>,
    extensions: Extensions,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Response {
    render(
        async {
            let account = speech_account(&plane, &extensions, &headers, &READ)?;
            let all = plane.service.speech_endpoints(&account).await?;
            Ok(axum::Json(page.render(api, &account, "/endpoints", &all, |e| wire(api, &account, e))).into_response())
        }
        .await,
    )
}

/// Whose logs a request is about, and the locale they are kept under (the endpoint must exist).
async fn owner(
    plane: &Plane,
    account: &LiveAccount,
    id: Option<&str>,
    locale: Option<&str>,
) -> Result<(LogOwner, String), ApiError> {
    match (id, locale) {
        (Some(id), _) => {
            let endpoint = plane.service.speech_endpoint(account, id).await?;
            Ok((LogOwner::Endpoint(endpoint.id), endpoint.locale))
        }
        (None, locale) => {
            let locale = locale_of(locale)?;
            Ok((LogOwner::Base(locale.clone()), locale))
        }
    }
}

fn log_wire(api: Api, account: &LiveAccount, owner: &LogOwner, file: &LogFile, link: String) -> Value {
    let path = match owner {
        LogOwner::Endpoint(id) => format!("/endpoints/{id}/files/logs/{}", file.id),
        LogOwner::Base(locale) => format!("/endpoints/base/{locale}/files/logs/{}", file.id),
    };
    json!({"self": api.url(account, &path), "name": file.id, "kind": file.kind, "properties": {"size": file.size},
           "createdDateTime": file.created, "links": {"contentUrl": link}})
}

async fn list_logs(
    plane: Plane,
    api: Api,
    extensions: Extensions,
    headers: HeaderMap,
    (id, locale): (Option<String>, Option<String>),
    query: FileQuery,
    page: Page,
) -> Response {
    render(
        async {
            let account = speech_account(&plane, &extensions, &headers, &FILES_READ)?;
            let (owner, locale) = owner(&plane, &account, id.as_deref(), locale.as_deref()).await?;
            let validity = Duration::from_secs(query.validity());
            let mut values = Vec::new();
            for file in plane.service.logs(&account, &owner, &locale).await? {
                let link = plane.service.log_link(&account, &file, validity).await?;
                values.push(log_wire(api, &account, &owner, &file, link));
            }
            let path = match &owner {
                LogOwner::Endpoint(id) => format!("/endpoints/{id}/files/logs"),
                LogOwner::Base(locale) => format!("/endpoints/base/{locale}/files/logs"),
            };
            Ok(axum::Json(page.render(api, &account, &path, &values, Value::clone)).into_response())
        }
        .await,
    )
}

async fn one_log(
    plane: Plane,
    api: Api,
    extensions: Extensions,
    headers: HeaderMap,
    (id, locale, log_id): (Option<String>, Option<String>, String),
    query: FileQuery,
) -> Response {
    render(
        async {
            let account = speech_account(&plane, &extensions, &headers, &FILES_READ)?;
            let (owner, locale) = owner(&plane, &account, id.as_deref(), locale.as_deref()).await?;
            let file = plane.service.log(&account, &owner, &locale, &log_id).await?;
            let link = plane.service.log_link(&account, &file, Duration::from_secs(query.validity())).await?;
            Ok(axum::Json(log_wire(api, &account, &owner, &file, link)).into_response())
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteQuery {
    end_date: Option<String>,
}

async fn remove_logs(
    plane: Plane,
    extensions: Extensions,
    headers: HeaderMap,
    (id, locale, log_id): (Option<String>, Option<String>, Option<String>),
    end_date: Option<String>,
) -> Response {
    render(
        async {
            let account = speech_account(&plane, &extensions, &headers, &FILES_DELETE)?;
            let (owner, locale) = owner(&plane, &account, id.as_deref(), locale.as_deref()).await?;
            if let Some(log_id) = log_id {
                let file = plane.service.log(&account, &owner, &locale, &log_id).await?;
                plane.service.delete_log_file(&account, &file).await?;
                return Ok(StatusCode::NO_CONTENT.into_response());
            }
            let until = match end_date {
                Some(text) => Some(parse_end_date(&text).ok_or_else(|| {
                    speech_error(400, "InvalidRequest", format!("endDate '{text}' is not a date (yyyy-mm-dd)."))
                        .with_inner_code("InvalidParameterValue")
                })?),
                None => None,
            };
            plane.service.delete_logs(&account, &owner, &locale, until).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

async fn logs(
    State(plane): State<Plane>,
    axum::Extension(api): axum::Extension<Api>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<FileQuery>,
    Query(page): Query<Page>,
) -> Response {
    list_logs(plane, api, extensions, headers, (Some(id), None), query, page).await
}

async fn base_logs(
    State(plane): State<Plane>,
    axum::Extension(api): axum::Extension<Api>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(locale): Path<String>,
    Query(query): Query<FileQuery>,
    Query(page): Query<Page>,
) -> Response {
    list_logs(plane, api, extensions, headers, (None, Some(locale)), query, page).await
}

async fn log(
    State(plane): State<Plane>,
    axum::Extension(api): axum::Extension<Api>,
    extensions: Extensions,
    headers: HeaderMap,
    Path((id, log_id)): Path<(String, String)>,
    Query(query): Query<FileQuery>,
) -> Response {
    one_log(plane, api, extensions, headers, (Some(id), None, log_id), query).await
}

async fn base_log(
    State(plane): State<Plane>,
    axum::Extension(api): axum::Extension<Api>,
    extensions: Extensions,
    headers: HeaderMap,
    Path((locale, log_id)): Path<(String, String)>,
    Query(query): Query<FileQuery>,
) -> Response {
    one_log(plane, api, extensions, headers, (None, Some(locale), log_id), query).await
}

async fn delete_logs(
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<DeleteQuery>,
) -> Response {
    remove_logs(plane, extensions, headers, (Some(id), None, None), query.end_date).await
}

async fn delete_base_logs(
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(locale): Path<String>,
    Query(query): Query<DeleteQuery>,
) -> Response {
    remove_logs(plane, extensions, headers, (None, Some(locale), None), query.end_date).await
}

async fn delete_log(
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Path((id, log_id)): Path<(String, String)>,
) -> Response {
    remove_logs(plane, extensions, headers, (Some(id), None, Some(log_id)), None).await
}

async fn delete_base_log(
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Path((locale, log_id)): Path<(String, String)>,
) -> Response {
    remove_logs(plane, extensions, headers, (None, Some(locale), Some(log_id)), None).await
}

impl SpeechEntity for Endpoint {
    const READ: Action = READ;
    const WRITE: Action = WRITE;
    const DELETE: Action = DELETE;
    const UPDATE: &'static str = "endpoint update";

    async fn get(service: &Arc<CognitiveService>, account: &LiveAccount, id: &str) -> Result<Self, ApiError> {
        service.speech_endpoint(account, id).await
    }

    async fn update(
        service: &Arc<CognitiveService>,
        account: &LiveAccount,
        id: &str,
        update: &Map<String, Value>,
    ) -> Result<Self, ApiError> {
        let model_url = update.get("model").and_then(|m| m.get("self")).and_then(Value::as_str);
        let model = match model_url {
            Some(url) => Some(check_model(service, account, Some(url)).await?),
            None => None,
        };
        service.update_endpoint(account, id, update, model).await
    }

    async fn delete(service: &Arc<CognitiveService>, account: &LiveAccount, id: &str) -> Result<(), ApiError> {
        service.delete_endpoint(account, id).await
    }

    fn wire(api: Api, account: &LiveAccount, entity: &Self) -> Value {
        wire(api, account, entity)
    }
}
