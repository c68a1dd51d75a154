//! The metadata store: named tables of string keys to versioned byte records, with atomic, durable,
//! guarded batches.
//!
//! Domain crates own their record formats (each carries a version marker); the store only moves bytes.
//! [`MetaStore`] is a small async trait so that a PostgreSQL adapter can follow the embedded one
//! ([`RedbStore`]) without touching callers. Every adapter must pass [`conformance::run`].
//!
//! Customer data lives in the [`objects`] store (encrypted segments), not in the metadata store.
//!
//! Failure contract: a `commit` either applies every operation of its batch durably or none; a failed
//! guard yields [`StoreError::Conflict`] and changes nothing. Guards are evaluated against the state
//! before the batch, then its writes apply in order. Concurrent commits may be made durable together
//! (group commit); each still succeeds or fails on its own.

pub mod conformance;
mod mem;
pub mod objects;
mod redb_store;

use std::sync::Arc;

use async_trait::async_trait;
use thiserror::Error;

pub use mem::MemStore;
pub use objects::{DirObjectStore, MemObjectStore, ObjectError, ObjectStore, ObjectWriter, SharedObjects};
pub use redb_store::RedbStore;

/// A table name. Tables are created on first use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Table(pub &'static str);

#[derive(Debug, Error)]
pub enum StoreError {
    /// A guard of the batch did not hold; nothing was written.
    #[error("conflict on {table}/{key}: {reason}")]
    Conflict { table: &'static str, key: String, reason: &'static str },
    /// The backing store failed; the message is for logs, never for API callers.
    #[error("metadata store failure: {0}")]
    Backend(String),
}

/// One step of a [`Batch`].
#[derive(Clone, Debug)]
pub enum Op {
    Put {
        table: Table,
        key: String,
        value: Vec<u8>,
    },
    Delete {
        table: Table,
        key: String,
    },
    /// The key must not exist when the batch applies.
    ExpectAbsent {
        table: Table,
        key: String,
    },
    /// The key must hold exactly `value` (`None`: be absent) when the batch applies: optimistic
    /// concurrency for read-check-write sequences.
    ExpectUnchanged {
        table: Table,
        key: String,
        value: Option<Vec<u8>>,
    },
}

/// Operations applied atomically, in order, by [`MetaStore::commit`].
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub ops: Vec<Op>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(mut self, table: Table, key: impl Into<String>, value: Vec<u8>) -> Self {
        self.ops.push(Op::Put { table, key: key.into(), value });
        self
    }

    pub fn delete(mut self, table: Table, key: impl Into<String>) -> Self {
        self.ops.push(Op::Delete { table, key: key.into() });
        self
    }

    pub fn expect_absent(mut self, table: Table, key: impl Into<String>) -> Self {
        self.ops.push(Op::ExpectAbsent { table, key: key.into() });
        self
    }

    pub fn expect_unchanged(mut self, table: Table, key: impl Into<String>, value: Option<Vec<u8>>) -> Self {
        self.ops.push(Op::ExpectUnchanged { table, key: key.into(), value });
        self
    }

    /// The batch's guards, which are all checked before any of its writes is applied.
    pub fn guards(&self) -> impl Iterator<Item = &Op> {
        self.ops.iter().filter(|op| matches!(op, Op::ExpectAbsent { .. } | Op::ExpectUnchanged { .. }))
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// A metadata store. Keys are compared as byte strings; `scan` returns keys in ascending order.
#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    async fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every record whose key starts with `prefix`, in key order.
    async fn scan(&self, table: Table, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// At most `limit` records whose key starts with `prefix` and sorts after `after`, in key order.
    async fn scan_page(
        &self,
        table: Table,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Several prefix scans (each as [`MetaStore::scan`]) read from one consistent view: a commit
    /// is seen by all of them or by none. For readers that must not miss a record moving from one
    /// table to another (the orphan sweeper).
    async fn scan_consistent(&self, scans: &[(Table, &str)]) -> Result<Vec<Vec<(String, Vec<u8>)>>, StoreError>;
    /// Applies `batch` atomically and durably (on return, it survives a crash).
    async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.commit_reporting(batch, None).await.map(|_| ())
    }
    /// Like [`MetaStore::commit`], and returns what `report` (a table and key) held just before
    /// the batch applied, read in the same transaction: what an unguarded put really replaced,
    /// even when other commits raced it.
    async fn commit_reporting(
        &self,
        batch: Batch,
        report: Option<(Table, &str)>,
    ) -> Result<Option<Vec<u8>>, StoreError>;
}

pub type SharedStore = Arc<dyn MetaStore>;
