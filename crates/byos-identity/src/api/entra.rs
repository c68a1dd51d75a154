//! Microsoft Entra v2-compatible endpoints: discovery, JWKS, and the client-credentials token grant.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use byos_core::{ApiError, ErrorFormat};
use byos_crypto::secret;
use byos_http::{Failure, json_response};
use serde_json::json;
use uuid::Uuid;

use super::IdentityState;
use crate::token::{TOKEN_LIFETIME_SECS, audience_from_scope};

pub fn router() -> Router<IdentityState> {
    Router::new()
        .route("/{tenant}/v2.0/.well-known/openid-configuration", get(openid_configuration))
        .route("/{tenant}/.well-known/openid-configuration", get(openid_configuration))
        .route("/{tenant}/discovery/v2.0/keys", get(jwks))
        .route("/{tenant}/discovery/keys", get(jwks))
        .route("/{tenant}/oauth2/v2.0/token", post(token))
}

fn entra_error(status: u16, code: &str, aadsts: u32, message: String) -> Failure {
    Failure::from(
        ApiError::new(status, code, format!("AADSTS{aadsts}: {message}"))
            .with_error_code(aadsts)
            .with_format(ErrorFormat::Entra),
    )
}

/// Resolves the tenant segment: our tenant id, or the `organizations` / `common` aliases.
fn resolve_tenant(state: &IdentityState, tenant: &str, code: &str) -> Result<Uuid, Failure> {
    let ours = state.directory.tenant_id();
    let known = tenant.eq_ignore_ascii_case("organizations")
        || tenant.eq_ignore_ascii_case("common")
        || tenant.parse::<Uuid>().ok() == Some(ours);
    if known {
        Ok(ours)
    } else {
        Err(entra_error(
            400,
            code,
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        ))
    }
}

async fn openid_configuration(
    State(state): State<IdentityState>,
    Path(tenant): Path<String>,
) -> Result<Response, Failure> {
    let tenant = resolve_tenant(&state, &tenant, "invalid_tenant")?;
    let base = format!("{}/{tenant}", state.authority);
    Ok(json_response(
        200,
        &json!({
            "issuer": state.directory.tokens().issuer(),
            "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
            "token_endpoint": format!("{base}/oauth2/v2.0/token"),
            "jwks_uri": format!("{base}/discovery/v2.0/keys"),
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
            "response_types_supported": ["token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "grant_types_supported": ["client_credentials"],
            "tenant_region_scope": "byos",
            "cloud_instance_name": "byos.local",
        }),
    ))
}

async fn jwks(State(state): State<IdentityState>, Path(tenant): Path<String>) -> Result<Response, Failure> {
    resolve_tenant(&state, &tenant, "invalid_tenant")?;
    Ok(json_response(200, &state.directory.tokens().jwks()))
}

/// `POST /{tenant}/oauth2/v2.0/token` with `grant_type=client_credentials`.
async fn token(
    State(state): State<IdentityState>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Result<Response, Failure> {
    resolve_tenant(&state, &tenant, "invalid_request")?;
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).map_err(|_| {
        entra_error(
            400,
            "invalid_request",
            900144,
            "The request body must be application/x-www-form-urlencoded.".into(),
        )
    })?;
    let field = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
    let required = |name: &str| {
        field(name).ok_or_else(|| {
            entra_error(
                400,
                "invalid_request",
                900144,
                format!("The request body must contain the following parameter: '{name}'."),
            )
        })
    };
    let grant_type = required("grant_type")?;
    if grant_type != "client_credentials" {
        return Err(entra_error(
            400,
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{grant_type}'."),
        ));
    }
    let client_id = required("client_id")?;
    let scope = required("scope")?;
    let Some(audience) = audience_from_scope(scope) else {
        return Err(entra_error(
            400,
            "invalid_scope",
            1002012,
            format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        ));
    };
    let not_found = || {
        entra_error(
            400,
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant.",
                state.directory.tenant_id()
            ),
        )
    };
    let principal =
        client_id.parse().ok().and_then(|id| state.directory.principal_by_client_id(id)).ok_or_else(not_found)?;
    let Some(presented) = field("client_secret") else {
        return Err(entra_error(
            401,
            "invalid_client",
            7000216,
            "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type."
                .into(),
        ));
    };
    // Every stored hash is checked, so the time taken does not reveal which one matched.
    let matches = principal.secret_hashes.iter().fold(false, |found, stored| secret::verify(presented, stored) | found);
    if !matches {
        tracing::info!(client_id, "client secret rejected");
        return Err(entra_error(
            401,
            "invalid_client",
            7000215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        ));
    }
    let (access_token, _) =
        state.directory.tokens().mint(&principal, &audience, byos_core::time::unix_now()).map_err(|e| {
            tracing::error!(error = %e, "token signing failed");
            Failure::from(ApiError::internal().with_format(ErrorFormat::Entra))
        })?;
    tracing::debug!(client_id, audience, "token issued");
    Ok(json_response(
        200,
        &json!({"token_type": "Bearer", "expires_in": TOKEN_LIFETIME_SECS - 1, "ext_expires_in": TOKEN_LIFETIME_SECS - 1, "access_token": access_token}),
    ))
}
