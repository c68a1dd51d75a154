//! Deleting tracked resources: the one path every delete takes, a provider's own DELETE handler
//! and the resource-group cascade alike.
//!
//! [`Arm::delete_resources`] first asks each resource's provider whether the caller may delete it
//! ([`Provider::authorize_delete`](crate::Provider::authorize_delete)) and writes nothing unless
//! every answer is yes (Azure deletes a group by an authorized DELETE of each resource in it).
//! Then, in one transaction, it deletes the ARM record, the principals the resource owns, every
//! role assignment at or under the resource's scope (so a re-created resource of the same id
//! never inherits a former grantee), and the provider's own records.

use byos_authz::Action;
use byos_core::{ApiError, Caller, Scope};
use byos_http::Failure;
use byos_store::Batch;

use crate::records::ResourceRecord;
use crate::{Arm, rbac};

/// The held [`Arm::write_guard`]: deletes take it as proof that their checks stay true until commit.
pub type WriteGuard<'a> = tokio::sync::MutexGuard<'a, ()>;

/// The scope of a stored resource (its id).
pub fn resource_scope(record: &ResourceRecord) -> Result<Scope, ApiError> {
    Scope::parse(&record.id).map_err(|e| {
        tracing::error!(resource = %record.id, error = %e, "stored resource has an invalid id");
        ApiError::internal()
    })
}

/// ARM's rule for deleting a resource: `{type}/delete` at its scope.
pub(crate) fn authorize_default(arm: &Arm, caller: &Caller, record: &ResourceRecord) -> Result<(), Failure> {
    let delete = Action::control_owned(format!("{}/delete", record.resource_type));
    arm.authorize(caller, &delete, &resource_scope(record)?)
}

impl Arm {
    /// Deletes one resource for `caller`: what a provider's DELETE handler calls once it has
    /// found the record.
    pub async fn delete_resource(
        &self,
        held: &WriteGuard<'_>,
        caller: &Caller,
        record: &ResourceRecord,
    ) -> Result<(), Failure> {
        self.delete_resources(held, caller, std::slice::from_ref(record), Batch::new()).await
    }

    /// Deletes `records` for `caller`, together with `batch`, in one transaction; refuses the
    /// whole request (writing nothing) with the first resource the caller may not delete.
    pub async fn delete_resources(
        &self,
        _held: &WriteGuard<'_>,
        caller: &Caller,
        records: &[ResourceRecord],
        mut batch: Batch,
    ) -> Result<(), Failure> {
        for record in records {
            self.authorize_resource_delete(caller, record)?;
        }
        let mut principals = Vec::new();
        for record in records {
            batch = self.resource_deletion_ops(batch, record).await?;
            principals.extend(record.owned_principals.iter().copied());
        }
        self.commit_and_forget(batch, &principals).await?;
        for record in records {
            if let Some(provider) = self.provider_for_type(&record.resource_type) {
                provider.deleted(record).await;
            }
        }
        Ok(())
    }

    /// Whether `caller` may delete `record`, as its provider decides (ARM's rule for a type no
    /// provider owns).
    fn authorize_resource_delete(&self, caller: &Caller, record: &ResourceRecord) -> Result<(), Failure> {
        match self.provider_for_type(&record.resource_type) {
            Some(provider) => provider.authorize_delete(self, caller, record),
            None => authorize_default(self, caller, record),
        }
    }

    /// Adds everything deleting `record` removes to `batch`.
    async fn resource_deletion_ops(&self, batch: Batch, record: &ResourceRecord) -> Result<Batch, ApiError> {
        let batch = self.delete_resource_ops(batch, record);
        match self.provider_for_type(&record.resource_type) {
            Some(provider) => provider.delete_ops(self, record, batch).await,
            None => Ok(batch),
        }
    }

    /// Adds the deletion of a resource, of the principals it owns and of every role assignment at
    /// or under its scope to `batch`. Commit it with [`Arm::commit_and_forget`], which makes the
    /// door and the directory forget what the batch deleted.
    pub fn delete_resource_ops(&self, mut batch: Batch, record: &ResourceRecord) -> Batch {
        batch = batch.delete(crate::records::RESOURCES, crate::records::resource_key(&record.id));
        for principal in &record.owned_principals {
            batch = self.directory.delete_ops(batch, *principal);
        }
        match Scope::parse(&record.id) {
            Ok(scope) => rbac::assignments::delete_under_ops(self, batch, &scope),
            Err(e) => {
                // Ids are built from validated parts; a record that has none has no assignments.
                tracing::error!(resource = %record.id, error = %e, "stored resource has an invalid id");
                batch
            }
        }
    }

    /// Commits `batch`, then makes the directory forget the principals it deleted and the door
    /// the role assignments it deleted.
    pub async fn commit_and_forget(&self, batch: Batch, deleted_principals: &[uuid::Uuid]) -> Result<(), ApiError> {
        let assignments = rbac::assignments::deleted_in(&batch);
        self.store.commit(batch).await.map_err(crate::records::store_error)?;
        for principal in deleted_principals {
            self.directory.removed(*principal);
        }
        for name in assignments {
            self.door.remove_assignment(name);
        }
        Ok(())
    }
}
