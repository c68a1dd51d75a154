"""The Blob data plane through azure-storage-blob with Shared Key: containers, block blobs (single put,
Put Block + Put Block List, staged blocks), ranged downloads, properties and metadata, listing with
prefixes and virtual directories, conditional requests, Content-MD5 and CRC64 validation (headers and
structured messages), awkward blob names.

Every test works in its own container on the session's shared account (the `container` fixture).
"""

import base64
import io
import os

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobBlock, BlobPrefix, BlobSasPermissions, ContentSettings, generate_blob_sas

import byos_support as bs


def _chunking_service(account, ca, block_size=bs.MIB):
    """A Shared Key client that uploads anything above `block_size` as Put Block + Put Block List and
    downloads in several ranged GETs."""
    return bs.blob_service(account.blob_url, account.shared_key(), ca,
                           max_single_put_size=block_size, max_block_size=block_size,
                           max_single_get_size=4 * bs.MIB, max_chunk_get_size=4 * bs.MIB)


def _upload(container, name, data=b"hello", **kwargs):
    client = container.get_blob_client(name)
    client.upload_blob(data, **kwargs)
    return client


# ---- containers ----------------------------------------------------------------------------------------------


def test_create_container_twice_is_container_already_exists(shared_service, container):
    exc = bs.expect_blob_error(lambda: shared_service.create_container(container.container_name),
                               409, "ContainerAlreadyExists")
    assert isinstance(exc, ResourceExistsError)


def test_get_container_properties_of_a_new_container(container):
    props = container.get_container_properties()
    assert props.name == container.container_name
    assert props.etag
    assert props.last_modified is not None
    assert props.metadata == {}


def test_container_metadata_round_trips(container):
    container.set_container_metadata({"project": "byos", "stage": "test"})
    assert container.get_container_properties().metadata == {"project": "byos", "stage": "test"}


def test_list_containers_pages_by_prefix(shared_service):
    prefix = bs.unique("byos-page")
    names = {shared_service.create_container(f"{prefix}-{i}").container_name for i in range(5)}
    shared_service.create_container(bs.unique("byos-nopage"))

    pages = [[c.name for c in page]
             for page in shared_service.list_containers(name_starts_with=prefix, results_per_page=2).by_page()]
    assert len(pages) >= 3, pages
    assert all(len(page) <= 2 for page in pages), pages
    listed = [name for page in pages for name in page]
    assert sorted(listed) == sorted(names)


def test_deleted_container_is_container_not_found(container):
    container.delete_container()
    exc = bs.expect_blob_error(container.get_container_properties, 404, "ContainerNotFound")
    assert isinstance(exc, ResourceNotFoundError)


# ---- block blobs: upload and download ------------------------------------------------------------------------


def test_small_upload_round_trips(container):
    client = _upload(container, "small.txt", b"hello, byos")
    assert client.download_blob().readall() == b"hello, byos"


def test_upload_without_overwrite_twice_is_blob_already_exists(container):
    _upload(container, "once.txt", b"first", overwrite=False)
    exc = bs.expect_blob_error(lambda: _upload(container, "once.txt", b"second", overwrite=False),
                               409, "BlobAlreadyExists")
    assert isinstance(exc, ResourceExistsError)
    assert container.get_blob_client("once.txt").download_blob().readall() == b"first"


def test_upload_with_overwrite_replaces_the_content(container):
    client = _upload(container, "twice.txt", b"first")
    client.upload_blob(b"second, longer", overwrite=True)
    assert client.download_blob().readall() == b"second, longer"


def test_chunked_upload_of_10_mib_round_trips(shared_account, container, ca):
    service = _chunking_service(shared_account, ca)
    data = os.urandom(10 * bs.MIB)
    client = bs.put_blob(service, container.container_name, "big.bin", data)

    assert client.download_blob().readall() == data


def test_chunked_upload_commits_one_block_per_chunk(shared_account, container, ca):
    service = _chunking_service(shared_account, ca)
    client = bs.put_blob(service, container.container_name, "blocks.bin", os.urandom(10 * bs.MIB))

    committed, uncommitted = client.get_block_list("all")
    assert [b.size for b in committed] == [bs.MIB] * 10
    assert uncommitted == []


def test_get_block_list_shows_uncommitted_blocks(container):
    client = container.get_blob_client("staged.bin")
    for block_id, data in [("block-a", b"aaaa"), ("block-b", b"bbbbbb")]:
        client.stage_block(block_id, data)

    committed, uncommitted = client.get_block_list("all")
    assert committed == []
    assert sorted((b.id, b.size) for b in uncommitted) == [("block-a", 4), ("block-b", 6)]


def test_commit_block_list_assembles_blocks_in_list_order(container):
    client = container.get_blob_client("assembled.bin")
    for block_id, data in [("block-1", b"one-"), ("block-2", b"two-"), ("block-3", b"three")]:
        client.stage_block(block_id, data)
    client.commit_block_list([BlobBlock(block_id="block-3"), BlobBlock(block_id="block-1")])

    assert client.download_blob().readall() == b"threeone-"
    committed, uncommitted = client.get_block_list("all")
    assert [b.id for b in committed] == ["block-3", "block-1"]
    assert uncommitted == []  # committing discards the blocks it left out


@pytest.mark.parametrize("offset, length", [(0, 1), (10, 100), (999, 1), (500, 500), (123, 456)])
def test_ranged_download_returns_exactly_the_slice(container, offset, length):
    data = os.urandom(1000)
    client = _upload(container, "ranged.bin", data)
    assert client.download_blob(offset=offset, length=length).readall() == data[offset:offset + length]


def test_empty_blob_downloads_as_empty(container):
    client = _upload(container, "empty.bin", b"")
    assert client.download_blob().readall() == b""
    assert client.get_blob_properties().size == 0


@pytest.mark.parametrize("chunked", [False, True], ids=["single-put", "put-block"])
def test_validate_content_upload_round_trips(shared_account, container, ca, chunked):
    service = _chunking_service(shared_account, ca) if chunked else bs.blob_service(
        shared_account.blob_url, shared_account.shared_key(), ca)
    data = os.urandom(3 * bs.MIB + 17)
    client = service.get_blob_client(container.container_name, "md5.bin")
    client.upload_blob(data, validate_content=True)
    assert client.download_blob().readall() == data


@pytest.mark.parametrize("chunked", [False, True], ids=["single-put", "put-block"])
def test_crc64_validated_upload_round_trips(shared_account, container, ca, chunked):
    service = _chunking_service(shared_account, ca) if chunked else bs.blob_service(
        shared_account.blob_url, shared_account.shared_key(), ca)
    data = os.urandom(2 * bs.MIB + 5)
    client = service.get_blob_client(container.container_name, "crc64.bin")
    client.upload_blob(data, validate_content="crc64")
    assert client.download_blob().readall() == data


def test_wrong_crc64_is_refused_and_stores_nothing(shared_account, container, ca):
    client = container.get_blob_client("crc64-wrong.bin")
    wrong = base64.b64encode((12345).to_bytes(8, "little")).decode()
    with pytest.raises(HttpResponseError) as info:
        client.upload_blob(b"payload", headers={"x-ms-content-crc64": wrong})
    assert info.value.status_code == 400
    assert info.value.error_code == "Crc64Mismatch"
    assert not client.exists()


@pytest.mark.parametrize("chunked", [False, True], ids=["single-put", "put-block"])
def test_structured_message_upload_round_trips(shared_account, container, ca, chunked):
    # "crc64-sm" frames every body as a structured message with per-segment CRC64s (as "crc64" does for
    # streamed bodies); byos decodes the frames, checks every CRC and stores only the content.
    service = _chunking_service(shared_account, ca, block_size=4 * bs.MIB) if chunked else bs.blob_service(
        shared_account.blob_url, shared_account.shared_key(), ca)
    data = os.urandom(9 * bs.MIB + 11)
    client = service.get_blob_client(container.container_name, "framed.bin")
    sent, acknowledged = [], []
    client.upload_blob(data, validate_content="crc64-sm",
                       raw_request_hook=lambda r: sent.append(r.http_request.headers.get("x-ms-structured-body")),
                       raw_response_hook=lambda r: acknowledged.append(r.http_response.headers.get("x-ms-structured-body")))
    framed = [h for h in sent if h]
    assert len(framed) == (4 if chunked else 1), sent  # chunked: three blocks and the block list XML
    assert acknowledged.count("XSM/1.0; properties=crc64") == len(framed), acknowledged
    assert client.get_blob_properties().size == len(data)
    assert client.download_blob().readall() == data


@pytest.mark.parametrize("size", [0, 17, 5 * bs.MIB + 3], ids=["empty", "small", "two-segments"])
def test_crc64_validated_download_round_trips(container, size):
    data = os.urandom(size)
    client = container.get_blob_client(f"validated-{size}.bin")
    client.upload_blob(data)
    assert client.download_blob(validate_content="crc64").readall() == data


def test_crc64_validated_ranged_download_returns_the_slice(container):
    data = os.urandom(3 * bs.MIB)
    client = container.get_blob_client("validated-range.bin")
    client.upload_blob(data)
    assert client.download_blob(offset=bs.MIB + 5, length=1000, validate_content="crc64").readall() == data[bs.MIB + 5:bs.MIB + 1005]


def _framed(content: bytes, *, corrupt_at: int | None = None) -> bytes:
    """A one-segment structured message with CRC64s, as the SDK frames a body."""
    from azure.storage.blob._shared.streams import StructuredMessageEncodeStream, StructuredMessageProperties

    message = bytearray(StructuredMessageEncodeStream(io.BytesIO(content), len(content), StructuredMessageProperties.CRC64).read())
    if corrupt_at is not None:
        message[corrupt_at] ^= 0x01
    return bytes(message)


@pytest.mark.parametrize("damage", ["content", "segment-crc", "truncated", "not-framed"])
def test_damaged_structured_messages_are_refused_and_store_nothing(shared_account, container, ca, damage):
    content = b"structured payload"
    body = {
        "content": _framed(content, corrupt_at=13 + 10 + 3),
        "segment-crc": _framed(content, corrupt_at=13 + 10 + len(content)),
        "truncated": _framed(content)[:-4],
        "not-framed": content,
    }[damage]
    url = shared_account.blob_url_of(container.container_name, "damaged.bin")
    sas = generate_blob_sas(shared_account.name, container.container_name, "damaged.bin", account_key=shared_account.keys["key1"],
                            permission=BlobSasPermissions(create=True, write=True), expiry=bs.utc_in(hours=1))
    resp = bs.raw_blob_request("PUT", bs.with_sas(url, sas), ca, data=body, headers={
        "x-ms-blob-type": "BlockBlob", "x-ms-structured-body": "XSM/1.0; properties=crc64",
        "x-ms-structured-content-length": str(len(content))})
    expected = "Crc64Mismatch" if damage in ("content", "segment-crc") else "InvalidInput"
    bs.assert_raw_blob_error(resp, 400, expected)
    assert not container.get_blob_client("damaged.bin").exists()


def test_structured_message_needs_its_content_length(container):
    client = container.get_blob_client("framed.bin")
    with pytest.raises(HttpResponseError) as info:
        client.upload_blob(_framed(b"x"), headers={"x-ms-structured-body": "XSM/1.0; properties=crc64"})
    assert (info.value.status_code, info.value.error_code) == (400, "MissingRequiredHeader")
    assert not client.exists()


def test_unknown_structured_message_version_is_refused(container):
    client = container.get_blob_client("framed.bin")
    with pytest.raises(HttpResponseError) as info:
        client.upload_blob(b"x", headers={"x-ms-structured-body": "XSM/2.0; properties=crc64", "x-ms-structured-content-length": "1"})
    assert (info.value.status_code, info.value.error_code) == (400, "InvalidHeaderValue")


# ---- properties, metadata, headers, delete ------------------------------------------------------------------


def test_blob_properties_describe_the_upload(container):
    client = _upload(container, "props.txt", b"0123456789",
                     content_settings=ContentSettings(content_type="text/plain"), metadata={"origin": "test"})
    props = client.get_blob_properties()
    assert props.size == 10
    assert props.content_settings.content_type == "text/plain"
    assert props.etag
    assert props.metadata == {"origin": "test"}
    assert props.blob_type == "BlockBlob"


def test_blob_metadata_round_trips(container):
    client = _upload(container, "meta.txt", metadata={"a": "1"})
    client.set_blob_metadata({"b": "2", "c": "three"})
    assert client.get_blob_properties().metadata == {"b": "2", "c": "three"}


def test_set_http_headers_round_trips(container):
    client = _upload(container, "headers.txt")
    client.set_http_headers(ContentSettings(content_type="application/json", content_language="de",
                                            content_disposition="attachment", cache_control="no-cache"))
    settings = client.get_blob_properties().content_settings
    assert (settings.content_type, settings.content_language, settings.content_disposition,
            settings.cache_control) == ("application/json", "de", "attachment", "no-cache")


def test_set_blob_metadata_changes_the_etag(container):
    client = _upload(container, "etag.txt")
    before = client.get_blob_properties().etag
    client.set_blob_metadata({"x": "y"})
    assert client.get_blob_properties().etag != before


def test_deleted_blob_is_blob_not_found(container):
    client = _upload(container, "gone.txt")
    client.delete_blob()
    exc = bs.expect_blob_error(lambda: client.download_blob().readall(), 404, "BlobNotFound")
    assert isinstance(exc, ResourceNotFoundError)


# ---- listing ------------------------------------------------------------------------------------------------


def _populate(container, names):
    for name in names:
        _upload(container, name, name.encode())


def test_list_blobs_by_prefix(container):
    _populate(container, ["logs/1.txt", "logs/2.txt", "logsbook.txt", "data/1.txt"])
    assert [b.name for b in container.list_blobs(name_starts_with="logs/")] == ["logs/1.txt", "logs/2.txt"]


def test_list_blobs_pages_across_several_pages(container):
    names = [f"item-{i:02d}" for i in range(5)]
    _populate(container, names)
    pages = [[b.name for b in page] for page in container.list_blobs(results_per_page=2).by_page()]
    assert len(pages) >= 3 and all(len(page) <= 2 for page in pages), pages
    assert [name for page in pages for name in page] == names


def test_walk_blobs_yields_virtual_directories(container):
    _populate(container, ["top.txt", "dir1/a.txt", "dir1/sub/b.txt", "dir2/c.txt"])
    items = list(container.walk_blobs(delimiter="/"))
    prefixes = sorted(i.name for i in items if isinstance(i, BlobPrefix))
    blobs = sorted(i.name for i in items if not isinstance(i, BlobPrefix))
    assert prefixes == ["dir1/", "dir2/"]
    assert blobs == ["top.txt"]


def test_walk_blobs_inside_a_virtual_directory(container):
    _populate(container, ["top.txt", "dir1/a.txt", "dir1/sub/b.txt"])
    items = list(container.walk_blobs(name_starts_with="dir1/", delimiter="/"))
    assert sorted(i.name for i in items if isinstance(i, BlobPrefix)) == ["dir1/sub/"]
    assert sorted(i.name for i in items if not isinstance(i, BlobPrefix)) == ["dir1/a.txt"]


def test_list_blobs_includes_metadata_on_request(container):
    _upload(container, "m1.txt", metadata={"k": "v1"})
    _upload(container, "m2.txt", metadata={"k": "v2"})
    listed = {b.name: b.metadata for b in container.list_blobs(include=["metadata"])}
    assert listed == {"m1.txt": {"k": "v1"}, "m2.txt": {"k": "v2"}}


def test_list_blobs_reports_sizes(container):
    _upload(container, "three.bin", b"abc")
    _upload(container, "five.bin", b"abcde")
    assert {b.name: b.size for b in container.list_blobs()} == {"five.bin": 5, "three.bin": 3}


# ---- conditional requests --------------------------------------------------------------------------------------


def test_upload_if_not_modified_fails_after_the_blob_changed(container):
    client = _upload(container, "cond.txt", b"v1")
    stale_etag = client.get_blob_properties().etag
    client.upload_blob(b"v2", overwrite=True)

    bs.expect_blob_error(
        lambda: client.upload_blob(b"v3", overwrite=True, etag=stale_etag,
                                   match_condition=MatchConditions.IfNotModified),
        412, "ConditionNotMet",
    )
    assert client.download_blob().readall() == b"v2"


def test_upload_if_not_modified_succeeds_with_the_current_etag(container):
    client = _upload(container, "cond-ok.txt", b"v1")
    etag = client.get_blob_properties().etag
    client.upload_blob(b"v2", overwrite=True, etag=etag, match_condition=MatchConditions.IfNotModified)
    assert client.download_blob().readall() == b"v2"


def test_if_modified_since_in_the_future_is_not_modified(container):
    # azure-storage-blob 12.31.1 surfaces a 304 as a plain HttpResponseError (or, when x-ms-error-code is
    # ConditionNotMet, as ResourceModifiedError), never as ResourceNotModifiedError: check the status.
    client = _upload(container, "ims.txt", b"data")
    exc = bs.expect_http_error(lambda: client.download_blob(if_modified_since=bs.utc_in(days=1)).readall())
    assert exc.status_code == 304


# ---- names -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["with space.txt", "ünïcødé/日本語 ファイル.txt", "a/b/c/deep.txt", "sym+bols&=%;,!'().txt"],
    ids=["space", "unicode", "slashes", "symbols"],
)
def test_awkward_blob_names_round_trip(container, name):
    _upload(container, name, name.encode())
    assert [b.name for b in container.list_blobs()] == [name]
    assert container.get_blob_client(name).download_blob().readall() == name.encode()
