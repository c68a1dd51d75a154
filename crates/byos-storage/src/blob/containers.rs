//! Containers: create, delete, properties and metadata, access policy, listing. HTTP-free, like
//! [`blobs`](super::blobs): each operation takes the door's [`Permit`]; `http::containers` parses
//! and renders.

use std::collections::BTreeMap;

use byos_core::ApiError;
use byos_store::Batch;

use super::data::{
    self, BLOBS, BLOCKS, BlobRecord, BlockRecord, CONTAINERS, ContainerRecord, StoredPolicy, container_key, decode,
    encode, store_err,
};
use super::errors::{BlobError, bad_request, container_not_found, err};
use super::ops::Permit;
use super::xml::{self, Conditions};
use crate::{Account, StorageService};

/// Azure's rule: 3-63 lowercase letters, digits and single hyphens, starting with a letter or digit.
pub fn validate_name(name: &str) -> Result<(), ApiError> {
    let ok = (3..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(bad_request("InvalidResourceName", "The specified resource name contains invalid characters."))
    }
}

pub async fn load(
    service: &StorageService,
    account: &Account,
    container: &str,
) -> Result<Option<ContainerRecord>, ApiError> {
    Ok(read_container(service, account, container).await?.record)
}

/// The container record (a container being deleted counts as absent) with its stored bytes.
pub async fn read_container(
    service: &StorageService,
    account: &Account,
    container: &str,
) -> Result<data::Read<ContainerRecord>, ApiError> {
    let mut read: data::Read<ContainerRecord> =
        data::read(service, CONTAINERS, &container_key(&account.name, container)).await?;
    if read.record.as_ref().is_some_and(|c| c.deleting) {
        read.record = None;
    }
    Ok(read)
}

pub async fn require(
    service: &StorageService,
    account: &Account,
    container: &str,
) -> Result<ContainerRecord, ApiError> {
    load(service, account, container).await?.ok_or_else(container_not_found)
}

/// The container as a write that began in `started` may commit into it: the same incarnation, not
/// being deleted (a container deleted and created again while a body streamed is another container).
pub async fn read_same_container(
    service: &StorageService,
    account: &Account,
    started: &ContainerRecord,
) -> Result<data::Read<ContainerRecord>, ApiError> {
    let read = read_container(service, account, &started.name).await?;
    match &read.record {
        Some(now) if now.incarnation == started.incarnation => Ok(read),
        _ => Err(container_not_found()),
    }
}

/// Changes a container's record with optimistic concurrency.
async fn update(
    service: &StorageService,
    account: &Account,
    container: &str,
    change: impl Fn(&mut ContainerRecord),
) -> Result<ContainerRecord, ApiError> {
    let key = container_key(&account.name, container);
    data::optimistic(service, || async {
        let read = read_container(service, account, container).await?;
        let mut record = read.record.ok_or_else(container_not_found)?;
        change(&mut record);
        record.etag = data::new_etag();
        record.last_modified = xml::now_nanos();
        let batch = Batch::new().expect_unchanged(CONTAINERS, key.clone(), read.bytes).put(
            CONTAINERS,
            key.clone(),
            encode(&record)?,
        );
        Ok((batch, record))
    })
    .await
}

/// The container's public access level (`blob` / `container`), if any.
pub async fn public_access(
    service: &StorageService,
    account: &Account,
    container: &str,
) -> Result<Option<String>, ApiError> {
    Ok(load(service, account, container).await?.and_then(|c| c.public_access))
}

/// Refuses a public level on an account that forbids public access.
fn check_public_level(account: &Account, level: &Option<String>) -> Result<(), ApiError> {
    if level.is_some() && !account.settings.allow_blob_public_access {
        return Err(err(409, "PublicAccessNotPermitted", "Public access is not permitted on this storage account.")
            .with_header("x-byos-denial", "allowBlobPublicAccess is false: containers cannot be made public"));
    }
    Ok(())
}

/// Create Container.
pub async fn create(
    service: &StorageService,
    permit: &Permit,
    public_access: Option<String>,
    metadata: &BTreeMap<String, String>,
) -> Result<ContainerRecord, BlobError> {
    let (account, name) = (permit.account(), permit.container());
    validate_name(name)?;
    check_public_level(account, &public_access)?;
    let record = ContainerRecord {
        v: data::RECORD_VERSION,
        name: name.to_owned(),
        public_access,
        sealed_metadata: if metadata.is_empty() {
            None
        } else {
            data::seal_metadata(account, &*permit.kek(service).await?, name, None, metadata)?
        },
        etag: data::new_etag(),
        last_modified: xml::now_nanos(),
        deleting: false,
        incarnation: uuid::Uuid::new_v4().simple().to_string(),
        policies: Vec::new(),
    };
    let key = container_key(&account.name, name);
    // Guarded on the account's name record too: a creation that was under way while the account was
    // deleted fails instead of leaving a container that a new account of that name would inherit.
    let batch = Batch::new().expect_absent(CONTAINERS, key.clone()).expect_unchanged(
        crate::NAMES,
        account.name.clone(),
        Some(account.id.clone().into_bytes()),
    );
    match service.store.commit(batch.put(CONTAINERS, key, encode(&record)?)).await {
        Err(byos_store::StoreError::Conflict { table, .. }) if table == crate::NAMES.0 => {
            Err(BlobError::AccountNotFound)
        }
        Err(byos_store::StoreError::Conflict { .. }) => Err(BlobError::ContainerAlreadyExists),
        Err(e) => Err(store_err(e).into()),
        Ok(()) => Ok(record),
    }
}

/// Delete Container, with every blob and staged block in it.
pub async fn delete(service: &StorageService, permit: &Permit, conditions: &Conditions) -> Result<(), BlobError> {
    let (account, name) = (permit.account(), permit.container());
    let key = container_key(&account.name, name);
    // First mark it deleting: blob commits guard on the container record, so none can slip in
    // between the scan below and the deletion.
    let marked = data::optimistic(service, || async {
        let read = read_container(service, account, name).await?;
        let mut record = read.record.ok_or_else(container_not_found)?;
        conditions.check(
            Some(xml::Current { etag: &record.etag, last_modified_nanos: record.last_modified }),
            xml::Access::Write,
        )?;
        record.deleting = true;
        let bytes = encode(&record)?;
        Ok((
            Batch::new().expect_unchanged(CONTAINERS, key.clone(), read.bytes).put(
                CONTAINERS,
                key.clone(),
                bytes.clone(),
            ),
            bytes,
        ))
    })
    .await?;
    let prefix = format!("{key}/");
    let mut batch =
        Batch::new().expect_unchanged(CONTAINERS, key.clone(), Some(marked)).delete(CONTAINERS, key.clone());
    let mut objects = Vec::new();
    for (blob_key, bytes) in service.store.scan(BLOBS, &prefix).await.map_err(store_err)? {
        let blob: BlobRecord = decode(&bytes)?;
        objects.extend(blob.segments.into_iter().map(|s| s.object));
        batch = batch.delete(BLOBS, blob_key);
    }
    for (block_key, bytes) in service.store.scan(BLOCKS, &prefix).await.map_err(store_err)? {
        let block: BlockRecord = decode(&bytes)?;
        objects.push(block.segment.object);
        batch = batch.delete(BLOCKS, block_key);
    }
    service.store.commit(batch).await.map_err(store_err)?;
    data::delete_objects(service, objects).await;
    Ok(())
}

/// The container's metadata, in the clear.
async fn open_metadata(
    service: &StorageService,
    permit: &Permit,
    record: &ContainerRecord,
) -> Result<BTreeMap<String, String>, BlobError> {
    Ok(match &record.sealed_metadata {
        Some(sealed) => {
            data::open_metadata(permit.account(), &*permit.kek(service).await?, &record.name, None, Some(sealed))?
        }
        None => Default::default(),
    })
}

/// Get Container Properties / Metadata: the record and its metadata.
pub async fn properties(
    service: &StorageService,
    permit: &Permit,
) -> Result<(ContainerRecord, BTreeMap<String, String>), BlobError> {
    let record = require(service, permit.account(), permit.container()).await?;
    let metadata = open_metadata(service, permit, &record).await?;
    Ok((record, metadata))
}

/// Set Container Metadata.
pub async fn set_metadata(
    service: &StorageService,
    permit: &Permit,
    metadata: &BTreeMap<String, String>,
) -> Result<ContainerRecord, BlobError> {
    let (account, container) = (permit.account(), permit.container());
    let sealed = data::seal_metadata(account, &*permit.kek(service).await?, container, None, metadata)?;
    Ok(update(service, account, container, |r| r.sealed_metadata = sealed.clone()).await?)
}

/// Get Container ACL: the record carries the public level and the stored access policies.
pub async fn acl(service: &StorageService, permit: &Permit) -> Result<ContainerRecord, BlobError> {
    Ok(require(service, permit.account(), permit.container()).await?)
}

/// Set Container ACL.
pub async fn set_acl(
    service: &StorageService,
    permit: &Permit,
    public_access: Option<String>,
    policies: Vec<StoredPolicy>,
) -> Result<ContainerRecord, BlobError> {
    check_public_level(permit.account(), &public_access)?;
    let record = update(service, permit.account(), permit.container(), |r| {
        r.public_access = public_access.clone();
        r.policies = policies.clone();
    })
    .await?;
    Ok(record)
}

/// What List Containers asks for.
#[derive(Clone, Debug, Default)]
pub struct ContainerListing {
    pub prefix: String,
    pub marker: Option<String>,
    /// 1..=5000.
    pub max: usize,
    pub include_metadata: bool,
}

/// One page of containers (with their metadata when asked), and the marker of the next page.
pub struct ContainerPage {
    pub items: Vec<(ContainerRecord, Option<BTreeMap<String, String>>)>,
    pub next: Option<String>,
}

/// List Containers: one page.
pub async fn list(
    service: &StorageService,
    permit: &Permit,
    listing: &ContainerListing,
) -> Result<ContainerPage, BlobError> {
    let account = permit.account();
    let max = listing.max;
    let key_prefix = format!("{}/{}", account.name, listing.prefix);
    let after = listing.marker.as_deref().filter(|m| !m.is_empty()).map(|m| container_key(&account.name, m));
    // Read one past the page to know whether there is a next page; keys sort like names.
    let rows = service.store.scan_page(CONTAINERS, &key_prefix, after.as_deref(), max + 1).await.map_err(store_err)?;
    let mut items = Vec::new();
    for (_, bytes) in rows.iter().take(max) {
        let record: ContainerRecord = decode(bytes)?;
        if record.deleting {
            continue;
        }
        let metadata =
            if listing.include_metadata { Some(open_metadata(service, permit, &record).await?) } else { None };
        items.push((record, metadata));
    }
    let next = if rows.len() > max {
        rows.get(max - 1).and_then(|(k, _)| k.split_once('/').map(|(_, n)| n.to_owned()))
    } else {
        None
    };
    Ok(ContainerPage { items, next })
}
