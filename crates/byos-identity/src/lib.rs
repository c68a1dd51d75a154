//! The directory and the token service.
//!
//! - [`Directory`]: the tenant, its principals (service principals with salted secret hashes, managed
//!   identities without secrets), the per-identity workload secrets, and the IMDS host bindings.
//! - [`TokenService`]: mints RS256 JWTs the way Microsoft Entra does and verifies them, with the
//!   signing key parsed once and kept in memory (stored only sealed under the root key).
//! - [`api`]: the wire: Entra v2 discovery / JWKS / token endpoints, the managed-identity endpoints
//!   (App Service and IMDS protocols) and the operator's principal commands.

pub mod api;
mod directory;
mod principal;
mod token;

pub use directory::{AttachedIdentities, Directory, DirectoryError, ImdsRequest, load_or_create_sealed};
pub use principal::{IdentityKind, Principal};
pub use token::{Claims, TokenError, TokenService, audience_from_scope};
