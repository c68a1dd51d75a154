//! The resource manager's activity log (F17): who did what at which scope and how it ended, for
//! every write and action (PUT, PATCH, DELETE, POST), RBAC changes included, and for every request
//! refused (401, 403), reads too. One hash-chained [`byos_audit::AuditLog`] chain, read and
//! verified by `byos audit activity`. Successful reads are not recorded, as in Azure.

use axum::http::Method;
use byos_audit::{AuditError, AuditLog, Chained, LOG_CHECK, LOG_CHECK_AUTHENTICATION, LogTables};
use byos_core::{ApiError, Caller};
use byos_store::Table;
use serde::{Deserialize, Serialize};

pub const TABLES: LogTables = LogTables {
    entries: Table("arm_activity"),
    heads: Table("arm_activity_head"),
    meta: Table("arm_meta"),
    head_key: "activity-head-key",
    name: "ARM activity log",
};

/// The one chain of the log.
pub const CHAIN: &str = "arm";

/// The longest request path recorded (longer ones are cut; ARM ids are far shorter).
const MAX_PATH: usize = 1024;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ActivityEntry {
    pub v: u32,
    pub seq: u64,
    pub time: String,
    /// The caller's object id (empty when the request was not authenticated).
    pub caller: String,
    pub client_id: String,
    pub authentication: String,
    pub source_ip: String,
    /// `PUT`, `DELETE`, ...
    pub method: String,
    /// The request path: the resource id or scope acted on.
    pub path: String,
    pub status: u16,
    /// `success`, `denied`, `unauthenticated`, or `failed: {code}`.
    pub result: String,
    pub prev: String,
    #[serde(default)]
    pub hash: String,
}

impl Chained for ActivityEntry {
    fn seq(&self) -> u64 {
        self.seq
    }

    fn prev(&self) -> &str {
        &self.prev
    }

    fn hash(&self) -> &str {
        &self.hash
    }

    fn link(&mut self, seq: u64, prev: String, time: String) {
        (self.seq, self.prev, self.time) = (seq, prev, time);
    }

    fn set_hash(&mut self, hash: String) {
        self.hash = hash;
    }

    fn log_check(problem: &str) -> Self {
        ActivityEntry {
            authentication: LOG_CHECK_AUTHENTICATION.into(),
            method: LOG_CHECK.into(),
            result: format!("failed: {problem}"),
            ..ActivityEntry::blank()
        }
    }

    fn log_check_problem(&self) -> Option<&str> {
        (self.method == LOG_CHECK).then_some(self.result.as_str())
    }
}

impl ActivityEntry {
    fn blank() -> Self {
        ActivityEntry {
            v: 1,
            seq: 0,
            time: String::new(),
            caller: String::new(),
            client_id: String::new(),
            authentication: String::new(),
            source_ip: String::new(),
            method: String::new(),
            path: String::new(),
            status: 0,
            result: String::new(),
            prev: String::new(),
            hash: String::new(),
        }
    }
}

pub type ActivityLog = AuditLog<ActivityEntry>;

/// One finished request, as the log sees it.
pub struct Finished<'a> {
    pub caller: Option<&'a Caller>,
    pub source_ip: Option<std::net::IpAddr>,
    pub method: &'a Method,
    pub path: &'a str,
    pub status: u16,
    /// The error code of a refused or failed request.
    pub error: Option<&'a ApiError>,
}

/// Whether a request goes into the log: every write or action, and every refusal.
pub fn recorded(method: &Method, status: u16) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) || status == 401 || status == 403
}

fn result_of(status: u16, error: Option<&ApiError>) -> String {
    match (status, error) {
        (200..=299, _) => "success".into(),
        (401, _) => "unauthenticated".into(),
        (403, _) => "denied".into(),
        (_, Some(e)) => format!("failed: {}", e.code),
        (status, None) => format!("failed: {status}"),
    }
}

/// Appends `finished` to the log; returns once the entry is durable.
pub async fn record(log: &ActivityLog, finished: Finished<'_>) -> Result<(), AuditError> {
    let caller = finished.caller;
    let entry = ActivityEntry {
        caller: caller.and_then(Caller::object_id).map(|o| o.to_string()).unwrap_or_default(),
        client_id: caller.and_then(Caller::client_id).map(|o| o.to_string()).unwrap_or_default(),
        authentication: caller.map(|c| format!("{:?}", c.auth())).unwrap_or_else(|| "None".into()),
        source_ip: finished.source_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        method: finished.method.to_string(),
        path: finished.path.chars().take(MAX_PATH).collect(),
        status: finished.status,
        result: result_of(finished.status, finished.error),
        ..ActivityEntry::blank()
    };
    log.append(CHAIN, entry).await
}

/// The operator's view of the log on the control socket: `GET /operator/activity` (entries plus
/// the verification verdict).
pub fn operator_router(arm: std::sync::Arc<crate::Arm>) -> axum::Router {
    axum::Router::new().route("/operator/activity", axum::routing::get(operator_activity)).with_state(arm)
}

async fn operator_activity(
    axum::extract::State(arm): axum::extract::State<std::sync::Arc<crate::Arm>>,
    extensions: axum::http::Extensions,
) -> Result<axum::response::Response, byos_http::Failure> {
    let caller = byos_identity::api::operator::operator_caller(&extensions);
    let read = byos_authz::Action::operator("byos/activityLog/read");
    arm.door.authorize(&caller, &read, &byos_core::Scope::root()).map_err(|d| d.to_api_error())?;
    let (entries, verdict) = arm.activity.verdict(CHAIN).await.map_err(|e| {
        tracing::error!(error = %e, "cannot read the ARM activity log");
        ApiError::internal()
    })?;
    Ok(byos_http::json_response(200, &byos_audit::report(&entries, verdict)))
}
