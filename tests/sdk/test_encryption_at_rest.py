"""Encryption at rest: nothing a customer stored, and no account key, appears in plaintext anywhere in the
session server's data dir (read while the server runs: whatever it acknowledged is already on disk).
"""

import base64
import secrets

import pytest

import byos_support as bs

CANARY_BLOB_SIZE = 256 * 1024


@pytest.fixture(scope="module")
def canaries(shared_service, shared_account, server):
    """Upload a blob made of a random canary and a blob whose metadata holds another, read both back, then
    scan the data dir for both canaries and both account keys (as base64 text and as raw bytes)."""
    content_canary = secrets.token_hex(32)  # 64 hex characters
    metadata_canary = f"meta{secrets.token_hex(16)}"
    content = (content_canary.encode() * (CANARY_BLOB_SIZE // len(content_canary) + 1))[:CANARY_BLOB_SIZE]

    container = bs.new_container(shared_service, "canary")
    blob = container.get_blob_client("canary.bin")
    blob.upload_blob(content, metadata={"secret": metadata_canary})
    assert blob.download_blob().readall() == content
    assert blob.get_blob_properties().metadata == {"secret": metadata_canary}

    needles = {"content": content_canary.encode(), "metadata": metadata_canary.encode()}
    for name, key in shared_account.keys.items():
        needles[f"{name} text"] = key.encode()
        needles[f"{name} raw"] = base64.b64decode(key)
    found, scanned = bs.scan_files_for(server.data_dir, needles)
    return found, scanned


def test_data_dir_holds_the_stored_data(canaries):
    # The scan is only meaningful if the (encrypted) blob is in there: at least its size was read.
    _, scanned = canaries
    assert scanned >= CANARY_BLOB_SIZE, scanned


def test_blob_content_is_not_stored_in_plaintext(canaries):
    found, _ = canaries
    assert found["content"] == []


def test_blob_metadata_is_not_stored_in_plaintext(canaries):
    found, _ = canaries
    assert found["metadata"] == []


@pytest.mark.parametrize("key_name", ["key1", "key2"])
@pytest.mark.parametrize("form", ["text", "raw"])
def test_account_keys_are_not_stored_in_plaintext(canaries, key_name, form):
    found, _ = canaries
    assert found[f"{key_name} {form}"] == []
