//! The Blob REST data plane, path-style: `https://{host}:{port}/{account}/{container}/{blob}`.
//!
//! Every request: find the account, answer CORS preflights, authenticate ([`auth`]), name the
//! operation, ask the door ([`ops::permit`]: network rules, accepted credentials, what the
//! credential permits, RBAC) and only then touch metadata or data.
//!
//! The layers: [`http`] parses requests and renders Azure's answers; [`containers`], [`blobs`] and
//! [`service`] are HTTP-free and act only with a [`ops::Permit`]; [`api`] is the entry for other
//! byos services (the door first, then the same domain functions).

pub mod api;
pub mod auth;
pub mod blobs;
pub mod containers;
pub mod cors;
pub mod data;
pub mod errors;
pub mod http;
pub mod ops;
pub mod sas;
pub mod service;
pub mod structured;
pub mod sweep;
pub mod xml;

use byos_core::Scope;

use crate::Account;
pub use http::router;

/// The newest service version byos speaks; echoed when a client sends none.
pub const SERVICE_VERSION: &str = "2026-10-06";

/// The RBAC scope of a container.
pub fn container_scope(account: &Account, container: &str) -> Scope {
    Scope::parse(&format!("{}/blobServices/default/containers/{container}", account.id))
        .unwrap_or_else(|_| Scope::root())
}

/// The scope of a blob: below its container, the name encoded as one segment.
pub fn blob_scope(account: &Account, container: &str, blob: &str) -> Scope {
    let encoded = percent_encoding::utf8_percent_encode(blob, percent_encoding::NON_ALPHANUMERIC).to_string();
    container_scope(account, container).child(&format!("blobs/{encoded}"))
}
