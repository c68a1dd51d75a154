"""Customer-managed key changes do not depend on how much data an account holds.

On a running byos (bench/keyvault.sh starts one; DATA_DIR is its data dir): two accounts under a
customer key, one holding 1 MiB and one 1 GiB. For each, times the three key changes an operator
makes (a new version of the key, another key, back to Microsoft-managed keys) as ARM PATCHes, and
checks that no stored object changed (same files, sizes and modification times), so no byte was
re-encrypted. Prints one line per change with both times.

Usage: .venv/bin/python bench/cmk_rotation.py DATA_DIR
"""

import os
import sys
import time

from azure.keyvault.keys import KeyClient
from azure.mgmt.storage import StorageManagementClient
from azure.mgmt.storage.models import (
    Encryption, Identity, KeyVaultProperties, Sku, StorageAccountCreateParameters, StorageAccountUpdateParameters,
)
from azure.storage.blob import BlobServiceClient

import bench_support

MIB = 1024 * 1024
SIZES = {"1 MiB": MIB, "1 GiB": 1024 * MIB}
REPEATS = 5


def objects_state(data_dir):
    """{object path: (size, mtime_ns)} of every stored object."""
    root = os.path.join(data_dir, "objects")
    state = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != "tmp"]
        for name in files:
            stat = os.stat(os.path.join(dirpath, name))
            state[os.path.join(dirpath, name)] = (stat.st_size, stat.st_mtime_ns)
    return state


def fill(blobs, size):
    """Uploads `size` bytes in 64 MiB blobs (streamed in 4 MiB blocks)."""
    container = blobs.create_container("data")
    piece = os.urandom(64 * MIB) if size >= 64 * MIB else os.urandom(size)
    for i in range(max(1, size // len(piece))):
        container.upload_blob(f"part-{i}", piece, max_concurrency=2)


def main(data_dir):
    a = bench_support.admin(data_dir)
    ca, cred, common = a.ca, a.cred, a.common
    vault = bench_support.group_and_vault(a, "cmkrot")
    uri = vault.properties.vault_uri
    keys = KeyClient(uri, cred, verify_challenge_resource=False, connection_verify=ca)
    for name in ("first", "second"):
        keys.create_rsa_key(name, size=2048)
    storage = StorageManagementClient(cred, a.sub, **common)

    def encryption(key_name):
        if key_name is None:
            return Encryption(key_source="Microsoft.Storage")
        return Encryption(key_source="Microsoft.Keyvault", key_vault_properties=KeyVaultProperties(key_name=key_name, key_vault_uri=uri))

    def patch(account, key_name):
        start = time.perf_counter()
        storage.storage_accounts.update("cmkrot", account, StorageAccountUpdateParameters(encryption=encryption(key_name)))
        return (time.perf_counter() - start) * 1000

    accounts = {}
    for label, size in SIZES.items():
        name = f"cmkrot{size // MIB}"
        account = storage.storage_accounts.begin_create("cmkrot", name, StorageAccountCreateParameters(
            sku=Sku(name="Standard_LRS"), kind="StorageV2", location="eastus", identity=Identity(type="SystemAssigned"))).result()
        bench_support.assign(a, vault.id, bench_support.CRYPTO_SERVICE_ENCRYPTION_USER, account.identity.principal_id)
        patch(name, "first")
        key = storage.storage_accounts.list_keys("cmkrot", name).keys_property[0].value
        fill(BlobServiceClient(account.primary_endpoints.blob, credential={"account_name": name, "account_key": key}, connection_verify=ca), size)
        accounts[label] = name

    before = objects_state(data_dir)
    stored = sum(size for size, _ in before.values())
    changes = [("new version of the key", "first"), ("another key", "second"), ("back to Microsoft-managed keys", None),
               ("customer key again", "first")]
    times = {label: {change: [] for change, _ in changes} for label in SIZES}
    for _ in range(REPEATS):
        for change, key_name in changes:
            if change == "new version of the key":
                keys.create_rsa_key("first", size=2048)
            for label, account in accounts.items():
                times[label][change].append(patch(account, key_name))
    after = objects_state(data_dir)
    assert after == before, "a key change rewrote stored objects"

    print(f"CMK key changes (ARM PATCH, median of {REPEATS}; {stored / MIB:.0f} MiB of objects, none rewritten)")
    for change, _ in changes:
        cells = "   ".join(f"{label}: {sorted(times[label][change])[REPEATS // 2]:7.1f} ms" for label in SIZES)
        print(f"  {change:32s} {cells}")


if __name__ == "__main__":
    main(sys.argv[1])
