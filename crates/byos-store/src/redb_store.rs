//! The embedded adapter on redb: one file in the data dir, ACID transactions, fsync on commit.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableError};

use crate::{Batch, MetaStore, Op, StoreError, Table};

pub struct RedbStore {
    db: Arc<Database>,
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
        Ok(RedbStore { db: Arc::new(db) })
    }

    fn scan_sync(&self, table: Table, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.page_sync(table, prefix, None, usize::MAX)
    }

    fn page_sync(&self, table: Table, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
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

    fn commit_sync(db: &Database, batch: Batch) -> Result<(), StoreError> {
        let txn = db.begin_write().map_err(backend)?;
        for op in batch.ops {
            match op {
                Op::Put { table, key, value } => {
                    txn.open_table(definition(table)).map_err(backend)?.insert(key.as_str(), value.as_slice()).map_err(backend)?;
                }
                Op::Delete { table, key } => {
                    txn.open_table(definition(table)).map_err(backend)?.remove(key.as_str()).map_err(backend)?;
                }
                Op::ExpectAbsent { table, key } => {
                    let exists = txn.open_table(definition(table)).map_err(backend)?.get(key.as_str()).map_err(backend)?.is_some();
                    if exists {
                        // Dropping the transaction without commit aborts every staged operation.
                        return Err(StoreError::Conflict { table: table.0, key, reason: "already exists" });
                    }
                }
            }
        }
        txn.commit().map_err(backend)
    }
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

    async fn scan_page(&self, table: Table, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.page_sync(table, prefix, after, limit)
    }

    async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        // A durable commit waits for fsync; keep it off the async workers.
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || Self::commit_sync(&db, batch))
            .await
            .map_err(|e| StoreError::Backend(format!("commit task failed: {e}")))?
    }
}
