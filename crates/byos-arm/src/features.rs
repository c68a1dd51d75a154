//! `Microsoft.Features`: the preview features a subscription registers for, and the operator's
//! approval of those that Azure gates behind an access request (a form Microsoft approves).
//!
//! byos knows a fixed catalogue ([`CATALOGUE`]). Stored per subscription and feature (table
//! `arm_features`) are the customer's registration (never asked, requested, withdrawn) and whether
//! the operator approved the feature; the state ARM reports is derived from both
//! ([`FeatureRecord::state`]). So an approval given while a registration is pending completes it
//! without any write in the customer's name, and approving alone registers nothing (as in Azure,
//! the customer must still register).

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Extensions, Method};
use axum::response::Response;
use byos_authz::Action;
use byos_core::{ApiError, Scope};
use byos_http::{Failure, json_response, parse_json};
use byos_store::{Batch, Table};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::groups::{method_not_allowed, unknown_resource_type};
use crate::records::{decode, encode, store_error};
use crate::{Arm, ArmReply, ArmRequest, Provider};

/// The table of registrations and approvals, keyed by lowercased `{sub}/{namespace}/{feature}`.
pub const FEATURES: Table = Table("arm_features");

const NAMESPACE: &str = "Microsoft.Features";
const FEATURE_TYPE: &str = "Microsoft.Features/providers/features";
const READ: Action = Action::control("Microsoft.Features/providers/features/read");
const REGISTER: Action = Action::control("Microsoft.Features/providers/features/register/action");
const UNREGISTER: Action = Action::control("Microsoft.Features/providers/features/unregister/action");
const APPROVE: Action = Action::operator("byos/features/approve/action");
const RECORD_VERSION: u32 = 1;

/// A preview feature byos knows.
#[derive(Debug, PartialEq, Eq)]
pub struct Feature {
    /// The resource provider namespace it belongs to, as ARM spells it.
    pub namespace: &'static str,
    pub name: &'static str,
    /// Whether registering waits for the operator's approval (Azure's access-request features).
    requires_approval: bool,
}

/// Every feature byos knows; any other name is `FeatureNotFound`.
pub static CATALOGUE: [Feature; 1] =
    [Feature { namespace: "Microsoft.CognitiveServices", name: "byoxPreview", requires_approval: true }];

/// A feature name that is not in the catalogue.
#[derive(Debug, thiserror::Error)]
#[error("the feature '{0}' could not be found: byos knows {known}", known = known_names())]
pub struct UnknownFeature(pub String);

impl From<UnknownFeature> for ApiError {
    fn from(e: UnknownFeature) -> Self {
        ApiError::not_found("FeatureNotFound", format!("The feature '{}' could not be found.", e.0))
    }
}

fn known_names() -> String {
    CATALOGUE.iter().map(|f| format!("{}/{}", f.namespace, f.name)).collect::<Vec<_>>().join(", ")
}

/// The catalogue entry of `namespace`/`name` (both case-insensitive).
pub fn find(namespace: &str, name: &str) -> Result<&'static Feature, UnknownFeature> {
    CATALOGUE
        .iter()
        .find(|f| f.namespace.eq_ignore_ascii_case(namespace) && f.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| UnknownFeature(format!("{namespace}/{name}")))
}

/// Parses `Namespace/name` (how `byos serve --approve-feature` names a feature).
pub fn parse(text: &str) -> Result<&'static Feature, UnknownFeature> {
    let (namespace, name) = text.trim().split_once('/').ok_or_else(|| UnknownFeature(text.to_owned()))?;
    find(namespace, name)
}

/// A feature's registration state, as ARM reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureState {
    NotRegistered,
    /// Registration requested, waiting for the operator's approval.
    Pending,
    Registered,
    Unregistered,
}

impl FeatureState {
    pub fn as_str(self) -> &'static str {
        match self {
            FeatureState::NotRegistered => "NotRegistered",
            FeatureState::Pending => "Pending",
            FeatureState::Registered => "Registered",
            FeatureState::Unregistered => "Unregistered",
        }
    }
}

/// What the customer last asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Registration {
    #[default]
    Never,
    Requested,
    Withdrawn,
}

/// One subscription's record of one feature; a feature without a record has the default.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FeatureRecord {
    v: u32,
    registration: Registration,
    /// Set by the operator (`byos feature approve`, `byos serve --approve-feature`). Unregistering
    /// keeps it: the approval is the operator's decision about the subscription, which the
    /// customer withdrawing a registration does not undo, so registering again needs no new one.
    approved: bool,
}

impl FeatureRecord {
    fn state(&self, feature: &Feature) -> FeatureState {
        match self.registration {
            Registration::Never => FeatureState::NotRegistered,
            Registration::Withdrawn => FeatureState::Unregistered,
            Registration::Requested if self.approved || !feature.requires_approval => FeatureState::Registered,
            Registration::Requested => FeatureState::Pending,
        }
    }
}

fn key(sub: &str, feature: &Feature) -> String {
    format!("{sub}/{}/{}", feature.namespace, feature.name).to_ascii_lowercase()
}

async fn load(arm: &Arm, sub: &str, feature: &Feature) -> Result<FeatureRecord, ApiError> {
    let key = key(sub, feature);
    match arm.store.get(FEATURES, &key).await.map_err(store_error)? {
        Some(bytes) => decode(&key, &bytes),
        None => Ok(FeatureRecord::default()),
    }
}

/// Reads, changes and writes one record under the ARM write lock, in one batch; returns the new state.
async fn update(
    arm: &Arm,
    sub: &str,
    feature: &Feature,
    change: impl FnOnce(&mut FeatureRecord),
) -> Result<FeatureState, ApiError> {
    let _guard = arm.write_guard().await;
    let mut record = load(arm, sub, feature).await?;
    change(&mut record);
    record.v = RECORD_VERSION;
    let key = key(sub, feature);
    let bytes = encode(&key, &record)?;
    arm.store.commit(Batch::new().put(FEATURES, key, bytes)).await.map_err(store_error)?;
    Ok(record.state(feature))
}

/// The state of `namespace`/`feature` in subscription `sub`: what a provider checks before it
/// serves a preview capability (Cognitive Services accounts with BYOS need
/// `Microsoft.CognitiveServices/byoxPreview` to be [`FeatureState::Registered`]).
pub async fn feature_state(arm: &Arm, sub: &str, namespace: &str, feature: &str) -> Result<FeatureState, ApiError> {
    let feature = find(namespace, feature)?;
    Ok(load(arm, sub, feature).await?.state(feature))
}

/// The operator approves `feature` for subscription `sub` (the caller has been authorized);
/// returns its state, `Registered` if a registration was pending.
pub async fn approve(arm: &Arm, sub: &str, feature: &Feature) -> Result<FeatureState, ApiError> {
    let state = update(arm, sub, feature, |record| record.approved = true).await?;
    tracing::info!(feature = feature.name, state = state.as_str(), "preview feature approved");
    Ok(state)
}

/// Applies `byos serve --approve-feature` to the deployment's subscription at start. The operator
/// chose it on the command line, as `assignments::ensure` sets up the admin: no request, so no
/// door. An approval already stored is not written again.
pub(crate) async fn approve_at_start(arm: &Arm) -> Result<(), ApiError> {
    let sub = &arm.deployment.subscription_id;
    for feature in &arm.deployment.approved_features {
        if !load(arm, sub, feature).await?.approved {
            approve(arm, sub, feature).await?;
        }
    }
    Ok(())
}

fn feature_id(sub: &str, feature: &Feature) -> String {
    format!("/subscriptions/{sub}/providers/{NAMESPACE}/providers/{}/features/{}", feature.namespace, feature.name)
}

/// Azure's `FeatureResult`.
fn wire(sub: &str, feature: &Feature, state: FeatureState) -> Value {
    json!({
        "properties": {"state": state.as_str()},
        "id": feature_id(sub, feature),
        "type": FEATURE_TYPE,
        "name": format!("{}/{}", feature.namespace, feature.name),
    })
}

/// The `Microsoft.Features` provider (subscription level only).
pub struct Features;

#[async_trait]
impl Provider for Features {
    fn namespace(&self) -> &'static str {
        NAMESPACE
    }

    async fn handle(
        &self,
        arm: &Arm,
        request: &ArmRequest,
        group: Option<&str>,
        rest: &[String],
    ) -> Result<ArmReply, Failure> {
        let sub = arm.deployment.subscription_id.clone();
        let is = |segment: &String, word: &str| segment.eq_ignore_ascii_case(word);
        match (group, rest) {
            (None, [features]) if is(features, "features") => list(arm, request, &sub, None).await,
            (None, [providers, namespace, features]) if is(providers, "providers") && is(features, "features") => {
                list(arm, request, &sub, Some(namespace)).await
            }
            (None, [providers, namespace, features, name])
                if is(providers, "providers") && is(features, "features") =>
            {
                get(arm, request, &sub, namespace, name).await
            }
            (None, [providers, namespace, features, name, verb])
                if is(providers, "providers") && is(features, "features") =>
            {
                change_registration(arm, request, &sub, namespace, name, verb).await
            }
            _ => Err(unknown_resource_type(NAMESPACE, rest)),
        }
    }
}

/// Authorizes a read of the subscription's features (the method must be GET).
fn authorize_read(arm: &Arm, request: &ArmRequest, sub: &str) -> Result<(), Failure> {
    if request.method != Method::GET {
        return Err(method_not_allowed(&request.method));
    }
    request.authorize(arm, &READ, &Scope::subscription(sub))
}

async fn get(arm: &Arm, request: &ArmRequest, sub: &str, namespace: &str, name: &str) -> Result<ArmReply, Failure> {
    authorize_read(arm, request, sub)?;
    let feature = find(namespace, name)?;
    Ok(ArmReply::ok(wire(sub, feature, load(arm, sub, feature).await?.state(feature))))
}

/// `POST .../features/{name}/register` or `/unregister`.
async fn change_registration(
    arm: &Arm,
    request: &ArmRequest,
    sub: &str,
    namespace: &str,
    name: &str,
    verb: &str,
) -> Result<ArmReply, Failure> {
    let (action, registration) = match verb.to_ascii_lowercase().as_str() {
        "register" => (&REGISTER, Registration::Requested),
        "unregister" => (&UNREGISTER, Registration::Withdrawn),
        _ => return Err(unknown_resource_type(NAMESPACE, &[format!("providers/{namespace}/features/{name}/{verb}")])),
    };
    if request.method != Method::POST {
        return Err(method_not_allowed(&request.method));
    }
    request.authorize(arm, action, &Scope::subscription(sub))?;
    let feature = find(namespace, name)?;
    let state = update(arm, sub, feature, |record| record.registration = registration).await?;
    tracing::info!(feature = feature.name, state = state.as_str(), "preview feature registration changed");
    Ok(ArmReply::ok(wire(sub, feature, state)))
}

async fn list(arm: &Arm, request: &ArmRequest, sub: &str, namespace: Option<&str>) -> Result<ArmReply, Failure> {
    authorize_read(arm, request, sub)?;
    let value = states(arm, sub, namespace).await?.into_iter().map(|(f, state)| wire(sub, f, state)).collect();
    Ok(ArmReply::list(value))
}

/// The catalogue's features (of one namespace, or all) with their states in `sub`, from one scan.
async fn states(
    arm: &Arm,
    sub: &str,
    namespace: Option<&str>,
) -> Result<Vec<(&'static Feature, FeatureState)>, ApiError> {
    let rows = arm.store.scan(FEATURES, &format!("{sub}/").to_ascii_lowercase()).await.map_err(store_error)?;
    let mut states = Vec::new();
    for feature in CATALOGUE.iter().filter(|f| namespace.is_none_or(|ns| f.namespace.eq_ignore_ascii_case(ns))) {
        let key = key(sub, feature);
        let record = match rows.iter().find(|(k, _)| *k == key) {
            Some((_, bytes)) => decode(&key, bytes)?,
            None => FeatureRecord::default(),
        };
        states.push((feature, record.state(feature)));
    }
    Ok(states)
}

/// The operator's approval on the control socket: `POST /operator/features/approve`
/// (`byos feature approve`).
pub fn operator_router(arm: Arc<Arm>) -> axum::Router {
    axum::Router::new().route("/operator/features/approve", axum::routing::post(operator_approve)).with_state(arm)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveRequest {
    namespace: String,
    name: String,
}

async fn operator_approve(
    State(arm): State<Arc<Arm>>,
    extensions: Extensions,
    body: Bytes,
) -> Result<Response, Failure> {
    let caller = byos_identity::api::operator::operator_caller(&extensions);
    arm.door.authorize(&caller, &APPROVE, &Scope::root()).map_err(|d| d.to_api_error())?;
    let request: ApproveRequest = parse_json(&body)?;
    let feature = find(&request.namespace, &request.name)?;
    let sub = &arm.deployment.subscription_id;
    let state = approve(&arm, sub, feature).await?;
    let answer = json!({"id": feature_id(sub, feature), "approved": true, "state": state.as_str()});
    Ok(json_response(200, &answer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Deployment;

    const GATED: Feature = Feature { namespace: "N", name: "gated", requires_approval: true };
    const OPEN: Feature = Feature { namespace: "N", name: "open", requires_approval: false };
    const SUB: &str = "00000000-0000-0000-0000-0000000000aa";

    fn record(registration: Registration, approved: bool) -> FeatureRecord {
        FeatureRecord { v: RECORD_VERSION, registration, approved }
    }

    #[test]
    fn state_follows_registration_and_approval() {
        use FeatureState::*;
        use Registration::*;
        let cases = [
            (Never, false, &GATED, NotRegistered),
            (Never, true, &GATED, NotRegistered),
            (Requested, false, &GATED, Pending),
            (Requested, true, &GATED, Registered),
            (Requested, false, &OPEN, Registered),
            (Withdrawn, true, &GATED, Unregistered),
            (Withdrawn, false, &OPEN, Unregistered),
        ];
        for (registration, approved, feature, expected) in cases {
            assert_eq!(record(registration, approved).state(feature), expected, "{registration:?} {approved}");
        }
    }

    #[test]
    fn names_are_found_case_insensitively_and_unknown_ones_are_feature_not_found() {
        let found = parse("microsoft.cognitiveservices/BYOXPREVIEW").map(|f| f.name).ok();
        assert_eq!(found, Some("byoxPreview"));
        assert!(parse("byoxPreview").is_err());
        let Err(unknown) = find("Microsoft.CognitiveServices", "nope") else {
            panic!("an unknown feature was found");
        };
        let error = ApiError::from(unknown);
        assert_eq!((error.status, error.code.as_str()), (404, "FeatureNotFound"));
        assert!(error.message.contains("Microsoft.CognitiveServices/nope"), "{}", error.message);
    }

    async fn arm(approved_features: Vec<&'static Feature>) -> anyhow::Result<Arc<Arm>> {
        let store: byos_store::SharedStore = Arc::new(byos_store::MemStore::new());
        let root = Arc::new(byos_crypto::RootKey::ephemeral()?);
        let url = "https://127.0.0.1:1";
        let directory = Arc::new(byos_identity::Directory::open(Arc::clone(&store), &root, url).await?);
        let deployment = Deployment {
            subscription_id: SUB.into(),
            location: "eastus".into(),
            base_url: url.into(),
            authority: url.into(),
            approved_features,
        };
        Ok(Arm::open(directory, Arc::new(byos_authz::Door::new()), store, root, deployment, vec![]).await?)
    }

    fn byox() -> anyhow::Result<&'static Feature> {
        Ok(find("Microsoft.CognitiveServices", "byoxPreview")?)
    }

    async fn set(arm: &Arm, registration: Registration) -> anyhow::Result<FeatureState> {
        Ok(update(arm, SUB, byox()?, |record| record.registration = registration).await?)
    }

    async fn state(arm: &Arm) -> anyhow::Result<FeatureState> {
        Ok(feature_state(arm, SUB, "microsoft.cognitiveservices", "byoxpreview").await?)
    }

    #[tokio::test]
    async fn a_gated_registration_waits_for_approval_which_outlives_unregistering() -> anyhow::Result<()> {
        let arm = arm(vec![]).await?;
        assert_eq!(state(&arm).await?, FeatureState::NotRegistered);
        assert_eq!(set(&arm, Registration::Requested).await?, FeatureState::Pending);
        assert_eq!(state(&arm).await?, FeatureState::Pending);
        assert_eq!(approve(&arm, SUB, byox()?).await?, FeatureState::Registered);
        assert_eq!(state(&arm).await?, FeatureState::Registered);
        assert_eq!(set(&arm, Registration::Withdrawn).await?, FeatureState::Unregistered);
        assert_eq!(set(&arm, Registration::Requested).await?, FeatureState::Registered, "the approval was kept");
        Ok(())
    }

    #[tokio::test]
    async fn an_approval_alone_registers_nothing() -> anyhow::Result<()> {
        let arm = arm(vec![]).await?;
        assert_eq!(approve(&arm, SUB, byox()?).await?, FeatureState::NotRegistered);
        assert_eq!(set(&arm, Registration::Requested).await?, FeatureState::Registered);
        Ok(())
    }

    #[tokio::test]
    async fn a_feature_approved_at_start_registers_at_once() -> anyhow::Result<()> {
        let arm = arm(vec![byox()?]).await?;
        assert_eq!(state(&arm).await?, FeatureState::NotRegistered, "approving at start registers nothing");
        assert_eq!(set(&arm, Registration::Requested).await?, FeatureState::Registered);
        let byox_state = [(byox()?, FeatureState::Registered)];
        assert_eq!(states(&arm, SUB, Some("microsoft.cognitiveservices")).await?, byox_state);
        assert_eq!(states(&arm, SUB, None).await?, byox_state);
        assert_eq!(states(&arm, SUB, Some("Microsoft.Storage")).await?, []);
        Ok(())
    }

    #[tokio::test]
    async fn an_unknown_feature_has_no_state() -> anyhow::Result<()> {
        let arm = arm(vec![]).await?;
        let error = feature_state(&arm, SUB, "Microsoft.CognitiveServices", "nope").await.err();
        assert_eq!(error.map(|e| e.code), Some("FeatureNotFound".to_owned()));
        Ok(())
    }
}
