//! The parameters key operations take and the results they return, typed. Their serde names are
//! Key Vault's (REST 7.x), so the HTTP layer reads and writes them as they are.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A key's attributes as a request sets them.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Attributes {
    pub enabled: Option<bool>,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
}

/// Create Key.
#[derive(Deserialize)]
pub struct CreateKey {
    pub kty: String,
    pub key_size: Option<usize>,
    #[serde(default)]
    pub crv: Option<String>,
    #[serde(default)]
    pub key_ops: Option<Vec<String>>,
    #[serde(default)]
    pub attributes: Option<Attributes>,
    #[serde(default)]
    pub tags: Option<Map<String, Value>>,
}

/// Update Key: what is given replaces what the version has.
#[derive(Deserialize)]
pub struct UpdateKey {
    #[serde(default)]
    pub key_ops: Option<Vec<String>>,
    #[serde(default)]
    pub attributes: Option<Attributes>,
    #[serde(default)]
    pub tags: Option<Map<String, Value>>,
}

/// encrypt, decrypt, wrapKey, unwrapKey, sign, verify. `value` and `digest` stay base64url here:
/// decoding them is part of the operation, after the key was found usable.
#[derive(Deserialize)]
pub struct OperationRequest {
    pub alg: String,
    pub value: String,
    #[serde(default)]
    pub digest: Option<String>,
}

/// Restore Key: a backup blob made by [`super::Ctx::backup`].
#[derive(Deserialize)]
pub struct RestoreKey {
    pub value: String,
}

/// The cryptographic operations of one key version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyOperation {
    Encrypt,
    Decrypt,
    WrapKey,
    UnwrapKey,
    Sign,
    Verify,
}

impl KeyOperation {
    /// Its name in `key_ops`, access policies and the audit log.
    pub fn name(self) -> &'static str {
        match self {
            KeyOperation::Encrypt => "encrypt",
            KeyOperation::Decrypt => "decrypt",
            KeyOperation::WrapKey => "wrapKey",
            KeyOperation::UnwrapKey => "unwrapKey",
            KeyOperation::Sign => "sign",
            KeyOperation::Verify => "verify",
        }
    }

    /// The RBAC data action that permits it.
    pub(crate) fn action(self) -> &'static str {
        match self {
            KeyOperation::Encrypt => "Microsoft.KeyVault/vaults/keys/encrypt/action",
            KeyOperation::Decrypt => "Microsoft.KeyVault/vaults/keys/decrypt/action",
            KeyOperation::WrapKey => "Microsoft.KeyVault/vaults/keys/wrap/action",
            KeyOperation::UnwrapKey => "Microsoft.KeyVault/vaults/keys/unwrap/action",
            KeyOperation::Sign => "Microsoft.KeyVault/vaults/keys/sign/action",
            KeyOperation::Verify => "Microsoft.KeyVault/vaults/keys/verify/action",
        }
    }
}

/// A key version as Key Vault returns it (`KeyBundle`).
#[derive(Debug, Serialize)]
pub struct KeyBundle {
    pub key: JsonWebKey,
    pub attributes: KeyAttributes,
    pub tags: Map<String, Value>,
}

/// The public half of a key version, with its id.
#[derive(Debug, Serialize)]
pub struct JsonWebKey {
    pub kid: String,
    pub kty: String,
    pub key_ops: Vec<String>,
    #[serde(flatten)]
    pub public: PublicKey,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum PublicKey {
    Rsa { n: String, e: String },
    Ec { crv: Option<String>, x: Option<String>, y: Option<String> },
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyAttributes {
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    pub created: i64,
    pub updated: i64,
    pub recovery_level: &'static str,
    pub recoverable_days: u32,
}

/// A soft-deleted key (`DeletedKeyBundle`): its current version and when it goes for good.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletedKeyBundle {
    #[serde(flatten)]
    pub bundle: KeyBundle,
    pub recovery_id: String,
    pub deleted_date: i64,
    pub scheduled_purge_date: i64,
}

/// One entry of a key or version list (`KeyItem`): no key material.
#[derive(Debug, Serialize)]
pub struct KeyItem {
    pub kid: String,
    pub attributes: KeyAttributes,
    pub tags: Map<String, Value>,
}

/// One entry of the deleted keys list: the deleted bundle plus the key's version-less id.
#[derive(Debug, Serialize)]
pub struct DeletedKeyItem {
    #[serde(flatten)]
    pub deleted: DeletedKeyBundle,
    pub kid: String,
}

/// What a cryptographic operation produced.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum OperationResult {
    /// encrypt, decrypt, wrapKey, unwrapKey, sign: the output (base64url) and the version used.
    Value { kid: String, value: String },
    /// verify: whether the signature holds.
    Verified { value: bool },
}

/// A key's backup: every version, sealed under the root key (opaque, base64url).
#[derive(Debug, Serialize)]
pub struct KeyBackup {
    pub value: String,
}

/// A key's rotation policy as returned, with its id.
#[derive(Debug, Serialize)]
pub struct RotationPolicyBundle {
    pub id: String,
    #[serde(flatten)]
    pub policy: crate::rotation::RotationPolicy,
}
