//! Wire APIs of the directory: Entra v2 endpoints ([`entra`]), managed-identity endpoints ([`msi`])
//! and the operator's commands on the local control socket ([`operator`]).

pub mod entra;
pub mod msi;
pub mod operator;

use std::sync::Arc;

use byos_authz::Door;

use crate::Directory;

/// What the identity handlers share.
#[derive(Clone)]
pub struct IdentityState {
    pub directory: Arc<Directory>,
    pub door: Arc<Door>,
    /// Base URL of the main listener (`https://127.0.0.1:8443`), the authority clients use.
    pub authority: String,
}

/// Every public route of the identity service (token endpoints and managed-identity endpoints).
pub fn public_router(state: IdentityState) -> axum::Router {
    entra::router().merge(msi::router()).with_state(state)
}
