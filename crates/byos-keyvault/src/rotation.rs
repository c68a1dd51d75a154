//! Key rotation: `POST /keys/{name}/rotate`, rotation policies (`GET|PUT /keys/{name}/rotationpolicy`)
//! and the watcher that rotates keys when their policy's trigger is due.

use std::sync::Arc;

use byos_core::{Actor, Caller};

use crate::keys::KeyError;
use serde::{Deserialize, Serialize};

/// An ISO 8601 duration (`P90D`, `PT5S`, `P1Y2M`) in seconds; years count 365 days, months 30.
pub fn parse_duration(text: &str) -> Option<i64> {
    let rest = text.strip_prefix('P')?;
    let (date, time) = rest.split_once('T').unwrap_or((rest, ""));
    if rest.contains('T') && time.is_empty() {
        return None;
    }
    let mut total = 0i64;
    let mut read = |part: &str, units: &[(char, i64)]| -> Option<()> {
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() {
                number.push(c);
            } else {
                let (_, seconds) = units.iter().find(|(u, _)| *u == c)?;
                total = total.checked_add(number.parse::<i64>().ok()?.checked_mul(*seconds)?)?;
                number.clear();
            }
        }
        number.is_empty().then_some(())
    };
    read(date, &[('Y', 365 * 86_400), ('M', 30 * 86_400), ('W', 7 * 86_400), ('D', 86_400)])?;
    read(time, &[('H', 3600), ('M', 60), ('S', 1)])?;
    (total > 0 || text == "PT0S").then_some(total)
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_after_create: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_before_expiry: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LifetimeAction {
    pub trigger: Trigger,
    pub action: ActionType,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ActionType {
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PolicyAttributes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<i64>,
}

/// A key's rotation policy as stored and as on the wire.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RotationPolicy {
    #[serde(default)]
    pub lifetime_actions: Vec<LifetimeAction>,
    #[serde(default)]
    pub attributes: PolicyAttributes,
}

impl RotationPolicy {
    /// Key Vault's default: notify 30 days before expiry, never rotate.
    pub fn default_policy() -> Self {
        RotationPolicy {
            lifetime_actions: vec![LifetimeAction {
                trigger: Trigger { time_after_create: None, time_before_expiry: Some("P30D".into()) },
                action: ActionType { kind: "Notify".into() },
            }],
            attributes: PolicyAttributes::default(),
        }
    }

    /// Checks durations and action types.
    pub fn validate(&self) -> Result<(), KeyError> {
        let bad = KeyError::BadParameter;
        for action in &self.lifetime_actions {
            if !["rotate", "notify"].contains(&action.action.kind.to_ascii_lowercase().as_str()) {
                return Err(bad(format!("The action type '{}' is not Rotate or Notify.", action.action.kind)));
            }
            let triggers = [&action.trigger.time_after_create, &action.trigger.time_before_expiry];
            if triggers.iter().filter(|t| t.is_some()).count() != 1 {
                return Err(bad(
                    "Each lifetime action needs exactly one of timeAfterCreate and timeBeforeExpiry.".into()
                ));
            }
            if let Some(text) = triggers.into_iter().flatten().find(|t| parse_duration(t).is_none()) {
                return Err(bad(format!("'{text}' is not an ISO 8601 duration.")));
            }
        }
        if let Some(expiry) = &self.attributes.expiry_time {
            parse_duration(expiry).ok_or_else(|| bad(format!("'{expiry}' is not an ISO 8601 duration.")))?;
        }
        Ok(())
    }

    /// Whether a key whose current version was created at `created` (and expires at `exp`) is
    /// due for rotation at `now`.
    pub fn due(&self, created: i64, exp: Option<i64>, now: i64) -> bool {
        self.lifetime_actions.iter().filter(|a| a.action.kind.eq_ignore_ascii_case("rotate")).any(|a| {
            let after_create =
                a.trigger.time_after_create.as_deref().and_then(parse_duration).is_some_and(|d| now >= created + d);
            let before_expiry = match (a.trigger.time_before_expiry.as_deref().and_then(parse_duration), exp) {
                (Some(d), Some(exp)) => now >= exp - d,
                _ => false,
            };
            after_create || before_expiry
        })
    }

    /// The expiry a new version gets under this policy.
    pub fn expiry_for(&self, created: i64) -> Option<i64> {
        self.attributes.expiry_time.as_deref().and_then(parse_duration).map(|d| created + d)
    }
}

const PURGE_EVERY: u64 = 60;

/// Rotates keys whose policy is due and purges soft-deleted keys and vaults past their retention,
/// every `interval`, until the service is dropped.
pub fn spawn_watch(service: Arc<crate::KeyVaultService>, interval: std::time::Duration) -> tokio::task::JoinHandle<()> {
    let weak = Arc::downgrade(&service);
    drop(service);
    let rotator = Caller::actor(Actor::KeyRotation);
    let purger = Caller::actor(Actor::SoftDeletePurge);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for tick in 0u64.. {
            ticker.tick().await;
            let Some(service) = weak.upgrade() else { return };
            if let Err(e) = crate::keys::rotate_due_keys(&service, &rotator).await {
                tracing::warn!(error = %e, "automatic key rotation failed");
            }
            // Soft-deleted keys and vaults go for good once their retention (days) has ended; a
            // check every PURGE_EVERY ticks is plenty.
            if tick % PURGE_EVERY != 0 {
                continue;
            }
            for outcome in [
                crate::keys::purge_expired_keys(&service, &purger).await.map_err(byos_core::ApiError::from),
                crate::provider::purge_expired_vaults(&service, &purger).await,
            ] {
                match outcome {
                    Ok(0) => {}
                    Ok(purged) => tracing::info!(purged, "purged soft-deleted key vault objects past their retention"),
                    Err(e) => tracing::warn!(error = %e, "purging expired soft-deleted objects failed"),
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("P90D"), Some(90 * 86_400));
        assert_eq!(parse_duration("PT5S"), Some(5));
        assert_eq!(
            parse_duration("P1Y2M3DT4H5M6S"),
            Some(365 * 86_400 + 60 * 86_400 + 3 * 86_400 + 4 * 3600 + 5 * 60 + 6)
        );
        for bad in ["90D", "P", "PT", "P5", "PX", "P1DT"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn due_rotation() {
        let policy = RotationPolicy {
            lifetime_actions: vec![LifetimeAction {
                trigger: Trigger { time_after_create: Some("PT10S".into()), time_before_expiry: None },
                action: ActionType { kind: "Rotate".into() },
            }],
            attributes: PolicyAttributes::default(),
        };
        assert!(!policy.due(100, None, 105));
        assert!(policy.due(100, None, 110));
        assert!(!RotationPolicy::default_policy().due(0, Some(10), 1_000), "notify never rotates");
    }
}
