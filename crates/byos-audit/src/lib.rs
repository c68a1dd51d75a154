//! Append-only audit logs. Entries are hash-chained per chain (a vault, the resource manager), so
//! that editing, deleting or reordering a past entry is detected by [`verify`]; each chain also
//! has a [`Head`] (last sequence number and hash) authenticated with a key sealed under the root
//! key, so that entries cut off the end, or a chain rewritten and re-hashed from some entry on, are
//! detected by [`verify_anchored`].
//!
//! `entry.hash = SHA-256(canonical JSON of the entry with an empty hash)`, each entry names the
//! previous entry's hash, and sequence numbers are contiguous from 0. Appends are queued and
//! committed together; a conflict (another writer extended a chain first) chains the batch again
//! after the new end, never drops it; [`AuditLog::append`] returns once its entry is durable, or
//! says why it is not, so that the operation it records can be refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use byos_crypto::{MacKey, RootKey, SealPurpose, b64url, b64url_decode};
use byos_store::{Batch, SharedStore, StoreError, Table};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The `prev` of a chain's first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The operation (or method) of the entry a log appends when it finds its stored end tampered
/// with, and the authentication it records.
pub const LOG_CHECK: &str = "auditLogCheck";
pub const LOG_CHECK_AUTHENTICATION: &str = "ByosAuditCheck";

/// An entry of a hash-chained log.
pub trait Chained: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    fn seq(&self) -> u64;
    fn prev(&self) -> &str;
    fn hash(&self) -> &str;
    /// Places the entry in its chain: number `seq`, after the entry hashed `prev`, written at `time`.
    fn link(&mut self, seq: u64, prev: String, time: String);
    fn set_hash(&mut self, hash: String);
    /// The entry a log appends when it finds the stored end of its chain tampered with: the
    /// evidence becomes part of the chain, so continuing the log cannot erase it.
    fn log_check(problem: &str) -> Self;
    /// For an entry made by [`Chained::log_check`]: what it records.
    fn log_check_problem(&self) -> Option<&str>;
}

/// The hash of `entry`: SHA-256 of its JSON with an empty hash, in hex.
pub fn digest<E: Chained>(entry: &E) -> String {
    let mut unsigned = entry.clone();
    unsigned.set_hash(String::new());
    let bytes = serde_json::to_vec(&unsigned).unwrap_or_default();
    byos_crypto::sha256(&bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a log keeps its entries, its heads and its sealed head key.
#[derive(Clone, Copy, Debug)]
pub struct LogTables {
    pub entries: Table,
    pub heads: Table,
    pub meta: Table,
    /// The key (in `meta`) of the sealed key that authenticates the heads.
    pub head_key: &'static str,
    /// What the log is, for messages.
    pub name: &'static str,
}

/// The newest entry of a chain, as the last commit left it, authenticated so that only byos
/// (holding the root key) can move it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Head {
    pub v: u32,
    pub seq: u64,
    pub hash: String,
    pub mac: String,
}

impl Head {
    fn signed_text(chain: &str, seq: u64, hash: &str) -> String {
        format!("byos-audit-head\n{chain}\n{seq}\n{hash}")
    }

    pub fn new(key: &MacKey, chain: &str, seq: u64, hash: &str) -> Head {
        Head {
            v: 1,
            seq,
            hash: hash.to_owned(),
            mac: b64url(&key.sign(Self::signed_text(chain, seq, hash).as_bytes())),
        }
    }

    fn authentic(&self, key: &MacKey, chain: &str) -> bool {
        b64url_decode(&self.mac)
            .is_some_and(|tag| key.verify(Self::signed_text(chain, self.seq, &self.hash).as_bytes(), &tag))
    }
}

fn entry_key(chain: &str, seq: u64) -> String {
    format!("{chain}/{seq:020}")
}

/// Why an audit entry could not be made durable, or a log could not be read. The operation an
/// entry records must then not be reported as done.
#[derive(Clone, Debug, thiserror::Error)]
pub enum AuditError {
    #[error("the audit head key cannot be loaded: {0}")]
    HeadKey(String),
    #[error("the audit log cannot be read or written: {0}")]
    Store(String),
    #[error("the audit log kept conflicting with concurrent writers after {0} attempts")]
    Contended(usize),
    #[error("an audit entry cannot be encoded or decoded")]
    Encoding,
}

/// How often the writer re-chains a batch whose commit conflicted before it gives up and fails the
/// batch's operations.
const COMMIT_ATTEMPTS: usize = 8;

/// An entry waiting to be chained.
struct Pending<E> {
    chain: String,
    entry: E,
    done: tokio::sync::oneshot::Sender<Result<(), AuditError>>,
}

/// Entries waiting for the writer, the writer's state, and each chain's end in memory.
struct Queue<E> {
    pending: Vec<Pending<E>>,
    writing: bool,
    heads: HashMap<String, (u64, String)>,
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Queue { pending: Vec::new(), writing: false, heads: HashMap::new() }
    }
}

/// One hash-chained log over the metadata store.
pub struct AuditLog<E> {
    store: SharedStore,
    root: Arc<RootKey>,
    tables: LogTables,
    queue: Arc<Mutex<Queue<E>>>,
    head_key: tokio::sync::OnceCell<Arc<MacKey>>,
}

impl<E: Chained> AuditLog<E> {
    pub fn new(store: SharedStore, root: Arc<RootKey>, tables: LogTables) -> Self {
        AuditLog { store, root, tables, queue: Arc::default(), head_key: tokio::sync::OnceCell::new() }
    }

    /// Appends `entry` to `chain` (its sequence number, predecessor and time are set here).
    /// Returns once it is durable; concurrent appends are chained and committed together.
    pub async fn append(&self, chain: &str, entry: E) -> Result<(), AuditError> {
        let head_key = self.head_key().await?;
        let (done, written) = tokio::sync::oneshot::channel();
        let lead = {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.pending.push(Pending { chain: chain.to_ascii_lowercase(), entry, done });
            !std::mem::replace(&mut queue.writing, true)
        };
        if lead {
            let writer =
                Writer { store: self.store.clone(), queue: Arc::clone(&self.queue), head_key, tables: self.tables };
            tokio::spawn(writer.drain());
        }
        written.await.unwrap_or_else(|_| Err(AuditError::Store("the audit writer stopped".into())))
    }

    /// Every entry of a chain, in order.
    pub async fn entries(&self, chain: &str) -> Result<Vec<E>, AuditError> {
        let prefix = format!("{}/", chain.to_ascii_lowercase());
        let rows = self.store.scan(self.tables.entries, &prefix).await.map_err(|e| AuditError::Store(e.to_string()))?;
        rows.iter().map(|(_, b)| serde_json::from_slice(b).map_err(|_| AuditError::Encoding)).collect()
    }

    /// A chain's entries and the verdict on them: the chain, and its end against the sealed head.
    pub async fn verdict(&self, chain: &str) -> Result<(Vec<E>, Result<usize, String>), AuditError> {
        let chain = chain.to_ascii_lowercase();
        let entries = self.entries(&chain).await?;
        let head: Option<Head> =
            match self.store.get(self.tables.heads, &chain).await.map_err(|e| AuditError::Store(e.to_string()))? {
                Some(bytes) => Some(serde_json::from_slice(&bytes).map_err(|_| AuditError::Encoding)?),
                None => None,
            };
        let key = self.head_key().await?;
        let verdict = verify_anchored(&entries, head.as_ref(), &key, &chain);
        Ok((entries, verdict))
    }

    /// The key authenticating heads: unsealed from the store, created on first use.
    async fn head_key(&self) -> Result<Arc<MacKey>, AuditError> {
        let key = self.head_key.get_or_try_init(|| async {
            let bytes = byos_identity::load_or_create_sealed(
                &self.store,
                &self.root,
                self.tables.meta,
                self.tables.head_key,
                SealPurpose::AuditHeadKey,
                || Ok(Zeroizing::new(byos_crypto::random_bytes::<32>()?.to_vec())),
            )
            .await
            .map_err(|e| {
                tracing::error!(log = self.tables.name, error = %e, "cannot load the audit head key");
                AuditError::HeadKey(e.to_string())
            })?;
            Ok::<_, AuditError>(Arc::new(MacKey::new(&bytes)))
        });
        key.await.cloned()
    }
}

/// Where a chain continues, and what was wrong with its stored end, if anything.
struct ChainEnd {
    last: Option<(u64, String)>,
    problem: Option<&'static str>,
}

/// The new chain ends of one batch, by chain.
type BatchHeads = HashMap<String, Option<(u64, String)>>;

/// The task that commits queued entries.
struct Writer<E> {
    store: SharedStore,
    queue: Arc<Mutex<Queue<E>>>,
    head_key: Arc<MacKey>,
    tables: LogTables,
}

impl<E: Chained> Writer<E> {
    /// Commits every pending entry (concurrent appends together, in one batch), then tells each
    /// waiter whether its entry is durable; until the queue is empty.
    async fn drain(self) {
        loop {
            let pending = {
                let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                if q.pending.is_empty() {
                    q.writing = false;
                    return;
                }
                std::mem::take(&mut q.pending)
            };
            let outcome = self.commit(&pending).await;
            if let Err(e) = &outcome {
                tracing::error!(log = self.tables.name, error = %e, entries = pending.len(), "cannot write audit entries; their operations fail");
                self.forget_heads();
            }
            for p in pending {
                let _ = p.done.send(outcome.clone());
            }
        }
    }

    fn forget_heads(&self) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).heads.clear();
    }

    /// Commits `pending` (guarded, so nothing can fork a chain). A conflict means another writer
    /// extended a chain first: the entries are chained again after the new end, never dropped.
    async fn commit(&self, pending: &[Pending<E>]) -> Result<(), AuditError> {
        for attempt in 0..COMMIT_ATTEMPTS {
            let (batch, heads) = self.chain_batch(pending, attempt > 0).await?;
            match self.store.commit(batch).await {
                Ok(()) => {
                    let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                    q.heads.extend(heads.into_iter().filter_map(|(c, h)| h.map(|h| (c, h))));
                    return Ok(());
                }
                Err(StoreError::Conflict { .. }) => {
                    tracing::warn!(
                        log = self.tables.name,
                        attempt,
                        "audit entries conflicted with another writer; chaining them again"
                    );
                    self.forget_heads();
                }
                Err(StoreError::Backend(detail)) => {
                    self.forget_heads();
                    return Err(AuditError::Store(detail));
                }
            }
        }
        Err(AuditError::Contended(COMMIT_ATTEMPTS))
    }

    /// Chains `pending` after each chain's end into one batch, with the chains' new sealed heads.
    async fn chain_batch(&self, pending: &[Pending<E>], recheck: bool) -> Result<(Batch, BatchHeads), AuditError> {
        let mut batch = Batch::new();
        let mut heads = BatchHeads::new();
        for p in pending {
            if !heads.contains_key(&p.chain) {
                let end = self.chain_end(&p.chain, recheck).await.map_err(|e| {
                    tracing::error!(log = self.tables.name, chain = %p.chain, error = %e, "cannot read the audit chain head");
                    AuditError::Store(e.to_string())
                })?;
                heads.insert(p.chain.clone(), end.last);
                if let Some(problem) = end.problem {
                    tracing::error!(log = self.tables.name, chain = %p.chain, problem, "the audit log was tampered with; recording it in the log");
                    self.append(&mut batch, &mut heads, &p.chain, E::log_check(problem))?;
                }
            }
            self.append(&mut batch, &mut heads, &p.chain, p.entry.clone())?;
        }
        for (chain, head) in &heads {
            if let Some((seq, hash)) = head {
                let head = Head::new(&self.head_key, chain, *seq, hash);
                let bytes = serde_json::to_vec(&head).map_err(|_| AuditError::Encoding)?;
                batch = batch.put(self.tables.heads, chain.clone(), bytes);
            }
        }
        Ok((batch, heads))
    }

    /// Chains `entry` after the chain's current end in `heads` and adds it to `batch`.
    fn append(&self, batch: &mut Batch, heads: &mut BatchHeads, chain: &str, mut entry: E) -> Result<(), AuditError> {
        let previous = heads.get(chain).cloned().flatten();
        let (seq, prev) = previous.map(|(seq, hash)| (seq + 1, hash)).unwrap_or((0, GENESIS.to_owned()));
        entry.link(seq, prev, byos_core::time::rfc3339_now());
        entry.set_hash(digest(&entry));
        let key = entry_key(chain, seq);
        let bytes = serde_json::to_vec(&entry).map_err(|_| AuditError::Encoding)?;
        heads.insert(chain.to_owned(), Some((seq, entry.hash().to_owned())));
        *batch =
            std::mem::take(batch).expect_absent(self.tables.entries, key.clone()).put(self.tables.entries, key, bytes);
        Ok(())
    }

    /// The end of a chain: from memory, else from its sealed head (so entries cut off the end stay
    /// visible as a gap), else, with a problem to record, from its last stored entry. After a
    /// conflict (`recheck`), the sealed head is also checked against the last stored entry: a head
    /// behind its log (an old head put back) would otherwise make every retry conflict again.
    async fn chain_end(&self, chain: &str, recheck: bool) -> Result<ChainEnd, StoreError> {
        if !recheck && let Some(head) = self.queue.lock().unwrap_or_else(|e| e.into_inner()).heads.get(chain) {
            return Ok(ChainEnd { last: Some(head.clone()), problem: None });
        }
        let sealed =
            self.store.get(self.tables.heads, chain).await?.map(|bytes| serde_json::from_slice::<Head>(&bytes).ok());
        if let Some(Some(head)) = &sealed
            && head.authentic(&self.head_key, chain)
        {
            let from_head = (head.seq, head.hash.clone());
            if !recheck {
                return Ok(ChainEnd { last: Some(from_head), problem: None });
            }
            return Ok(match self.last_entry(chain).await? {
                Some(last) if last.0 > head.seq => {
                    ChainEnd { last: Some(last), problem: Some("the log continues past its sealed head") }
                }
                _ => ChainEnd { last: Some(from_head), problem: None },
            });
        }
        // Only a log whose head is missing or altered is read to its end.
        let last = self.last_entry(chain).await?;
        Ok(match (sealed, &last) {
            (Some(_), _) => ChainEnd { last, problem: Some("the sealed head of the log was altered") },
            (None, Some(_)) => ChainEnd { last, problem: Some("the sealed head of the log was missing") },
            (None, None) => ChainEnd { last: None, problem: None },
        })
    }

    /// The sequence number and hash of a chain's last stored entry.
    async fn last_entry(&self, chain: &str) -> Result<Option<(u64, String)>, StoreError> {
        match self.store.scan(self.tables.entries, &format!("{chain}/")).await?.into_iter().last() {
            Some((_, bytes)) => {
                let entry: E = serde_json::from_slice(&bytes).map_err(|e| StoreError::Backend(e.to_string()))?;
                Ok(Some((entry.seq(), entry.hash().to_owned())))
            }
            None => Ok(None),
        }
    }
}

/// [`verify`], then checks that the chain ends exactly at its authenticated head: entries cut off
/// the end, or a chain rewritten and re-hashed from some entry on, no longer match it.
pub fn verify_anchored<E: Chained>(
    entries: &[E],
    head: Option<&Head>,
    key: &MacKey,
    chain: &str,
) -> Result<usize, String> {
    let count = verify(entries)?;
    match (entries.last(), head) {
        (None, None) => Ok(0),
        (_, Some(head)) if !head.authentic(key, chain) => Err("the log's sealed head was altered".into()),
        (Some(last), Some(head)) if last.seq() == head.seq && last.hash() == head.hash => Ok(count),
        (Some(last), Some(head)) if last.seq() < head.seq => {
            Err(format!("entries {} to {} were cut off the end of the log", last.seq() + 1, head.seq))
        }
        (None, Some(head)) => Err(format!("every entry was removed (the sealed head names entry {})", head.seq)),
        (Some(_), Some(head)) => {
            Err(format!("the log does not end at entry {} as its sealed head says: it was rewritten", head.seq))
        }
        (Some(_), None) => Err("the log's sealed head is missing".into()),
    }
}

/// Checks a chain: contiguous sequence numbers, each hash matching its entry, each entry naming
/// its predecessor's hash, no entry recording tampering. Returns the number of entries, or what is
/// wrong first.
pub fn verify<E: Chained>(entries: &[E]) -> Result<usize, String> {
    let mut prev = GENESIS.to_owned();
    for (expected, entry) in entries.iter().enumerate() {
        if entry.seq() != expected as u64 {
            return Err(format!("entry {expected} is missing (found sequence number {} in its place)", entry.seq()));
        }
        if entry.prev() != prev {
            return Err(format!(
                "entry {} does not follow entry {}: the chain was cut or reordered",
                entry.seq(),
                expected.saturating_sub(1)
            ));
        }
        if digest(entry) != entry.hash() {
            return Err(format!("entry {} was modified after it was written", entry.seq()));
        }
        if let Some(problem) = entry.log_check_problem() {
            return Err(format!("entry {} records that the log was tampered with before it: {problem}", entry.seq()));
        }
        prev = entry.hash().to_owned();
    }
    Ok(entries.len())
}

/// What the operator is shown of a chain: `{"verification": {"ok", "entries"[, "problem"]}, "entries": [...]}`.
pub fn report<E: Chained>(entries: &[E], verdict: Result<usize, String>) -> serde_json::Value {
    let verification = match verdict {
        Ok(n) => serde_json::json!({"ok": true, "entries": n}),
        Err(problem) => serde_json::json!({"ok": false, "entries": entries.len(), "problem": problem}),
    };
    serde_json::json!({"verification": verification, "entries": entries})
}
