"""Prepares the Key Vault benchmark on a running byos and prints what wrk needs as JSON: a vault with
an RSA-2048 key (the admin holds an all-keys access policy), a wrapped value and a token for the
keys data plane; and two storage accounts with a 4 KiB blob each, one on service-managed keys and one
on a customer-managed key in that vault, plus a Storage Blob Data Reader token for both."""

import base64
import json
import os
import sys

from azure.identity import ClientSecretCredential
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.storage import StorageManagementClient
from azure.storage.blob import BlobServiceClient

CRYPTO_SERVICE_ENCRYPTION_USER = "e147488a-f6f5-4113-8e2d-b22465e65bf6"
BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"


def main(data_dir):
    boot = json.load(open(os.path.join(data_dir, "bootstrap.json")))
    ca, sub, tenant = boot["ca_file"], boot["subscription_id"], boot["tenant_id"]
    cred = ClientSecretCredential(tenant, boot["admin"]["client_id"], boot["admin"]["client_secret"],
                                  authority=boot["authority"], disable_instance_discovery=True, connection_verify=ca)
    common = dict(base_url=boot["resource_manager"], credential_scopes=["https://management.azure.com/.default"], connection_verify=ca)
    ResourceManagementClient(cred, sub, **common).resource_groups.create_or_update("kvbench", {"location": "eastus"})
    kv = KeyVaultManagementClient(cred, sub, **common)
    vault = kv.vaults.begin_create_or_update("kvbench", "kvbench", {
        "location": "eastus",
        "properties": {"tenantId": tenant, "sku": {"family": "A", "name": "standard"}, "enablePurgeProtection": True,
                       "enableRbacAuthorization": True},
    }).result()
    uri = vault.properties.vault_uri
    auth = AuthorizationManagementClient(cred, sub, **common)

    def assign(scope, role, principal):
        import uuid
        from azure.mgmt.authorization.models import RoleAssignmentCreateParameters
        auth.role_assignments.create(scope, str(uuid.uuid4()), RoleAssignmentCreateParameters(
            role_definition_id=f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{role}",
            principal_id=principal, principal_type="ServicePrincipal"))

    assign(vault.id, "14b46e9e-c2b7-41b4-b07b-48a6ebf60603", boot["admin"]["object_id"])  # Crypto Officer
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
