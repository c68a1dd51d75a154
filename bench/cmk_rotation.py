"""Customer-managed key changes do not depend on how much data an account holds.

On a running byos (bench/keyvault.sh starts one; DATA_DIR is its data dir): two accounts under a
customer key, one holding 1 MiB and one 1 GiB. For each, times the three key changes an operator
makes (a new version of the key, another key, back to Microsoft-managed keys) as ARM PATCHes, and
checks that no stored object changed (same files, sizes and modification times), so no byte was
re-encrypted. Prints one line per change with both times.

Usage: .venv/bin/python bench/cmk_rotation.py DATA_DIR
"""

import json
import os
import sys
import time
import uuid

from azure.identity import ClientSecretCredential
from azure.keyvault.keys import KeyClient
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.models import RoleAssignmentCreateParameters
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.storage import StorageManagementClient
from azure.mgmt.storage.models import (
    Encryption, Identity, KeyVaultProperties, Sku, StorageAccountCreateParameters, StorageAccountUpdateParameters,
)
from azure.storage.blob import BlobServiceClient

MIB = 1024 * 1024
SIZES = {"1 MiB": MIB, "1 GiB": 1024 * MIB}
CRYPTO_SERVICE_ENCRYPTION_USER = "e147488a-f6f5-4113-8e2d-b22465e65bf6"
CRYPTO_OFFICER = "14b46e9e-c2b7-41b4-b07b-48a6ebf60603"
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
    boot = json.load(open(os.path.join(data_dir, "bootstrap.json")))
    ca, sub, tenant = boot["ca_file"], boot["subscription_id"], boot["tenant_id"]
    cred = ClientSecretCredential(tenant, boot["admin"]["client_id"], boot["admin"]["client_secret"],
                                  authority=boot["authority"], disable_instance_discovery=True, connection_verify=ca)
    common = dict(base_url=boot["resource_manager"], credential_scopes=["https://management.azure.com/.default"], connection_verify=ca)
    ResourceManagementClient(cred, sub, **common).resource_groups.create_or_update("cmkrot", {"location": "eastus"})
    auth = AuthorizationManagementClient(cred, sub, **common)

    def assign(scope, role, principal):
        auth.role_assignments.create(scope, str(uuid.uuid4()), RoleAssignmentCreateParameters(
            role_definition_id=f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{role}",
            principal_id=principal, principal_type="ServicePrincipal"))

    vault = KeyVaultManagementClient(cred, sub, **common).vaults.begin_create_or_update("cmkrot", "cmkrot", {
        "location": "eastus",
        "properties": {"tenantId": tenant, "sku": {"family": "A", "name": "standard"}, "enablePurgeProtection": True,
                       "enableRbacAuthorization": True},
    }).result()
    uri = vault.properties.vault_uri
    assign(vault.id, CRYPTO_OFFICER, boot["admin"]["object_id"])
    keys = KeyClient(uri, cred, verify_challenge_resource=False, connection_verify=ca)
    for name in ("first", "second"):
        keys.create_rsa_key(name, size=2048)
    storage = StorageManagementClient(cred, sub, **common)

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
        assign(vault.id, CRYPTO_SERVICE_ENCRYPTION_USER, account.identity.principal_id)
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
