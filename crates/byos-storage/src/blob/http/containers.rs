//! Container requests: parameters from headers and query, answers in Azure's headers and XML.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use byos_core::ApiError;
use byos_http::Failure;

use super::{BlobRequest, max_results, metadata_headers, metadata_xml, respond, xml_response};
use crate::StorageService;
use crate::blob::containers::{self as domain, ContainerListing};
use crate::blob::data::ContainerRecord;
use crate::blob::errors::invalid_header;
use crate::blob::ops::Permit;
use crate::blob::xml::{self, Conditions, escape};

/// `x-ms-blob-public-access`: `blob`, `container`, or none.
fn public_access_header(request: &BlobRequest) -> Result<Option<String>, ApiError> {
    match request.header("x-ms-blob-public-access") {
        None | Some("") => Ok(None),
        Some(level @ ("blob" | "container")) => Ok(Some(level.to_owned())),
        Some(_) => Err(invalid_header("x-ms-blob-public-access")),
    }
}

fn stamp(record: &ContainerRecord) -> Vec<(String, String)> {
    vec![("etag".into(), record.etag.clone()), ("last-modified".into(), xml::http_date_nanos(record.last_modified))]
}

pub async fn create(service: &StorageService, request: &BlobRequest, permit: &Permit) -> Result<Response, Failure> {
    let public_access = public_access_header(request)?;
    let metadata = xml::metadata_from_headers(&request.headers)?;
    let record = domain::create(service, permit, public_access, &metadata).await?;
    Ok(respond(StatusCode::CREATED, stamp(&record)))
}

pub async fn delete(service: &StorageService, request: &BlobRequest, permit: &Permit) -> Result<Response, Failure> {
    domain::delete(service, permit, &Conditions::from_headers(&request.headers)).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

pub async fn properties(service: &StorageService, permit: &Permit) -> Result<Response, Failure> {
    let (record, metadata) = domain::properties(service, permit).await?;
    let mut headers = stamp(&record);
    for (name, value) in [
        ("x-ms-lease-status", "unlocked"),
        ("x-ms-lease-state", "available"),
        ("x-ms-has-immutability-policy", "false"),
        ("x-ms-has-legal-hold", "false"),
    ] {
        headers.push((name.into(), value.into()));
    }
    if let Some(level) = &record.public_access {
        headers.push(("x-ms-blob-public-access".into(), level.clone()));
    }
    headers.extend(metadata_headers(&metadata));
    Ok(respond(StatusCode::OK, headers))
}

pub async fn set_metadata(
    service: &StorageService,
    request: &BlobRequest,
    permit: &Permit,
) -> Result<Response, Failure> {
    let metadata = xml::metadata_from_headers(&request.headers)?;
    let record = domain::set_metadata(service, permit, &metadata).await?;
    Ok(respond(StatusCode::OK, stamp(&record)))
}

pub async fn get_acl(service: &StorageService, permit: &Permit) -> Result<Response, Failure> {
    let record = domain::acl(service, permit).await?;
    let mut headers = stamp(&record);
    headers.push(("content-type".into(), "application/xml".into()));
    if let Some(level) = &record.public_access {
        headers.push(("x-ms-blob-public-access".into(), level.clone()));
    }
    let mut response = respond(StatusCode::OK, headers);
    *response.body_mut() = axum::body::Body::from(xml::signed_identifiers_xml(&record.policies));
    Ok(response)
}

pub async fn set_acl(service: &StorageService, request: &BlobRequest, permit: &Permit) -> Result<Response, Failure> {
    let public_access = public_access_header(request)?;
    let body = request.small_body(64 * 1024).await?;
    let policies = xml::parse_signed_identifiers(&body)?;
    let record = domain::set_acl(service, permit, public_access, policies).await?;
    Ok(respond(StatusCode::OK, stamp(&record)))
}

pub async fn list(service: &StorageService, request: &BlobRequest, permit: &Permit) -> Result<Response, Failure> {
    let listing = ContainerListing {
        prefix: request.param("prefix").unwrap_or_default().to_owned(),
        marker: request.param("marker").filter(|m| !m.is_empty()).map(str::to_owned),
        max: max_results(request)?,
        include_metadata: request.param("include").is_some_and(|i| i.split(',').any(|p| p == "metadata")),
    };
    let page = domain::list(service, permit, &listing).await?;
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ServiceEndpoint=\"{}\"><Prefix>{}</Prefix>",
        escape(&service.endpoint(&permit.account().name)),
        escape(&listing.prefix)
    );
    if let Some(m) = &listing.marker {
        out.push_str(&format!("<Marker>{}</Marker>", escape(m)));
    }
    if request.param("maxresults").is_some() {
        out.push_str(&format!("<MaxResults>{}</MaxResults>", listing.max));
    }
    out.push_str("<Containers>");
    for (c, metadata) in &page.items {
        out.push_str(&format!(
            "<Container><Name>{}</Name><Properties><Last-Modified>{}</Last-Modified><Etag>{}</Etag><LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState>{}<HasImmutabilityPolicy>false</HasImmutabilityPolicy><HasLegalHold>false</HasLegalHold></Properties>",
            escape(&c.name),
            xml::http_date_nanos(c.last_modified),
            escape(&c.etag),
            c.public_access.as_ref().map(|p| format!("<PublicAccess>{p}</PublicAccess>")).unwrap_or_default()
        ));
        if let Some(metadata) = metadata {
            out.push_str(&metadata_xml(metadata));
        }
        out.push_str("</Container>");
    }
    out.push_str("</Containers>");
    out.push_str(&format!(
        "<NextMarker>{}</NextMarker></EnumerationResults>",
        escape(page.next.as_deref().unwrap_or_default())
    ));
    Ok(xml_response(out))
}
