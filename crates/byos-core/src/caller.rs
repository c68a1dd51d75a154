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
    /// A storage account key (Shared Key signature).
    SharedKey,
    /// A shared access signature; what it grants is in [`Caller::signed`].
    SharedAccessSignature,
    /// A byos service acting, in-process, as a resource's managed identity (e.g. storage using the
    /// customer's key as the account's identity). Authorized exactly like that identity's token.
    ServiceIdentity,
}

/// Which kind of shared access signature a caller presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SignatureKind {
    /// Signed with an account key, for the account.
    Account,
    /// Signed with an account key, for one container or blob.
    Service,
    /// Signed with a user delegation key: bounded by the delegating principal's own RBAC grants.
    UserDelegation,
}

/// What a verified signature (SAS) allows: data-action patterns at or below a scope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedGrant {
    pub kind: SignatureKind,
    /// Action patterns the signature permits (as in a role's `dataActions`).
    pub permits: Vec<String>,
    /// The scope the signature covers (an account, a container, a blob).
    pub scope: String,
    /// Whether the signature is key-based (refused when the resource disallows key-based access).
    pub key_based: bool,
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
    /// For shared access signatures: what the signature grants.
    pub signed: Option<SignedGrant>,
    /// For [`AuthMethod::ServiceIdentity`]: the resource the byos service works for. Network rules
    /// see the caller as that resource (a trusted service, a resource instance) whichever identity
    /// it authenticates as, system- or user-assigned.
    pub acting_for: Option<String>,
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
            signed: None,
            acting_for: None,
        }
    }

    /// A caller that presented no credentials.
    pub fn anonymous(origin: NetworkOrigin) -> Self {
        Caller {
            object_id: None,
            client_id: None,
            tenant_id: None,
            kind: None,
            auth: AuthMethod::Anonymous,
            origin,
            signed: None,
            acting_for: None,
        }
    }

    /// A caller holding an account key.
    pub fn account_key(origin: NetworkOrigin) -> Self {
        Caller { auth: AuthMethod::SharedKey, ..Self::anonymous(origin) }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.auth, self.object_id) {
            (AuthMethod::OperatorSocket, _) => write!(f, "operator (local socket)"),
            (AuthMethod::SharedKey, _) => write!(f, "account key holder"),
            (AuthMethod::SharedAccessSignature, Some(oid)) => write!(f, "signature delegated by principal {oid}"),
            (AuthMethod::SharedAccessSignature, None) => write!(f, "signature holder"),
            (AuthMethod::ServiceIdentity, Some(oid)) => write!(f, "byos service acting as managed identity {oid}"),
            (_, Some(oid)) => write!(f, "principal {oid}"),
            _ => write!(f, "anonymous"),
        }
    }
}
