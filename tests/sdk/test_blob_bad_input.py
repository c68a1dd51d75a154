"""Malformed Blob requests get Azure's 4xx errors, never a 5xx: bad container names, block ids that are
not base64, malformed block-list XML, unsatisfiable ranges, garbage Authorization headers.

The SDK validates or encodes most of these itself, so the requests are raw HTTPS, authorized by a SAS.
"""

import pytest
from azure.storage.blob import BlobSasPermissions, generate_blob_sas

import byos_support as bs


def _write_sas(account, container, blob):
    return generate_blob_sas(account.name, container, blob, account_key=account.keys["key1"],
                             permission=BlobSasPermissions(read=True, write=True, create=True),
                             expiry=bs.utc_in(hours=1))


@pytest.fixture
def target(shared_account, container):
    """(blob url, read+write SAS) for a blob name in a fresh container of the shared account."""
    return (shared_account.blob_url_of(container.container_name, "target.bin"),
            _write_sas(shared_account, container.container_name, "target.bin"))


def test_invalid_container_name_is_invalid_resource_name(shared_service):
    bs.expect_blob_error(lambda: shared_service.create_container("Bad_Name"), 400, "InvalidResourceName")


def test_block_id_that_is_not_base64_is_400(target, ca):
    url, sas = target
    resp = bs.raw_blob_request("PUT", bs.with_sas(f"{url}?comp=block&blockid=%25%25%25notbase64", sas), ca,
                               data=b"block data")
    bs.assert_raw_blob_error(resp, 400, ("InvalidQueryParameterValue", "InvalidBlockId"))


def test_malformed_block_list_xml_is_invalid_xml_document(target, ca):
    url, sas = target
    resp = bs.raw_blob_request("PUT", bs.with_sas(f"{url}?comp=blocklist", sas), ca,
                               headers={"Content-Type": "application/xml"},
                               data=b"<?xml version='1.0' encoding='utf-8'?>\n<BlockList><Latest>abc</Lat")
    bs.assert_raw_blob_error(resp, 400, "InvalidXmlDocument")


def test_range_beyond_the_blob_is_invalid_range(target, ca):
    url, sas = target
    bs.blob_at(url, sas, ca).upload_blob(b"0123456789", overwrite=True)
    resp = bs.raw_blob_request("GET", bs.with_sas(url, sas), ca, headers={"x-ms-range": "bytes=100-50"})
    bs.assert_raw_blob_error(resp, 416, "InvalidRange")


def test_garbage_shared_key_header_is_rejected_as_a_client_error(shared_account, container, ca):
    url = f"{shared_account.container_url(container.container_name)}?restype=container"
    resp = bs.raw_blob_request("GET", url, ca, headers={"Authorization": "SharedKey garbage"})
    assert (resp.status_code, bs.blob_error_code(resp)) in {
        (403, "AuthenticationFailed"), (400, "InvalidAuthenticationInfo"), (401, "InvalidAuthenticationInfo"),
    }, f"{resp.status_code}: {resp.text[:500]}"
    if resp.status_code in (401, 403):
        bs.assert_denial_explained(resp.headers)
