//! Service-managed artifact storage, for accounts without their own storage: each artifact is an
//! object of byos's own object store (a directory of its own, so storage's orphan sweeper never
//! sees it), encrypted in 64 KiB chunks (AES-256-GCM) under a data key of its own, wrapped by the
//! account's KEK and bound to the account, area, path and object; an index row per artifact in
//! `cs_artifacts`. Nothing is written in plaintext.

use byos_crypto::envelope::{CHUNK_SIZE, DataKey, Kek};
use byos_crypto::{b64url, b64url_decode};
use byos_store::{Batch, SharedObjects, SharedStore, Table};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Area, ArtifactError, ArtifactInfo};
use crate::LiveAccount;

/// The artifacts of accounts without BYOS: `{account id}/{container}/{path}` (lowercased account
/// id) -> [`ArtifactRecord`].
const ARTIFACTS: Table = Table("cs_artifacts");
const TAG_LEN: usize = byos_crypto::envelope::TAG_LEN;

#[derive(Serialize, Deserialize)]
struct ArtifactRecord {
    v: u32,
    name: String,
    size: u64,
    etag: String,
    content_type: String,
    /// Nanoseconds since the Unix epoch.
    last_modified: i64,
    object: String,
    /// The artifact's data key, wrapped by the account's KEK (base64url).
    wrapped_key: String,
}

impl ArtifactRecord {
    fn info(&self) -> ArtifactInfo {
        ArtifactInfo {
            name: self.name.clone(),
            size: self.size,
            etag: self.etag.clone(),
            last_modified: self.last_modified,
            content_type: Some(self.content_type.clone()),
            metadata: Default::default(),
        }
    }
}

/// The store of service-managed artifacts.
pub(crate) struct ServiceStorage {
    store: SharedStore,
    objects: SharedObjects,
    keys: std::sync::Arc<crate::cmk::CustomerKeys>,
    /// Serializes writes, so that the object an overwrite replaces is the one it read.
    writes: tokio::sync::Mutex<()>,
}

fn internal(what: &str, e: impl std::fmt::Display) -> ArtifactError {
    tracing::error!(error = %e, "service artifact storage: {what}");
    ArtifactError::Internal
}

fn account_prefix(account_id: &str) -> String {
    format!("{}/", account_id.to_ascii_lowercase())
}

fn record_key(account: &LiveAccount, area: Area, path: &str) -> String {
    format!("{}{}/{path}", account_prefix(&account.id), area.container())
}

/// What a data key and every chunk are bound to: a sealed artifact cannot be moved to another
/// account, area, path or object.
fn context(account: &LiveAccount, area: Area, path: &str, object: &str) -> Vec<u8> {
    format!("cognitive-artifact\n{}\n{}\n{path}\n{object}", account.id.to_ascii_lowercase(), area.container())
        .into_bytes()
}

impl ServiceStorage {
    pub(crate) fn new(
        store: SharedStore,
        objects: SharedObjects,
        keys: std::sync::Arc<crate::cmk::CustomerKeys>,
    ) -> Self {
        ServiceStorage { store, objects, keys, writes: tokio::sync::Mutex::new(()) }
    }

    /// The account's KEK now (through its customer key, if it has one).
    async fn kek(&self, account: &LiveAccount) -> Result<std::sync::Arc<Kek>, ArtifactError> {
        self.keys.kek(account).await.map_err(|e| ArtifactError::KeyUnavailable(e.0))
    }

    async fn record(&self, key: &str) -> Result<Option<ArtifactRecord>, ArtifactError> {
        match self.store.get(ARTIFACTS, key).await.map_err(|e| internal("index read", e))? {
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| internal("index record", e)),
            None => Ok(None),
        }
    }

    pub(crate) async fn put(
        &self,
        account: &LiveAccount,
        area: Area,
        path: &str,
        content: Bytes,
        content_type: &str,
    ) -> Result<ArtifactInfo, ArtifactError> {
        let kek = self.kek(account).await?;
        let object = uuid::Uuid::new_v4().simple().to_string();
        let context = context(account, area, path, &object);
        let dek = DataKey::generate().map_err(|e| internal("data key", e))?;
        let wrapped = kek.wrap(&dek, &context).map_err(|e| internal("wrap", e))?;
        let mut writer = self.objects.create(&object).await.map_err(|e| internal("object create", e))?;
        for (index, chunk) in content.chunks(CHUNK_SIZE).enumerate() {
            let mut sealed = Vec::with_capacity(chunk.len() + TAG_LEN);
            sealed.extend_from_slice(chunk);
            let tag = dek.seal_chunk_in(&context, index as u64, &mut sealed).map_err(|e| internal("seal", e))?;
            sealed.extend_from_slice(&tag);
            writer.write(sealed).await.map_err(|e| internal("object write", e))?;
        }
        writer.finish().await.map_err(|e| internal("object finish", e))?;
        let now = time::OffsetDateTime::now_utc();
        let record = ArtifactRecord {
            v: 1,
            name: path.to_owned(),
            size: content.len() as u64,
            etag: format!("\"0x{:X}\"", now.unix_timestamp_nanos()),
            content_type: content_type.to_owned(),
            last_modified: now.unix_timestamp_nanos() as i64,
            object,
            wrapped_key: b64url(&wrapped),
        };
        let key = record_key(account, area, path);
        let bytes = serde_json::to_vec(&record).map_err(|e| internal("index encode", e))?;
        let _serialized = self.writes.lock().await;
        let replaced = self.record(&key).await?;
        if let Err(e) = self.store.commit(Batch::new().put(ARTIFACTS, key, bytes)).await {
            self.delete_object(&record.object).await;
            return Err(internal("index commit", e));
        }
        if let Some(replaced) = replaced {
            self.delete_object(&replaced.object).await;
        }
        Ok(record.info())
    }

    pub(crate) async fn read(&self, account: &LiveAccount, area: Area, path: &str) -> Result<Bytes, ArtifactError> {
        let record = self.record(&record_key(account, area, path)).await?.ok_or(ArtifactError::NotFound)?;
        let context = context(account, area, path, &record.object);
        let wrapped = b64url_decode(&record.wrapped_key).ok_or(ArtifactError::Internal)?;
        let dek = self.kek(account).await?.unwrap(&wrapped, &context).map_err(|e| internal("unwrap", e))?;
        let chunks = record.size.div_ceil(CHUNK_SIZE as u64);
        let sealed_len = record.size + chunks * TAG_LEN as u64;
        let mut sealed = self
            .objects
            .read_at(&record.object, 0, usize::try_from(sealed_len).map_err(|e| internal("size", e))?)
            .await
            .map_err(|e| internal("object read", e))?;
        let mut plain = Vec::with_capacity(usize::try_from(record.size).unwrap_or_default());
        for (index, chunk) in sealed.chunks_mut(CHUNK_SIZE + TAG_LEN).enumerate() {
            let len = dek.open_chunk(&context, index as u64, chunk).map_err(|e| internal("open", e))?;
            plain.extend_from_slice(&chunk[..len]);
        }
        Ok(plain.into())
    }

    pub(crate) async fn list(
        &self,
        account: &LiveAccount,
        area: Area,
        prefix: &str,
    ) -> Result<Vec<ArtifactInfo>, ArtifactError> {
        let rows = self
            .store
            .scan(ARTIFACTS, &record_key(account, area, prefix))
            .await
            .map_err(|e| internal("index scan", e))?;
        rows.iter()
            .map(|(_, bytes)| {
                serde_json::from_slice::<ArtifactRecord>(bytes)
                    .map(|r| r.info())
                    .map_err(|e| internal("index record", e))
            })
            .collect()
    }

    pub(crate) async fn delete(&self, account: &LiveAccount, area: Area, path: &str) -> Result<(), ArtifactError> {
        let key = record_key(account, area, path);
        let _serialized = self.writes.lock().await;
        let record = self.record(&key).await?.ok_or(ArtifactError::NotFound)?;
        self.store.commit(Batch::new().delete(ARTIFACTS, key)).await.map_err(|e| internal("index commit", e))?;
        self.delete_object(&record.object).await;
        Ok(())
    }

    /// Adds the deletion of every artifact of `account_id` to `batch` (an account's purge); returns
    /// the objects to delete once the batch is committed.
    pub(crate) async fn purge_ops(
        &self,
        account_id: &str,
        mut batch: Batch,
    ) -> Result<(Batch, Vec<String>), ArtifactError> {
        let rows =
            self.store.scan(ARTIFACTS, &account_prefix(account_id)).await.map_err(|e| internal("index scan", e))?;
        let mut objects = Vec::with_capacity(rows.len());
        for (key, bytes) in rows {
            let record: ArtifactRecord = serde_json::from_slice(&bytes).map_err(|e| internal("index record", e))?;
            objects.push(record.object);
            batch = batch.delete(ARTIFACTS, key);
        }
        Ok((batch, objects))
    }

    /// Deletes an object no index row references any more (a failure leaves an encrypted,
    /// unreferenced file, which is logged).
    pub(crate) async fn delete_object(&self, object: &str) {
        if let Err(e) = self.objects.delete(object).await {
            tracing::warn!(object, error = %e, "service artifact storage: an unreferenced object was not deleted");
        }
    }
}
