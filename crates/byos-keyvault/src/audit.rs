//! The key-usage audit log: every request to a vault (who, which key version, what, result,
//! when), one hash-chained [`byos_audit::AuditLog`] chain per vault, so that editing, deleting or
//! cutting off any past entry is detected (`byos audit verify`).

use byos_audit::{AuditError, AuditLog, Chained, LOG_CHECK, LOG_CHECK_AUTHENTICATION, LogTables};
use byos_core::{ApiError, Caller};
use byos_store::Table;
use serde::{Deserialize, Serialize};

use crate::KeyVaultService;

/// Where the key-usage log lives (tables and names unchanged since the log was first written).
pub const TABLES: LogTables = LogTables {
    entries: Table("kv_audit"),
    heads: Table("kv_audit_head"),
    meta: Table("kv_meta"),
    head_key: "audit-head-key",
    name: "key vault audit",
};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub v: u32,
    pub seq: u64,
    pub time: String,
    /// The caller's object id (empty for anonymous).
    pub caller: String,
    pub client_id: String,
    pub authentication: String,
    /// The key id (`{vault}keys/{name}[/{version}]`).
    pub key: String,
    pub operation: String,
    /// `success`, `denied`, `unauthenticated`, or `failed: {code}`.
    pub result: String,
    pub prev: String,
    #[serde(default)]
    pub hash: String,
}

impl Entry {
    fn new(who: &Who, key: &str, operation: &str, result: String) -> Entry {
        Entry {
            v: 1,
            seq: 0,
            time: String::new(),
            caller: who.caller.clone(),
            client_id: who.client_id.clone(),
            authentication: who.authentication.clone(),
            key: key.to_owned(),
            operation: operation.to_owned(),
            result,
            prev: String::new(),
            hash: String::new(),
        }
    }
}

impl Chained for Entry {
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
        let checker =
            Who { caller: String::new(), client_id: String::new(), authentication: LOG_CHECK_AUTHENTICATION.into() };
        Entry::new(&checker, "", LOG_CHECK, format!("failed: {problem}"))
    }

    fn log_check_problem(&self) -> Option<&str> {
        (self.operation == LOG_CHECK).then_some(self.result.as_str())
    }
}

/// Who performed an audited operation.
#[derive(Clone)]
pub struct Who {
    pub caller: String,
    pub client_id: String,
    pub authentication: String,
}

/// The outcome of an operation, as the log writes it.
pub fn result_of(outcome: Result<(), &ApiError>) -> String {
    match outcome {
        Ok(()) => "success".into(),
        Err(e)
            if e.status == 403
                && matches!(
                    e.inner_code.as_deref(),
                    Some("AccessDenied" | "ForbiddenByRbac" | "ForbiddenByFirewall" | "ForbiddenByConnection")
                ) =>
        {
            "denied".into()
        }
        Err(e) if e.status == 401 => "unauthenticated".into(),
        Err(e) => format!("failed: {}", e.inner_code.clone().unwrap_or_else(|| e.code.clone())),
    }
}

/// A log failure as the vault's caller sees it: the operation is not reported as done.
fn internal(e: AuditError) -> ApiError {
    tracing::error!(error = %e, "key vault audit log failure");
    ApiError::internal()
}

impl KeyVaultService {
    /// Appends one entry to the vault's chain; returns once it is durable, or why it is not.
    pub async fn audit(
        &self,
        vault: &str,
        caller: &Caller,
        key_id: &str,
        operation: &str,
        result: String,
    ) -> Result<(), AuditError> {
        let who = Who {
            caller: caller.object_id().map(|o| o.to_string()).unwrap_or_default(),
            client_id: caller.client_id().map(|o| o.to_string()).unwrap_or_default(),
            authentication: format!("{:?}", caller.auth()),
        };
        self.audit_as(vault, &who, key_id, operation, result).await
    }

    /// Appends an entry for an actor that is not an authenticated caller (a rotation policy, a
    /// request without valid credentials). Returns once the entry is durable; concurrent appends
    /// are chained and committed together.
    pub async fn audit_as(
        &self,
        vault: &str,
        who: &Who,
        key_id: &str,
        operation: &str,
        result: String,
    ) -> Result<(), AuditError> {
        self.audit_log.append(vault, Entry::new(who, key_id, operation, result)).await
    }

    /// Every entry of a vault's log, in order.
    pub async fn audit_entries(&self, vault: &str) -> Result<Vec<Entry>, ApiError> {
        self.audit_log.entries(vault).await.map_err(internal)
    }

    /// A vault's entries and the verdict on them: the chain, and its end against the sealed head.
    pub async fn audit_verdict(&self, vault: &str) -> Result<(Vec<Entry>, Result<usize, String>), ApiError> {
        self.audit_log.verdict(vault).await.map_err(internal)
    }
}

/// The log of a service: one chain per vault.
pub type KeyAuditLog = AuditLog<Entry>;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use byos_audit::{GENESIS, Head, digest, verify, verify_anchored};
    use byos_crypto::MacKey;
    use byos_store::{Batch, StoreError};
    use std::sync::Arc;

    /// A store whose commits that write audit entries fail while `fail` is set (a full disk, a lost
    /// database connection).
    #[derive(Default)]
    pub(crate) struct FailingAudit {
        inner: byos_store::MemStore,
        pub(crate) fail: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl byos_store::MetaStore for FailingAudit {
        async fn get(&self, table: byos_store::Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get(table, key).await
        }

        async fn scan(&self, table: byos_store::Table, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
            self.inner.scan(table, prefix).await
        }

        async fn scan_page(
            &self,
            table: byos_store::Table,
            prefix: &str,
            after: Option<&str>,
            limit: usize,
        ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
            self.inner.scan_page(table, prefix, after, limit).await
        }

        async fn scan_consistent(
            &self,
            scans: &[(byos_store::Table, &str)],
        ) -> Result<Vec<Vec<(String, Vec<u8>)>>, StoreError> {
            self.inner.scan_consistent(scans).await
        }

        async fn commit_reporting(
            &self,
            batch: Batch,
            report: Option<(byos_store::Table, &str)>,
        ) -> Result<Option<Vec<u8>>, StoreError> {
            let audits = batch
                .ops
                .iter()
                .any(|op| matches!(op, byos_store::Op::Put { table, .. } if table.0 == TABLES.entries.0));
            if audits && self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(StoreError::Backend("disk full (test)".into()));
            }
            self.inner.commit_reporting(batch, report).await
        }
    }

    fn chain(n: u64) -> Vec<Entry> {
        let mut prev = GENESIS.to_owned();
        (0..n)
            .map(|seq| {
                let mut e = Entry {
                    v: 1,
                    seq,
                    time: "t".into(),
                    caller: "c".into(),
                    client_id: String::new(),
                    authentication: "BearerToken".into(),
                    key: "k".into(),
                    operation: "unwrapKey".into(),
                    result: "success".into(),
                    prev: prev.clone(),
                    hash: String::new(),
                };
                e.hash = digest(&e);
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    #[test]
    fn verification_detects_edits_deletions_and_reordering() {
        assert_eq!(verify(&chain(4)), Ok(4));
        let mut edited = chain(4);
        edited[2].result = "denied".into();
        assert!(verify(&edited).is_err_and(|e| e.contains("entry 2 was modified")));
        let mut rehashed = chain(4);
        rehashed[1].operation = "sign".into();
        rehashed[1].hash = digest(&rehashed[1]);
        assert!(
            verify(&rehashed).is_err_and(|e| e.contains("entry 2 does not follow")),
            "rehashing one entry breaks the next link"
        );
        let mut deleted = chain(4);
        deleted.remove(1);
        assert!(verify(&deleted).is_err());
        let mut truncated_head = chain(3);
        truncated_head.remove(0);
        assert!(verify(&truncated_head).is_err());
    }

    struct NoListeners;

    #[async_trait::async_trait]
    impl byos_http::Listeners for NoListeners {
        async fn open(&self, _port: u16, _router: axum::Router) -> std::io::Result<(u16, byos_http::ListenerHandle)> {
            Err(std::io::Error::other("no listeners in this test"))
        }
    }

    async fn service_on(
        store: &byos_store::SharedStore,
        root: &Arc<byos_crypto::RootKey>,
    ) -> Result<Arc<KeyVaultService>, Box<dyn std::error::Error>> {
        let directory = Arc::new(byos_identity::Directory::open(Arc::clone(store), root, "https://127.0.0.1:1").await?);
        Ok(KeyVaultService::new(
            Arc::clone(store),
            Arc::clone(root),
            Arc::new(byos_authz::Door::new()),
            directory,
            Arc::new(NoListeners),
            "https://127.0.0.1:1".into(),
        ))
    }

    fn someone() -> Who {
        Who { caller: "c".into(), client_id: String::new(), authentication: "BearerToken".into() }
    }

    /// Two writers on one store (a second node, or a second service instance): the first one's
    /// in-memory head is stale when it appends again, so its commit conflicts. Before, that batch
    /// was dropped ("this batch's entries are lost"); now it is chained again after the new end.
    #[tokio::test]
    async fn regression_audit_commit_conflict_retries_instead_of_dropping_entries()
    -> Result<(), Box<dyn std::error::Error>> {
        let store: byos_store::SharedStore = Arc::new(byos_store::MemStore::new());
        let root = Arc::new(byos_crypto::RootKey::ephemeral()?);
        let first = service_on(&store, &root).await?;
        let second = service_on(&store, &root).await?;
        first.audit_as("kv1", &someone(), "k", "get", "success".into()).await?;
        second.audit_as("kv1", &someone(), "k", "sign", "success".into()).await?;
        first.audit_as("kv1", &someone(), "k", "unwrapKey", "success".into()).await?;
        let (entries, verdict) = first.audit_verdict("kv1").await.map_err(|e| e.message)?;
        let operations: Vec<&str> = entries.iter().map(|e| e.operation.as_str()).collect();
        assert_eq!(operations, ["get", "sign", "unwrapKey"], "no entry may be lost");
        assert_eq!(verdict, Ok(3));
        Ok(())
    }

    #[tokio::test]
    async fn an_entry_that_cannot_be_committed_is_reported() -> Result<(), Box<dyn std::error::Error>> {
        let store = Arc::new(FailingAudit::default());
        let shared: byos_store::SharedStore = store.clone();
        let service = service_on(&shared, &Arc::new(byos_crypto::RootKey::ephemeral()?)).await?;
        service.audit_as("kv1", &someone(), "k", "get", "success".into()).await?;
        store.fail.store(true, std::sync::atomic::Ordering::SeqCst);
        let refused = service.audit_as("kv1", &someone(), "k", "sign", "success".into()).await;
        assert!(matches!(refused, Err(AuditError::Store(_))), "{refused:?}");
        store.fail.store(false, std::sync::atomic::Ordering::SeqCst);
        service.audit_as("kv1", &someone(), "k", "verify", "success".into()).await?;
        let (entries, verdict) = service.audit_verdict("kv1").await.map_err(|e| e.message)?;
        assert_eq!(entries.iter().map(|e| e.operation.as_str()).collect::<Vec<_>>(), ["get", "verify"]);
        assert_eq!(verdict, Ok(2), "a failed commit leaves the chain intact");
        Ok(())
    }

    #[test]
    fn the_sealed_head_catches_cut_off_and_rewritten_endings() {
        let key = MacKey::new(&[7; 32]);
        let full = chain(4);
        let head = Head::new(&key, "v", 3, &full[3].hash);
        assert_eq!(verify_anchored(&full, Some(&head), &key, "v"), Ok(4));
        let cut = &full[..2];
        assert!(verify_anchored(cut, Some(&head), &key, "v").is_err_and(|e| e.contains("entries 2 to 3 were cut off")));
        assert!(
            verify_anchored::<Entry>(&[], Some(&head), &key, "v").is_err_and(|e| e.contains("every entry was removed"))
        );
        let mut rewritten = chain(4);
        rewritten[3].result = "denied".into();
        rewritten[3].hash = digest(&rewritten[3]);
        assert_eq!(verify(&rewritten), Ok(4), "a re-hashed tail is a valid chain");
        assert!(verify_anchored(&rewritten, Some(&head), &key, "v").is_err_and(|e| e.contains("rewritten")));
        let moved = Head { seq: 1, hash: full[1].hash.clone(), ..head.clone() };
        assert!(verify_anchored(cut, Some(&moved), &key, "v").is_err_and(|e| e.contains("altered")));
        assert!(verify_anchored(&full, Some(&head), &key, "other vault").is_err_and(|e| e.contains("altered")));
        assert!(verify_anchored(&full, None, &key, "v").is_err_and(|e| e.contains("missing")));
        assert_eq!(verify_anchored::<Entry>(&[], None, &key, "v"), Ok(0));
    }
}

/// The operator's view of the audit log on the control socket: `GET /operator/audit?vault=NAME`
/// (entries plus the verification verdict).
pub fn operator_router(service: std::sync::Arc<KeyVaultService>) -> axum::Router {
    axum::Router::new().route("/operator/audit", axum::routing::get(operator_audit)).with_state(service)
}

#[derive(Deserialize)]
struct AuditQuery {
    vault: String,
}

async fn operator_audit(
    axum::extract::State(service): axum::extract::State<std::sync::Arc<KeyVaultService>>,
    extensions: axum::http::Extensions,
    axum::extract::Query(query): axum::extract::Query<AuditQuery>,
) -> Result<axum::response::Response, byos_http::Failure> {
    let caller = byos_identity::api::operator::operator_caller(&extensions);
    service
        .door
        .authorize(&caller, &byos_authz::Action::operator("byos/keyVaults/audit/read"), &byos_core::Scope::root())
        .map_err(|d| d.to_api_error())?;
    let (entries, verdict) = service.audit_verdict(&query.vault).await?;
    let mut report = byos_audit::report(&entries, verdict);
    report["vault"] = serde_json::Value::String(query.vault);
    Ok(byos_http::json_response(200, &report))
}
