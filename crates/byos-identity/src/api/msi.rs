//! Managed-identity token endpoints: the App Service protocol (`IDENTITY_ENDPOINT` +
//! `X-IDENTITY-HEADER`, a per-identity secret) and the IMDS protocol (no secret, so only identities
//! the operator bound to this host, and only for callers on this host).

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{Extensions, HeaderMap};
use axum::response::Response;
use axum::routing::get;
use byos_core::{ApiError, ErrorFormat};
use byos_http::{Failure, json_response, origin_of};
use serde_json::json;

use super::IdentityState;
use crate::directory::ImdsRequest;
use crate::principal::Principal;
use crate::token::TOKEN_LIFETIME_SECS;

pub fn router() -> Router<IdentityState> {
    Router::new().route("/msi/token", get(app_service_token)).route("/metadata/identity/oauth2/token", get(imds_token))
}

fn mi_error(status: u16, code: &str, message: impl Into<String>) -> Failure {
    Failure::from(ApiError::new(status, code, message).with_format(ErrorFormat::ManagedIdentity))
}

fn resource_param(query: &HashMap<String, String>) -> Result<&str, Failure> {
    query
        .get("resource")
        .map(String::as_str)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| mi_error(400, "invalid_request", "Required query variable 'resource' is missing"))
}

fn mint(state: &IdentityState, principal: &Principal, resource: &str) -> Result<(String, i64), Failure> {
    state.directory.tokens().mint(principal, resource, byos_core::time::unix_now()).map_err(|e| {
        tracing::error!(error = %e, "token signing failed");
        Failure::from(ApiError::internal().with_format(ErrorFormat::ManagedIdentity))
    })
}

/// `GET /msi/token?api-version=2019-08-01&resource=R[&client_id|mi_res_id|object_id|principal_id]`.
async fn app_service_token(
    State(state): State<IdentityState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let header = headers.get("x-identity-header").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let Some(principal) = state.directory.principal_for_identity_header(header) else {
        return Err(mi_error(
            401,
            "unauthorized_client",
            "The X-IDENTITY-HEADER value is missing or does not belong to a live managed identity.",
        ));
    };
    let resource = resource_param(&query)?;
    let names_other = [
        ("client_id", principal.client_id.to_string()),
        ("object_id", principal.object_id.to_string()),
        ("principal_id", principal.object_id.to_string()),
    ]
    .iter()
    .any(|(param, ours)| query.get(*param).is_some_and(|v| !v.eq_ignore_ascii_case(ours)))
        || query
            .get("mi_res_id")
            .is_some_and(|v| principal.resource_id().is_none_or(|ours| !ours.eq_ignore_ascii_case(v)));
    if names_other {
        return Err(mi_error(
            400,
            "invalid_request",
            "The requested identity is not the one this X-IDENTITY-HEADER secret was issued for.",
        ));
    }
    let (access_token, exp) = mint(&state, &principal, resource)?;
    Ok(json_response(
        200,
        &json!({"access_token": access_token, "expires_on": exp.to_string(), "resource": resource, "token_type": "Bearer", "client_id": principal.client_id}),
    ))
}

/// `GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=R[&client_id|object_id|msi_res_id]`.
async fn imds_token(
    State(state): State<IdentityState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    extensions: Extensions,
) -> Result<Response, Failure> {
    if !headers.get("metadata").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Err(mi_error(400, "invalid_request", "Required metadata header not specified"));
    }
    let origin = origin_of(&extensions);
    if !origin.is_local() {
        return Err(mi_error(403, "forbidden", "The instance metadata endpoint serves only callers on this host."));
    }
    let resource = resource_param(&query)?;
    let request = ImdsRequest {
        client_id: query.get("client_id").cloned(),
        object_id: query.get("object_id").cloned(),
        resource_id: query.get("msi_res_id").or_else(|| query.get("mi_res_id")).cloned(),
    };
    let principal = state.directory.imds_identity(&request).map_err(|why| mi_error(400, "invalid_request", why))?;
    let (access_token, exp) = mint(&state, &principal, resource)?;
    let now = byos_core::time::unix_now();
    let lifetime = (TOKEN_LIFETIME_SECS - 1).to_string();
    Ok(json_response(
        200,
        &json!({
            "access_token": access_token, "client_id": principal.client_id, "expires_in": lifetime, "ext_expires_in": lifetime,
            "expires_on": exp.to_string(), "not_before": now.to_string(), "resource": resource, "token_type": "Bearer",
        }),
    ))
}
