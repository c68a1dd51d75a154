//! The caller of an operation: who, how they proved it, and where the request came from.
//!
//! Every authorization decision takes a `Caller`; there is no implicit "system" caller. byos's own
//! services act as the managed identity of the resource they work for, so they are callers too.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;
use uuid::Uuid;

/// What kind of directory object the principal is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PrincipalKind {
    /// An application's service principal (client id + secret).
    ServicePrincipal,
    /// A managed identity; `resource_id` is the user-assigned identity or the resource owning a
    /// system-assigned identity.
    ManagedIdentity { resource_id: String },
}

/// How the caller authenticated on this request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AuthMethod {
    /// A bearer token issued by byos's token service, verified on this request.
    BearerToken,
    /// The operator's local control socket (file-system access to the data dir).
    OperatorSocket,
    /// No credentials were presented.
    Anonymous,
}

/// Where the request came from, as seen by the listener that accepted it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkOrigin {
    /// The peer address of the connection; `None` for the local control socket.
    pub ip: Option<IpAddr>,
    /// Whether the request arrived over TLS.
    pub tls: bool,
}

impl NetworkOrigin {
    /// The origin of a request over the operator's local socket.
    pub fn local_socket() -> Self {
        NetworkOrigin { ip: None, tls: false }
    }

    /// Whether the peer is on this machine (loopback or the control socket).
    pub fn is_local(&self) -> bool {
        self.ip.is_none_or(|ip| ip.is_loopback())
    }
}

/// An authenticated (or anonymous) caller, explicit in every authorization decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Caller {
    /// The principal's object id (`oid`); `None` when anonymous or the operator.
    pub object_id: Option<Uuid>,
    /// The application / client id (`appid`), shown in denial messages as Azure does.
    pub client_id: Option<Uuid>,
    pub tenant_id: Option<Uuid>,
    pub kind: Option<PrincipalKind>,
    pub auth: AuthMethod,
    pub origin: NetworkOrigin,
}

impl Caller {
    /// The operator, reached through the local control socket of the data dir.
    pub fn operator() -> Self {
        Caller {
            object_id: None,
            client_id: None,
            tenant_id: None,
            kind: None,
            auth: AuthMethod::OperatorSocket,
            origin: NetworkOrigin::local_socket(),
        }
    }

    /// A caller that presented no credentials.
    pub fn anonymous(origin: NetworkOrigin) -> Self {
        Caller { object_id: None, client_id: None, tenant_id: None, kind: None, auth: AuthMethod::Anonymous, origin }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.auth, self.object_id) {
            (AuthMethod::OperatorSocket, _) => write!(f, "operator (local socket)"),
            (_, Some(oid)) => write!(f, "principal {oid}"),
            _ => write!(f, "anonymous"),
        }
    }
}
