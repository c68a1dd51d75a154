//! Containers: create, delete, properties and metadata, access policy, listing.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use byos_core::ApiError;
use byos_http::Failure;
use byos_store::Batch;

use super::BlobRequest;
use super::data::{
    self, BLOBS, BLOCKS, BlobRecord, BlockRecord, CONTAINERS, ContainerRecord, container_key, decode, encode, store_err,
};
use super::errors::{bad_request, container_not_found, err};
use super::xml::{self, escape};
use crate::{Account, StorageService};

/// Azure's rule: 3-63 lowercase letters, digits and single hyphens, starting with a letter or digit.
pub fn validate_name(name: &str) -> Result<(), ApiError> {
    let ok = (3..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(bad_request("InvalidResourceName", "The specified resource name contains invalid characters."))
    }
}

pub async fn load(
    service: &StorageService,
    account: &Account,
    container: &str,
) -> Result<Option<ContainerRecord>, ApiError> {
    Ok(read_container(service, account, container).await?.record)
}

/// The container record (a container being deleted counts as absent) with its stored bytes.
pub async fn read_container(
    service: &StorageService,
    account: &Account,
    container: &str,
) -> Result<data::Read<ContainerRecord>, ApiError> {
    let mut read: data::Read<ContainerRecord> =
        data::read(service, CONTAINERS, &container_key(&account.name, container)).await?;
    if read.record.as_ref().is_some_and(|c| c.deleting) {
        read.record = None;
    }
    Ok(read)
}

pub async fn require(
    service: &StorageService,
    account: &Account,
    container: &str,
) -> Result<ContainerRecord, ApiError> {
    load(service, account, container).await?.ok_or_else(container_not_found)
}

/// The container as a write that began in `started` may commit into it: the same incarnation, not
/// being deleted (a container deleted and created again while a body streamed is another container).
pub async fn read_same_container(
    service: &StorageService,
    account: &Account,
    started: &ContainerRecord,
) -> Result<data::Read<ContainerRecord>, ApiError> {
    let read = read_container(service, account, &started.name).await?;
    match &read.record {
        Some(now) if now.incarnation == started.incarnation => Ok(read),
        _ => Err(container_not_found()),
    }
}

/// Changes a container's record with optimistic concurrency.
async fn update(
    service: &StorageService,
    account: &Account,
    container: &str,
    change: impl Fn(&mut ContainerRecord),
) -> Result<ContainerRecord, ApiError> {
    let key = container_key(&account.name, container);
    data::optimistic(service, || async {
        let read = read_container(service, account, container).await?;
        let mut record = read.record.ok_or_else(container_not_found)?;
        change(&mut record);
        record.etag = data::new_etag();
        record.last_modified = xml::now_nanos();
        let batch = Batch::new().expect_unchanged(CONTAINERS, key.clone(), read.bytes).put(
            CONTAINERS,
            key.clone(),
            encode(&record)?,
        );
        Ok((batch, record))
    })
    .await
}

/// The container's public access level (`blob` / `container`), if any.
pub async fn public_access(
    service: &StorageService,
    account: &Account,
    container: &str,
) -> Result<Option<String>, ApiError> {
    Ok(load(service, account, container).await?.and_then(|c| c.public_access))
}

fn public_access_header(request: &BlobRequest) -> Result<Option<String>, ApiError> {
    match request.header("x-ms-blob-public-access") {
        None | Some("") => Ok(None),
        Some(level @ ("blob" | "container")) => {
            if !request.account.settings.allow_blob_public_access {
                return Err(err(
                    409,
                    "PublicAccessNotPermitted",
                    "Public access is not permitted on this storage account.",
                )
                .with_header("x-byos-denial", "allowBlobPublicAccess is false: containers cannot be made public"));
            }
            Ok(Some(level.to_owned()))
        }
        Some(_) => Err(super::errors::invalid_header("x-ms-blob-public-access")),
    }
}

fn stamp(record: &ContainerRecord) -> Vec<(&'static str, String)> {
    vec![("etag", record.etag.clone()), ("last-modified", xml::http_date_nanos(record.last_modified))]
}

pub async fn create(service: &StorageService, request: &BlobRequest) -> Result<Response, Failure> {
    let (account, name) = (&request.account, request.container());
    validate_name(name)?;
    let public_access = public_access_header(request)?;
    let metadata = xml::metadata_from_headers(&request.headers)?;
    let record = ContainerRecord {
        v: data::RECORD_VERSION,
        name: name.to_owned(),
        public_access,
        sealed_metadata: if metadata.is_empty() {
            None
        } else {
            data::seal_metadata(account, &*request.kek(service).await?, name, None, &metadata)?
        },
        etag: data::new_etag(),
        last_modified: xml::now_nanos(),
        deleting: false,
        incarnation: uuid::Uuid::new_v4().simple().to_string(),
        policies: Vec::new(),
    };
    let key = container_key(&account.name, name);
    // Guarded on the account's name record too: a creation that was under way while the account was
    // deleted fails instead of leaving a container that a new account of that name would inherit.
    let batch = Batch::new().expect_absent(CONTAINERS, key).expect_unchanged(
        crate::NAMES,
        account.name.clone(),
        Some(account.id.clone().into_bytes()),
    );
    match service.store.commit(batch.put(CONTAINERS, container_key(&account.name, name), encode(&record)?)).await {
        Err(byos_store::StoreError::Conflict { table, .. }) if table == crate::NAMES.0 => {
            Err(Failure::from(err(404, "ResourceNotFound", "The specified resource does not exist.")))
        }
        Err(byos_store::StoreError::Conflict { .. }) => {
            Err(Failure::from(err(409, "ContainerAlreadyExists", "The specified container already exists.")))
        }
        other => {
            other.map_err(store_err)?;
            Ok(super::respond(StatusCode::CREATED, stamp(&record)))
        }
    }
}

pub async fn delete(service: &StorageService, request: &BlobRequest) -> Result<Response, Failure> {
    let (account, name) = (&request.account, request.container());
    let key = container_key(&account.name, name);
    // First mark it deleting: blob commits guard on the container record, so none can slip in
    // between the scan below and the deletion.
    let marked = data::optimistic(service, || async {
        let read = read_container(service, account, name).await?;
        let mut record = read.record.ok_or_else(container_not_found)?;
        xml::check_conditions(
            &request.headers,
            Some(xml::Current { etag: &record.etag, last_modified_nanos: record.last_modified }),
            xml::Access::Write,
        )?;
        record.deleting = true;
        let bytes = encode(&record)?;
        Ok((
            Batch::new().expect_unchanged(CONTAINERS, key.clone(), read.bytes).put(
                CONTAINERS,
                key.clone(),
                bytes.clone(),
            ),
            bytes,
        ))
    })
    .await?;
    let prefix = format!("{key}/");
    let mut batch =
        Batch::new().expect_unchanged(CONTAINERS, key.clone(), Some(marked)).delete(CONTAINERS, key.clone());
    let mut objects = Vec::new();
    for (blob_key, bytes) in service.store.scan(BLOBS, &prefix).await.map_err(store_err)? {
        let blob: BlobRecord = decode(&bytes)?;
        objects.extend(blob.segments.into_iter().map(|s| s.object));
        batch = batch.delete(BLOBS, blob_key);
    }
    for (block_key, bytes) in service.store.scan(BLOCKS, &prefix).await.map_err(store_err)? {
        let block: BlockRecord = decode(&bytes)?;
        objects.push(block.segment.object);
        batch = batch.delete(BLOCKS, block_key);
    }
    service.store.commit(batch).await.map_err(store_err)?;
    data::delete_objects(service, objects).await;
    Ok(StatusCode::ACCEPTED.into_response())
}

pub async fn properties(service: &StorageService, request: &BlobRequest) -> Result<Response, Failure> {
    let account = &request.account;
    let record = require(service, account, request.container()).await?;
    let mut headers = stamp(&record);
    headers.extend([("x-ms-lease-status", "unlocked".to_owned()), ("x-ms-lease-state", "available".to_owned())]);
    headers.extend([("x-ms-has-immutability-policy", "false".to_owned()), ("x-ms-has-legal-hold", "false".to_owned())]);
    if let Some(level) = &record.public_access {
        headers.push(("x-ms-blob-public-access", level.clone()));
    }
    let mut response = super::respond(StatusCode::OK, headers);
    let metadata = match &record.sealed_metadata {
        Some(sealed) => data::open_metadata(account, &*request.kek(service).await?, &record.name, None, Some(sealed))?,
        None => Default::default(),
    };
    for (name, value) in metadata {
        if let (Ok(n), Ok(v)) =
            (axum::http::HeaderName::try_from(format!("x-ms-meta-{name}")), HeaderValue::from_str(&value))
        {
            response.headers_mut().insert(n, v);
        }
    }
    Ok(response)
}

pub async fn set_metadata(service: &StorageService, request: &BlobRequest) -> Result<Response, Failure> {
    let account = &request.account;
    let metadata = xml::metadata_from_headers(&request.headers)?;
    let sealed = data::seal_metadata(account, &*request.kek(service).await?, request.container(), None, &metadata)?;
    let record = update(service, account, request.container(), |r| r.sealed_metadata = sealed.clone()).await?;
    Ok(super::respond(StatusCode::OK, stamp(&record)))
}

pub async fn get_acl(service: &StorageService, request: &BlobRequest) -> Result<Response, Failure> {
    let record = require(service, &request.account, request.container()).await?;
    let mut headers = stamp(&record);
    headers.push(("content-type", "application/xml".to_owned()));
    if let Some(level) = &record.public_access {
        headers.push(("x-ms-blob-public-access", level.clone()));
    }
    let mut response = super::respond(StatusCode::OK, headers);
    *response.body_mut() = axum::body::Body::from(xml::signed_identifiers_xml(&record.policies));
    Ok(response)
}

pub async fn set_acl(service: &StorageService, request: &BlobRequest) -> Result<Response, Failure> {
    let public_access = public_access_header(request)?;
    let body = request.small_body(64 * 1024).await?;
    let policies = xml::parse_signed_identifiers(&body)?;
    let record = update(service, &request.account, request.container(), |r| {
        r.public_access = public_access.clone();
        r.policies = policies.clone();
    })
    .await?;
    Ok(super::respond(StatusCode::OK, stamp(&record)))
}

/// Parses `maxresults` (1..=5000, default 5000).
pub fn max_results(request: &BlobRequest) -> Result<usize, ApiError> {
    match request.param("maxresults") {
        None => Ok(5000),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=5000).contains(n))
            .ok_or_else(|| super::errors::invalid_query("maxresults")),
    }
}

pub async fn list(service: &StorageService, request: &BlobRequest) -> Result<Response, Failure> {
    let account = &request.account;
    let prefix = request.param("prefix").unwrap_or_default();
    let marker = request.param("marker").filter(|m| !m.is_empty());
    let max = max_results(request)?;
    let include_metadata = request.param("include").is_some_and(|i| i.split(',').any(|p| p == "metadata"));
    let key_prefix = format!("{}/{prefix}", account.name);
    let after = marker.map(|m| container_key(&account.name, m));
    // Read one past the page to know whether there is a next page; keys sort like names.
    let rows = service.store.scan_page(CONTAINERS, &key_prefix, after.as_deref(), max + 1).await.map_err(store_err)?;
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ServiceEndpoint=\"{}\"><Prefix>{}</Prefix>",
        escape(&service.endpoint(&account.name)),
        escape(prefix)
    );
    if let Some(m) = marker {
        out.push_str(&format!("<Marker>{}</Marker>", escape(m)));
    }
    if request.param("maxresults").is_some() {
        out.push_str(&format!("<MaxResults>{max}</MaxResults>"));
    }
    out.push_str("<Containers>");
    for (_, bytes) in rows.iter().take(max) {
        let c: ContainerRecord = decode(bytes)?;
        if c.deleting {
            continue;
        }
        out.push_str(&format!(
            "<Container><Name>{}</Name><Properties><Last-Modified>{}</Last-Modified><Etag>{}</Etag><LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState>{}<HasImmutabilityPolicy>false</HasImmutabilityPolicy><HasLegalHold>false</HasLegalHold></Properties>",
            escape(&c.name),
            xml::http_date_nanos(c.last_modified),
            escape(&c.etag),
            c.public_access.as_ref().map(|p| format!("<PublicAccess>{p}</PublicAccess>")).unwrap_or_default()
        ));
        if include_metadata {
            let metadata = match &c.sealed_metadata {
                Some(sealed) => {
                    data::open_metadata(account, &*request.kek(service).await?, &c.name, None, Some(sealed))?
                }
                None => Default::default(),
            };
            out.push_str(&metadata_xml(&metadata));
        }
        out.push_str("</Container>");
    }
    out.push_str("</Containers>");
    let next = if rows.len() > max {
        rows.get(max - 1).and_then(|(k, _)| k.split_once('/').map(|(_, n)| n.to_owned()))
    } else {
        None
    };
    out.push_str(&format!("<NextMarker>{}</NextMarker></EnumerationResults>", escape(&next.unwrap_or_default())));
    Ok(xml_response(out))
}

pub fn metadata_xml(metadata: &std::collections::BTreeMap<String, String>) -> String {
    let mut out = String::from("<Metadata>");
    for (k, v) in metadata {
        out.push_str(&format!("<{k}>{}</{k}>", escape(v)));
    }
    out.push_str("</Metadata>");
    out
}

pub fn xml_response(body: String) -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/xml")], body).into_response()
}
