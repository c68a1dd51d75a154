//! Housekeeping: staged blocks that were never committed expire (after 7 days, as in Azure), and
//! objects no record references (left by a crash between writing data and committing its record)
//! are removed once they are old enough that no upload can still be about to reference them.

use std::collections::HashSet;
use std::time::Duration;

use byos_authz::Action;
use byos_core::{Actor, ApiError, Caller, Scope};
use byos_store::Batch;

use super::data::{self, BLOBS, BLOCKS, BlobRecord, BlockRecord, decode, store_err};
use crate::StorageService;

/// How long an uncommitted block is kept.
pub const BLOCK_LIFETIME_SECS: i64 = 7 * 24 * 3600;
/// How old an unreferenced object must be before it is collected.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(3600);

/// What the housekeeping deletes, and so what its caller must be granted (at every account).
const DELETE: Action = Action::data("Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete");

/// Whether `caller` may run the housekeeping (the door grants it to the blob housekeeping actor).
fn authorize(service: &StorageService, caller: &Caller) -> Result<(), ApiError> {
    service.door.authorize(caller, &DELETE, &Scope::root()).map(|_| ()).map_err(|denial| denial.to_api_error())
}

/// Deletes staged blocks created before `cutoff` (Unix seconds); returns how many.
pub async fn expire_blocks(service: &StorageService, caller: &Caller, cutoff: i64) -> Result<usize, ApiError> {
    authorize(service, caller)?;
    let objects = data::optimistic(service, || async {
        let mut batch = Batch::new();
        let mut objects = Vec::new();
        for (key, bytes) in service.store.scan(BLOCKS, "").await.map_err(store_err)? {
            let block: BlockRecord = decode(&bytes)?;
            if block.created < cutoff {
                objects.push(block.segment.object);
                // A block re-staged meanwhile is fresh: the guard makes this sweep start over.
                batch = batch.expect_unchanged(BLOCKS, key.clone(), Some(bytes)).delete(BLOCKS, key);
            }
        }
        Ok((batch, objects))
    })
    .await?;
    let expired = objects.len();
    data::delete_objects(service, collectable(service, objects).await?).await;
    Ok(expired)
}

/// Of `objects`, those no blob record references (a committed blob may share a staged block's object).
async fn collectable(service: &StorageService, objects: Vec<String>) -> Result<Vec<String>, ApiError> {
    if objects.is_empty() {
        return Ok(objects);
    }
    let referenced = referenced_objects(service, false).await?;
    Ok(objects.into_iter().filter(|o| !referenced.contains(o)).collect())
}

/// The objects the blob records (and, `with_blocks`, the staged blocks) reference, read from one
/// consistent view: a Put Block List moves references from BLOCKS to BLOBS in one commit, so two
/// separate scans could miss them in both tables and collect live data.
async fn referenced_objects(service: &StorageService, with_blocks: bool) -> Result<HashSet<String>, ApiError> {
    let scans: &[(byos_store::Table, &str)] = if with_blocks { &[(BLOBS, ""), (BLOCKS, "")] } else { &[(BLOBS, "")] };
    let tables = service.store.scan_consistent(scans).await.map_err(store_err)?;
    let mut referenced = HashSet::new();
    for (table, rows) in scans.iter().zip(tables) {
        for (_, bytes) in rows {
            if table.0 == BLOBS {
                let blob: BlobRecord = decode(&bytes)?;
                referenced.extend(blob.segments.into_iter().map(|s| s.object));
            } else {
                let block: BlockRecord = decode(&bytes)?;
                referenced.insert(block.segment.object);
            }
        }
    }
    Ok(referenced)
}

/// Deletes objects older than `grace` that nothing references; returns how many.
pub async fn collect_orphans(service: &StorageService, caller: &Caller, grace: Duration) -> Result<usize, ApiError> {
    authorize(service, caller)?;
    let listed = service.objects.list().await.map_err(|e| {
        tracing::warn!(error = %e, "cannot list objects");
        super::errors::internal()
    })?;
    let referenced = referenced_objects(service, true).await?;
    let orphans: Vec<String> =
        listed.into_iter().filter(|(id, age)| *age >= grace && !referenced.contains(id)).map(|(id, _)| id).collect();
    let count = orphans.len();
    data::delete_objects(service, orphans).await;
    Ok(count)
}

/// Runs both sweeps every `interval` until the service is dropped.
pub fn spawn(service: std::sync::Arc<StorageService>, interval: Duration) -> tokio::task::JoinHandle<()> {
    let weak = std::sync::Arc::downgrade(&service);
    drop(service);
    let housekeeper = Caller::actor(Actor::BlobHousekeeping);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        loop {
            ticker.tick().await;
            let Some(service) = weak.upgrade() else { return };
            let cutoff = byos_core::time::unix_now() - BLOCK_LIFETIME_SECS;
            let expired = expire_blocks(&service, &housekeeper, cutoff).await;
            match (expired, collect_orphans(&service, &housekeeper, ORPHAN_GRACE).await) {
                (Ok(blocks), Ok(orphans)) if blocks + orphans > 0 => {
                    tracing::info!(blocks, orphans, "blob housekeeping removed expired blocks and orphaned objects")
                }
                (Err(e), _) | (_, Err(e)) => tracing::warn!(error = %e, "blob housekeeping failed"),
                _ => {}
            }
        }
    })
}
