//! JWT minting and verification (RS256), the Entra way.
//!
//! Written on aws-lc-rs directly rather than through a JWT crate: the available crates re-parse the
//! RSA key on every signature and verification, and byos must verify a token on every request at
//! thousands of requests per second. Here the key is parsed once ([`byos_crypto::VerifyingKey`]).

use byos_crypto::{SigningKey, VerifyingKey, b64url, b64url_decode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use thiserror::Error;
use uuid::Uuid;

use crate::principal::Principal;

/// Lifetime of issued access tokens, as Entra's default.
pub const TOKEN_LIFETIME_SECS: i64 = 3600;
/// Clock skew tolerated on `nbf`.
const CLOCK_SKEW_SECS: i64 = 300;
/// Longest token accepted before any parsing, so junk cannot cost much.
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Verified tokens remembered at most; the memory is cleared when it is full.
const MAX_VERIFIED: usize = 4096;

/// The claims byos puts in an access token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub aud: String,
    pub iss: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub tid: Uuid,
    pub oid: Uuid,
    pub sub: Uuid,
    pub appid: Uuid,
    pub azp: Uuid,
    pub idtyp: String,
    pub ver: String,
    pub uti: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xms_mirid: Option<String>,
}

/// The claims of a token for a resource (no principal): Cognitive Services' STS token shape.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct ResourceClaims {
    aud: String,
    iss: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    #[serde(rename = "azure-resource-id")]
    resource_id: String,
    region: String,
}

/// Why a presented token was not accepted.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token signature is invalid")]
    BadSignature,
    #[error("the token was not issued by this tenant's token service")]
    WrongIssuer,
    #[error("the token expired at {exp}")]
    Expired { exp: i64, now: i64 },
    #[error("the token is not valid before {nbf}")]
    NotYetValid { nbf: i64 },
    #[error("the token audience '{0}' is not accepted here")]
    WrongAudience(String),
    #[error("the principal {0} no longer exists")]
    UnknownPrincipal(Uuid),
}

/// Signs and verifies access tokens for one tenant.
pub struct TokenService {
    signer: SigningKey,
    verifier: VerifyingKey,
    header_b64: String,
    issuer: String,
    tenant_id: Uuid,
    /// Claims of tokens whose signature, header and issuer were verified, by SHA-256 of the token:
    /// clients send one token for up to an hour, and RS256 verification was the largest cost of an
    /// authenticated request after the work itself. Times are checked again on every use.
    verified: std::sync::Mutex<std::collections::HashMap<[u8; 32], Claims>>,
}

impl TokenService {
    /// `authority` is the base URL clients use (`https://127.0.0.1:8443`).
    pub fn new(signer: SigningKey, authority: &str, tenant_id: Uuid) -> Result<Self, byos_crypto::CryptoError> {
        let verifier = signer.verifying_key()?;
        let header = json!({"typ": "JWT", "alg": "RS256", "kid": signer.kid(), "x5t": signer.kid()});
        Ok(TokenService {
            header_b64: b64url(header.to_string().as_bytes()),
            signer,
            verifier,
            issuer: issuer_for(authority, tenant_id),
            tenant_id,
            verified: std::sync::Mutex::default(),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The JSON Web Key Set clients verify tokens with.
    pub fn jwks(&self) -> serde_json::Value {
        json!({"keys": [{
            "kty": "RSA", "use": "sig", "alg": "RS256",
            "kid": self.verifier.kid, "x5t": self.verifier.kid,
            "n": self.verifier.n, "e": self.verifier.e,
            "issuer": self.issuer,
        }]})
    }

    /// Mints an access token for `principal` with audience `aud`; returns the JWT and its `exp`.
    pub fn mint(&self, principal: &Principal, aud: &str, now: i64) -> Result<(String, i64), byos_crypto::CryptoError> {
        let exp = now + TOKEN_LIFETIME_SECS;
        let claims = Claims {
            aud: aud.to_owned(),
            iss: self.issuer.clone(),
            iat: now,
            nbf: now,
            exp,
            tid: self.tenant_id,
            oid: principal.object_id,
            sub: principal.object_id,
            appid: principal.client_id,
            azp: principal.client_id,
            idtyp: "app".into(),
            ver: "2.0".into(),
            uti: b64url(&byos_crypto::random_bytes::<16>()?),
            xms_mirid: principal.resource_id().map(str::to_owned),
        };
        let payload = serde_json::to_vec(&claims).map_err(|_| byos_crypto::CryptoError::Sign)?;
        let signing_input = format!("{}.{}", self.header_b64, b64url(&payload));
        let signature = self.signer.sign_rs256(signing_input.as_bytes())?;
        Ok((format!("{signing_input}.{}", b64url(&signature)), exp))
    }

    /// Checks signature, issuer, and validity period; the audience is the caller's to check.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let digest = byos_crypto::sha256(token.as_bytes());
        let remembered = self.verified.lock().unwrap_or_else(|e| e.into_inner()).get(&digest).cloned();
        let claims = match remembered {
            Some(claims) => claims,
            None => {
                let claims = self.verify_signed(token)?;
                let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
                if verified.len() >= MAX_VERIFIED {
                    verified.clear();
                }
                verified.insert(digest, claims.clone());
                claims
            }
        };
        if now >= claims.exp {
            return Err(TokenError::Expired { exp: claims.exp, now });
        }
        if now + CLOCK_SKEW_SECS < claims.nbf {
            return Err(TokenError::NotYetValid { nbf: claims.nbf });
        }
        Ok(claims)
    }

    /// The claims of a token signed by this service for this tenant (times unchecked).
    fn verify_signed(&self, token: &str) -> Result<Claims, TokenError> {
        let payload = self.signed_payload(token)?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if claims.iss != self.issuer || claims.tid != self.tenant_id {
            return Err(TokenError::WrongIssuer);
        }
        Ok(claims)
    }

    /// Mints a token that names a resource instead of a principal (what an AI-services account's
    /// token service issues for a key): audience `aud`, valid for `lifetime` seconds from `now`.
    pub fn mint_resource_token(
        &self,
        resource_id: &str,
        region: &str,
        aud: &str,
        lifetime: i64,
        now: i64,
    ) -> Result<String, byos_crypto::CryptoError> {
        let claims = ResourceClaims {
            aud: aud.to_owned(),
            iss: self.issuer.clone(),
            iat: now,
            nbf: now,
            exp: now + lifetime,
            resource_id: resource_id.to_owned(),
            region: region.to_owned(),
        };
        let payload = serde_json::to_vec(&claims).map_err(|_| byos_crypto::CryptoError::Sign)?;
        let signing_input = format!("{}.{}", self.header_b64, b64url(&payload));
        let signature = self.signer.sign_rs256(signing_input.as_bytes())?;
        Ok(format!("{signing_input}.{}", b64url(&signature)))
    }

    /// The resource a token of [`TokenService::mint_resource_token`] names, if it is signed here,
    /// valid at `now` and for audience `aud`.
    pub fn verify_resource_token(&self, token: &str, aud: &str, now: i64) -> Result<String, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let payload = self.signed_payload(token)?;
        let claims: ResourceClaims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if claims.iss != self.issuer {
            return Err(TokenError::WrongIssuer);
        }
        if claims.aud != aud {
            return Err(TokenError::WrongAudience(claims.aud));
        }
        if now >= claims.exp {
            return Err(TokenError::Expired { exp: claims.exp, now });
        }
        if now + CLOCK_SKEW_SECS < claims.nbf {
            return Err(TokenError::NotYetValid { nbf: claims.nbf });
        }
        Ok(claims.resource_id)
    }

    /// The payload of a JWT whose header and RS256 signature are this service's.
    fn signed_payload(&self, token: &str) -> Result<Vec<u8>, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        self.check_header(header)?;
        let signature = b64url_decode(signature).ok_or(TokenError::Malformed)?;
        let signing_input = &token[..header.len() + 1 + payload.len()];
        if !self.verifier.verify_rs256(signing_input.as_bytes(), &signature) {
            return Err(TokenError::BadSignature);
        }
        b64url_decode(payload).ok_or(TokenError::Malformed)
    }

    fn check_header(&self, header: &str) -> Result<(), TokenError> {
        if header == self.header_b64 {
            return Ok(());
        }
        #[derive(Deserialize)]
        struct Header {
            alg: String,
            kid: Option<String>,
        }
        let bytes = b64url_decode(header).ok_or(TokenError::Malformed)?;
        let parsed: Header = serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)?;
        if parsed.alg != "RS256" || parsed.kid.as_deref() != Some(self.verifier.kid.as_str()) {
            return Err(TokenError::BadSignature);
        }
        Ok(())
    }
}

/// The issuer of tokens of `tenant_id` at `authority`, as in Entra v2 (`{authority}/{tenant}/v2.0`).
pub fn issuer_for(authority: &str, tenant_id: Uuid) -> String {
    format!("{}/{tenant_id}/v2.0", authority.trim_end_matches('/'))
}

/// The audience a client-credentials scope asks for: `https://x/.default` -> `https://x`.
/// `None` when no scope ends in `/.default` (client credentials need one).
pub fn audience_from_scope(scope: &str) -> Option<String> {
    scope.split_whitespace().find_map(|s| s.strip_suffix("/.default")).filter(|aud| !aud.is_empty()).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::{IdentityKind, PRINCIPAL_RECORD_VERSION};

    fn service() -> TokenService {
        let key = SigningKey::generate().unwrap_or_else(|e| panic!("{e}"));
        TokenService::new(key, "https://127.0.0.1:1/", Uuid::new_v4()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn principal() -> Principal {
        Principal {
            v: PRINCIPAL_RECORD_VERSION,
            object_id: Uuid::new_v4(),
            client_id: Uuid::new_v4(),
            display_name: "p".into(),
            kind: IdentityKind::ServicePrincipal,
            secret_hashes: vec![],
            created_on: String::new(),
            header_generation: 0,
        }
    }

    #[test]
    fn resource_tokens_name_their_resource_and_are_no_principal_token() -> Result<(), Box<dyn std::error::Error>> {
        let svc = service();
        let id = "/subscriptions/s/resourceGroups/g/providers/Microsoft.CognitiveServices/accounts/a";
        let token = svc.mint_resource_token(id, "eastus", "urn:ms.cognitiveservices", 600, 1000)?;
        assert_eq!(svc.verify_resource_token(&token, "urn:ms.cognitiveservices", 1599)?, id);
        assert_eq!(
            svc.verify_resource_token(&token, "urn:ms.cognitiveservices", 1600),
            Err(TokenError::Expired { exp: 1600, now: 1600 })
        );
        assert!(matches!(svc.verify_resource_token(&token, "urn:other", 1001), Err(TokenError::WrongAudience(_))));
        assert_eq!(svc.verify(&token, 1001), Err(TokenError::Malformed), "a resource token names no principal");
        let (principal_token, _) = svc.mint(&principal(), "urn:ms.cognitiveservices", 1000)?;
        assert_eq!(
            svc.verify_resource_token(&principal_token, "urn:ms.cognitiveservices", 1001),
            Err(TokenError::Malformed)
        );
        let other = service().mint_resource_token(id, "eastus", "urn:ms.cognitiveservices", 600, 1000)?;
        assert!(svc.verify_resource_token(&other, "urn:ms.cognitiveservices", 1001).is_err(), "another signer");
        Ok(())
    }

    #[test]
    fn minted_tokens_verify_with_their_claims() -> Result<(), Box<dyn std::error::Error>> {
        let svc = service();
        let p = principal();
        let (token, exp) = svc.mint(&p, "https://management.azure.com", 1000)?;
        let claims = svc.verify(&token, 1001)?;
        assert_eq!((claims.oid, claims.appid, claims.exp), (p.object_id, p.client_id, exp));
        assert_eq!(
            claims.iss,
            "https://127.0.0.1:1/".trim_end_matches('/').to_owned() + &format!("/{}/v2.0", claims.tid)
        );
        Ok(())
    }

    #[test]
    fn tampered_expired_and_foreign_tokens_are_rejected() -> Result<(), Box<dyn std::error::Error>> {
        let svc = service();
        let (token, exp) = svc.mint(&principal(), "aud", 1000)?;
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut payload: serde_json::Value = serde_json::from_slice(&b64url_decode(&parts[1]).unwrap_or_default())?;
        payload["oid"] = json!(Uuid::new_v4());
        parts[1] = b64url(payload.to_string().as_bytes());
        assert_eq!(svc.verify(&parts.join("."), 1001), Err(TokenError::BadSignature));
        assert!(matches!(svc.verify(&token, exp), Err(TokenError::Expired { .. })));
        assert_eq!(svc.verify("a.b", 1001), Err(TokenError::Malformed));
        let (other, _) = service().mint(&principal(), "aud", 1000)?;
        assert_eq!(svc.verify(&other, 1001), Err(TokenError::BadSignature));
        Ok(())
    }

    #[test]
    fn remembered_tokens_still_expire_and_refusals_are_not_remembered() -> Result<(), Box<dyn std::error::Error>> {
        let svc = service();
        let (token, exp) = svc.mint(&principal(), "aud", 1000)?;
        assert!(svc.verify(&token, 1001).is_ok());
        assert!(svc.verify(&token, 1002).is_ok(), "a remembered token verifies again");
        assert!(matches!(svc.verify(&token, exp), Err(TokenError::Expired { .. })), "expiry is checked on every use");
        assert!(matches!(svc.verify(&token, 1000 - CLOCK_SKEW_SECS - 1), Err(TokenError::NotYetValid { .. })));
        let signature_start = token.rfind('.').unwrap_or_default() + 1;
        let flipped = if token.as_bytes()[signature_start] == b'A' { "B" } else { "A" };
        let forged = format!("{}{flipped}{}", &token[..signature_start], &token[signature_start + 1..]);
        assert!(svc.verify(&forged, 1001).is_err());
        assert!(svc.verify(&forged, 1001).is_err(), "a refused token is checked again, never remembered");
        for n in 0..(MAX_VERIFIED + 1) as i64 {
            let (t, _) = svc.mint(&principal(), "aud", 1000 + n)?;
            svc.verify(&t, 1000 + n)?;
        }
        assert!(svc.verified.lock().map(|v| v.len() <= MAX_VERIFIED).unwrap_or(false), "the memory stays bounded");
        Ok(())
    }

    #[test]
    fn scope_to_audience() {
        assert_eq!(
            audience_from_scope("https://management.azure.com/.default").as_deref(),
            Some("https://management.azure.com")
        );
        assert_eq!(
            audience_from_scope("https://management.core.windows.net//.default").as_deref(),
            Some("https://management.core.windows.net/")
        );
        assert_eq!(
            audience_from_scope("openid https://storage.azure.com/.default").as_deref(),
            Some("https://storage.azure.com")
        );
        assert_eq!(audience_from_scope("https://x/user.read"), None);
        assert_eq!(audience_from_scope("/.default"), None);
    }
}
