//! An in-memory adapter: same contract as the embedded one, minus durability across processes.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::{Batch, MetaStore, Op, StoreError, Table};

type Tables = BTreeMap<(&'static str, String), Vec<u8>>;

#[derive(Default)]
pub struct MemStore {
    tables: Mutex<Tables>,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Tables>, StoreError> {
        self.tables.lock().map_err(|_| StoreError::Backend("memory store lock poisoned".into()))
    }
}

fn scan_locked(tables: &Tables, table: Table, prefix: &str) -> Vec<(String, Vec<u8>)> {
    tables
        .range((table.0, prefix.to_owned())..)
        .take_while(|((t, k), _)| *t == table.0 && k.starts_with(prefix))
        .map(|((_, k), v)| (k.clone(), v.clone()))
        .collect()
}

#[async_trait]
impl MetaStore for MemStore {
    async fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock()?.get(&(table.0, key.to_owned())).cloned())
    }

    async fn scan(&self, table: Table, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(scan_locked(&*self.lock()?, table, prefix))
    }

    async fn scan_consistent(&self, scans: &[(Table, &str)]) -> Result<Vec<Vec<(String, Vec<u8>)>>, StoreError> {
        // One lock for every scan: no commit can land between them.
        let tables = self.lock()?;
        Ok(scans.iter().map(|(table, prefix)| scan_locked(&tables, *table, prefix)).collect())
    }

    async fn scan_page(
        &self,
        table: Table,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let tables = self.lock()?;
        let start = after.filter(|a| *a >= prefix).unwrap_or(prefix).to_owned();
        Ok(tables
            .range((table.0, start)..)
            .filter(|((_, k), _)| after != Some(k.as_str()))
            .take_while(|((t, k), _)| *t == table.0 && k.starts_with(prefix))
            .take(limit)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn commit_reporting(
        &self,
        batch: Batch,
        report: Option<(Table, &str)>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let mut tables = self.lock()?;
        for guard in batch.guards() {
            match guard {
                Op::ExpectAbsent { table, key } if tables.contains_key(&(table.0, key.clone())) => {
                    return Err(StoreError::Conflict { table: table.0, key: key.clone(), reason: "already exists" });
                }
                Op::ExpectUnchanged { table, key, value } if tables.get(&(table.0, key.clone())) != value.as_ref() => {
                    return Err(StoreError::Conflict {
                        table: table.0,
                        key: key.clone(),
                        reason: "changed concurrently",
                    });
                }
                _ => {}
            }
        }
        let reported = report.and_then(|(table, key)| tables.get(&(table.0, key.to_owned())).cloned());
        for op in batch.ops {
            match op {
                Op::Put { table, key, value } => {
                    tables.insert((table.0, key), value);
                }
                Op::Delete { table, key } => {
                    tables.remove(&(table.0, key));
                }
                Op::ExpectAbsent { .. } | Op::ExpectUnchanged { .. } => {}
            }
        }
        Ok(reported)
    }
}
