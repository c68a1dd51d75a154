"""Prepares the Key Vault benchmark on a running byos and prints what wrk needs as JSON: a vault with
an RSA-2048 key (the admin holds an all-keys access policy), a wrapped value and a token for the
keys data plane; and two storage accounts with a 4 KiB blob each, one on service-managed keys and one
on a customer-managed key in that vault, plus a Storage Blob Data Reader token for both."""

import base64
import json
import os
import sys

from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm
from azure.mgmt.storage import StorageManagementClient
from azure.storage.blob import BlobServiceClient

import bench_support

CRYPTO_SERVICE_ENCRYPTION_USER = bench_support.CRYPTO_SERVICE_ENCRYPTION_USER
BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"


def main(data_dir):
    a = bench_support.admin(data_dir)
    boot, ca, sub, cred, common = a.boot, a.ca, a.sub, a.cred, a.common
    vault = bench_support.group_and_vault(a, "kvbench")
    uri = vault.properties.vault_uri

    def assign(scope, role, principal):
        bench_support.assign(a, scope, role, principal)

    keys = KeyClient(uri, cred, verify_challenge_resource=False, connection_verify=ca)
    key = keys.create_rsa_key("bench", size=2048)
    crypto = CryptographyClient(key, cred, verify_challenge_resource=False, connection_verify=ca)
    wrapped = crypto.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, os.urandom(32)).encrypted_key
    vault_token = cred.get_token("https://vault.azure.net/.default").token

    storage = StorageManagementClient(cred, sub, **common)
    blob_urls = {}
    for name, cmk in (("kvbenchsvc", False), ("kvbenchcmk", True)):
        from azure.mgmt.storage.models import Identity, Sku, StorageAccountCreateParameters
        account = storage.storage_accounts.begin_create("kvbench", name, StorageAccountCreateParameters(
            sku=Sku(name="Standard_LRS"), kind="StorageV2", location="eastus", identity=Identity(type="SystemAssigned"))).result()
        assign(account.id, BLOB_DATA_CONTRIBUTOR, boot["admin"]["object_id"])
        if cmk:
            assign(vault.id, CRYPTO_SERVICE_ENCRYPTION_USER, account.identity.principal_id)
            from azure.mgmt.storage.models import Encryption, KeyVaultProperties, StorageAccountUpdateParameters
            account = storage.storage_accounts.update("kvbench", name, StorageAccountUpdateParameters(encryption=Encryption(
                key_source="Microsoft.Keyvault", key_vault_properties=KeyVaultProperties(key_name="bench", key_vault_uri=uri))))
            assert account.encryption.key_source == "Microsoft.Keyvault"
        blobs = BlobServiceClient(account.primary_endpoints.blob, credential=cred, connection_verify=ca)
        blobs.create_container("bench").upload_blob("blob-4k", os.urandom(4096))
        blob_urls[name] = f"{account.primary_endpoints.blob}bench/blob-4k"
    storage_token = cred.get_token("https://storage.azure.com/.default").token
    print(json.dumps({
        "unwrap_url": f"{key.id}/unwrapkey?api-version=7.5",
        "wrap_url": f"{key.id}/wrapkey?api-version=7.5",
        "unwrap_body": json.dumps({"alg": "RSA-OAEP-256", "value": base64.urlsafe_b64encode(wrapped).decode().rstrip("=")}),
        "wrap_body": json.dumps({"alg": "RSA-OAEP-256", "value": base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")}),
        "vault_token": vault_token,
        "get_service_key": blob_urls["kvbenchsvc"],
        "get_cmk": blob_urls["kvbenchcmk"],
        "storage_token": storage_token,
    }))


if __name__ == "__main__":
    main(sys.argv[1])
