"""What the benchmark setup scripts share: the bootstrap admin's clients on a running byos, an RBAC
vault with purge protection the admin may use, and role assignments."""

import json
import os
import uuid
from types import SimpleNamespace

from azure.identity import ClientSecretCredential
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.models import RoleAssignmentCreateParameters
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient

CRYPTO_OFFICER = "14b46e9e-c2b7-41b4-b07b-48a6ebf60603"
CRYPTO_SERVICE_ENCRYPTION_USER = "e147488a-f6f5-4113-8e2d-b22465e65bf6"


def admin(data_dir):
    """The bootstrap admin on the byos serving `data_dir`: boot facts, credential, ARM client options."""
    boot = json.load(open(os.path.join(data_dir, "bootstrap.json")))
    ca = boot["ca_file"]
    cred = ClientSecretCredential(boot["tenant_id"], boot["admin"]["client_id"], boot["admin"]["client_secret"],
                                  authority=boot["authority"], disable_instance_discovery=True, connection_verify=ca)
    common = dict(base_url=boot["resource_manager"], credential_scopes=["https://management.azure.com/.default"], connection_verify=ca)
    return SimpleNamespace(boot=boot, ca=ca, sub=boot["subscription_id"], tenant=boot["tenant_id"], cred=cred, common=common)


def assign(a, scope, role, principal):
    """Gives `principal` the built-in role `role` (a GUID) at `scope`."""
    AuthorizationManagementClient(a.cred, a.sub, **a.common).role_assignments.create(scope, str(uuid.uuid4()), RoleAssignmentCreateParameters(
        role_definition_id=f"/subscriptions/{a.sub}/providers/Microsoft.Authorization/roleDefinitions/{role}",
        principal_id=principal, principal_type="ServicePrincipal"))


def group_and_vault(a, name):
    """A resource group and an RBAC vault with purge protection, both called `name`; the admin holds Key
    Vault Crypto Officer on the vault. Returns the SDK's Vault."""
    ResourceManagementClient(a.cred, a.sub, **a.common).resource_groups.create_or_update(name, {"location": "eastus"})
    vault = KeyVaultManagementClient(a.cred, a.sub, **a.common).vaults.begin_create_or_update(name, name, {
        "location": "eastus",
        "properties": {"tenantId": a.tenant, "sku": {"family": "A", "name": "standard"}, "enablePurgeProtection": True,
                       "enableRbacAuthorization": True},
    }).result()
    assign(a, vault.id, CRYPTO_OFFICER, a.boot["admin"]["object_id"])
    return vault
