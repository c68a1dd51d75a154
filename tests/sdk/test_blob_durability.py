"""Crash consistency of blob writes: a server killed (SIGKILL) in the middle of an upload leaves no
partly visible blob, keeps every blob it had acknowledged, and discards the partial data at start."""

import http.client
import os
import ssl
import time
import urllib.parse

from azure.storage.blob import BlobServiceClient

import byos_support as bs

TOTAL = 64 * bs.MIB
SENT_BEFORE_CRASH = 8 * bs.MIB


def _blob_service(account: bs.StorageAccountRef, boot) -> BlobServiceClient:
    # Ports change across restarts (--port 0): ask ARM for the endpoint every time.
    storage = bs.storage_client(boot, bs.admin_credential(boot))
    endpoint = storage.storage_accounts.get_properties(account.rg, account.name).primary_endpoints.blob
    return BlobServiceClient(endpoint, credential=account.shared_key(), connection_verify=boot["ca_file"])


def _start_partial_upload(blob_url: str, sas: str, ca_file: str) -> http.client.HTTPSConnection:
    """Opens a Put Blob announcing TOTAL bytes and sends only SENT_BEFORE_CRASH of them."""
    url = urllib.parse.urlsplit(f"{blob_url}?{sas}")
    connection = http.client.HTTPSConnection(url.hostname, url.port, context=ssl.create_default_context(cafile=ca_file))
    connection.putrequest("PUT", f"{url.path}?{url.query}")
    for name, value in {"Content-Length": str(TOTAL), "x-ms-blob-type": "BlockBlob", "x-ms-version": bs.BLOB_API_VERSION}.items():
        connection.putheader(name, value)
    connection.endheaders()
    piece = os.urandom(bs.MIB)
    for _ in range(SENT_BEFORE_CRASH // bs.MIB):
        connection.send(piece)
    return connection


def test_a_crash_mid_upload_leaves_no_partial_blob_and_keeps_acknowledged_ones(private_server):
    from azure.storage.blob import BlobSasPermissions, generate_blob_sas

    server = private_server()
    boot = server.boot
    admin = bs.admin_credential(boot)
    bs.resource_client(boot, admin).resource_groups.create_or_update("crash", {"location": boot["location"]})
    account = bs.create_storage_account(bs.storage_client(boot, admin), boot, "crash")
    service = _blob_service(account, boot)
    container = service.create_container("data")
    acknowledged = os.urandom(3 * bs.MIB)
    container.upload_blob("kept.bin", acknowledged)

    key = account.keys["key1"]
    sas = generate_blob_sas(account.name, "data", "partial.bin", account_key=key,
                            permission=BlobSasPermissions(create=True, write=True),
                            expiry=bs.utc_in(hours=1))
    connection = _start_partial_upload(f"{account.blob_url.rstrip('/')}/data/partial.bin", sas, boot["ca_file"])
    time.sleep(0.5)  # let the server take in what was sent
    partial_files = list((server.data_dir / "objects" / "tmp").iterdir())
    assert partial_files, "the upload in progress should be staged in objects/tmp"

    server.proc.kill()
    server.proc.wait()
    server._forget_process()
    connection.close()
    boot = server.start()

    assert not list((server.data_dir / "objects" / "tmp").iterdir()), "partial data is discarded at start"
    service = _blob_service(account, boot)
    container = service.get_container_client("data")
    assert not container.get_blob_client("partial.bin").exists(), "an unacknowledged upload must not be visible"
    assert container.get_blob_client("kept.bin").download_blob().readall() == acknowledged
    assert [b.name for b in container.list_blobs()] == ["kept.bin"]


def test_racing_overwrites_leave_only_the_winners_data(server, container):
    """Sixteen clients overwrite one blob at once (unconditional Put Blob: last writer wins, as in Azure).
    Each commit removes exactly the version it replaced, so no object is left behind for the sweeper."""
    from concurrent.futures import ThreadPoolExecutor

    client = container.get_blob_client("contended.bin")
    client.upload_blob(os.urandom(64 * 1024))
    before = len(bs.object_hashes(server.data_dir))
    payloads = [os.urandom(64 * 1024) for _ in range(64)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda data: client.upload_blob(data, overwrite=True), payloads))
    assert client.download_blob().readall() in payloads
    assert len(bs.object_hashes(server.data_dir)) == before, "replaced versions left objects behind"
