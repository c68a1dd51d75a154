//! A minimal, read-only Microsoft Graph v1.0 over the directory: what the az CLI asks to turn an
//! `--assignee` into an object id (`az role assignment create`) and object ids back into names
//! (`az role assignment list`), and what `az ad sp show/list` read.
//!
//! Served on the main listener under [`PATH`], not at its root: a client asks for a token for the
//! Graph resource id it found in the cloud metadata ([`resource_id`]), and at the root that would
//! be the resource manager's own audience, so one token would open both APIs. Under its own path
//! the Graph audience is distinct, as `https://graph.microsoft.com` is from ARM in Azure.
//!
//! Any principal of the tenant may read it (Entra's default, where members read the directory;
//! byos has no Graph app roles): it shows ids, names and types, never a secret, and reads no
//! resource or customer data, so it asks no door. Writes are refused: principals are made with
//! `byos principal create` and by the resources that own managed identities.

mod filter;

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::{any, get, post};
use byos_core::{ApiError, Caller};
use byos_http::{Failure, bearer_token, json_response, origin_of};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use self::filter::Filter;
use super::{IdentityState, bearer_challenge};
use crate::TokenError;
use crate::principal::{IdentityKind, Principal};

/// Where Graph is served on the main listener.
pub const PATH: &str = "/graph";

/// Graph's first-party application id, an audience its tokens may carry.
const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

/// Graph's limit for one `getByIds` request.
const MAX_IDS: usize = 1000;

/// The Graph resource id (and, as the az CLI uses it, the endpoint) byos advertises in its cloud
/// metadata as `microsoftGraphResourceId`.
pub fn resource_id(authority: &str) -> String {
    format!("{authority}{PATH}/")
}

pub fn router() -> Router<IdentityState> {
    Router::new()
        .route("/graph/v1.0/servicePrincipals", get(list_service_principals).fallback(read_only))
        .route("/graph/v1.0/servicePrincipals/{id}", get(get_service_principal).fallback(read_only))
        .route("/graph/v1.0/directoryObjects/getByIds", post(get_by_ids).fallback(read_only))
        .route("/graph/{*rest}", any(unknown_path))
}

fn graph_error(status: u16, code: &str, message: impl Into<String>) -> Failure {
    Failure::from(ApiError::new(status, code, message))
}

/// The tokens Graph accepts: for the resource id byos advertises (with or without its trailing
/// slash), and those a client asks for when it names Azure's Graph.
fn audiences(authority: &str) -> [String; 5] {
    let own = resource_id(authority);
    [
        own.trim_end_matches('/').to_owned(),
        own,
        "https://graph.microsoft.com".to_owned(),
        "https://graph.microsoft.com/".to_owned(),
        GRAPH_APP_ID.to_owned(),
    ]
}

/// The caller of a Graph request, or Graph's 401 with the reason in the message and the challenge.
fn authenticate(state: &IdentityState, parts: &Parts) -> Result<Caller, Failure> {
    let Some(token) = bearer_token(&parts.headers) else {
        return Err(unauthenticated(state, "Access token is empty.", "no bearer token in the Authorization header"));
    };
    let audiences = audiences(&state.authority);
    let accepted: Vec<&str> = audiences.iter().map(String::as_str).collect();
    state
        .directory
        .authenticate(token, &accepted, origin_of(&parts.extensions))
        .map_err(|e| unauthenticated(state, &token_message(&e), &e.to_string()))
}

/// Graph's words for a refused token, with byos's reason where Graph's words would be vague.
fn token_message(e: &TokenError) -> String {
    match e {
        TokenError::Expired { .. } => "Lifetime validation failed, the token is expired.".to_owned(),
        TokenError::WrongAudience(aud) => format!(
            "Access token validation failure. Invalid audience: '{aud}' is not Microsoft Graph's; ask for the scope 'https://graph.microsoft.com/.default' or the Graph resource id of the cloud metadata + '/.default'."
        ),
        other => format!("Access token validation failure: {other}."),
    }
}

fn unauthenticated(state: &IdentityState, message: &str, reason: &str) -> Failure {
    let authorization_uri = format!("{}/{}", state.authority, state.directory.tenant_id());
    Failure::from(
        ApiError::new(401, "InvalidAuthenticationToken", message)
            .with_challenge(bearer_challenge(&authorization_uri, message))
            .with_explanation(json!({"reason": reason})),
    )
}

fn context(state: &IdentityState, what: &str) -> String {
    format!("{}{PATH}/v1.0/$metadata#{what}", state.authority)
}

/// A principal as Graph shows a service principal.
fn service_principal(p: &Principal) -> Value {
    let (kind, alternative_names) = match &p.kind {
        IdentityKind::ServicePrincipal => ("Application", vec![]),
        IdentityKind::ManagedIdentity { resource_id, system_assigned } => {
            // Azure's spelling: user-assigned identities are "explicit".
            let explicit = if *system_assigned { "isExplicit=False" } else { "isExplicit=True" };
            ("ManagedIdentity", vec![explicit.to_owned(), resource_id.clone()])
        }
    };
    json!({
        "id": p.object_id,
        "appId": p.client_id,
        "displayName": p.display_name,
        "accountEnabled": true,
        "servicePrincipalNames": [p.client_id],
        "servicePrincipalType": kind,
        "alternativeNames": alternative_names,
    })
}

/// `GET /v1.0/servicePrincipals[?$filter=...]`: every principal, or those the filter names.
async fn list_service_principals(
    State(state): State<IdentityState>,
    Query(query): Query<HashMap<String, String>>,
    parts: Parts,
) -> Result<Response, Failure> {
    let caller = authenticate(&state, &parts)?;
    let filter = query.get("$filter").map(|text| Filter::parse(text)).transpose().map_err(|e| {
        let code = match e {
            filter::FilterError::Syntax(_) => "BadRequest",
            filter::FilterError::Unsupported(_) => "Request_UnsupportedQuery",
        };
        graph_error(400, code, e.to_string())
    })?;
    let value: Vec<Value> = state
        .directory
        .principals()
        .iter()
        .filter(|p| filter.as_ref().is_none_or(|f| f.matches(p)))
        .map(|p| service_principal(p))
        .collect();
    tracing::debug!(
        caller = ?caller.object_id(),
        filter = query.get("$filter").map(String::as_str),
        found = value.len(),
        "graph: service principals listed"
    );
    Ok(json_response(200, &json!({"@odata.context": context(&state, "servicePrincipals"), "value": value})))
}

/// An object id as a request names it, or Graph's 400.
fn object_id(id: &str) -> Result<Uuid, Failure> {
    id.parse().map_err(|_| graph_error(400, "Request_BadRequest", format!("Invalid object identifier '{id}'.")))
}

/// A principal named by its object id, or Graph's 400 / 404.
fn principal_by_id(state: &IdentityState, id: &str) -> Result<std::sync::Arc<Principal>, Failure> {
    state.directory.principal(object_id(id)?).ok_or_else(|| {
        graph_error(
            404,
            "Request_ResourceNotFound",
            format!("Resource '{id}' does not exist or one of its queried reference-property objects are not present."),
        )
    })
}

/// `GET /v1.0/servicePrincipals/{id}`.
async fn get_service_principal(
    State(state): State<IdentityState>,
    Path(id): Path<String>,
    parts: Parts,
) -> Result<Response, Failure> {
    authenticate(&state, &parts)?;
    let principal = principal_by_id(&state, &id)?;
    let mut body = service_principal(&principal);
    body["@odata.context"] = json!(context(&state, "servicePrincipals/$entity"));
    Ok(json_response(200, &body))
}

#[derive(Deserialize)]
struct GetByIds {
    ids: Vec<String>,
    #[serde(default)]
    types: Vec<String>,
}

/// Whether a `types` list of `getByIds` asks for service principals (an empty list asks for all).
fn wants_service_principals(types: &[String]) -> bool {
    types.is_empty()
        || types.iter().any(|t| {
            let t = t.strip_prefix("microsoft.graph.").unwrap_or(t);
            t.eq_ignore_ascii_case("servicePrincipal") || t.eq_ignore_ascii_case("directoryObject")
        })
}

/// `POST /v1.0/directoryObjects/getByIds` `{"ids": [...], "types": [...]}`: the objects found, each
/// with its `@odata.type`; ids that name nothing are left out, as Graph does.
async fn get_by_ids(State(state): State<IdentityState>, parts: Parts, body: Bytes) -> Result<Response, Failure> {
    let caller = authenticate(&state, &parts)?;
    let request: GetByIds = serde_json::from_slice(&body).map_err(|e| {
        graph_error(
            400,
            "Request_BadRequest",
            format!("The request body must be {{\"ids\": [...], \"types\": [...]}}: {e}."),
        )
    })?;
    if request.ids.len() > MAX_IDS {
        return Err(graph_error(400, "Request_BadRequest", format!("At most {MAX_IDS} ids may be asked for at once.")));
    }
    let mut value = Vec::new();
    if wants_service_principals(&request.types) {
        for id in &request.ids {
            if let Some(principal) = state.directory.principal(object_id(id)?) {
                let mut object = service_principal(&principal);
                object["@odata.type"] = json!("#microsoft.graph.servicePrincipal");
                value.push(object);
            }
        }
    }
    tracing::debug!(caller = ?caller.object_id(), asked = request.ids.len(), found = value.len(), "graph: directory objects looked up");
    Ok(json_response(200, &json!({"@odata.context": context(&state, "directoryObjects"), "value": value})))
}

/// A write to a collection byos serves: the directory is changed only by the operator and by the
/// resources that own managed identities.
async fn read_only(State(state): State<IdentityState>, parts: Parts) -> Result<Response, Failure> {
    authenticate(&state, &parts)?;
    Err(graph_error(
        405,
        "Request_BadRequest",
        format!(
            "byos's Microsoft Graph is read-only ({} {} is not served): create service principals with `byos principal create`.",
            parts.method,
            parts.uri.path()
        ),
    ))
}

/// Anything else under [`PATH`]: Graph's answer for a segment it does not know.
async fn unknown_path(
    State(state): State<IdentityState>,
    Path(rest): Path<String>,
    parts: Parts,
) -> Result<Response, Failure> {
    authenticate(&state, &parts)?;
    let mut segments = rest.split('/');
    let message = match (segments.next(), segments.next()) {
        (Some("v1.0"), Some(segment)) => format!(
            "Resource not found for the segment '{segment}'. byos's directory holds service principals only; its Microsoft Graph serves servicePrincipals and directoryObjects/getByIds."
        ),
        (version, _) => {
            format!("Invalid version: '{}'. byos serves Microsoft Graph v1.0 only.", version.unwrap_or_default())
        }
    };
    Err(graph_error(400, "BadRequest", message))
}
