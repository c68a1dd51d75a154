//! Runs the shared conformance suite against every adapter, and checks durability of the embedded one.

use byos_store::{Batch, MemStore, MetaStore, RedbStore, Table, conformance};

#[tokio::test]
async fn mem_store_conforms() {
    conformance::run(&MemStore::new()).await;
}

#[tokio::test]
async fn redb_store_conforms() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    conformance::run(&RedbStore::open(&dir.path().join("meta.redb"))?).await;
    Ok(())
}

#[tokio::test]
async fn redb_store_keeps_commits_across_reopen() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("meta.redb");
    RedbStore::open(&path)?.commit(Batch::new().put(Table("t"), "k", b"v".to_vec())).await?;
    let reopened = RedbStore::open(&path)?;
    assert_eq!(reopened.get(Table("t"), "k").await?.as_deref(), Some(&b"v"[..]));
    Ok(())
}

#[tokio::test]
async fn mem_objects_conform() {
    byos_store::objects::conformance(&byos_store::MemObjectStore::new()).await;
}

#[tokio::test]
async fn dir_objects_conform() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    byos_store::objects::conformance(&byos_store::DirObjectStore::open(dir.path())?).await;
    Ok(())
}
