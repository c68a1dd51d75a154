//! The caller of an operation: who, how they proved it, and where the request came from.
//!
//! Every authorization decision takes a `Caller`; there is no implicit "system" caller. byos's own
//! services act as the managed identity of the resource they work for, and its background tasks as
//! named [`Actor`]s, so they are callers too.

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
    /// A resource's key: a storage account's Shared Key signature, an AI-services account's
    /// subscription key or a token its token service issued for one.
    SharedKey,
    /// A shared access signature; what it grants is in [`Caller::signed`].
    SharedAccessSignature,
    /// A byos service acting, in-process, as a resource's managed identity (e.g. storage using the
    /// customer's key as the account's identity). Authorized exactly like that identity's token.
    ServiceIdentity,
    /// One of byos's background tasks ([`Actor`]), limited to its own grant.
    InternalActor,
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

/// A directory principal as an authenticator found it: who the caller is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrincipalRef {
    pub object_id: Uuid,
    /// The application / client id (`appid`), shown in denial messages as Azure does.
    pub client_id: Uuid,
    pub tenant_id: Uuid,
    pub kind: PrincipalKind,
}

/// byos's own background work, each a caller of its own with a narrow grant in the door (see
/// `byos_authz::Door`): there is no implicit "system" caller that may do anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Actor {
    /// Key Vault's rotation policy watch: rotates keys whose policy is due.
    KeyRotation,
    /// Key Vault's retention watch: purges soft-deleted keys and vaults past their retention.
    SoftDeletePurge,
    /// Blob housekeeping: expires uncommitted blocks and collects unreferenced objects.
    BlobHousekeeping,
    /// Storage's customer-managed-key watch: records the key version a KEK was re-wrapped with.
    CmkRotationWatch,
    /// Speech's retention watch: deletes transcriptions past their `timeToLive` and endpoint logs
    /// past their retention.
    SpeechRetention,
}

impl Actor {
    pub fn name(self) -> &'static str {
        match self {
            Actor::KeyRotation => "key rotation watch",
            Actor::SoftDeletePurge => "soft-delete retention watch",
            Actor::BlobHousekeeping => "blob housekeeping",
            Actor::CmkRotationWatch => "customer-managed key rotation watch",
            Actor::SpeechRetention => "speech retention watch",
        }
    }
}

/// The context of one operation: who asks, how they proved it, where the request came from, and
/// whom a byos service acts for. Explicit in every authorization decision.
///
/// Its fields are private: a `Caller` is made only by its named constructors, and each of those
/// belongs to one authenticator (token verification, Shared Key, SAS, the operator socket,
/// `Directory::act_as`, a background task's [`Actor`]). `tests/constructors.rs` fails the build's
/// tests when a constructor is used anywhere else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Caller {
    object_id: Option<Uuid>,
    client_id: Option<Uuid>,
    tenant_id: Option<Uuid>,
    kind: Option<PrincipalKind>,
    auth: AuthMethod,
    origin: NetworkOrigin,
    signed: Option<SignedGrant>,
    acting_for: Option<String>,
    actor: Option<Actor>,
}

impl Caller {
    /// A caller that presented no credentials (anyone may be anonymous).
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
            actor: None,
        }
    }

    /// The operator, reached through the local control socket of the data dir.
    pub fn operator() -> Self {
        Caller { auth: AuthMethod::OperatorSocket, ..Self::anonymous(NetworkOrigin::local_socket()) }
    }

    /// A principal whose bearer token the token service verified on this request.
    pub fn bearer(principal: PrincipalRef, origin: NetworkOrigin) -> Self {
        Caller { auth: AuthMethod::BearerToken, ..Self::principal(principal, origin) }
    }

    /// A caller whose Shared Key signature verified against one of the account's keys.
    pub fn shared_key(origin: NetworkOrigin) -> Self {
        Caller { auth: AuthMethod::SharedKey, ..Self::anonymous(origin) }
    }

    /// A caller whose shared access signature verified; `delegator` (object id, tenant) for a user
    /// delegation SAS.
    pub fn signature(grant: SignedGrant, delegator: Option<(Uuid, Uuid)>, origin: NetworkOrigin) -> Self {
        Caller {
            object_id: delegator.map(|(oid, _)| oid),
            tenant_id: delegator.map(|(_, tenant)| tenant),
            auth: AuthMethod::SharedAccessSignature,
            signed: Some(grant),
            ..Self::anonymous(origin)
        }
    }

    /// A byos service acting, in-process, as `identity`, a managed identity attached to the resource
    /// `acting_for` now. Only `Directory::act_as` makes one, after proving that attachment.
    pub fn service_identity(identity: PrincipalRef, acting_for: String) -> Self {
        Caller {
            auth: AuthMethod::ServiceIdentity,
            acting_for: Some(acting_for),
            ..Self::principal(identity, NetworkOrigin { ip: None, tls: false })
        }
    }

    /// One of byos's background tasks.
    pub fn actor(actor: Actor) -> Self {
        Caller {
            auth: AuthMethod::InternalActor,
            actor: Some(actor),
            ..Self::anonymous(NetworkOrigin { ip: None, tls: false })
        }
    }

    fn principal(principal: PrincipalRef, origin: NetworkOrigin) -> Self {
        Caller {
            object_id: Some(principal.object_id),
            client_id: Some(principal.client_id),
            tenant_id: Some(principal.tenant_id),
            kind: Some(principal.kind),
            ..Self::anonymous(origin)
        }
    }

    /// The principal's object id (`oid`); `None` when anonymous, key-based, an actor or the operator.
    /// For a user delegation SAS: the delegating principal.
    pub fn object_id(&self) -> Option<Uuid> {
        self.object_id
    }

    pub fn client_id(&self) -> Option<Uuid> {
        self.client_id
    }

    pub fn tenant_id(&self) -> Option<Uuid> {
        self.tenant_id
    }

    pub fn kind(&self) -> Option<&PrincipalKind> {
        self.kind.as_ref()
    }

    pub fn auth(&self) -> AuthMethod {
        self.auth
    }

    pub fn origin(&self) -> &NetworkOrigin {
        &self.origin
    }

    /// For shared access signatures: what the signature grants.
    pub fn signed(&self) -> Option<&SignedGrant> {
        self.signed.as_ref()
    }

    /// For [`AuthMethod::ServiceIdentity`]: the resource the byos service works for. Network rules
    /// see the caller as that resource (a trusted service, a resource instance) whichever identity
    /// it authenticates as, system- or user-assigned.
    pub fn acting_for(&self) -> Option<&str> {
        self.acting_for.as_deref()
    }

    /// For [`AuthMethod::InternalActor`]: which background task.
    pub fn actor_kind(&self) -> Option<Actor> {
        self.actor
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
            (AuthMethod::InternalActor, _) => write!(f, "byos {}", self.actor.map_or("background task", Actor::name)),
            (_, Some(oid)) => write!(f, "principal {oid}"),
            _ => write!(f, "anonymous"),
        }
    }
}
