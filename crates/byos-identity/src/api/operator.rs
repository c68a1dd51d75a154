//! The operator's commands, served only on the control socket in the data dir (whoever can reach
//! it can read the data dir anyway). Each is still authorized by the door, for the operator caller.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::Extensions;
use axum::response::Response;
use axum::routing::{get, post};
use byos_authz::Action;
use byos_core::{ApiError, Caller, Scope};
use byos_http::{Failure, json_response, parse_json};
use serde::Deserialize;
use serde_json::json;

use super::IdentityState;

/// Marks requests that arrived on the operator's control socket; inserted by that listener only.
#[derive(Clone, Copy, Debug)]
pub struct OperatorSocket;

const PRINCIPALS_WRITE: Action = Action::operator("byos/principals/write");
const PRINCIPALS_DELETE: Action = Action::operator("byos/principals/delete");
const IDENTITY_SECRETS_READ: Action = Action::operator("byos/managedIdentities/secrets/read");
const IDENTITY_SECRETS_WRITE: Action = Action::operator("byos/managedIdentities/secrets/write");
const IMDS_BINDINGS_WRITE: Action = Action::operator("byos/managedIdentities/hostBindings/write");

pub fn router(state: IdentityState) -> Router {
    Router::new()
        .route("/operator/principals", post(create_principal))
        .route("/operator/principals/delete", post(delete_principal))
        .route("/operator/principals/reset", post(reset_principal))
        .route("/operator/identities/rotate-header", post(rotate_identity_header))
        .route("/operator/identities/env", get(identity_env))
        .route("/operator/identities/host-binding", post(host_binding))
        .with_state(state)
}

/// The caller of an operator API: the operator if the request came through the control socket
/// (only its listener marks requests so), else an anonymous caller the door refuses.
pub fn operator_caller(extensions: &Extensions) -> Caller {
    if extensions.get::<OperatorSocket>().is_some() {
        Caller::operator()
    } else {
        Caller::anonymous(byos_http::origin_of(extensions))
    }
}

/// The operator caller, if the request came through the control socket; then the door decides.
fn authorize(state: &IdentityState, extensions: &Extensions, action: &Action) -> Result<(), Failure> {
    let caller = operator_caller(extensions);
    state
        .door
        .authorize(&caller, action, &Scope::root())
        .map(|_| ())
        .map_err(|denial| Failure::from(denial.to_api_error()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreatePrincipal {
    name: String,
}

async fn create_principal(
    State(state): State<IdentityState>,
    extensions: Extensions,
    body: Bytes,
) -> Result<Response, Failure> {
    authorize(&state, &extensions, &PRINCIPALS_WRITE)?;
    let request: CreatePrincipal = parse_json(&body)?;
    if request.name.trim().is_empty() || request.name.len() > 256 {
        return Err(Failure::from(ApiError::bad_request(
            "InvalidName",
            "A principal name must be 1 to 256 characters.",
        )));
    }
    let (principal, secret) = state.directory.create_service_principal(&request.name).await?;
    tracing::info!(object_id = %principal.object_id, name = %request.name, "service principal created");
    Ok(json_response(
        201,
        &json!({"client_id": principal.client_id, "client_secret": secret.as_str(), "object_id": principal.object_id, "display_name": principal.display_name}),
    ))
}

/// Names a service principal by its client id or object id.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalRef {
    principal: String,
}

async fn delete_principal(
    State(state): State<IdentityState>,
    extensions: Extensions,
    body: Bytes,
) -> Result<Response, Failure> {
    authorize(&state, &extensions, &PRINCIPALS_DELETE)?;
    let request: PrincipalRef = parse_json(&body)?;
    let principal = state.directory.delete_service_principal(&request.principal).await?;
    tracing::info!(object_id = %principal.object_id, client_id = %principal.client_id, "service principal deleted");
    Ok(json_response(
        200,
        &json!({"client_id": principal.client_id, "object_id": principal.object_id, "display_name": principal.display_name, "deleted": true}),
    ))
}

async fn reset_principal(
    State(state): State<IdentityState>,
    extensions: Extensions,
    body: Bytes,
) -> Result<Response, Failure> {
    authorize(&state, &extensions, &PRINCIPALS_WRITE)?;
    let request: PrincipalRef = parse_json(&body)?;
    let (principal, secret) = state.directory.reset_service_principal_secret(&request.principal).await?;
    tracing::info!(object_id = %principal.object_id, client_id = %principal.client_id, "service principal secret reset");
    Ok(json_response(
        200,
        &json!({"client_id": principal.client_id, "client_secret": secret.as_str(), "object_id": principal.object_id, "display_name": principal.display_name}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityRef {
    identity: String,
}

async fn rotate_identity_header(
    State(state): State<IdentityState>,
    extensions: Extensions,
    body: Bytes,
) -> Result<Response, Failure> {
    authorize(&state, &extensions, &IDENTITY_SECRETS_WRITE)?;
    let request: IdentityRef = parse_json(&body)?;
    let principal = state.directory.rotate_identity_header(&request.identity).await?;
    tracing::info!(object_id = %principal.object_id, generation = principal.header_generation, "identity header rotated");
    Ok(json_response(
        200,
        &json!({"client_id": principal.client_id, "object_id": principal.object_id, "resource_id": principal.resource_id(), "rotated": true}),
    ))
}

#[derive(Deserialize)]
struct IdentityQuery {
    identity: String,
}

async fn identity_env(
    State(state): State<IdentityState>,
    extensions: Extensions,
    Query(q): Query<IdentityQuery>,
) -> Result<Response, Failure> {
    authorize(&state, &extensions, &IDENTITY_SECRETS_READ)?;
    let principal = state.directory.find_managed_identity(&q.identity)?;
    Ok(json_response(
        200,
        &json!({
            "identity_endpoint": format!("{}/msi/token", state.authority),
            "identity_header": state.directory.identity_header(&principal),
            "client_id": principal.client_id,
            "object_id": principal.object_id,
            "resource_id": principal.resource_id(),
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HostBinding {
    identity: String,
    bound: bool,
}

async fn host_binding(
    State(state): State<IdentityState>,
    extensions: Extensions,
    body: Bytes,
) -> Result<Response, Failure> {
    authorize(&state, &extensions, &IMDS_BINDINGS_WRITE)?;
    let request: HostBinding = parse_json(&body)?;
    let principal = state.directory.find_managed_identity(&request.identity)?;
    state.directory.set_imds_binding(&principal, request.bound).await?;
    tracing::info!(object_id = %principal.object_id, bound = request.bound, "IMDS host binding changed");
    Ok(json_response(
        200,
        &json!({"object_id": principal.object_id, "client_id": principal.client_id, "bound": request.bound}),
    ))
}
