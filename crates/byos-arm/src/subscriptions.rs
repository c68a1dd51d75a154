//! `GET /subscriptions`, `GET /subscriptions/{id}` and the cloud metadata the az CLI registers from.

use axum::extract::State;
use axum::response::Response;
use byos_core::{ApiError, Scope};
use byos_http::Failure;

use crate::ArmReply;
use serde_json::{Value, json};
use std::sync::Arc;

use crate::{Arm, ArmRequest};

fn subscription_wire(arm: &Arm) -> Value {
    let sub = &arm.deployment.subscription_id;
    json!({
        "id": format!("/subscriptions/{sub}"),
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "subscriptionId": sub,
        "tenantId": arm.directory.tenant_id(),
        "displayName": "byos",
        "state": "Enabled",
        "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01", "spendingLimit": "Off"},
    })
}

/// Fails with `SubscriptionNotFound` unless `sub` is this deployment's subscription.
pub fn require(arm: &Arm, sub: &str) -> Result<(), Failure> {
    if sub.eq_ignore_ascii_case(&arm.deployment.subscription_id) {
        Ok(())
    } else {
        Err(Failure::from(ApiError::not_found(
            "SubscriptionNotFound",
            format!("The subscription '{sub}' could not be found."),
        )))
    }
}

/// Lists the subscription if the caller holds any role assignment in or above it, as Azure does.
pub fn list(arm: &Arm, request: &ArmRequest) -> Result<ArmReply, Failure> {
    let scope = Scope::subscription(&arm.deployment.subscription_id);
    let visible = request.caller.object_id().is_some_and(|oid| arm.door.has_assignment_near(oid, &scope));
    let value: Vec<Value> = if visible { vec![subscription_wire(arm)] } else { vec![] };
    let count = value.len();
    Ok(ArmReply::json(200, json!({"value": value, "count": {"type": "Total", "value": count}})))
}

pub fn get(arm: &Arm, request: &ArmRequest, sub: &str) -> Result<ArmReply, Failure> {
    require(arm, sub)?;
    let scope = Scope::subscription(sub);
    let visible = request.caller.object_id().is_some_and(|oid| arm.door.has_assignment_near(oid, &scope));
    if !visible {
        request.authorize(arm, &byos_authz::Action::control("Microsoft.Resources/subscriptions/read"), &scope)?;
    }
    Ok(ArmReply::json(200, subscription_wire(arm)))
}

/// `GET /metadata/endpoints`: what `az cloud register --endpoint-resource-manager` reads. It names
/// only what byos serves: the resource manager, the token service and Microsoft Graph (which
/// `az role assignment` and `az ad sp` need); Azure's other endpoints are left out.
pub async fn cloud_metadata(State(arm): State<Arc<Arm>>) -> Response {
    ArmReply::ok(json!({
        "name": "byos",
        "resourceManager": format!("{}/", arm.deployment.base_url),
        "microsoftGraphResourceId": byos_identity::api::graph::resource_id(&arm.deployment.authority),
        "authentication": {
            "loginEndpoint": arm.deployment.authority,
            "audiences": ["https://management.core.windows.net/", "https://management.azure.com/"],
            "tenant": "organizations",
            "identityProvider": "AAD",
        },
        "suffixes": {"storage": "core.windows.net", "keyVaultDns": "vault.azure.net", "acrLoginServer": "azurecr.io"},
    }))
    .render()
}
