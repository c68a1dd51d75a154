//! The embedded adapter on redb: one file in the data dir, ACID transactions, fsync on commit.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableError};

use crate::{Batch, MetaStore, Op, StoreError, Table};

pub struct RedbStore {
    db: Arc<Database>,
    queue: Arc<std::sync::Mutex<CommitQueue>>,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn definition(table: Table) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(table.0)
}

impl RedbStore {
    /// Opens (or creates) the database file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(backend)?;
        Ok(RedbStore { db: Arc::new(db), queue: Arc::default() })
    }

    fn scan_sync(&self, table: Table, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.page_sync(table, prefix, None, usize::MAX)
    }

    fn page_sync(
        &self,
        table: Table,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        page_in(&txn, table, prefix, after, limit)
    }

    /// Applies several batches in one write transaction and one fsync. A batch whose guard fails
    /// is skipped (and reported), without affecting the others. Each batch gets back the value its
    /// report key held just before it applied.
    fn commit_group(db: &Database, batches: Vec<Pending>) -> Result<Vec<Reported>, StoreError> {
        let txn = db.begin_write().map_err(backend)?;
        let mut results = Vec::with_capacity(batches.len());
        for Pending { batch, report } in batches {
            let outcome = check_guards(&txn, &batch).and_then(|()| match &report {
                Some((table, key)) => current(&txn, *table, key),
                None => Ok(None),
            });
            if outcome.is_ok() {
                apply(&txn, batch)?;
            }
            results.push(outcome);
        }
        txn.commit().map_err(backend)?;
        Ok(results)
    }
}

/// A page of a prefix scan inside `txn` (a missing table reads as empty).
fn page_in(
    txn: &redb::ReadTransaction,
    table: Table,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let t = match txn.open_table(definition(table)) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(backend(e)),
    };
    let start = after.filter(|a| *a >= prefix).unwrap_or(prefix);
    let mut out = Vec::new();
    for entry in t.range(start..).map_err(backend)? {
        if out.len() >= limit {
            break;
        }
        let (k, v) = entry.map_err(backend)?;
        let key = k.value();
        if !key.starts_with(prefix) {
            break;
        }
        if Some(key) == after {
            continue;
        }
        out.push((key.to_owned(), v.value().to_vec()));
    }
    Ok(out)
}

/// What `key` holds in the transaction's current state.
fn current(txn: &redb::WriteTransaction, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let t = txn.open_table(definition(table)).map_err(backend)?;
    Ok(t.get(key).map_err(backend)?.map(|v| v.value().to_vec()))
}

fn check_guards(txn: &redb::WriteTransaction, batch: &Batch) -> Result<(), StoreError> {
    for guard in batch.guards() {
        let (table, key) = match guard {
            Op::ExpectAbsent { table, key } | Op::ExpectUnchanged { table, key, .. } => (*table, key),
            _ => continue,
        };
        let current = current(txn, table, key)?;
        let (holds, reason) = match guard {
            Op::ExpectAbsent { .. } => (current.is_none(), "already exists"),
            Op::ExpectUnchanged { value, .. } => (current == *value, "changed concurrently"),
            _ => (true, ""),
        };
        if !holds {
            return Err(StoreError::Conflict { table: table.0, key: key.clone(), reason });
        }
    }
    Ok(())
}

fn apply(txn: &redb::WriteTransaction, batch: Batch) -> Result<(), StoreError> {
    for op in batch.ops {
        match op {
            Op::Put { table, key, value } => {
                txn.open_table(definition(table))
                    .map_err(backend)?
                    .insert(key.as_str(), value.as_slice())
                    .map_err(backend)?;
            }
            Op::Delete { table, key } => {
                txn.open_table(definition(table)).map_err(backend)?.remove(key.as_str()).map_err(backend)?;
            }
            Op::ExpectAbsent { .. } | Op::ExpectUnchanged { .. } => {}
        }
    }
    Ok(())
}

impl Drop for RedbStore {
    /// Waits (briefly) for a committer still finishing its loop, so the database file is closed
    /// when the store is gone and can be opened again at once (a restart in the same process).
    fn drop(&mut self) {
        for _ in 0..2000 {
            match self.queue.lock() {
                Ok(q) if q.committing => {}
                _ => return,
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// A batch waiting for the committer, and the key whose previous value it wants back.
struct Pending {
    batch: Batch,
    report: Option<(Table, String)>,
}

/// One batch's outcome: the value its report key held before it applied.
type Reported = Result<Option<Vec<u8>>, StoreError>;
type Reply = tokio::sync::oneshot::Sender<Reported>;

/// Commits waiting to be made durable together, and whether a committer is running.
#[derive(Default)]
struct CommitQueue {
    waiting: Vec<(Pending, Reply)>,
    committing: bool,
}

#[async_trait]
impl MetaStore for RedbStore {
    async fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let t = match txn.open_table(definition(table)) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(backend(e)),
        };
        Ok(t.get(key).map_err(backend)?.map(|v| v.value().to_vec()))
    }

    async fn scan(&self, table: Table, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.scan_sync(table, prefix)
    }

    async fn scan_consistent(&self, scans: &[(Table, &str)]) -> Result<Vec<Vec<(String, Vec<u8>)>>, StoreError> {
        // One read transaction: a snapshot no commit can change halfway through.
        let txn = self.db.begin_read().map_err(backend)?;
        scans.iter().map(|(table, prefix)| page_in(&txn, *table, prefix, None, usize::MAX)).collect()
    }

    async fn scan_page(
        &self,
        table: Table,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.page_sync(table, prefix, after, limit)
    }

    async fn commit_reporting(
        &self,
        batch: Batch,
        report: Option<(Table, &str)>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if batch.is_empty() {
            return match report {
                Some((table, key)) => self.get(table, key).await,
                None => Ok(None),
            };
        }
        let (done, result) = tokio::sync::oneshot::channel();
        let pending = Pending { batch, report: report.map(|(t, k)| (t, k.to_owned())) };
        let lead = {
            let mut queue = self.queue.lock().map_err(|_| StoreError::Backend("commit queue poisoned".into()))?;
            queue.waiting.push((pending, done));
            !std::mem::replace(&mut queue.committing, true)
        };
        if lead {
            // The first committer drains the queue on the blocking pool (commits wait for fsync);
            // batches arriving meanwhile share the next transaction.
            let (db, queue) = (Arc::clone(&self.db), Arc::clone(&self.queue));
            tokio::task::spawn_blocking(move || drain(db, &queue));
        }
        result.await.map_err(|_| StoreError::Backend("the commit was abandoned".into()))?
    }
}

fn drain(db: Arc<Database>, queue: &std::sync::Mutex<CommitQueue>) {
    loop {
        let waiting = {
            let Ok(mut q) = queue.lock() else { return };
            if q.waiting.is_empty() {
                // Let go of the database before anyone can see the committer gone, so that a
                // store dropped right after its last commit really closes the file.
                drop(db);
                q.committing = false;
                return;
            }
            std::mem::take(&mut q.waiting)
        };
        let (batches, senders): (Vec<Pending>, Vec<_>) = waiting.into_iter().unzip();
        match RedbStore::commit_group(&db, batches) {
            Ok(results) => {
                for (sender, result) in senders.into_iter().zip(results) {
                    let _ = sender.send(result);
                }
            }
            Err(e) => {
                for sender in senders {
                    let _ = sender.send(Err(StoreError::Backend(e.to_string())));
                }
            }
        }
    }
}
