//! Shared vocabulary of byos: resource ids and scopes, the explicit [`Caller`] every authorization
//! decision is made for, and the Azure-shaped [`ApiError`] every crate maps its typed errors into.
//! This crate performs no I/O and knows nothing about HTTP frameworks.

pub mod caller;
pub mod error;
pub mod ids;
pub mod time;

pub use caller::{Actor, AuthMethod, Caller, NetworkOrigin, PrincipalKind, PrincipalRef, SignatureKind, SignedGrant};
pub use error::{ApiError, ErrorFormat, OrInternal};
pub use ids::{ResourceId, Scope, request_id};
