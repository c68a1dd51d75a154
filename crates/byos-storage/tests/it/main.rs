//! Storage housekeeping on in-memory adapters: staged blocks expire, orphaned objects are
//! collected, referenced data is never touched.

use std::sync::Arc;
use std::time::Duration;

use byos_authz::Door;
use byos_crypto::RootKey;
use byos_identity::Directory;
use byos_storage::StorageService;
use byos_storage::blob::data::{BLOBS, BLOCKS, BlobRecord, BlockRecord, ContentHeaders, Segment};
use byos_storage::blob::sweep;
use byos_store::{Batch, MemObjectStore, MemStore, MetaStore, SharedObjects, SharedStore};

/// These tests open no vaults.
struct NoListeners;

#[async_trait::async_trait]
impl byos_http::Listeners for NoListeners {
    async fn open(&self, _port: u16, _router: axum::Router) -> std::io::Result<(u16, byos_http::ListenerHandle)> {
        Err(std::io::Error::other("no listeners in this test"))
    }
}

fn segment(object: &str) -> Segment {
    Segment {
        object: object.into(),
        wrapped_dek: String::new(),
        len: 1,
        chunk_size: 65536,
        segment_id: "block:QQ==".into(),
    }
}

/// A committed one-byte blob `name` whose only segment is `object`.
fn blob_record(name: &str, object: &str) -> BlobRecord {
    BlobRecord {
        v: 1,
        name: name.into(),
        size: 1,
        etag: "\"e\"".into(),
        created: 0,
        last_modified: 0,
        content: ContentHeaders::default(),
        sealed_metadata: None,
        segments: vec![segment(object)],
    }
}

async fn put_object(objects: &SharedObjects, id: &str) -> anyhow::Result<()> {
    let mut writer = objects.create(id).await?;
    writer.write(b"x".to_vec()).await?;
    writer.finish().await?;
    Ok(())
}

async fn exists(objects: &SharedObjects, id: &str) -> bool {
    objects.read_at(id, 0, 1).await.is_ok()
}

#[tokio::test]
async fn expired_blocks_and_orphans_are_swept_and_committed_data_is_kept() -> anyhow::Result<()> {
    let store: SharedStore = Arc::new(MemStore::new());
    let objects: SharedObjects = Arc::new(MemObjectStore::new());
    let root = Arc::new(RootKey::ephemeral()?);
    let directory = Arc::new(Directory::open(Arc::clone(&store), &root, "https://127.0.0.1:1").await?);
    let door = Arc::new(Door::new());
    let keyvault = byos_keyvault::KeyVaultService::new(
        Arc::clone(&store),
        Arc::clone(&root),
        Arc::clone(&door),
        Arc::clone(&directory),
        Arc::new(NoListeners),
        "https://127.0.0.1:1".into(),
    );
    let config = byos_storage::StorageConfig {
        blob_base: "https://127.0.0.1:2".into(),
        authority: "https://127.0.0.1:1".into(),
        cmk_cache_ttl: Duration::from_secs(1),
    };
    let service =
        StorageService::new(Arc::clone(&store), Arc::clone(&objects), root, door, directory, keyvault, config);

    for id in ["old-block", "fresh-block", "committed", "orphan"] {
        put_object(&objects, id).await?;
    }
    let now = byos_core::time::unix_now();
    let block = |object: &str, created| serde_json::to_vec(&BlockRecord { v: 1, segment: segment(object), created });
    let blob = blob_record("b", "committed");
    store
        .commit(
            Batch::new()
                .put(BLOCKS, "acct/c/b\u{1}old", block("old-block", now - sweep::BLOCK_LIFETIME_SECS - 1)?)
                .put(BLOCKS, "acct/c/b\u{1}fresh", block("fresh-block", now)?)
                .put(BLOBS, "acct/c/b", serde_json::to_vec(&blob)?),
        )
        .await?;

    assert_eq!(
        sweep::expire_blocks(&service, &housekeeper(), now - sweep::BLOCK_LIFETIME_SECS)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        1
    );
    assert!(store.get(BLOCKS, "acct/c/b\u{1}old").await?.is_none(), "the expired block record is gone");
    assert!(!exists(&objects, "old-block").await, "the expired block's data is gone");
    assert!(store.get(BLOCKS, "acct/c/b\u{1}fresh").await?.is_some(), "a fresh block stays");

    assert_eq!(
        sweep::collect_orphans(&service, &housekeeper(), Duration::from_secs(1))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        1
    );
    assert!(!exists(&objects, "orphan").await, "an unreferenced object is collected");
    for kept in ["committed", "fresh-block"] {
        assert!(exists(&objects, kept).await, "{kept} is referenced and must stay");
    }
    Ok(())
}

/// A store that, right after the first read of the BLOBS table, commits a Put Block List's move of
/// a staged block into a blob record: the interleaving that made the sweeper delete live data.
struct MoveAfterBlobsRead {
    inner: MemStore,
    armed: std::sync::atomic::AtomicBool,
}

impl MoveAfterBlobsRead {
    async fn move_block_into_blob(&self) -> Result<(), byos_store::StoreError> {
        if !self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        self.inner
            .commit(Batch::new().delete(BLOCKS, "acct/c/victim\u{1}QQ==").put(BLOBS, "acct/c/victim", victim_blob()))
            .await
    }
}

fn victim_blob() -> Vec<u8> {
    serde_json::to_vec(&blob_record("victim", "staged")).unwrap_or_default()
}

#[async_trait::async_trait]
impl MetaStore for MoveAfterBlobsRead {
    async fn get(&self, table: byos_store::Table, key: &str) -> Result<Option<Vec<u8>>, byos_store::StoreError> {
        self.inner.get(table, key).await
    }
    async fn scan(
        &self,
        table: byos_store::Table,
        prefix: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, byos_store::StoreError> {
        let rows = self.inner.scan(table, prefix).await?;
        if table == BLOBS {
            self.move_block_into_blob().await?;
        }
        Ok(rows)
    }
    async fn scan_consistent(
        &self,
        scans: &[(byos_store::Table, &str)],
    ) -> Result<Vec<Vec<(String, Vec<u8>)>>, byos_store::StoreError> {
        let rows = self.inner.scan_consistent(scans).await?;
        if scans.iter().any(|(t, _)| *t == BLOBS) {
            self.move_block_into_blob().await?;
        }
        Ok(rows)
    }
    async fn scan_page(
        &self,
        table: byos_store::Table,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, byos_store::StoreError> {
        self.inner.scan_page(table, prefix, after, limit).await
    }
    async fn commit_reporting(
        &self,
        batch: Batch,
        report: Option<(byos_store::Table, &str)>,
    ) -> Result<Option<Vec<u8>>, byos_store::StoreError> {
        self.inner.commit_reporting(batch, report).await
    }
}

#[tokio::test]
async fn regression_f04_sweeper_keeps_a_block_committed_during_its_scan() -> anyhow::Result<()> {
    let racy = Arc::new(MoveAfterBlobsRead { inner: MemStore::new(), armed: false.into() });
    let store: SharedStore = racy.clone();
    let objects: SharedObjects = Arc::new(MemObjectStore::new());
    let service = service_on(Arc::clone(&store), Arc::clone(&objects)).await?;
    put_object(&objects, "staged").await?;
    let block = BlockRecord { v: 1, segment: segment("staged"), created: byos_core::time::unix_now() };
    store.commit(Batch::new().put(BLOCKS, "acct/c/victim\u{1}QQ==", serde_json::to_vec(&block)?)).await?;
    racy.armed.store(true, std::sync::atomic::Ordering::SeqCst);

    let collected =
        sweep::collect_orphans(&service, &housekeeper(), Duration::ZERO).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    assert!(store.get(BLOBS, "acct/c/victim").await?.is_some(), "the commit happened during the sweep");
    assert_eq!(collected, 0, "nothing referenced is an orphan");
    assert!(exists(&objects, "staged").await, "the committed block's data must survive the sweep");
    Ok(())
}

async fn service_on(store: SharedStore, objects: SharedObjects) -> anyhow::Result<Arc<StorageService>> {
    let root = Arc::new(RootKey::ephemeral()?);
    let directory = Arc::new(Directory::open(Arc::clone(&store), &root, "https://127.0.0.1:1").await?);
    let door = Arc::new(Door::new());
    let keyvault = byos_keyvault::KeyVaultService::new(
        Arc::clone(&store),
        Arc::clone(&root),
        Arc::clone(&door),
        Arc::clone(&directory),
        Arc::new(NoListeners),
        "https://127.0.0.1:1".into(),
    );
    let config = byos_storage::StorageConfig {
        blob_base: "https://127.0.0.1:2".into(),
        authority: "https://127.0.0.1:1".into(),
        cmk_cache_ttl: Duration::from_secs(1),
    };
    Ok(StorageService::new(store, objects, root, door, directory, keyvault, config))
}

fn housekeeper() -> byos_core::Caller {
    byos_core::Caller::actor(byos_core::Actor::BlobHousekeeping)
}

/// A background task is a caller of its own: another task (here key rotation) or any other caller
/// cannot run the blob housekeeping, and nothing is deleted.
#[tokio::test]
async fn housekeeping_is_refused_to_any_caller_but_its_actor() -> anyhow::Result<()> {
    let store: SharedStore = Arc::new(MemStore::new());
    let objects: SharedObjects = Arc::new(MemObjectStore::new());
    let service = service_on(Arc::clone(&store), Arc::clone(&objects)).await?;
    put_object(&objects, "orphan").await?;
    let origin = byos_core::NetworkOrigin { ip: None, tls: false };
    for caller in [
        byos_core::Caller::actor(byos_core::Actor::KeyRotation),
        byos_core::Caller::anonymous(origin.clone()),
        byos_core::Caller::shared_key(origin),
    ] {
        let refused = sweep::collect_orphans(&service, &caller, Duration::ZERO).await;
        assert_eq!(refused.map_err(|e| (e.status, e.code)), Err((403, "AuthorizationFailed".to_owned())), "{caller}");
        let refused = sweep::expire_blocks(&service, &caller, i64::MAX).await;
        assert!(refused.is_err(), "{caller} expired blocks");
    }
    assert!(exists(&objects, "orphan").await, "a refused sweep deletes nothing");
    assert_eq!(
        sweep::collect_orphans(&service, &housekeeper(), Duration::ZERO).await.map_err(|e| anyhow::anyhow!("{e}"))?,
        1
    );
    Ok(())
}

/// F9: a container, blob or block that a request under way committed between an account
/// deletion's scan and its commit was left behind, and resurfaced in a new account of that name.
/// The clean-up after the deletion removes them, and their objects, and nothing of another account.
#[tokio::test]
async fn regression_f09_data_committed_during_account_deletion_is_removed() -> anyhow::Result<()> {
    let store: SharedStore = Arc::new(MemStore::new());
    let objects: SharedObjects = Arc::new(MemObjectStore::new());
    let service = service_on(Arc::clone(&store), Arc::clone(&objects)).await?;
    for object in ["late-blob", "late-block", "neighbour"] {
        put_object(&objects, object).await?;
    }
    let blob = |object: &str| blob_record("b", object);
    let block = BlockRecord { v: 1, segment: segment("late-block"), created: 0 };
    store
        .commit(
            Batch::new()
                .put(byos_storage::blob::data::CONTAINERS, "acct/c", b"{}".to_vec())
                .put(BLOBS, "acct/c/b", serde_json::to_vec(&blob("late-blob"))?)
                .put(BLOCKS, "acct/c/b\u{1}QQ==", serde_json::to_vec(&block)?)
                .put(BLOBS, "acct2/c/b", serde_json::to_vec(&blob("neighbour"))?),
        )
        .await?;

    byos_storage::blob::data::delete_account_objects(&service, "acct").await;

    assert!(store.get(byos_storage::blob::data::CONTAINERS, "acct/c").await?.is_none());
    assert!(store.get(BLOBS, "acct/c/b").await?.is_none());
    assert!(store.get(BLOCKS, "acct/c/b\u{1}QQ==").await?.is_none());
    assert!(!exists(&objects, "late-blob").await && !exists(&objects, "late-block").await);
    assert!(store.get(BLOBS, "acct2/c/b").await?.is_some(), "another account's blob stays");
    assert!(exists(&objects, "neighbour").await);
    Ok(())
}
