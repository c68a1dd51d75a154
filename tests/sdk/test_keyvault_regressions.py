"""Regressions from the security review (../shared/reference/security-review.md) on Key Vault, through the
Azure SDK: F3 (a Contributor flips the permission model and grants itself key access), F12 (soft-delete
retention lowered after creation), F17 (gaps in a vault's audit log: restore, rotation policies,
unauthenticated and denied requests, lists)."""

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.keyvault.keys import KeyRotationLifetimeAction, KeyRotationPolicy, KeyRotationPolicyAction

import byos_support as bs

ROLE_ASSIGNMENT_WRITE = "Microsoft.Authorization/roleAssignments/write"


@pytest.fixture
def rbac_vault_with_contributor(make_vault, new_principal, assign, keyvault_mgmt, sub):
    """An RBAC vault (the admin is its Crypto Officer) and a principal that is Contributor on it."""
    vault = make_vault(tag="f03", rbac=True)
    contributor = new_principal("f03")
    assign(vault.id, bs.CONTRIBUTOR, contributor.object_id)
    return vault, contributor, keyvault_mgmt(contributor.credential)


def test_regression_f03_contributor_cannot_flip_the_vault_to_access_policies(
    rbac_vault_with_contributor, admin_keyvault, boot
):
    vault, contributor, as_contributor = rbac_vault_with_contributor
    bs.expect_authorization_failed(
        lambda: bs.update_vault(as_contributor, vault, enable_rbac_authorization=False,
                                access_policies=[bs.access_policy(boot["tenant_id"], contributor.object_id)]),
        ROLE_ASSIGNMENT_WRITE, vault.id)
    after = admin_keyvault.vaults.get(vault.rg, vault.name).properties
    assert after.enable_rbac_authorization is True
    assert bs.key_permissions_of(admin_keyvault.vaults.get(vault.rg, vault.name), contributor.object_id) is None


def test_regression_f03_contributor_still_has_no_key_access_after_the_refused_flip(
    rbac_vault_with_contributor, key_client, admin_cred, boot
):
    vault, contributor, as_contributor = rbac_vault_with_contributor
    name = bs.unique("f03")
    key_client(vault.uri, admin_cred).create_rsa_key(name, size=2048)
    with pytest.raises(HttpResponseError):
        bs.update_vault(as_contributor, vault, enable_rbac_authorization=False,
                        access_policies=[bs.access_policy(boot["tenant_id"], contributor.object_id)])
    bs.expect_keyvault_error(lambda: key_client(vault.uri, contributor.credential).get_key(name), 403, "Forbidden",
                             "ForbiddenByRbac")


def test_regression_f03_contributor_may_change_other_vault_settings(rbac_vault_with_contributor, admin_keyvault):
    vault, _, as_contributor = rbac_vault_with_contributor
    bs.update_vault(as_contributor, vault, tags={"owner": "contributor"})
    assert admin_keyvault.vaults.get(vault.rg, vault.name).tags == {"owner": "contributor"}


def test_regression_f03_owner_may_change_the_permission_model(make_vault, admin_keyvault):
    vault = make_vault(tag="f03own", rbac=True)
    bs.update_vault(admin_keyvault, vault, enable_rbac_authorization=False)
    assert admin_keyvault.vaults.get(vault.rg, vault.name).properties.enable_rbac_authorization is False


def test_regression_f12_soft_delete_retention_cannot_change_after_creation(make_vault, admin_keyvault):
    vault = make_vault(tag="f12", soft_delete_retention_in_days=90)
    exc = bs.expect_http_error(lambda: bs.update_vault(admin_keyvault, vault, soft_delete_retention_in_days=7))
    assert exc.status_code == 400, exc.message
    assert admin_keyvault.vaults.get(vault.rg, vault.name).properties.soft_delete_retention_in_days == 90


# ---- F17: the vault's audit log ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def audited_vault(make_vault):
    return make_vault(tag="f17")


def _entries(server, vault, operation: str) -> list[dict]:
    return [e for e in server.audit_list(vault.name) if e["operation"] == operation]


def test_regression_f17_restore_is_recorded(server, audited_vault, key_client, admin_cred):
    keys = key_client(audited_vault.uri, admin_cred)
    name = bs.unique("f17r")
    keys.create_rsa_key(name, size=2048)
    backup = keys.backup_key(name)
    bs.finished(keys.begin_delete_key(name))
    keys.purge_deleted_key(name)
    keys.restore_key_backup(backup)
    restores = [e for e in _entries(server, audited_vault, "restore") if e["result"] == "success"]
    assert any(e["key"].endswith(f"keys/{name}") for e in restores), restores


def test_regression_f17_rotation_policy_reads_and_changes_are_recorded(server, audited_vault, key_client,
                                                                      admin_cred):
    keys = key_client(audited_vault.uri, admin_cred)
    name = bs.unique("f17p")
    keys.create_rsa_key(name, size=2048)
    keys.update_key_rotation_policy(name, KeyRotationPolicy(expires_in="P90D", lifetime_actions=[
        KeyRotationLifetimeAction(KeyRotationPolicyAction.rotate, time_after_create="P30D")]))
    keys.get_key_rotation_policy(name)
    recorded = {(e["operation"], e["result"]) for e in server.audit_list(audited_vault.name)
                if e["key"].endswith(f"keys/{name}")}
    assert {("setRotationPolicy", "success"), ("getRotationPolicy", "success")} <= recorded, recorded


def test_regression_f17_unauthenticated_request_is_recorded(server, audited_vault, ca):
    before = len(_entries(server, audited_vault, "list"))
    resp = requests.get(f"{audited_vault.uri}keys?api-version=7.5", verify=ca, timeout=30)
    assert resp.status_code == 401, resp.text
    lists = _entries(server, audited_vault, "list")
    assert len(lists) == before + 1 and lists[-1]["result"] == "unauthenticated", lists[-1:]


def test_regression_f17_denied_list_is_recorded_with_its_caller(server, audited_vault, key_client, new_principal):
    stranger = new_principal("f17")
    with pytest.raises(HttpResponseError):
        list(key_client(audited_vault.uri, stranger.credential).list_properties_of_keys())
    denied = [e for e in _entries(server, audited_vault, "list") if e["result"] == "denied"]
    assert any(stranger.object_id in str(e["caller"]) for e in denied), denied


def test_regression_f17_unimplemented_operation_is_recorded(server, audited_vault, key_client, admin_cred):
    keys = key_client(audited_vault.uri, admin_cred)
    key = keys.create_rsa_key(bs.unique("f17x"), size=2048)
    with pytest.raises(HttpResponseError):
        keys.release_key(key.name, "a-target-attestation-token", version=key.properties.version)
    releases = _entries(server, audited_vault, "release")
    assert any(f"keys/{key.name}/{key.properties.version}" in e["key"] for e in releases), [e["key"] for e in releases]
