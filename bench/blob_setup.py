"""Prepares both targets of the blob benchmark and prints their URLs as JSON.

byos: a storage account created through ARM with the bootstrap admin, a container, a 1 MiB and a 4 KiB
blob, a read SAS and a write SAS (signed with the account key, verified by byos on every request).
Azurite: the same container and blobs in its well-known dev account, with the same kinds of SAS.
"""

import datetime
import json
import os
import sys

from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.storage import StorageManagementClient
from azure.storage.blob import BlobServiceClient, BlobSasPermissions, generate_blob_sas

import bench_support

AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
SIZES = {"1m": 1024 * 1024, "4k": 4096}


def sas_urls(service, account, key, container):
    expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=2)
    urls = {}
    for name, size in SIZES.items():
        blob = f"blob-{name}"
        service.get_blob_client(container, blob).upload_blob(os.urandom(size), overwrite=True)
        sas = generate_blob_sas(account, container, blob, account_key=key, permission=BlobSasPermissions(read=True), expiry=expiry)
        urls[f"get_{name}"] = f"{service.url.rstrip('/')}/{container}/{blob}?{sas}"
    put_sas = generate_blob_sas(account, container, "put-target", account_key=key, permission=BlobSasPermissions(create=True, write=True), expiry=expiry)
    urls["put_1m"] = f"{service.url.rstrip('/')}/{container}/put-target?{put_sas}"
    return urls


def byos(data_dir):
    a = bench_support.admin(data_dir)
    ca = a.ca
    ResourceManagementClient(a.cred, a.sub, **a.common).resource_groups.create_or_update("bench", {"location": "eastus"})
    storage = StorageManagementClient(a.cred, a.sub, **a.common)
    account = storage.storage_accounts.begin_create("bench", "benchacct", {"sku": {"name": "Standard_LRS"}, "kind": "StorageV2", "location": "eastus"}).result()
    key = storage.storage_accounts.list_keys("bench", "benchacct").keys_property[0].value
    service = BlobServiceClient(account.primary_endpoints.blob, credential={"account_name": "benchacct", "account_key": key}, connection_verify=ca)
    service.create_container("bench")
    return {"account": "benchacct", "key": key, "endpoint": account.primary_endpoints.blob, "ca": ca, **sas_urls(service, "benchacct", key, "bench")}


def azurite(port):
    endpoint = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    connection = f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};BlobEndpoint={endpoint};"
    service = BlobServiceClient.from_connection_string(connection, api_version="2025-01-05")
    service.create_container("bench")
    return sas_urls(service, AZURITE_ACCOUNT, AZURITE_KEY, "bench")


if __name__ == "__main__":
    target, arg = sys.argv[1], sys.argv[2]
    print(json.dumps(byos(arg) if target == "byos" else azurite(int(arg))))
