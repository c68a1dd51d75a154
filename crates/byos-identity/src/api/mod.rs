//! Wire APIs of the directory: Entra v2 endpoints ([`entra`]), managed-identity endpoints ([`msi`]),
//! a read-only Microsoft Graph over the directory ([`graph`]) and the operator's commands on the
//! local control socket ([`operator`]).

pub mod entra;
pub mod graph;
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

/// Every public route of the identity service (token endpoints, managed-identity endpoints, Graph).
pub fn public_router(state: IdentityState) -> axum::Router {
    entra::router().merge(msi::router()).merge(graph::router()).with_state(state)
}

/// The `WWW-Authenticate` value of a 401 for a bearer-token API: where to get a token, and why the
/// one presented (or its absence) was refused, so a client's log shows the real reason.
pub fn bearer_challenge(authorization_uri: &str, reason: &str) -> String {
    format!(
        "Bearer authorization_uri=\"{}\", error=\"invalid_token\", error_description=\"{}\"",
        quoted_string(authorization_uri),
        quoted_string(reason)
    )
}

/// `text` as the inside of an HTTP quoted-string: quotes and backslashes escaped, and anything a
/// header value may not carry (control characters, non-ASCII, e.g. from a token's claims) replaced,
/// so that the header is never dropped for being invalid.
fn quoted_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_survive_hostile_reasons() {
        let challenge = bearer_challenge("https://127.0.0.1:1/t", "audience 'a\"b\\c\r\nX-Evil: 1' é");
        assert_eq!(
            challenge,
            "Bearer authorization_uri=\"https://127.0.0.1:1/t\", error=\"invalid_token\", error_description=\"audience 'a\\\"b\\\\c??X-Evil: 1' ?\""
        );
        assert!(axum::http::HeaderValue::from_str(&challenge).is_ok());
    }
}
