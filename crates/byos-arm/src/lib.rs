//! The resource manager: the ARM wire protocol and the resources every other service builds on.
//!
//! One handler ([`router`]) takes every ARM request: it authenticates the bearer token
//! ([`context`]), checks `api-version`, parses the path ([`path`]) and dispatches to the owner of
//! the addressed resource: subscriptions ([`subscriptions`]), resource groups ([`groups`]), RBAC
//! resources ([`rbac`]) or a resource provider ([`Provider`]; built in: [`managed_identity`] and
//! [`features`]).
//! Every handler authorizes through the one door before it reads or writes anything.

pub mod activity;
pub mod context;
pub mod deletion;
pub mod features;
pub mod groups;
pub mod managed_identity;
pub mod network;
pub mod path;
pub mod rbac;
pub mod records;
pub mod reply;
pub mod subscriptions;

use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use byos_authz::Door;
use byos_core::{ApiError, Caller};
use byos_http::Failure;
use byos_identity::Directory;
use byos_store::SharedStore;

pub use context::ArmRequest;
pub use deletion::WriteGuard;
pub use records::ResourceRecord;
pub use reply::ArmReply;

/// A resource provider namespace (`Microsoft.ManagedIdentity`, later `Microsoft.Storage`, ...).
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// The namespace, as ARM spells it.
    fn namespace(&self) -> &'static str;
    /// Handles `{sub}[/resourceGroups/{group}]/providers/{namespace}/{rest...}`; the router renders
    /// the reply or the failure.
    async fn handle(
        &self,
        arm: &Arm,
        request: &ArmRequest,
        group: Option<&str>,
        rest: &[String],
    ) -> Result<ArmReply, Failure>;
    /// Authorizes `caller` to delete `resource`. The default is ARM's rule, `{type}/delete` at the
    /// resource's scope through the door; a provider with further conditions overrides it. Every
    /// delete goes through [`Arm::delete_resources`], which calls this for each resource before
    /// anything is written, so the resource-group cascade cannot skip a provider's checks.
    fn authorize_delete(&self, arm: &Arm, caller: &Caller, resource: &ResourceRecord) -> Result<(), Failure> {
        deletion::authorize_default(arm, caller, resource)
    }
    /// Adds the deletion of the provider's own records about `resource` to `batch` (called by
    /// [`Arm::delete_resources`], after the ARM record, its principals and role assignments).
    async fn delete_ops(
        &self,
        _arm: &Arm,
        _resource: &ResourceRecord,
        batch: byos_store::Batch,
    ) -> Result<byos_store::Batch, ApiError> {
        Ok(batch)
    }
    /// Called once the deletion of `resource` is committed (drop caches, remove stored objects).
    async fn deleted(&self, _resource: &ResourceRecord) {}
    /// Subscription-level actions (`/subscriptions/{s}/providers/{namespace}/{action}`), e.g.
    /// `checkNameAvailability`, are routed to [`Provider::handle`] with `group: None`.
    fn owns_type(&self, full_type: &str) -> bool {
        full_type.len() > self.namespace().len()
            && full_type[..self.namespace().len()].eq_ignore_ascii_case(self.namespace())
    }
}

/// Fixed facts of this deployment.
#[derive(Clone, Debug)]
pub struct Deployment {
    pub subscription_id: String,
    pub location: String,
    /// Base URL of the resource manager (`https://127.0.0.1:8443`).
    pub base_url: String,
    pub authority: String,
    /// Preview features the operator approved at start (`byos serve --approve-feature`).
    pub approved_features: Vec<&'static features::Feature>,
}

/// The resource manager's shared state.
pub struct Arm {
    pub directory: Arc<Directory>,
    pub door: Arc<Door>,
    pub store: SharedStore,
    pub deployment: Deployment,
    providers: Vec<Arc<dyn Provider>>,
    /// Serializes every read-check-write sequence on ARM metadata, so checks stay true until commit.
    pub(crate) write_lock: tokio::sync::Mutex<()>,
    /// Every write, action and refusal, hash-chained.
    pub activity: activity::ActivityLog,
}

impl Arm {
    /// Loads RBAC state into the door and wires the built-in providers.
    pub async fn open(
        directory: Arc<Directory>,
        door: Arc<Door>,
        store: SharedStore,
        root: Arc<byos_crypto::RootKey>,
        deployment: Deployment,
        mut providers: Vec<Arc<dyn Provider>>,
    ) -> Result<Arc<Self>, ApiError> {
        rbac::load_into_door(&store, &door).await?;
        providers.push(Arc::new(managed_identity::UserAssignedIdentities));
        providers.push(Arc::new(features::Features));
        let activity = activity::ActivityLog::new(store.clone(), root, activity::TABLES);
        let write_lock = tokio::sync::Mutex::new(());
        let arm = Arc::new(Arm { directory, door, store, deployment, providers, write_lock, activity });
        features::approve_at_start(&arm).await?;
        Ok(arm)
    }

    /// The provider owning resources of `full_type` (`Namespace/type`).
    pub fn provider_for_type(&self, full_type: &str) -> Option<&Arc<dyn Provider>> {
        self.providers.iter().find(|p| p.owns_type(full_type))
    }

    /// Serializes read-check-write sequences on ARM metadata across all providers.
    pub async fn write_guard(&self) -> WriteGuard<'_> {
        self.write_lock.lock().await
    }

    fn provider(&self, namespace: &str) -> Option<&Arc<dyn Provider>> {
        self.providers.iter().find(|p| p.namespace().eq_ignore_ascii_case(namespace))
    }
}

/// The ARM router: `/metadata/endpoints` plus one handler for everything else.
pub fn router(arm: Arc<Arm>) -> Router {
    Router::new()
        .route("/metadata/endpoints", axum::routing::get(subscriptions::cloud_metadata))
        .fallback(handle)
        .with_state(arm)
}

/// Serves one ARM request, then records it in the activity log when it is a write, an action or
/// a refusal (before answering, so that an answered change is in the log).
async fn handle(State(arm): State<Arc<Arm>>, request: Request) -> Response {
    // The URI's clone shares its bytes; the path is read only for a request that is recorded.
    let (method, uri) = (request.method().clone(), request.uri().clone());
    let source_ip = byos_http::origin_of(request.extensions()).ip;
    let (caller, outcome) = match ArmRequest::from_http(&arm, request).await {
        Ok(request) => {
            let outcome = dispatch(&arm, &request).await;
            (Some(request.caller), outcome)
        }
        Err(failure) => (None, Err(failure)),
    };
    let status = match &outcome {
        Ok(reply) => reply.status,
        Err(failure) => failure.0.status,
    };
    if activity::recorded(&method, status) {
        let error = outcome.as_ref().err().map(|f| &*f.0);
        let path = uri.path();
        let finished = activity::Finished { caller: caller.as_ref(), source_ip, method: &method, path, status, error };
        if let Err(e) = activity::record(&arm.activity, finished).await {
            tracing::error!(error = %e, %method, path, "an ARM request could not be recorded in the activity log");
        }
    }
    outcome.map_or_else(IntoResponse::into_response, ArmReply::render)
}

async fn dispatch(arm: &Arm, request: &ArmRequest) -> Result<ArmReply, Failure> {
    use path::Target;
    match path::parse(&request.path) {
        Target::Subscriptions => subscriptions::list(arm, request),
        Target::Subscription { sub } => subscriptions::get(arm, request, &sub),
        Target::ResourceGroups { sub } => groups::list(arm, request, &sub).await,
        Target::ResourceGroup { sub, group } => groups::handle(arm, request, &sub, &group).await,
        Target::GroupResources { sub, group } => groups::list_resources(arm, request, &sub, &group).await,
        Target::RoleAssignments { scope } => rbac::assignments::list(arm, request, &scope),
        Target::RoleAssignment { scope, name } => rbac::assignments::handle(arm, request, &scope, &name).await,
        Target::RoleDefinitions { scope } => rbac::definitions::list(arm, request, &scope),
        Target::RoleDefinition { scope, id } => rbac::definitions::handle(arm, request, &scope, &id).await,
        Target::Provider { sub, group, namespace, rest } => {
            subscriptions::require(arm, &sub)?;
            let provider = arm.provider(&namespace).ok_or_else(|| {
                ApiError::bad_request(
                    "NoRegisteredProviderFound",
                    format!("No registered resource provider found for namespace '{namespace}'."),
                )
            })?;
            if let Some(group) = group.as_deref() {
                require_group_of_request(arm, request, &sub, group, &namespace, &rest).await?;
            }
            provider.handle(arm, request, group.as_deref(), &rest).await
        }
        Target::Unknown => Err(Failure::from(ApiError::not_found(
            "InvalidResourceType",
            format!("The resource path '{}' does not address a resource type byos knows.", request.path),
        ))),
    }
}

/// A request for anything in a resource group that does not exist is answered ARM's
/// `ResourceGroupNotFound`, whichever provider owns it. As ARM's front door does, the caller must
/// first be authorized for what it asked, so a caller without access learns nothing about which
/// groups exist (it gets the provider's 403, "...or the scope is invalid").
async fn require_group_of_request(
    arm: &Arm,
    request: &ArmRequest,
    sub: &str,
    group: &str,
    namespace: &str,
    rest: &[String],
) -> Result<(), Failure> {
    if arm.group(sub, group).await?.is_some() {
        return Ok(());
    }
    if let Some((action, scope)) = path::provider_action(&request.method, sub, group, namespace, rest) {
        request.authorize(arm, &action, &scope)?;
    }
    Err(Failure::from(records::group_not_found(group)))
}
