"""Customer-managed keys (CMK) for storage accounts: an account's key-encryption key (KEK) protected by an RSA
key in the customer's Key Vault, used by byos as the account's managed identity.

Setup, as in Azure: a vault with purge protection, an RSA 2048 key in it, an account with a managed identity,
and that identity given the key (Key Vault Crypto Service Encryption User at the vault's scope on an RBAC vault,
or an access policy with get/wrapKey/unwrapKey); then `encryption.keySource = Microsoft.Keyvault` on update
(or on create). Every test server runs with BYOS_CMK_CACHE_SECONDS=1 (conftest), so taking the key away shows
on the data plane within about a second; tests poll (bs.poll / bs.wait_until) instead of sleeping.

Sections: enabling (the account's view, the data), preconditions (refused updates change nothing),
revocation and restoration (role / access policy / key disabled / key deleted), rotation without
re-encryption and version pinning, going back to Microsoft-managed keys, and finally the vault's audit log
(`byos audit list|verify`).

Tests that only read share one account per fixture (module scope); anything that takes the key away, rotates
it or turns CMK off gets an account (and key) of its own. All keys live in a few module vaults, each account
with its own key name.
"""

import hashlib
import json
import os
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.storage.models import Identity

import byos_support as bs

BEFORE, AFTER = "before.bin", "after.bin"  # written before / after CMK was turned on
SMALL_BLOB_SIZE = 64 * 1024
ROTATION_BLOB_SIZE = 3 * bs.MIB
# How long tests watch for something that must NOT happen (a pinned version replaced, a read refused after
# CMK was turned off): three times the servers' 1 s cache, so at least two refreshes fall inside it.
QUIET_WINDOW_S = 3.0


# ---- what a test works with ------------------------------------------------------------------------------


@dataclass
class Cmk:
    """One account set up for a customer key, and the blobs stored in it (name -> content)."""

    vault: bs.VaultRef
    keys: Any  # the admin's KeyClient on the vault
    key: Any  # the KeyVaultKey (version) that was current when the account was set up
    account: bs.StorageAccountRef
    principal_id: str | None  # the identity byos uses the key as (None: the account has no identity)
    uami_id: str | None  # that identity's resource id when it is user-assigned
    grant: Any  # the RoleAssignment giving the identity the key (RBAC vault), else None
    service: Any  # a Shared Key BlobServiceClient on the account
    container: str
    blobs: dict[str, bytes]
    enabled: Any = None  # the account as the enabling update returned it (None if CMK was not turned on)
    enabled_at: float = 0.0  # time.monotonic() right after that update

    @property
    def key_name(self) -> str:
        return self.key.name

    @property
    def version(self) -> str:
        return self.key.properties.version

    def blob(self, name: str):
        return self.service.get_blob_client(self.container, name)

    def store(self, name: str, data: bytes) -> None:
        self.blob(name).upload_blob(data, overwrite=True, metadata={"phase": name.split(".")[0]})
        self.blobs[name] = data

    def read(self, name: str) -> bytes:
        return self.blob(name).download_blob().readall()

    def all_readable(self) -> bool:
        """Every stored blob reads back as written (raises HttpResponseError if one is refused)."""
        return all(self.read(name) == data for name, data in self.blobs.items())

    def read_failure(self) -> str | None:
        """None if every stored blob reads back as written, else what went wrong (for polling and fixtures
        that must not fail themselves)."""
        for name, data in self.blobs.items():
            try:
                if self.read(name) != data:
                    return f"{name}: content differs"
            except HttpResponseError as exc:
                return f"{name}: {exc.status_code} {bs.text_of(getattr(exc, 'error_code', None))}"
        return None

    def listing(self) -> dict[str, dict[str, str]]:
        """{blob name: metadata} from List Blobs with include=metadata."""
        container = self.service.get_container_client(self.container)
        return {b.name: b.metadata for b in container.list_blobs(include=["metadata"])}


def _is_rbac(vault: bs.VaultRef) -> bool:
    return bool(vault.resource.properties.enable_rbac_authorization)


def _grant(admin, vault: bs.VaultRef, principal_id: str, key_permissions=bs.CMK_KEY_PERMISSIONS):
    """Give the identity the customer key: the role at the vault's scope (returned), or an access policy."""
    if _is_rbac(vault):
        return admin.assign(vault.id, bs.KEY_VAULT_CRYPTO_SERVICE_ENCRYPTION_USER, principal_id)
    bs.update_access_policy(admin.keyvault, vault, "add", admin.tenant_id, principal_id, key_permissions)
    return None


def _take_grant_away(admin, cmk: Cmk) -> None:
    if _is_rbac(cmk.vault):
        admin.auth.role_assignments.delete(cmk.vault.id, cmk.grant.name)
        cmk.grant = None
    else:
        bs.update_access_policy(admin.keyvault, cmk.vault, "remove", admin.tenant_id, cmk.principal_id,
                                bs.CMK_KEY_PERMISSIONS)


def _versioned_id(cmk: Cmk, version: str) -> str:
    return cmk.vault.key_id(cmk.key_name, version)


def _key_vault_properties(admin, cmk: Cmk):
    encryption = bs.account_encryption(admin.storage, cmk.account)
    return encryption.key_vault_properties if encryption is not None else None


def _current_key_id(admin, cmk: Cmk) -> str:
    kv = _key_vault_properties(admin, cmk)
    return (kv.current_versioned_key_identifier if kv is not None else None) or ""


def _has_no_key_vault_properties(kv) -> bool:
    return kv is None or not (kv.key_name or kv.key_vault_uri or kv.key_version or kv.current_versioned_key_identifier)


def _arm_error(exc: HttpResponseError) -> dict:
    return json.loads(exc.response.text())["error"]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _diff(before: dict[str, str], after: dict[str, str]) -> str:
    added = sorted(after.keys() - before.keys())
    removed = sorted(before.keys() - after.keys())
    changed = sorted(k for k in before.keys() & after.keys() if before[k] != after[k])
    return f"{len(added)} added {added[:5]}, {len(removed)} removed {removed[:5]}, {len(changed)} changed {changed[:5]}"


# ---- module fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def admin(admin_storage, admin_keyvault, admin_auth, assign, boot):
    """The admin's management clients, for the helpers above."""
    return SimpleNamespace(storage=admin_storage, keyvault=admin_keyvault, auth=admin_auth, assign=assign,
                           tenant_id=boot["tenant_id"])


@pytest.fixture(scope="module")
def rbac_vault(make_vault):
    """An RBAC vault with purge protection; the admin holds Key Vault Crypto Officer at its scope."""
    return make_vault(tag="cmk", rbac=True, purge_protection=True)


@pytest.fixture(scope="module")
def policy_vault(make_vault):
    """An access-policy vault with purge protection; the admin has every key permission."""
    return make_vault(tag="cmkpol", purge_protection=True)


@pytest.fixture(scope="module")
def unprotected_vault(make_vault):
    """An RBAC vault without purge protection (soft delete only)."""
    return make_vault(tag="cmknopp", rbac=True)


@pytest.fixture(scope="module")
def firewall_vault(make_vault):
    """An access-policy vault with purge protection behind a firewall: only 127.0.0.1 (the tests' admin) and,
    through bypass AzureServices, the Azure services Key Vault trusts (storage among them)."""
    return make_vault(tag="cmkfw", purge_protection=True, network_acls=bs.network_rules(ips=("127.0.0.1",)))


def _closed_vault(make_vault) -> bs.VaultRef:
    """A new purge-protected vault whose firewall admits 127.0.0.1 but trusts no Azure service."""
    return make_vault(tag="cmkfwno", purge_protection=True, network_acls=bs.network_rules(bypass="None", ips=("127.0.0.1",)))


@pytest.fixture(scope="module")
def make_cmk(make_rg, make_account, make_identity, key_client, admin_cred, admin, ca, rbac_vault):
    """`make_cmk(vault=None, identity="system", grant=True, enable=True)`: a new RSA 2048 key (its own name) in
    `vault` (default: the RBAC vault), a new account in a new group with a system-assigned identity
    (identity="user": a new user-assigned identity; None: no identity), the identity given the key (unless
    grant=False), a container with BEFORE stored, then (if enable) CMK turned on and AFTER stored."""

    def create(vault: bs.VaultRef | None = None, *, identity: str | None = "system", grant: bool = True,
               enable: bool = True) -> Cmk:
        vault = vault or rbac_vault
        keys = key_client(vault.uri, admin_cred)
        key = keys.create_rsa_key(bs.unique("cmk"), size=2048)
        rg = make_rg("cmk")
        uami = None
        if identity == "system":
            account = make_account(rg, tag="cmk", identity=Identity(type="SystemAssigned"))
            principal_id = account.resource.identity.principal_id
        elif identity == "user":
            uami = make_identity(rg)
            account = make_account(rg, tag="cmkuami", identity=bs.user_assigned(uami.id))
            principal_id = uami.principal_id
        else:
            account = make_account(rg, tag="cmknoid")
            principal_id = None
        role = _grant(admin, vault, principal_id) if grant else None
        service = bs.blob_service(account.blob_url, account.shared_key(), ca)
        container = bs.new_container(service, "cmk").container_name
        cmk = Cmk(vault, keys, key, account, principal_id, uami.id if uami else None, role, service, container, {})
        cmk.store(BEFORE, os.urandom(SMALL_BLOB_SIZE))
        if enable:
            cmk.enabled = bs.enable_cmk(admin.storage, account, vault, key.name, identity=cmk.uami_id)
            cmk.enabled_at = time.monotonic()
            cmk.store(AFTER, os.urandom(SMALL_BLOB_SIZE))
        return cmk

    return create


@pytest.fixture(scope="module")
def shared_cmk(make_cmk):
    """CMK on (RBAC vault, system-assigned identity); tests using it only read."""
    return make_cmk()


# ---- enabling: the account's view ------------------------------------------------------------------------


def test_enabling_cmk_sets_key_source_keyvault(shared_cmk):
    assert bs.text_of(shared_cmk.enabled.encryption.key_source) == bs.KEY_SOURCE_KEYVAULT


def test_enabled_account_names_the_key_and_the_vault(shared_cmk):
    kv = shared_cmk.enabled.encryption.key_vault_properties
    assert kv.key_name == shared_cmk.key_name
    assert kv.key_vault_uri == shared_cmk.vault.uri


def test_enabled_account_reports_the_current_versioned_key(shared_cmk):
    kv = shared_cmk.enabled.encryption.key_vault_properties
    assert kv.current_versioned_key_identifier == _versioned_id(shared_cmk, shared_cmk.version)


def test_enabled_account_has_a_recent_rotation_timestamp(shared_cmk):
    stamp = shared_cmk.enabled.encryption.key_vault_properties.last_key_rotation_timestamp
    assert stamp is not None
    assert bs.utc_in(minutes=-10) < stamp < bs.utc_in(minutes=1), stamp


def test_get_properties_shows_the_customer_key(admin, shared_cmk):
    encryption = bs.account_encryption(admin.storage, shared_cmk.account)
    assert bs.text_of(encryption.key_source) == bs.KEY_SOURCE_KEYVAULT
    kv, enabled = encryption.key_vault_properties, shared_cmk.enabled.encryption.key_vault_properties
    assert (kv.key_name, kv.key_vault_uri, kv.current_versioned_key_identifier) == (
        enabled.key_name, enabled.key_vault_uri, enabled.current_versioned_key_identifier)


# ---- enabling: the data --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [BEFORE, AFTER], ids=["written-before-enabling", "written-after-enabling"])
def test_blob_reads_back_under_cmk(shared_cmk, name):
    assert shared_cmk.read(name) == shared_cmk.blobs[name]


def test_list_blobs_with_metadata_under_cmk(shared_cmk):
    assert shared_cmk.listing() == {BEFORE: {"phase": "before"}, AFTER: {"phase": "after"}}


def test_blob_properties_and_metadata_under_cmk(shared_cmk):
    props = shared_cmk.blob(AFTER).get_blob_properties()
    assert props.size == SMALL_BLOB_SIZE
    assert props.metadata == {"phase": "after"}


def test_access_policy_vault_protects_an_account(make_cmk, policy_vault):
    cmk = make_cmk(policy_vault)
    assert bs.text_of(cmk.enabled.encryption.key_source) == bs.KEY_SOURCE_KEYVAULT
    assert cmk.enabled.encryption.key_vault_properties.current_versioned_key_identifier == \
        _versioned_id(cmk, cmk.version)
    assert cmk.all_readable()


@pytest.mark.parametrize("identity", ["system", "user"])
def test_vault_firewall_admits_the_storage_service_as_a_trusted_service(make_cmk, firewall_vault, identity):
    cmk = make_cmk(firewall_vault, identity=identity)
    assert bs.text_of(cmk.enabled.encryption.key_source) == bs.KEY_SOURCE_KEYVAULT
    assert cmk.all_readable()


def test_a_key_in_another_region_is_accepted_and_reported(make_cmk, admin_keyvault, make_rg, boot, admin):
    from azure.mgmt.keyvault.models import VaultCreateOrUpdateParameters

    other_region = "westus" if boot["location"].lower() != "westus" else "eastus"
    rg, name = make_rg("cmkwest"), bs.vault_name("west")
    created = admin_keyvault.vaults.begin_create_or_update(rg, name, VaultCreateOrUpdateParameters(
        location=other_region, properties=bs.vault_properties(
            boot, enable_purge_protection=True, soft_delete_retention_in_days=7,
            access_policies=[bs.access_policy(boot["tenant_id"], boot["admin"]["object_id"])]))).result()
    vault = bs.VaultRef(rg, name, created.id, created.properties.vault_uri, created)
    cmk = make_cmk(vault, enable=False)
    headers = admin.storage.storage_accounts.update(
        cmk.account.rg, cmk.account.name,
        bs.storage_update_parameters(encryption=bs.cmk_encryption(vault.uri, cmk.key_name)),
        cls=lambda pipeline_response, deserialized, _: dict(pipeline_response.http_response.headers))
    warning = headers.get("x-byos-warning", "")
    assert "cross-region" in warning and other_region in warning and name in warning, headers
    assert bs.text_of(bs.account_encryption(admin.storage, cmk.account).key_source) == bs.KEY_SOURCE_KEYVAULT
    assert cmk.all_readable()


def test_a_key_in_the_same_region_is_not_reported(make_cmk, admin):
    cmk = make_cmk(enable=False)
    headers = admin.storage.storage_accounts.update(
        cmk.account.rg, cmk.account.name,
        bs.storage_update_parameters(encryption=bs.cmk_encryption(cmk.vault.uri, cmk.key_name)),
        cls=lambda pipeline_response, deserialized, _: dict(pipeline_response.http_response.headers))
    assert "x-byos-warning" not in {k.lower() for k in headers}, headers


# ---- enabling with a user-assigned identity -------------------------------------------------------------


@pytest.fixture(scope="module")
def uami_cmk(make_cmk):
    """CMK on through a user-assigned identity (the account's only identity)."""
    return make_cmk(identity="user")


def test_user_assigned_identity_is_the_encryption_identity(uami_cmk):
    encryption = uami_cmk.enabled.encryption
    assert bs.text_of(encryption.key_source) == bs.KEY_SOURCE_KEYVAULT
    assert encryption.encryption_identity.encryption_user_assigned_identity.lower() == uami_cmk.uami_id.lower()


def test_account_keeps_its_user_assigned_identity(uami_cmk):
    identity = uami_cmk.enabled.identity
    assert bs.text_of(identity.type) == "UserAssigned"
    assert {i.lower() for i in identity.user_assigned_identities} == {uami_cmk.uami_id.lower()}


def test_user_assigned_identity_account_serves_blobs(uami_cmk):
    assert uami_cmk.all_readable()


@pytest.fixture(scope="module")
def created_with_cmk(make_rg, make_identity, make_account, key_client, rbac_vault, admin_cred, admin, ca):
    """An account created with CMK on (its user-assigned identity was given the key beforehand)."""
    rg = make_rg("cmk-create")
    uami = make_identity(rg)
    _grant(admin, rbac_vault, uami.principal_id)
    key = key_client(rbac_vault.uri, admin_cred).create_rsa_key(bs.unique("cmk"), size=2048)
    account = make_account(rg, tag="cmknew", identity=bs.user_assigned(uami.id),
                           encryption=bs.cmk_encryption(rbac_vault.uri, key.name, identity=uami.id))
    return SimpleNamespace(account=account, key=key, uami=uami)


def test_account_can_be_created_with_a_customer_key(created_with_cmk, rbac_vault):
    encryption = created_with_cmk.account.resource.encryption
    assert bs.text_of(encryption.key_source) == bs.KEY_SOURCE_KEYVAULT
    key = created_with_cmk.key
    assert encryption.key_vault_properties.current_versioned_key_identifier == \
        rbac_vault.key_id(key.name, key.properties.version)


def test_account_created_with_a_customer_key_stores_blobs(created_with_cmk, ca):
    account = created_with_cmk.account
    service = bs.blob_service(account.blob_url, account.shared_key(), ca)
    container = bs.new_container(service, "cmk").container_name
    data = os.urandom(SMALL_BLOB_SIZE)
    bs.put_blob(service, container, "new.bin", data)
    assert bs.read_blob(service, container, "new.bin") == data


# ---- preconditions: a refused update changes nothing ----------------------------------------------------

REFUSALS = [
    "vault-without-purge-protection",
    "key-does-not-exist",
    "key-version-does-not-exist",
    "identity-without-role",
    "identity-with-get-only-access-policy",
    "account-without-identity",
    "vault-firewall-trusts-no-service",
    "key-is-not-rsa",
]


@pytest.fixture(scope="module", params=REFUSALS)
def refusal(request, make_cmk, admin):
    """An account that must not get CMK for the reason named by the param: the refused update's error (or
    None if it was accepted), the words its message must contain one of, and the account's state after."""
    case = request.param
    enable = {}
    if case == "vault-without-purge-protection":
        cmk = make_cmk(request.getfixturevalue("unprotected_vault"), enable=False)
        words = ("purge protection",)
    elif case == "key-does-not-exist":
        cmk = make_cmk(enable=False)
        enable["key_name"] = bs.unique("nokey")
        words = (enable["key_name"], "not found", "does not exist")
    elif case == "key-version-does-not-exist":
        cmk = make_cmk(enable=False)
        enable["key_version"] = os.urandom(16).hex()
        words = (enable["key_version"], "not found", "does not exist")
    elif case == "identity-without-role":
        cmk = make_cmk(grant=False, enable=False)
        words = ("permission", "access")
    elif case == "identity-with-get-only-access-policy":
        vault = request.getfixturevalue("policy_vault")
        cmk = make_cmk(vault, grant=False, enable=False)
        _grant(admin, vault, cmk.principal_id, key_permissions=("get",))
        words = ("permission", "access")
    elif case == "key-is-not-rsa":
        cmk = make_cmk(enable=False)
        enable["key_name"] = cmk.keys.create_ec_key(bs.unique("ec"), curve="P-256").name
        words = ("RSA",)
    elif case == "vault-firewall-trusts-no-service":
        cmk = make_cmk(_closed_vault(request.getfixturevalue("make_vault")), enable=False)
        words = ("network rules",)
    else:
        assert case == "account-without-identity"
        cmk = make_cmk(identity=None, grant=False, enable=False)
        words = ("identity",)
    enable.setdefault("key_name", cmk.key_name)
    error = bs.refused(lambda: bs.enable_cmk(admin.storage, cmk.account, cmk.vault, **enable))
    return SimpleNamespace(cmk=cmk, error=error, words=words,
                           encryption=bs.account_encryption(admin.storage, cmk.account))


def test_cmk_precondition_failure_is_400_naming_the_cause(refusal):
    assert refusal.error is not None, "the update was accepted"
    error = _arm_error(refusal.error)
    assert refusal.error.status_code == 400, f"{refusal.error.status_code}: {error}"
    assert error.get("code"), error
    message = error["message"].lower()
    assert any(word.lower() in message for word in refusal.words), \
        f"message names none of {refusal.words}: {error['message']}"


def test_refused_cmk_update_keeps_microsoft_managed_keys(refusal):
    assert bs.text_of(refusal.encryption.key_source) == bs.KEY_SOURCE_STORAGE
    assert _has_no_key_vault_properties(refusal.encryption.key_vault_properties), \
        refusal.encryption.key_vault_properties


def test_refused_cmk_update_keeps_blobs_readable(refusal):
    assert refusal.cmk.all_readable()


# ---- revocation and restoration -------------------------------------------------------------------------

# kind -> (the setup it needs, the data-plane error code while the key is out of reach)
REVOCATIONS = {
    "role-assignment-removed": ({}, bs.CMK_ACCESS_LOST),
    "access-policy-removed": ({"vault": "policy_vault"}, bs.CMK_ACCESS_LOST),
    "user-assigned-identity-role-removed": ({"identity": "user"}, bs.CMK_ACCESS_LOST),
    "key-disabled": ({}, bs.CMK_KEY_NOT_FOUND),
    "key-deleted": ({}, bs.CMK_KEY_NOT_FOUND),
    "vault-firewall-stops-trusting-azure-services": ({"vault": "new firewall vault"}, bs.CMK_ACCESS_LOST),
}


def _make_for(request, make_cmk, kind: str) -> Cmk:
    setup = dict(REVOCATIONS[kind][0])
    if setup.get("vault") == "new firewall vault":
        # Revoking closes this vault's firewall, so each use gets a vault of its own.
        make_vault = request.getfixturevalue("make_vault")
        setup["vault"] = make_vault(tag="cmkfw", purge_protection=True, network_acls=bs.network_rules(ips=("127.0.0.1",)))
    elif "vault" in setup:
        setup["vault"] = request.getfixturevalue(setup["vault"])
    return make_cmk(**setup)


def _trusted_services(admin, cmk: Cmk, bypass: str) -> None:
    bs.update_vault(admin.keyvault, cmk.vault, network_acls=bs.network_rules(bypass=bypass, ips=("127.0.0.1",)))


def _revoke(admin, cmk: Cmk, kind: str) -> None:
    if kind == "vault-firewall-stops-trusting-azure-services":
        _trusted_services(admin, cmk, "None")
    elif kind == "key-disabled":
        cmk.keys.update_key_properties(cmk.key_name, enabled=False)
    elif kind == "key-deleted":
        bs.finished(cmk.keys.begin_delete_key(cmk.key_name))
    else:
        _take_grant_away(admin, cmk)


def _restore(admin, cmk: Cmk, kind: str) -> None:
    if kind == "vault-firewall-stops-trusting-azure-services":
        _trusted_services(admin, cmk, "AzureServices")
    elif kind == "key-disabled":
        cmk.keys.update_key_properties(cmk.key_name, enabled=True)
    elif kind == "key-deleted":
        bs.finished(cmk.keys.begin_recover_deleted_key(cmk.key_name))
    else:
        cmk.grant = _grant(admin, cmk.vault, cmk.principal_id)


def _revoke_and_wait(admin, cmk: Cmk, kind: str) -> HttpResponseError | None:
    """Read everything (so the server holds the unwrapped KEK in its cache), take the key away, and poll a
    read until it is refused; returns that refusal (None if reads kept working for POLL_TIMEOUT_S)."""
    assert cmk.all_readable()
    _revoke(admin, cmk, kind)
    return bs.poll(lambda: bs.refused(lambda: cmk.read(BEFORE)))


@pytest.fixture(scope="module", params=list(REVOCATIONS))
def revoked(request, make_cmk, admin):
    """An account whose customer key was taken away in the way the param names (after a read warmed the
    server's cache), once reads are refused (or POLL_TIMEOUT_S passed)."""
    cmk = _make_for(request, make_cmk, request.param)
    _revoke_and_wait(admin, cmk, request.param)
    return SimpleNamespace(cmk=cmk, kind=request.param, code=REVOCATIONS[request.param][1])


DATA_OPERATIONS = [
    pytest.param(lambda c: c.read(BEFORE), id="download_blob-written-before-enabling"),
    pytest.param(lambda c: c.read(AFTER), id="download_blob-written-after-enabling"),
    pytest.param(lambda c: c.blob(bs.unique("new")).upload_blob(b"new data"), id="upload_blob"),
    pytest.param(lambda c: c.blob(AFTER).get_blob_properties(), id="get_blob_properties"),
    pytest.param(lambda c: c.listing(), id="list_blobs-include-metadata"),
]


@pytest.mark.parametrize("operation", DATA_OPERATIONS)
def test_data_operation_is_denied_while_the_customer_key_is_out_of_reach(revoked, operation):
    bs.expect_blob_denial(lambda: operation(revoked.cmk), 403, revoked.code)


@pytest.mark.parametrize("kind", list(REVOCATIONS))
def test_restoring_the_customer_key_makes_the_blobs_readable_again(request, make_cmk, admin, kind):
    cmk = _make_for(request, make_cmk, kind)
    denied = _revoke_and_wait(admin, cmk, kind)
    assert isinstance(denied, HttpResponseError), f"reads were never refused after {kind}"

    _restore(admin, cmk, kind)
    bs.wait_until(cmk.all_readable, ignore=(HttpResponseError,), what=f"blobs readable again after undoing {kind}")


# ---- rotation without re-encryption -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rotated(make_cmk, admin, server):
    """A 3 MiB blob stored under CMK, the data dir's objects hashed, a new version of the customer key
    created; then the account's key properties polled until they name the new version, every blob read, and
    the objects hashed again."""
    cmk = make_cmk()
    big = os.urandom(ROTATION_BLOB_SIZE)
    cmk.store("big.bin", big)
    before = _key_vault_properties(admin, cmk)
    # A rotation timestamp only one second finer than the enabling one must still be able to differ.
    time.sleep(max(0.0, 1.1 - (time.monotonic() - cmk.enabled_at)))
    hashes_before = bs.object_hashes(server.data_dir)

    new_key = cmk.keys.create_rsa_key(cmk.key_name, size=2048)
    after = bs.poll(lambda: _key_vault_properties(admin, cmk),
                    until=lambda kv: (getattr(kv, "current_versioned_key_identifier", None) or "").endswith(
                        new_key.properties.version))
    read_failure = cmk.read_failure()
    return SimpleNamespace(cmk=cmk, big=big, before=before, after=after, new_key=new_key, read_failure=read_failure,
                           hashes_before=hashes_before, hashes_after=bs.object_hashes(server.data_dir))


def test_rotation_follows_the_new_key_version(rotated):
    assert rotated.after.current_versioned_key_identifier == \
        _versioned_id(rotated.cmk, rotated.new_key.properties.version)


def test_rotation_updates_the_last_key_rotation_timestamp(rotated):
    first, second = rotated.before.last_key_rotation_timestamp, rotated.after.last_key_rotation_timestamp
    assert first is not None and second is not None
    assert second > first, (first, second)


def test_blob_reads_back_identical_after_rotation(rotated):
    assert rotated.read_failure is None, rotated.read_failure
    assert _sha256(rotated.cmk.read("big.bin")) == _sha256(rotated.big)


def test_rotation_rewrites_no_stored_object(rotated):
    assert rotated.hashes_before, "no objects under DATA_DIR/objects"
    assert rotated.hashes_after == rotated.hashes_before, _diff(rotated.hashes_before, rotated.hashes_after)


@pytest.fixture(scope="module")
def pinned(make_cmk, admin):
    """CMK on version 1 of the key; version 2 created; the account pinned to version 1; version 3 created and
    the account watched (with reads) for QUIET_WINDOW_S or until it names another version."""
    cmk = make_cmk()
    cmk.keys.create_rsa_key(cmk.key_name, size=2048)
    updated = bs.enable_cmk(admin.storage, cmk.account, cmk.vault, cmk.key_name, key_version=cmk.version)
    cmk.keys.create_rsa_key(cmk.key_name, size=2048)

    def current():
        cmk.read_failure()  # reads give a server that follows new versions on a cache refresh its chance
        return _current_key_id(admin, cmk)

    later = bs.poll(current, until=lambda key_id: not key_id.endswith(cmk.version), timeout=QUIET_WINDOW_S)
    return SimpleNamespace(cmk=cmk, updated=updated, later=later)


def test_pinned_key_version_is_the_current_versioned_key(pinned):
    kv = pinned.updated.encryption.key_vault_properties
    assert kv.key_version == pinned.cmk.version
    assert kv.current_versioned_key_identifier == _versioned_id(pinned.cmk, pinned.cmk.version)


def test_pinned_key_version_stays_when_a_new_version_is_created(pinned):
    assert pinned.later == _versioned_id(pinned.cmk, pinned.cmk.version)


# ---- back to Microsoft-managed keys ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cmk_turned_off(make_cmk, admin, server):
    """CMK on, objects hashed, then keySource Microsoft.Storage; the update's answer, GET's, every blob read
    and the objects hashed again."""
    cmk = make_cmk()
    hashes_before = bs.object_hashes(server.data_dir)
    updated = bs.disable_cmk(admin.storage, cmk.account)
    got = bs.account_encryption(admin.storage, cmk.account)
    return SimpleNamespace(cmk=cmk, updated=updated, got=got, read_failure=cmk.read_failure(),
                           hashes_before=hashes_before,
                           hashes_after=bs.object_hashes(server.data_dir))


@pytest.mark.parametrize("view", ["update", "get"])
def test_turning_cmk_off_restores_microsoft_managed_keys(cmk_turned_off, view):
    encryption = cmk_turned_off.updated.encryption if view == "update" else cmk_turned_off.got
    assert bs.text_of(encryption.key_source) == bs.KEY_SOURCE_STORAGE
    assert _has_no_key_vault_properties(encryption.key_vault_properties), encryption.key_vault_properties


def test_blobs_read_back_after_turning_cmk_off(cmk_turned_off):
    assert cmk_turned_off.read_failure is None, cmk_turned_off.read_failure


def test_turning_cmk_off_rewrites_no_stored_object(cmk_turned_off):
    assert cmk_turned_off.hashes_after == cmk_turned_off.hashes_before, \
        _diff(cmk_turned_off.hashes_before, cmk_turned_off.hashes_after)


def test_vault_access_is_not_needed_after_turning_cmk_off(make_cmk, admin):
    cmk = make_cmk()
    bs.disable_cmk(admin.storage, cmk.account)
    _take_grant_away(admin, cmk)
    # Reads must keep working through several cache lifetimes.
    failure = bs.poll(cmk.read_failure, timeout=QUIET_WINDOW_S)
    assert failure is None, failure


# ---- the vault's audit log (`byos audit`) -----------------------------------------------------------------------

AUDIT_FIELDS = ("time", "caller", "key", "operation", "result")


def _records_of(server, cmk: Cmk, operation: str | None = None) -> list[dict]:
    """The vault's audit records whose caller is the account's identity (and of this operation)."""
    return [r for r in server.audit_list(cmk.vault.name)
            if str(r.get("caller", "")).lower() == cmk.principal_id.lower()
            and (operation is None or r.get("operation") == operation)]


def _successes(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("result") == "success"]


def test_audit_list_records_have_the_required_fields(server, shared_cmk):
    shared_cmk.all_readable()
    records = server.audit_list(shared_cmk.vault.name)
    assert records, "no audit records for a vault whose key protects an account"
    for record in records:
        missing = [f for f in AUDIT_FIELDS if record.get(f) in (None, "")]
        assert not missing, f"record lacks {missing}: {record}"


def test_audit_records_the_wrap_on_enabling_as_the_accounts_identity(server, shared_cmk):
    wraps = _successes(_records_of(server, shared_cmk, "wrapKey"))
    assert _versioned_id(shared_cmk, shared_cmk.version) in {r["key"] for r in wraps}, wraps


def test_audit_records_an_unwrap_on_each_cache_refresh(server, shared_cmk):
    start = len(_successes(_records_of(server, shared_cmk, "unwrapKey")))

    def unwraps():
        shared_cmk.read(BEFORE)
        return _successes(_records_of(server, shared_cmk, "unwrapKey"))

    # Reading across two cache lifetimes (1 s each) must take the customer key at least twice more.
    seen = bs.poll(unwraps, until=lambda records: len(records) >= start + 2)
    assert len(seen) >= start + 2, f"{len(seen) - start} new unwrapKey records while reading for a while"
    assert {r["key"] for r in seen} == {_versioned_id(shared_cmk, shared_cmk.version)}


def test_audit_records_the_wrap_with_the_new_version_on_rotation(server, rotated):
    wraps = _successes(_records_of(server, rotated.cmk, "wrapKey"))
    assert _versioned_id(rotated.cmk, rotated.new_key.properties.version) in {r["key"] for r in wraps}, wraps


@pytest.fixture(scope="module")
def audit_revoked(request, make_cmk, admin):
    """An account whose identity lost its role on the vault, after its reads were refused."""
    cmk = _make_for(request, make_cmk, "role-assignment-removed")
    _revoke_and_wait(admin, cmk, "role-assignment-removed")
    return cmk


def test_audit_records_the_refused_key_use_after_revocation(server, audit_revoked):
    records = _records_of(server, audit_revoked)
    refused = [r for r in records if r.get("result") != "success"]
    assert refused, f"no unsuccessful key use by the account's identity among {records}"


def test_audit_verify_reports_ok(server, shared_cmk):
    shared_cmk.all_readable()
    res = server.audit_verify(shared_cmk.vault.name)
    assert res.returncode == 0, f"audit verify failed ({res.returncode}): {res.stdout}\n{res.stderr}"
    assert any("ok" in line.lower() for line in res.stdout.splitlines()), res.stdout
