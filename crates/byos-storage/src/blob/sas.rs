//! Shared access signatures: account SAS, service SAS and user delegation SAS (the layouts the
//! current azure-storage-blob signs, `sv` 2020-12-06 and later), and user delegation keys.

use base64::Engine;
use byos_core::{ApiError, Caller, NetworkOrigin, SignatureKind, SignedGrant};
use byos_crypto::MacKey;
use time::OffsetDateTime;

use super::auth::{Authenticated, Sas};
use super::errors::{authentication_failed, err};
use super::xml::parse_time;
use crate::{Account, StorageService};

fn param<'a>(query: &'a [(String, String)], name: &str) -> &'a str {
    query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_default()
}

/// The signing key of a user delegation key, derived (not stored) from the account's delegation
/// root and the key's own fields: `Value = HMAC(root, skoid \n sktid \n skt \n ske \n sks \n skv)`.
pub fn delegation_key_value(account: &Account, fields: [&str; 6]) -> Vec<u8> {
    account.secrets.delegation.sign(fields.join("\n").as_bytes())
}

fn sign(key: &[u8], text: &str) -> Vec<u8> {
    MacKey::new(key).sign(text.as_bytes())
}

fn join(fields: &[&str]) -> String {
    fields.join("\n")
}

/// The string-to-sign layouts a signature of this kind may have been made with.
fn candidate_strings(kind: SignatureKind, account: &str, query: &[(String, String)], resource: &str) -> Vec<String> {
    let p = |n| param(query, n);
    match kind {
        SignatureKind::Account => vec![format!(
            "{}\n",
            join(&[account, p("sp"), p("ss"), p("srt"), p("st"), p("se"), p("sip"), p("spr"), p("sv"), p("ses")])
        )],
        SignatureKind::Service => vec![join(&[
            p("sp"),
            p("st"),
            p("se"),
            resource,
            p("si"),
            p("sip"),
            p("spr"),
            p("sv"),
            p("sr"),
            p("snapshot"),
            p("ses"),
            p("rscc"),
            p("rscd"),
            p("rsce"),
            p("rscl"),
            p("rsct"),
        ])],
        SignatureKind::UserDelegation => {
            let head = [
                p("sp"),
                p("st"),
                p("se"),
                resource,
                p("skoid"),
                p("sktid"),
                p("skt"),
                p("ske"),
                p("sks"),
                p("skv"),
                p("saoid"),
                p("suoid"),
                p("scid"),
            ];
            let middle = [p("sip"), p("spr"), p("sv"), p("sr"), p("snapshot"), p("ses")];
            let tail = [p("rscc"), p("rscd"), p("rsce"), p("rscl"), p("rsct")];
            let newest: Vec<&str> = head
                .iter()
                .chain(&[p("skdutid"), p("sduoid")])
                .chain(&middle)
                .chain(&[p("srh"), p("srq")])
                .chain(&tail)
                .copied()
                .collect();
            let with_delegated: Vec<&str> =
                head.iter().chain(&[p("skdutid"), p("sduoid")]).chain(&middle).chain(&tail).copied().collect();
            let classic: Vec<&str> = head.iter().chain(&middle).chain(&tail).copied().collect();
            vec![join(&newest), join(&with_delegated), join(&classic)]
        }
    }
}

/// The service version byos signs its own user delegation SAS with (the classic layout).
pub const SIGNED_VERSION: &str = "2022-11-02";

/// Signs a user delegation SAS that lets its holder read one blob, with `key` (a user delegation
/// key of the account, as Get User Delegation Key returns it); returns the query string a client
/// would build. The signature is made over the same string-to-sign [`verify`] checks.
pub fn sign_blob_read(
    account: &Account,
    container: &str,
    blob: &str,
    key: &super::service::UserDelegationKey,
) -> Result<String, ApiError> {
    let fields: Vec<(String, String)> = [
        ("sp", "r"),
        ("se", key.expiry.as_str()),
        ("skoid", key.oid.as_str()),
        ("sktid", key.tid.as_str()),
        ("skt", key.start.as_str()),
        ("ske", key.expiry.as_str()),
        ("sks", key.service),
        ("skv", key.version.as_str()),
        ("spr", "https"),
        ("sv", key.version.as_str()),
        ("sr", "b"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let resource = format!("/blob/{}/{container}/{blob}", account.name);
    let classic = candidate_strings(SignatureKind::UserDelegation, &account.name, &fields, &resource)
        .pop()
        .ok_or_else(|| err(500, "InternalError", "no string-to-sign layout"))?;
    let value = base64::engine::general_purpose::STANDARD
        .decode(&key.value)
        .map_err(|_| err(500, "InternalError", "the delegation key is not base64"))?;
    let signature = base64::engine::general_purpose::STANDARD.encode(sign(&value, &classic));
    let mut pairs = fields;
    pairs.push(("sig".into(), signature));
    serde_urlencoded::to_string(pairs).map_err(|_| err(500, "InternalError", "the SAS could not be encoded"))
}

/// Verifies the SAS in `query` for a request to `uri` on `account`.
pub fn verify(
    service: &StorageService,
    account: &Account,
    uri: &axum::http::Uri,
    query: &[(String, String)],
    origin: NetworkOrigin,
) -> Result<Authenticated, ApiError> {
    // Values are joined with newlines; one inside a value could make two layouts collide.
    if query.iter().any(|(_, v)| v.contains('\n')) {
        return Err(authentication_failed("A signature field contains a newline."));
    }
    let kind = if !param(query, "skoid").is_empty() {
        SignatureKind::UserDelegation
    } else if !param(query, "ss").is_empty() {
        SignatureKind::Account
    } else {
        SignatureKind::Service
    };
    let policy =
        Some(param(query, "si")).filter(|si| kind == SignatureKind::Service && !si.is_empty()).map(str::to_owned);
    if policy.is_none() {
        check_time_window(param(query, "st"), param(query, "se"))?;
    }
    check_protocol_and_ip(query, &origin)?;
    let path = signed_path(kind, account, uri, query)?;
    let resource = match &path {
        Some((container, Some(blob))) => format!("/blob/{}/{container}/{blob}", account.name),
        Some((container, None)) => format!("/blob/{}/{container}", account.name),
        None => String::new(),
    };
    let presented = base64::engine::general_purpose::STANDARD
        .decode(param(query, "sig"))
        .map_err(|_| authentication_failed("The signature is not valid base64."))?;
    let keys: Vec<zeroize::Zeroizing<Vec<u8>>> = match kind {
        SignatureKind::UserDelegation => vec![zeroize::Zeroizing::new(delegation_key(service, account, query)?)],
        _ => (0..2).filter_map(|i| account.secrets.key_bytes(i)).collect(),
    };
    let genuine = candidate_strings(kind, &account.name, query, &resource)
        .iter()
        .any(|text| keys.iter().any(|key| byos_crypto::constant_time_eq(&sign(key, text), &presented)));
    if !genuine {
        return Err(authentication_failed(
            "Signature did not match. String to sign used was not the one the signature was made over.",
        ));
    }
    let (resource_field, object_id) = match kind {
        SignatureKind::Account => (param(query, "srt").to_owned(), None),
        SignatureKind::Service => (param(query, "sr").to_owned(), None),
        SignatureKind::UserDelegation => (param(query, "sr").to_owned(), param(query, "skoid").parse().ok()),
    };
    if kind == SignatureKind::Account && !param(query, "ss").contains('b') {
        return Err(err(
            403,
            "AuthorizationServiceMismatch",
            "This request is not authorized to perform this operation using this service.",
        )
        .with_header("x-byos-denial", "account SAS: ss does not include the blob service"));
    }
    // What the signature grants depends on the operation: `for_operation` fills it in once that is
    // known; until then it grants nothing.
    let grant = SignedGrant {
        kind,
        permits: vec![],
        scope: account.id.clone(),
        key_based: kind != SignatureKind::UserDelegation,
    };
    let delegator = object_id.map(|oid| (oid, service.directory.tenant_id()));
    let caller = Caller::signature(grant, delegator, origin);
    Ok(Authenticated {
        caller,
        sas: Some(Sas {
            kind,
            permissions: param(query, "sp").to_owned(),
            resource: resource_field,
            path,
            policy,
            start: param(query, "st").to_owned(),
            expiry: param(query, "se").to_owned(),
        }),
    })
}

/// A service SAS naming a stored access policy takes its permissions, start and expiry from the
/// container's policy of that id; a field set in both is refused, as Azure does. Changing or
/// removing the policy thereby changes or revokes the SAS at once.
pub async fn apply_stored_policy(
    service: &StorageService,
    account: &Account,
    mut authenticated: Authenticated,
) -> Result<Authenticated, ApiError> {
    let Some(sas) = authenticated.sas.as_mut() else { return Ok(authenticated) };
    let (Some(id), Some((container, _))) = (sas.policy.clone(), sas.path.clone()) else { return Ok(authenticated) };
    let policies = super::containers::load(service, account, &container).await?.map(|c| c.policies).unwrap_or_default();
    let policy = policies.into_iter().find(|p| p.id == id).ok_or_else(|| {
        authentication_failed(format!(
            "The signed identifier '{id}' does not name a stored access policy of container '{container}'."
        ))
        .with_header("x-byos-denial", format!("SAS: no stored access policy '{id}' on container {container}"))
    })?;
    let merge = |field: &str, signed: &mut String, stored: Option<String>| match (signed.is_empty(), stored) {
        (false, Some(_)) => Err(authentication_failed(format!(
            "The {field} is set both in the signature and in the stored access policy '{id}'."
        ))),
        (true, Some(value)) => {
            *signed = value;
            Ok(())
        }
        (_, None) => Ok(()),
    };
    merge("signed permission", &mut sas.permissions, policy.permission)?;
    merge("signed start", &mut sas.start, policy.start)?;
    merge("signed expiry", &mut sas.expiry, policy.expiry)?;
    check_time_window(&sas.start, &sas.expiry)?;
    Ok(authenticated)
}

fn check_time_window(st: &str, se: &str) -> Result<(), ApiError> {
    let now = OffsetDateTime::now_utc();
    let expiry = parse_time(se);
    let start = if st.is_empty() {
        None
    } else {
        Some(parse_time(st).ok_or_else(|| authentication_failed("The signed start time is not a valid time."))?)
    };
    let valid = expiry.is_some_and(|e| now <= e) && start.is_none_or(|s| s <= now + time::Duration::minutes(15));
    if valid {
        return Ok(());
    }
    Err(authentication_failed(format!(
        "Signature not valid in the specified time frame: Start [{st}] - Expiry [{se}] - Current [{}]",
        byos_core::time::rfc3339(now)
    )))
}

fn check_protocol_and_ip(query: &[(String, String)], origin: &NetworkOrigin) -> Result<(), ApiError> {
    let spr = param(query, "spr");
    if !spr.is_empty() && !spr.split(',').any(|p| p == "https") {
        return Err(err(
            403,
            "AuthorizationProtocolMismatch",
            "This request is not authorized to perform this operation using this protocol.",
        )
        .with_header("x-byos-denial", "SAS: spr does not allow https"));
    }
    let sip = param(query, "sip");
    if sip.is_empty() {
        return Ok(());
    }
    let (low, high) = sip.split_once('-').unwrap_or((sip, sip));
    let in_range = match (low.parse::<std::net::IpAddr>(), high.parse::<std::net::IpAddr>(), origin.ip) {
        (Ok(low), Ok(high), Some(ip)) => low <= ip && ip <= high,
        _ => false,
    };
    if in_range {
        return Ok(());
    }
    let ip = origin.ip.map(|i| i.to_string()).unwrap_or_default();
    Err(err(
        403,
        "AuthorizationSourceIPMismatch",
        format!("This request is not authorized to perform this operation using this source IP {ip}."),
    )
    .with_header("x-byos-denial", format!("SAS: source ip {ip} outside sip {sip}")))
}

/// The container/blob a service or delegation SAS is bound to, from `sr` and the request path.
fn signed_path(
    kind: SignatureKind,
    account: &Account,
    uri: &axum::http::Uri,
    query: &[(String, String)],
) -> Result<Option<(String, Option<String>)>, ApiError> {
    if kind == SignatureKind::Account {
        return Ok(None);
    }
    let (container, blob) = super::http::split_path(uri.path(), &account.name)
        .map_err(|_| authentication_failed("The request path does not name a container."))?;
    let container =
        container.ok_or_else(|| authentication_failed("A service SAS must address a container or blob."))?;
    match param(query, "sr") {
        "c" => Ok(Some((container, None))),
        "b" => {
            Ok(Some((container, Some(blob.ok_or_else(|| authentication_failed("A blob SAS must address a blob."))?))))
        }
        // A snapshot or version SAS grants that snapshot or version only, never the live blob;
        // byos has neither yet, so such a signature is refused rather than read as sr=b.
        "bs" | "bv" => Err(err(
            400,
            "UnsupportedQueryParameter",
            "One of the query parameters specified in the request URI is not supported. byos does not implement blob snapshots or versions (sr=bs, sr=bv).",
        )),
        other => Err(authentication_failed(format!("The signed resource '{other}' is not supported."))),
    }
}

/// Recomputes the user delegation key a delegation SAS names, checking it is still valid.
fn delegation_key(
    service: &StorageService,
    account: &Account,
    query: &[(String, String)],
) -> Result<Vec<u8>, ApiError> {
    let fields = [
        param(query, "skoid"),
        param(query, "sktid"),
        param(query, "skt"),
        param(query, "ske"),
        param(query, "sks"),
        param(query, "skv"),
    ];
    if fields[1] != service.directory.tenant_id().to_string() {
        return Err(authentication_failed("The signed tenant id is not this tenant."));
    }
    let now = OffsetDateTime::now_utc();
    let valid = parse_time(fields[2]).is_some_and(|s| s <= now + time::Duration::minutes(15))
        && parse_time(fields[3]).is_some_and(|e| now <= e);
    if !valid {
        return Err(authentication_failed("The user delegation key is not valid at the current time."));
    }
    let principal_alive = fields[0].parse().ok().and_then(|oid| service.directory.principal(oid)).is_some();
    if !principal_alive {
        return Err(authentication_failed("The principal that delegated this signature no longer exists."));
    }
    Ok(delegation_key_value(account, fields))
}

/// The caller of a verified signature for one operation: granting `permits` (what the signed
/// permissions allow of this operation) at `scope` (the signed resource).
pub(super) fn for_operation(caller: &Caller, permits: Vec<String>, scope: String) -> Caller {
    let Some(signed) = caller.signed() else { return caller.clone() };
    let grant = SignedGrant { permits, scope, ..signed.clone() };
    let delegator = caller.object_id().zip(caller.tenant_id());
    Caller::signature(grant, delegator, caller.origin().clone())
}
