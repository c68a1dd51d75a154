"""Regressions of the blob data path: block-list limits (F11) and unambiguous blob addressing.

Raw HTTPS where the SDK would refuse or re-encode the request, authorized by a SAS.
"""

import base64

from azure.storage.blob import (AccountSasPermissions, BlobSasPermissions, ResourceTypes, generate_account_sas,
                                generate_blob_sas)

import byos_support as bs


def _write_sas(account, container, blob):
    return generate_blob_sas(account.name, container, blob, account_key=account.keys["key1"],
                             permission=BlobSasPermissions(read=True, write=True, create=True),
                             expiry=bs.utc_in(hours=1))


def test_regression_f11_block_list_of_more_than_50000_blocks_is_block_list_too_long(shared_account, container, ca):
    name = "amplified.bin"
    url = shared_account.blob_url_of(container.container_name, name)
    sas = _write_sas(shared_account, container.container_name, name)
    block_id = base64.b64encode(b"block-0").decode()
    container.get_blob_client(name).stage_block(block_id, b"one small block")
    body = ("<?xml version='1.0' encoding='utf-8'?><BlockList>"
            + f"<Latest>{block_id}</Latest>" * 50_001 + "</BlockList>").encode()
    resp = bs.raw_blob_request("PUT", bs.with_sas(f"{url}?comp=blocklist", sas), ca,
                               headers={"Content-Type": "application/xml"}, data=body)
    bs.assert_raw_blob_error(resp, 400, "BlockListTooLong")
    assert not container.get_blob_client(name).exists(), "nothing was committed"


def test_regression_encoded_slash_in_container_name_does_not_alias_another_blob(shared_account, container, ca):
    # Blob `b/c` of container `X` and blob `c` of "container" `X/b` must not be one record.
    container.get_blob_client("b/c").upload_blob(b"kept", overwrite=True)
    sas = generate_account_sas(shared_account.name, shared_account.keys["key1"],
                               resource_types=ResourceTypes(container=True, object=True),
                               permission=AccountSasPermissions(read=True, delete=True),
                               expiry=bs.utc_in(hours=1))
    alias = shared_account.blob_url_of(f"{container.container_name}%2Fb", "c")
    resp = bs.raw_blob_request("DELETE", bs.with_sas(alias, sas), ca)
    bs.assert_raw_blob_error(resp, 400, "InvalidResourceName")
    resp = bs.raw_blob_request("GET", bs.with_sas(alias, sas), ca)
    bs.assert_raw_blob_error(resp, 400, "InvalidResourceName")
    assert container.get_blob_client("b/c").download_blob().readall() == b"kept"




def _recreating_body(container, first: bytes):
    """A request body that deletes and re-creates `container` while it streams."""
    yield first
    container.delete_container()
    container.create_container()
    yield b"that must not reach the new container"


def test_regression_f09_block_staged_while_its_container_is_deleted_never_resurfaces(shared_account, container, ca):
    name = "ghost.bin"
    url = shared_account.blob_url_of(container.container_name, name)
    sas = _write_sas(shared_account, container.container_name, name)
    block_id = base64.b64encode(b"ghost-0").decode()
    body = _recreating_body(container, b"OLD-TENANT-DATA ")
    resp = bs.raw_blob_request("PUT", bs.with_sas(f"{url}?comp=block&blockid={block_id}", sas), ca, data=body)
    bs.assert_raw_blob_error(resp, 404, "ContainerNotFound")
    blob = container.get_blob_client(name)
    # No blob and no staged block in the new container: BlobNotFound, as Azure answers.
    bs.expect_blob_error(lambda: blob.get_block_list("all"), 404, "BlobNotFound")
    bs.expect_blob_error(lambda: blob.commit_block_list([block_id]), 400, "InvalidBlockList")


def test_regression_f09_blob_put_while_its_container_is_recreated_never_lands_in_the_new_one(shared_account, container, ca):
    name = "ghost-put.bin"
    url = shared_account.blob_url_of(container.container_name, name)
    sas = _write_sas(shared_account, container.container_name, name)
    body = _recreating_body(container, b"OLD-TENANT-DATA ")
    resp = bs.raw_blob_request("PUT", bs.with_sas(url, sas), ca, data=body, headers={"x-ms-blob-type": "BlockBlob"})
    bs.assert_raw_blob_error(resp, 404, "ContainerNotFound")
    bs.expect_blob_error(lambda: container.get_blob_client(name).download_blob().readall(), 404, "BlobNotFound")


def test_regression_range_get_content_md5_is_honoured(shared_account, container, ca):
    """`download_blob(validate_content=True)` asks for each range's MD5 (x-ms-range-get-content-md5);
    it was ignored, so the SDK had nothing (or the whole blob's MD5) to check each range against."""
    import hashlib
    import os

    data = os.urandom(9 * bs.MIB + 3)
    client = container.get_blob_client("range-md5.bin")
    client.upload_blob(data)
    assert client.download_blob(validate_content=True, max_concurrency=2).readall() == data
    url = bs.with_sas(shared_account.blob_url_of(container.container_name, "range-md5.bin"),
                      _write_sas(shared_account, container.container_name, "range-md5.bin"))
    ranged = bs.raw_blob_request("GET", url, ca, headers={"x-ms-range": "bytes=10-1033", "x-ms-range-get-content-md5": "true"})
    assert ranged.status_code == 206
    assert ranged.headers["content-md5"] == base64.b64encode(hashlib.md5(data[10:1034]).digest()).decode()
    too_big = bs.raw_blob_request("GET", url, ca, headers={"x-ms-range": f"bytes=0-{4 * bs.MIB}",
                                                           "x-ms-range-get-content-md5": "true"})
    bs.assert_raw_blob_error(too_big, 400, "InvalidRange")
    no_range = bs.raw_blob_request("GET", url, ca, headers={"x-ms-range-get-content-md5": "true"})
    bs.assert_raw_blob_error(no_range, 400, "InvalidHeaderValue")
