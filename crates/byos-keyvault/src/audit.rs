//! The key-usage audit log: every key operation on a vault (who, which key version, what, result,
//! when), append-only and hash-chained per vault, so that editing or deleting any past entry is
//! detected by [`verify`].
//!
//! `entry.hash = SHA-256(canonical JSON of the entry without its hash)`, and each entry carries the
//! previous entry's hash; sequence numbers are contiguous from 0. The chain alone cannot show that
//! its newest entries were cut off, or that it was rewritten from some entry on, so every commit
//! also records the vault's [`Head`] (last sequence number and hash) authenticated with a key
//! sealed under the root key.

use std::sync::Arc;

use byos_core::{ApiError, Caller};
use byos_crypto::{MacKey, SealPurpose, b64url, b64url_decode};
use byos_store::{Batch, StoreError, Table};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::KeyVaultService;

const AUDIT: Table = Table("kv_audit");
const HEADS: Table = Table("kv_audit_head");
const META: Table = Table("kv_meta");
const HEAD_KEY: &str = "audit-head-key";
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
    /// `success`, `denied`, `unauthenticated`, or `failed: {code}`.
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

/// The newest entry of a vault's chain, as the last commit left it, authenticated so that only
/// byos (holding the root key) can move it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Head {
    pub v: u32,
    pub seq: u64,
    pub hash: String,
    pub mac: String,
}

impl Head {
    fn signed_text(vault: &str, seq: u64, hash: &str) -> String {
        format!("byos-audit-head\n{vault}\n{seq}\n{hash}")
    }

    fn new(key: &MacKey, vault: &str, seq: u64, hash: &str) -> Head {
        Head {
            v: 1,
            seq,
            hash: hash.to_owned(),
            mac: b64url(&key.sign(Self::signed_text(vault, seq, hash).as_bytes())),
        }
    }

    fn authentic(&self, key: &MacKey, vault: &str) -> bool {
        b64url_decode(&self.mac)
            .is_some_and(|tag| key.verify(Self::signed_text(vault, self.seq, &self.hash).as_bytes(), &tag))
    }
}

fn key(vault: &str, seq: u64) -> String {
    format!("{}/{seq:020}", vault.to_ascii_lowercase())
}

fn store_err(e: StoreError) -> ApiError {
    tracing::error!(error = %e, "audit log store failure");
    ApiError::internal()
}

/// Why an audit entry could not be made durable. The operation it records must then not be
/// reported as done.
#[derive(Clone, Debug, thiserror::Error)]
pub enum AuditError {
    #[error("the audit head key cannot be loaded: {0}")]
    HeadKey(String),
    #[error("the audit log cannot be read or written: {0}")]
    Store(String),
    #[error("the audit log kept conflicting with concurrent writers after {0} attempts")]
    Contended(usize),
    #[error("an audit entry cannot be encoded")]
    Encoding,
}

/// How often the writer re-chains a batch whose commit conflicted (another writer appended to a
/// vault's chain first) before it gives up and fails the batch's operations.
const COMMIT_ATTEMPTS: usize = 8;

/// An entry waiting to be chained.
pub struct Pending {
    vault: String,
    who: Who,
    key: String,
    operation: String,
    result: String,
    done: tokio::sync::oneshot::Sender<Result<(), AuditError>>,
}

/// Entries waiting for the writer, the writer's state, and each vault's chain head in memory.
#[derive(Default)]
pub struct Queue {
    pending: Vec<Pending>,
    writing: bool,
    heads: std::collections::HashMap<String, (u64, String)>,
}

/// Where a vault's chain continues, and what was wrong with its stored end, if anything.
struct ChainEnd {
    last: Option<(u64, String)>,
    problem: Option<&'static str>,
}

/// The end of a vault's chain: from memory, else from its sealed head (so entries cut off the end
/// stay visible as a gap), else, with a problem to record, from its last stored entry. After a
/// conflict (`recheck`), the sealed head is also checked against the last stored entry: a head
/// behind its log (an old head put back) would otherwise make every retry conflict again.
async fn chain_end(
    store: &byos_store::SharedStore,
    queue: &std::sync::Mutex<Queue>,
    head_key: &MacKey,
    vault: &str,
    recheck: bool,
) -> Result<ChainEnd, StoreError> {
    if !recheck && let Some(head) = queue.lock().unwrap_or_else(|e| e.into_inner()).heads.get(vault) {
        return Ok(ChainEnd { last: Some(head.clone()), problem: None });
    }
    let sealed = store.get(HEADS, vault).await?.map(|bytes| serde_json::from_slice::<Head>(&bytes).ok());
    if let Some(Some(head)) = &sealed
        && head.authentic(head_key, vault)
    {
        let from_head = (head.seq, head.hash.clone());
        if !recheck {
            return Ok(ChainEnd { last: Some(from_head), problem: None });
        }
        return Ok(match last_entry(store, vault).await? {
            Some(last) if last.0 > head.seq => {
                ChainEnd { last: Some(last), problem: Some("the log continues past its sealed head") }
            }
            _ => ChainEnd { last: Some(from_head), problem: None },
        });
    }
    // Only a log whose head is missing or altered is read to its end.
    let last = last_entry(store, vault).await?;
    Ok(match (sealed, &last) {
        (Some(_), _) => ChainEnd { last, problem: Some("the sealed head of the log was altered") },
        (None, Some(_)) => ChainEnd { last, problem: Some("the sealed head of the log was missing") },
        (None, None) => ChainEnd { last: None, problem: None },
    })
}

/// The sequence number and hash of a vault's last stored entry.
async fn last_entry(store: &byos_store::SharedStore, vault: &str) -> Result<Option<(u64, String)>, StoreError> {
    match store.scan(AUDIT, &format!("{vault}/")).await?.into_iter().last() {
        Some((_, bytes)) => {
            let entry: Entry = serde_json::from_slice(&bytes).map_err(|e| StoreError::Backend(e.to_string()))?;
            Ok(Some((entry.seq, entry.hash)))
        }
        None => Ok(None),
    }
}

/// The operation of the entry byos appends when it finds a vault's stored log tampered with: the
/// evidence becomes part of the chain, so continuing the log cannot erase it.
const LOG_CHECK: &str = "auditLogCheck";

/// One entry being added to a batch of the writer.
struct Appended<'a> {
    who: &'a Who,
    key: &'a str,
    operation: &'a str,
    result: &'a str,
}

/// Chains an entry after the vault's current end in `heads` and adds it to `batch`.
fn append(
    batch: &mut Batch,
    heads: &mut std::collections::HashMap<String, Option<(u64, String)>>,
    vault: &str,
    appended: Appended<'_>,
) -> Result<(), AuditError> {
    let previous = heads.get(vault).cloned().flatten();
    let (seq, prev) = previous.map(|(seq, hash)| (seq + 1, hash)).unwrap_or((0, GENESIS.to_owned()));
    let mut entry = Entry {
        v: 1,
        seq,
        time: byos_core::time::rfc3339_now(),
        caller: appended.who.caller.clone(),
        client_id: appended.who.client_id.clone(),
        authentication: appended.who.authentication.clone(),
        key: appended.key.to_owned(),
        operation: appended.operation.to_owned(),
        result: appended.result.to_owned(),
        prev,
        hash: String::new(),
    };
    entry.hash = entry.digest();
    let k = key(vault, seq);
    let bytes = serde_json::to_vec(&entry).map_err(|_| AuditError::Encoding)?;
    heads.insert(vault.to_owned(), Some((seq, entry.hash)));
    *batch = std::mem::take(batch).expect_absent(AUDIT, k.clone()).put(AUDIT, k, bytes);
    Ok(())
}

/// The new chain ends of one batch, by vault.
type BatchHeads = std::collections::HashMap<String, Option<(u64, String)>>;

/// Chains `pending` after each vault's end into one batch, with the vaults' new sealed heads.
async fn chain_batch(
    store: &byos_store::SharedStore,
    queue: &std::sync::Mutex<Queue>,
    head_key: &MacKey,
    pending: &[Pending],
    recheck: bool,
) -> Result<(Batch, BatchHeads), AuditError> {
    let checker = Who { caller: String::new(), client_id: String::new(), authentication: "ByosAuditCheck".into() };
    let mut batch = Batch::new();
    let mut heads = BatchHeads::new();
    for p in pending {
        if !heads.contains_key(&p.vault) {
            let end = chain_end(store, queue, head_key, &p.vault, recheck).await.map_err(|e| {
                tracing::error!(vault = %p.vault, error = %e, "cannot read the audit chain head");
                AuditError::Store(e.to_string())
            })?;
            heads.insert(p.vault.clone(), end.last);
            if let Some(problem) = end.problem {
                tracing::error!(vault = %p.vault, problem, "the key audit log was tampered with; recording it in the log");
                let result = format!("failed: {problem}");
                let marker = Appended { who: &checker, key: "", operation: LOG_CHECK, result: &result };
                append(&mut batch, &mut heads, &p.vault, marker)?;
            }
        }
        let entry = Appended { who: &p.who, key: &p.key, operation: &p.operation, result: &p.result };
        append(&mut batch, &mut heads, &p.vault, entry)?;
    }
    for (vault, head) in &heads {
        if let Some((seq, hash)) = head {
            let bytes =
                serde_json::to_vec(&Head::new(head_key, vault, *seq, hash)).map_err(|_| AuditError::Encoding)?;
            batch = batch.put(HEADS, vault.clone(), bytes);
        }
    }
    Ok((batch, heads))
}

/// Commits `pending` (guarded, so nothing can fork a chain). A conflict means another writer
/// extended a chain first: the entries are chained again after the new end, never dropped.
async fn commit_pending(
    store: &byos_store::SharedStore,
    queue: &std::sync::Mutex<Queue>,
    head_key: &MacKey,
    pending: &[Pending],
) -> Result<(), AuditError> {
    for attempt in 0..COMMIT_ATTEMPTS {
        let (batch, heads) = chain_batch(store, queue, head_key, pending, attempt > 0).await?;
        match store.commit(batch).await {
            Ok(()) => {
                let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
                q.heads.extend(heads.into_iter().filter_map(|(v, h)| h.map(|h| (v, h))));
                return Ok(());
            }
            Err(StoreError::Conflict { .. }) => {
                tracing::warn!(attempt, "key audit entries conflicted with another writer; chaining them again");
                queue.lock().unwrap_or_else(|e| e.into_inner()).heads.clear();
            }
            Err(StoreError::Backend(detail)) => {
                queue.lock().unwrap_or_else(|e| e.into_inner()).heads.clear();
                return Err(AuditError::Store(detail));
            }
        }
    }
    Err(AuditError::Contended(COMMIT_ATTEMPTS))
}

/// Drains the queue: commits every pending entry (concurrent appends together, in one batch), then
/// tells each waiter whether its entry is durable.
async fn write_pending(store: byos_store::SharedStore, queue: Arc<std::sync::Mutex<Queue>>, head_key: Arc<MacKey>) {
    loop {
        let pending = {
            let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
            if q.pending.is_empty() {
                q.writing = false;
                return;
            }
            std::mem::take(&mut q.pending)
        };
        let outcome = commit_pending(&store, &queue, &head_key, &pending).await;
        if let Err(e) = &outcome {
            tracing::error!(error = %e, entries = pending.len(), "cannot write key audit entries; their operations fail");
            queue.lock().unwrap_or_else(|e| e.into_inner()).heads.clear();
        }
        for p in pending {
            let _ = p.done.send(outcome.clone());
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
        let head_key = self.audit_head_key().await.map_err(|e| AuditError::HeadKey(e.message))?;
        let (done, written) = tokio::sync::oneshot::channel();
        let pending = Pending {
            vault: vault.to_ascii_lowercase(),
            who: who.clone(),
            key: key_id.to_owned(),
            operation: operation.to_owned(),
            result,
            done,
        };
        let lead = {
            let mut queue = self.audit_queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.pending.push(pending);
            !std::mem::replace(&mut queue.writing, true)
        };
        if lead {
            let (store, queue) = (self.store.clone(), Arc::clone(&self.audit_queue));
            tokio::spawn(write_pending(store, queue, head_key));
        }
        written.await.unwrap_or_else(|_| Err(AuditError::Store("the audit writer stopped".into())))
    }

    /// The key authenticating audit heads: unsealed from the store, created on first use.
    async fn audit_head_key(&self) -> Result<Arc<MacKey>, ApiError> {
        let key = self.audit_key.get_or_try_init(|| async {
            let bytes = byos_identity::load_or_create_sealed(
                &self.store,
                &self.root,
                META,
                HEAD_KEY,
                SealPurpose::AuditHeadKey,
                || Ok(Zeroizing::new(byos_crypto::random_bytes::<32>()?.to_vec())),
            )
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "cannot load the audit head key; key operations fail until it loads");
                ApiError::internal()
            })?;
            Ok::<_, ApiError>(Arc::new(MacKey::new(&bytes)))
        });
        key.await.cloned()
    }

    /// Every entry of a vault's log, in order.
    pub async fn audit_entries(&self, vault: &str) -> Result<Vec<Entry>, ApiError> {
        let rows = self.store.scan(AUDIT, &format!("{}/", vault.to_ascii_lowercase())).await.map_err(store_err)?;
        rows.iter().map(|(_, b)| serde_json::from_slice(b).map_err(|_| ApiError::internal())).collect()
    }

    /// A vault's entries and the verdict on them: the chain, and its end against the sealed head.
    pub async fn audit_verdict(&self, vault: &str) -> Result<(Vec<Entry>, Result<usize, String>), ApiError> {
        let vault = vault.to_ascii_lowercase();
        let entries = self.audit_entries(&vault).await?;
        let head: Option<Head> = match self.store.get(HEADS, &vault).await.map_err(store_err)? {
            Some(bytes) => Some(serde_json::from_slice(&bytes).map_err(|_| ApiError::internal())?),
            None => None,
        };
        let key = self.audit_head_key().await?;
        let verdict = verify_anchored(&entries, head.as_ref(), &key, &vault);
        Ok((entries, verdict))
    }
}

/// [`verify`], then checks that the chain ends exactly at the vault's authenticated head: entries
/// cut off the end, or a chain rewritten and re-hashed from some entry on, no longer match it.
pub fn verify_anchored(entries: &[Entry], head: Option<&Head>, key: &MacKey, vault: &str) -> Result<usize, String> {
    let count = verify(entries)?;
    match (entries.last(), head) {
        (None, None) => Ok(0),
        (_, Some(head)) if !head.authentic(key, vault) => Err("the log's sealed head was altered".into()),
        (Some(last), Some(head)) if last.seq == head.seq && last.hash == head.hash => Ok(count),
        (Some(last), Some(head)) if last.seq < head.seq => {
            Err(format!("entries {} to {} were cut off the end of the log", last.seq + 1, head.seq))
        }
        (None, Some(head)) => Err(format!("every entry was removed (the sealed head names entry {})", head.seq)),
        (Some(_), Some(head)) => {
            Err(format!("the log does not end at entry {} as its sealed head says: it was rewritten", head.seq))
        }
        (Some(_), None) => Err("the log's sealed head is missing".into()),
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
            return Err(format!(
                "entry {} does not follow entry {}: the chain was cut or reordered",
                entry.seq,
                expected.saturating_sub(1)
            ));
        }
        if entry.digest() != entry.hash {
            return Err(format!("entry {} was modified after it was written", entry.seq));
        }
        if entry.operation == LOG_CHECK {
            return Err(format!(
                "entry {} records that the log was tampered with before it: {}",
                entry.seq, entry.result
            ));
        }
        prev = entry.hash.clone();
    }
    Ok(entries.len())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

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
            let audits = batch.ops.iter().any(|op| matches!(op, byos_store::Op::Put { table, .. } if *table == AUDIT));
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
        assert!(verify_anchored(&[], Some(&head), &key, "v").is_err_and(|e| e.contains("every entry was removed")));
        let mut rewritten = chain(4);
        rewritten[3].result = "denied".into();
        rewritten[3].hash = rewritten[3].digest();
        assert_eq!(verify(&rewritten), Ok(4), "a re-hashed tail is a valid chain");
        assert!(verify_anchored(&rewritten, Some(&head), &key, "v").is_err_and(|e| e.contains("rewritten")));
        let moved = Head { seq: 1, hash: full[1].hash.clone(), ..head.clone() };
        assert!(verify_anchored(cut, Some(&moved), &key, "v").is_err_and(|e| e.contains("altered")));
        assert!(verify_anchored(&full, Some(&head), &key, "other vault").is_err_and(|e| e.contains("altered")));
        assert!(verify_anchored(&full, None, &key, "v").is_err_and(|e| e.contains("missing")));
        assert_eq!(verify_anchored(&[], None, &key, "v"), Ok(0));
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
    let verdict = match verdict {
        Ok(n) => serde_json::json!({"ok": true, "entries": n}),
        Err(problem) => serde_json::json!({"ok": false, "entries": entries.len(), "problem": problem}),
    };
    Ok(byos_http::json_response(
        200,
        &serde_json::json!({"vault": query.vault, "verification": verdict, "entries": entries}),
    ))
}
