//! The records of an account's speech entities (transcriptions, batch syntheses, endpoints, models,
//! evaluations): one table each, keyed `{account id}/{entity id}` (lowercased), each value the
//! entity's JSON.

use byos_core::ApiError;
use byos_store::{Batch, SharedStore, Table};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::LiveAccount;
use crate::datasets::speech_error;

/// What every entity has: its id and when it was created (lists are oldest first).
pub(crate) trait Entity: Serialize + DeserializeOwned {
    fn id(&self) -> &str;
    fn created(&self) -> &str;
}

/// Applies what a PATCH of any speech entity may change about how it describes itself:
/// `displayName`, `description` (null clears it) and `customProperties`.
pub(crate) fn apply_description(
    update: &Map<String, Value>,
    display_name: &mut String,
    description: &mut Option<String>,
    custom_properties: &mut Map<String, Value>,
) {
    let text = |name: &str| update.get(name).and_then(Value::as_str).map(str::to_owned);
    if let Some(name) = text("displayName") {
        *display_name = name;
    }
    if update.contains_key("description") {
        *description = text("description");
    }
    if let Some(properties) = update.get("customProperties").and_then(Value::as_object) {
        *custom_properties = properties.clone();
    }
}

/// One entity kind's table.
pub(crate) struct Records {
    table: Table,
    /// The entity as messages name it ("model").
    noun: &'static str,
}

fn store_failure(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "speech records: metadata store failure");
    ApiError::internal().with_format(byos_core::ErrorFormat::Speech)
}

fn key(account_id: &str, id: &str) -> String {
    format!("{}/{}", account_id.to_ascii_lowercase(), id.to_ascii_lowercase())
}

impl Records {
    pub(crate) const fn new(table: Table, noun: &'static str) -> Self {
        Records { table, noun }
    }

    pub(crate) fn not_found(&self, id: &str) -> ApiError {
        speech_error(404, "NotFound", format!("The {} '{id}' does not exist.", self.noun))
    }

    pub(crate) async fn get<T: Entity>(
        &self,
        store: &SharedStore,
        account: &LiveAccount,
        id: &str,
    ) -> Result<T, ApiError> {
        let bytes = store
            .get(self.table, &key(&account.id, id))
            .await
            .map_err(store_failure)?
            .ok_or_else(|| self.not_found(id))?;
        serde_json::from_slice(&bytes).map_err(store_failure)
    }

    pub(crate) async fn put<T: Entity>(
        &self,
        store: &SharedStore,
        account: &LiveAccount,
        value: &T,
    ) -> Result<(), ApiError> {
        let bytes = serde_json::to_vec(value).map_err(store_failure)?;
        store.commit(Batch::new().put(self.table, key(&account.id, value.id()), bytes)).await.map_err(store_failure)
    }

    /// Every entity of the account, oldest first.
    pub(crate) async fn list<T: Entity>(&self, store: &SharedStore, account: &LiveAccount) -> Result<Vec<T>, ApiError> {
        let prefix = format!("{}/", account.id.to_ascii_lowercase());
        let rows = store.scan(self.table, &prefix).await.map_err(store_failure)?;
        let mut all: Vec<T> =
            rows.iter().map(|(_, b)| serde_json::from_slice(b).map_err(store_failure)).collect::<Result<_, _>>()?;
        all.sort_by(|a, b| a.created().cmp(b.created()).then_with(|| a.id().cmp(b.id())));
        Ok(all)
    }

    /// Every entity of every account, with its account's lowercased id.
    pub(crate) async fn all<T: Entity>(&self, store: &SharedStore) -> Result<Vec<(String, T)>, ApiError> {
        let rows = store.scan(self.table, "").await.map_err(store_failure)?;
        rows.iter()
            .map(|(row, bytes)| {
                let account = row.rsplit_once('/').map_or("", |(account, _)| account).to_owned();
                Ok((account, serde_json::from_slice(bytes).map_err(store_failure)?))
            })
            .collect()
    }

    pub(crate) async fn delete(&self, store: &SharedStore, account: &LiveAccount, id: &str) -> Result<(), ApiError> {
        store.commit(Batch::new().delete(self.table, key(&account.id, id))).await.map_err(store_failure)
    }

    /// Adds the deletion of every record of `account_id` to `batch` (its purge).
    pub(crate) async fn purge_ops(
        &self,
        store: &SharedStore,
        account_id: &str,
        mut batch: Batch,
    ) -> Result<Batch, ApiError> {
        let prefix = format!("{}/", account_id.to_ascii_lowercase());
        for (row, _) in store.scan(self.table, &prefix).await.map_err(store_failure)? {
            batch = batch.delete(self.table, row);
        }
        Ok(batch)
    }
}
