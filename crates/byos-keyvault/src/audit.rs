//! The key-usage audit log: every key operation on a vault (who, which key version, what, result,
//! when), append-only and hash-chained per vault, so that editing or deleting any past entry is
//! detected by [`verify`].
//!
//! `entry.hash = SHA-256(canonical JSON of the entry without its hash)`, and each entry carries the
//! previous entry's hash; sequence numbers are contiguous from 0.

use byos_core::{ApiError, Caller};
use byos_store::{Batch, StoreError, Table};
use serde::{Deserialize, Serialize};

use crate::KeyVaultService;

const AUDIT: Table = Table("kv_audit");
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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
    /// `success`, `denied`, or `failed: {code}`.
    pub result: String,
    pub prev: String,
    #[serde(default)]
    pub hash: String,
}

impl Entry {
    fn digest(&self) -> String {
        let mut unsigned = self.clone();
        unsigned.hash = String::new();
        let bytes = serde_json::to_vec(&unsigned).unwrap_or_default();
        byos_crypto::sha256(&bytes).iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn key(vault: &str, seq: u64) -> String {
    format!("{}/{seq:020}", vault.to_ascii_lowercase())
}

fn store_err(e: StoreError) -> ApiError {
    tracing::error!(error = %e, "audit log store failure");
    ApiError::internal()
}

/// An entry waiting to be chained.
pub struct Pending {
    vault: String,
    who: Who,
    key: String,
    operation: String,
    result: String,
    done: tokio::sync::oneshot::Sender<()>,
}

/// Entries waiting for the writer, the writer's state, and each vault's chain head in memory.
#[derive(Default)]
pub struct Queue {
    pending: Vec<Pending>,
    writing: bool,
    heads: std::collections::HashMap<String, (u64, String)>,
}

/// The chain head of a vault: from memory, else from its last stored entry.
async fn head(store: &byos_store::SharedStore, queue: &std::sync::Mutex<Queue>, vault: &str) -> Result<Option<(u64, String)>, StoreError> {
    if let Some(head) = queue.lock().unwrap_or_else(|e| e.into_inner()).heads.get(vault) {
        return Ok(Some(head.clone()));
    }
    let last = store.scan(AUDIT, &format!("{vault}/")).await?.into_iter().last();
    match last {
        Some((_, bytes)) => {
            let entry: Entry = serde_json::from_slice(&bytes).map_err(|e| StoreError::Backend(e.to_string()))?;
            Ok(Some((entry.seq, entry.hash)))
        }
        None => Ok(None),
    }
}

/// Drains the queue: chains every pending entry after its vault's head and commits them in one
/// batch (guarded, so nothing could fork a chain), then tells the waiters.
async fn write_pending(store: byos_store::SharedStore, queue: std::sync::Arc<std::sync::Mutex<Queue>>) {
    loop {
        let pending = {
            let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
            if q.pending.is_empty() {
                q.writing = false;
                return;
            }
            std::mem::take(&mut q.pending)
        };
        let mut batch = Batch::new();
        let mut heads: std::collections::HashMap<String, Option<(u64, String)>> = std::collections::HashMap::new();
        let mut waiters = Vec::with_capacity(pending.len());
        let mut failed = false;
        for p in pending {
            if !heads.contains_key(&p.vault) {
                match head(&store, &queue, &p.vault).await {
                    Ok(h) => {
                        heads.insert(p.vault.clone(), h);
                    }
                    Err(e) => {
                        tracing::error!(vault = %p.vault, error = %e, "cannot read the audit chain head");
                        failed = true;
                    }
                }
            }
            let previous = heads.get(&p.vault).cloned().flatten();
            let (seq, prev) = previous.map(|(seq, hash)| (seq + 1, hash)).unwrap_or((0, GENESIS.to_owned()));
            let mut entry = Entry {
                v: 1,
                seq,
                time: byos_core::time::rfc3339_now(),
                caller: p.who.caller.clone(),
                client_id: p.who.client_id.clone(),
                authentication: p.who.authentication.clone(),
                key: p.key.clone(),
                operation: p.operation.clone(),
                result: p.result.clone(),
                prev,
                hash: String::new(),
            };
            entry.hash = entry.digest();
            let k = key(&p.vault, seq);
            match serde_json::to_vec(&entry) {
                Ok(bytes) => batch = batch.expect_absent(AUDIT, k.clone()).put(AUDIT, k, bytes),
                Err(_) => failed = true,
            }
            heads.insert(p.vault.clone(), Some((seq, entry.hash)));
            waiters.push(p.done);
        }
        let committed = !failed && store.commit(batch).await.is_ok();
        {
            let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
            if committed {
                q.heads.extend(heads.into_iter().filter_map(|(v, h)| h.map(|h| (v, h))));
            } else {
                // Read the heads from the store again next time; this batch's entries are lost.
                tracing::error!("cannot write key audit entries");
                q.heads.clear();
            }
        }
        for waiter in waiters {
            let _ = waiter.send(());
        }
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
        Err(e) if e.status == 403 && matches!(e.inner_code.as_deref(), Some("AccessDenied" | "ForbiddenByRbac" | "ForbiddenByFirewall" | "ForbiddenByConnection")) => "denied".into(),
        Err(e) if e.status == 401 => "denied".into(),
        Err(e) => format!("failed: {}", e.inner_code.clone().unwrap_or_else(|| e.code.clone())),
    }
}

impl KeyVaultService {
    /// Appends one entry to the vault's chain. Concurrent appends are ordered by the store's guard
    /// on the next sequence number.
    pub async fn audit(&self, vault: &str, caller: &Caller, key_id: &str, operation: &str, result: String) {
        let who = Who {
            caller: caller.object_id.map(|o| o.to_string()).unwrap_or_default(),
            client_id: caller.client_id.map(|o| o.to_string()).unwrap_or_default(),
            authentication: format!("{:?}", caller.auth),
        };
        self.audit_as(vault, &who, key_id, operation, result).await;
    }

    /// Appends an entry for an actor that is not a request's caller (a rotation policy). Returns
    /// once the entry is durable; concurrent appends are chained and committed together.
    pub async fn audit_as(&self, vault: &str, who: &Who, key_id: &str, operation: &str, result: String) {
        let (done, written) = tokio::sync::oneshot::channel();
        let pending = Pending { vault: vault.to_ascii_lowercase(), who: who.clone(), key: key_id.to_owned(), operation: operation.to_owned(), result, done };
        let lead = {
            let mut queue = self.audit_queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.pending.push(pending);
            !std::mem::replace(&mut queue.writing, true)
        };
        if lead {
            let (store, queue) = (self.store.clone(), std::sync::Arc::clone(&self.audit_queue));
            tokio::spawn(write_pending(store, queue));
        }
        let _ = written.await;
    }

    /// Every entry of a vault's log, in order.
    pub async fn audit_entries(&self, vault: &str) -> Result<Vec<Entry>, ApiError> {
        let rows = self.store.scan(AUDIT, &format!("{}/", vault.to_ascii_lowercase())).await.map_err(store_err)?;
        rows.iter().map(|(_, b)| serde_json::from_slice(b).map_err(|_| ApiError::internal())).collect()
    }
}

/// Checks a chain: contiguous sequence numbers, each hash matching its entry, each entry naming
/// its predecessor's hash. Returns the number of entries, or what is wrong first.
pub fn verify(entries: &[Entry]) -> Result<usize, String> {
    let mut prev = GENESIS.to_owned();
    for (expected, entry) in entries.iter().enumerate() {
        if entry.seq != expected as u64 {
            return Err(format!("entry {expected} is missing (found sequence number {} in its place)", entry.seq));
        }
        if entry.prev != prev {
            return Err(format!("entry {} does not follow entry {}: the chain was cut or reordered", entry.seq, expected.saturating_sub(1)));
        }
        if entry.digest() != entry.hash {
            return Err(format!("entry {} was modified after it was written", entry.seq));
        }
        prev = entry.hash.clone();
    }
    Ok(entries.len())
}

#[cfg(test)]
mod tests {
    use super::*;

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
                e.hash = e.digest();
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
        rehashed[1].hash = rehashed[1].digest();
        assert!(verify(&rehashed).is_err_and(|e| e.contains("entry 2 does not follow")), "rehashing one entry breaks the next link");
        let mut deleted = chain(4);
        deleted.remove(1);
        assert!(verify(&deleted).is_err());
        let mut truncated_head = chain(3);
        truncated_head.remove(0);
        assert!(verify(&truncated_head).is_err());
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
    use byos_identity::api::operator::OperatorSocket;
    let caller = if extensions.get::<OperatorSocket>().is_some() { Caller::operator() } else { Caller::anonymous(byos_http::origin_of(&extensions)) };
    service
        .door
        .authorize(&caller, &byos_authz::Action::operator("byos/keyVaults/audit/read"), &byos_core::Scope::root())
        .map_err(|d| ApiError::new(403, "AuthorizationFailed", d.reason.clone()).with_explanation(d.explanation()))?;
    let entries = service.audit_entries(&query.vault).await?;
    let verdict = match verify(&entries) {
        Ok(n) => serde_json::json!({"ok": true, "entries": n}),
        Err(problem) => serde_json::json!({"ok": false, "entries": entries.len(), "problem": problem}),
    };
    Ok(byos_http::json_response(200, &serde_json::json!({"vault": query.vault, "verification": verdict, "entries": entries})))
}
