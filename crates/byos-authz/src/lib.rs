//! The one door. Every access byos grants, to ARM resources today and to blobs, keys and AI data
//! later, is decided by [`Door::authorize`] for an explicit [`Caller`](byos_core::Caller), an
//! [`Action`] and a [`Scope`](byos_core::Scope). Nothing here performs I/O: the door holds the
//! role definitions and assignments in memory (the services that own their persistence keep it
//! current), so a decision costs a few string comparisons.
//!
//! A denial is a value, [`Denial`], that explains itself: which assignments of the caller were
//! considered and why none granted the action.

pub mod actors;
mod door;
pub mod guard;
mod matching;
mod roles;

pub use door::{Denial, DenialKind, Door, Grant};
pub use guard::{Firewall, ResourceGuard};
pub use ipnet::IpNet;
pub use matching::Pattern;
pub use roles::{BUILTIN_ROLES, Permission, RoleAssignment, RoleDefinition, RoleType, builtin, parse_builtin_roles};

use std::borrow::Cow;

/// An operation to authorize. Control-plane actions are matched against a role's `actions` /
/// `notActions`, data actions against `dataActions` / `notDataActions`, operator actions are open
/// only to the operator's local socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    pub name: Cow<'static, str>,
    pub kind: ActionKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionKind {
    Control,
    Data,
    Operator,
}

impl Action {
    pub const fn control(name: &'static str) -> Self {
        Action { name: Cow::Borrowed(name), kind: ActionKind::Control }
    }

    pub fn control_owned(name: String) -> Self {
        Action { name: Cow::Owned(name), kind: ActionKind::Control }
    }

    pub const fn data(name: &'static str) -> Self {
        Action { name: Cow::Borrowed(name), kind: ActionKind::Data }
    }

    pub const fn operator(name: &'static str) -> Self {
        Action { name: Cow::Borrowed(name), kind: ActionKind::Operator }
    }
}
