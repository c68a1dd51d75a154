//! The blob API for byos's own services (the artifact store of the AI accounts will sit on it):
//! the door first, as the given caller (typically a resource's identity from
//! `Directory::act_as`), then the same domain functions the HTTP layer calls. No HTTP here:
//! callers get records and a typed [`BlobError`].

use std::collections::BTreeMap;
use std::sync::Arc;

use byos_core::Caller;
use bytes::Bytes;

use super::blobs::{self, BlobListing, Listed, NewBlob, ReadStream};
use super::containers;
use super::data::{BlobRecord, ContentHeaders};
use super::errors::BlobError;
use super::ops::{self, Op, Permit};
use super::xml::Conditions;
use crate::{Account, StorageService};

/// Where a blob is: account name, container, blob name.
#[derive(Clone, Copy, Debug)]
pub struct BlobAddress<'a> {
    pub account: &'a str,
    pub container: &'a str,
    pub blob: &'a str,
}

/// A blob's properties as other services need them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    pub name: String,
    pub size: u64,
    pub etag: String,
    /// Nanoseconds since the Unix epoch.
    pub last_modified: i64,
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

impl BlobInfo {
    fn of(record: &BlobRecord, metadata: BTreeMap<String, String>) -> BlobInfo {
        BlobInfo {
            name: record.name.clone(),
            size: record.size,
            etag: record.etag.clone(),
            last_modified: record.last_modified,
            content_type: record.content.content_type.clone(),
            metadata,
        }
    }
}

/// A blob opened for reading: its properties and its content.
pub struct BlobReader {
    pub info: BlobInfo,
    pub content: ReadStream,
}

impl StorageService {
    fn account_named(&self, name: &str) -> Result<Arc<Account>, BlobError> {
        self.account(name).ok_or(BlobError::AccountNotFound)
    }

    /// Asks the door for `op` on the container (and blob) as `caller`.
    async fn admit(
        &self,
        caller: &Caller,
        op: Op,
        account: &str,
        container: &str,
        blob: Option<&str>,
    ) -> Result<Permit, BlobError> {
        let account = self.account_named(account)?;
        ops::permit(self, caller.clone(), op, account, Some(container.to_owned()), blob.map(str::to_owned)).await
    }

    /// Creates a private container.
    pub async fn create_container(&self, caller: &Caller, account: &str, container: &str) -> Result<(), BlobError> {
        let permit = self.admit(caller, Op::CreateContainer, account, container, None).await?;
        containers::create(self, &permit, None, &BTreeMap::new()).await.map(|_| ())
    }

    /// Deletes a container and everything in it.
    pub async fn delete_container(&self, caller: &Caller, account: &str, container: &str) -> Result<(), BlobError> {
        let permit = self.admit(caller, Op::DeleteContainer, account, container, None).await?;
        containers::delete(self, &permit, &Conditions::default()).await
    }

    /// Writes a whole block blob (replacing any version there).
    pub async fn put_blob(
        &self,
        caller: &Caller,
        at: BlobAddress<'_>,
        content: Bytes,
        content_type: Option<&str>,
        metadata: BTreeMap<String, String>,
    ) -> Result<BlobInfo, BlobError> {
        let permit = self.admit(caller, Op::PutBlob, at.account, at.container, Some(at.blob)).await?;
        let new = NewBlob {
            content: Box::pin(futures_util::stream::once(async move { Ok(content) })),
            sent: Default::default(),
            headers: ContentHeaders { content_type: content_type.map(str::to_owned), ..Default::default() },
            metadata: metadata.clone(),
            conditions: Conditions::default(),
        };
        let (record, _) = blobs::put(self, &permit, new).await?;
        Ok(BlobInfo::of(&record, metadata))
    }

    /// Opens a blob for reading its whole content.
    pub async fn read_blob(&self, caller: &Caller, at: BlobAddress<'_>) -> Result<BlobReader, BlobError> {
        let permit = self.admit(caller, Op::GetBlob, at.account, at.container, Some(at.blob)).await?;
        let open = blobs::open(self, &permit, &Conditions::default()).await?;
        let content = open.read(self, &permit, 0, open.record.size)?;
        Ok(BlobReader { info: BlobInfo::of(&open.record, open.metadata), content })
    }

    /// A blob's properties and metadata.
    pub async fn blob_properties(&self, caller: &Caller, at: BlobAddress<'_>) -> Result<BlobInfo, BlobError> {
        let permit = self.admit(caller, Op::GetBlobProperties, at.account, at.container, Some(at.blob)).await?;
        let open = blobs::open(self, &permit, &Conditions::default()).await?;
        Ok(BlobInfo::of(&open.record, open.metadata))
    }

    /// Deletes a blob.
    pub async fn delete_blob(&self, caller: &Caller, at: BlobAddress<'_>) -> Result<(), BlobError> {
        let permit = self.admit(caller, Op::DeleteBlob, at.account, at.container, Some(at.blob)).await?;
        blobs::delete(self, &permit, &Conditions::default()).await
    }

    /// A link that lets anyone holding it read one blob for `validity` (at most 7 days): a user
    /// delegation SAS signed with a key of `caller`, which must be allowed to read the blob and to
    /// get a delegation key. Like any user delegation SAS, it stops working when the caller loses
    /// those rights or the account's delegation keys are revoked.
    pub async fn read_link(
        &self,
        caller: &Caller,
        at: BlobAddress<'_>,
        validity: std::time::Duration,
    ) -> Result<String, BlobError> {
        let read = self.admit(caller, Op::GetBlob, at.account, at.container, Some(at.blob)).await?;
        let account = self.account_named(at.account)?;
        let keyed =
            ops::permit(self, caller.clone(), Op::GetUserDelegationKey, Arc::clone(&account), None, None).await?;
        let expiry = time::OffsetDateTime::now_utc() + validity;
        let key = super::service::user_delegation_key(
            self,
            &keyed,
            None,
            &super::service::iso(expiry),
            super::sas::SIGNED_VERSION,
        )
        .await?;
        let query = super::sas::sign_blob_read(read.account(), at.container, at.blob, &key)?;
        Ok(format!("{}{}?{query}", self.endpoint(&account.name), blob_path(at.container, at.blob)))
    }

    /// Every blob of a container whose name starts with `prefix` (all pages), with metadata.
    pub async fn list_blobs(
        &self,
        caller: &Caller,
        account: &str,
        container: &str,
        prefix: &str,
    ) -> Result<Vec<BlobInfo>, BlobError> {
        let permit = self.admit(caller, Op::ListBlobs, account, container, None).await?;
        let mut listing =
            BlobListing { prefix: prefix.to_owned(), max: 5000, include_metadata: true, ..Default::default() };
        let mut found = Vec::new();
        loop {
            let page = blobs::list(self, &permit, &listing).await?;
            for item in page.items {
                if let Listed::Blob(record, metadata) = item {
                    found.push(BlobInfo::of(&record, metadata.unwrap_or_default()));
                }
            }
            match page.next {
                Some(next) => listing.marker = Some(next),
                None => return Ok(found),
            }
        }
    }
}

/// `{container}/{blob}` as a URL path (each segment of the blob name percent-encoded).
pub fn blob_path(container: &str, blob: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    let encoded: Vec<String> = blob.split('/').map(|s| utf8_percent_encode(s, SEGMENT).to_string()).collect();
    format!("{container}/{}", encoded.join("/"))
}
