//! The doctor on the control socket: `GET /operator/doctor?account=<id>[&textToSpeech=true]`
//! (`byos doctor`), the report as JSON.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::Extensions;
use axum::response::Response;
use byos_arm::Arm;
use byos_authz::Action;
use byos_core::{OrInternal, Scope};
use byos_http::{Failure, json_response};
use byos_keyvault::KeyVaultService;
use byos_storage::StorageService;
use serde::Deserialize;

use super::{Report, Sources, check, gather};
use crate::CognitiveService;

/// An operator action: the doctor reads every resource's settings, which no customer role covers.
const DOCTOR: Action = Action::operator("byos/doctor/read");

pub fn operator_router(
    arm: Arc<Arm>,
    cognitive: Arc<CognitiveService>,
    storage: Arc<StorageService>,
    keyvault: Arc<KeyVaultService>,
) -> axum::Router {
    let sources = Arc::new(Sources { arm, cognitive, storage, keyvault });
    axum::Router::new().route("/operator/doctor", axum::routing::get(operator_doctor)).with_state(sources)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DoctorQuery {
    account: String,
    #[serde(default)]
    text_to_speech: bool,
}

async fn operator_doctor(
    State(sources): State<Arc<Sources>>,
    extensions: Extensions,
    Query(query): Query<DoctorQuery>,
) -> Result<Response, Failure> {
    let caller = byos_identity::api::operator::operator_caller(&extensions);
    sources.arm.door.authorize(&caller, &DOCTOR, &Scope::root()).map_err(|d| d.to_api_error())?;
    let facts = gather(&sources, &query.account, query.text_to_speech).await?;
    let report = Report::new(&facts.account.id.to_string(), query.text_to_speech, check(&facts));
    tracing::info!(account = %report.account, failed = report.summary.fail, warned = report.summary.warn, "doctor report");
    Ok(json_response(200, &serde_json::to_value(&report).or_internal()?))
}
