"""Key Vault vaults through azure-mgmt-keyvault: create/read/list/update, name rules, soft delete (which
cannot be turned off), purge protection (which cannot be turned off), delete/recover/purge, access-policy
updates, and RBAC on the management action.

Every vault is served on its own port of 127.0.0.1: its vaultUri is https://127.0.0.1:<port>/.
"""

import re
import uuid

import pytest
from azure.core.exceptions import ResourceNotFoundError

import byos_support as bs


def _text(value):
    """An SDK enum member or a plain string, as the string on the wire."""
    return None if value is None else str(getattr(value, "value", value))


@pytest.fixture(scope="module")
def default_vault(make_vault):
    """An access-policy vault with the admin's full key policy and a 7-day retention."""
    return make_vault(tag="defaults")


@pytest.fixture(scope="module")
def deleted_vault(admin_keyvault, make_vault):
    """A vault the admin deleted (so it is soft-deleted)."""
    vault = make_vault(tag="deleted")
    admin_keyvault.vaults.delete(vault.rg, vault.name)
    return vault


def _create(keyvault, boot, rg, name, **properties):
    return keyvault.vaults.begin_create_or_update(rg, name, bs.vault_create_parameters(boot, **properties)).result()


def _deleted_names(keyvault):
    return {d.name for d in keyvault.vaults.list_deleted()}


# ---- create and its defaults ---------------------------------------------------------------------------


def test_create_returns_a_provisioned_vault(default_vault, boot, sub):
    vault = default_vault.resource
    assert _text(vault.properties.provisioning_state) == "Succeeded"
    assert vault.name == default_vault.name
    assert vault.id.lower() == bs.vault_id(sub, default_vault.rg, default_vault.name).lower()
    assert vault.type.lower() == bs.VAULT_TYPE.lower()
    assert vault.location == boot["location"]
    assert vault.properties.tenant_id == boot["tenant_id"]
    assert _text(vault.properties.sku.family) == "A"
    assert _text(vault.properties.sku.name) == "standard"


def test_vault_uri_is_its_own_port_on_loopback(default_vault):
    assert re.fullmatch(bs.VAULT_URI_PATTERN, default_vault.uri), default_vault.uri


def test_two_vaults_have_different_ports(default_vault, make_vault):
    other = make_vault(tag="second")
    assert other.port != default_vault.port


def test_new_vault_has_soft_delete_with_the_requested_retention(default_vault):
    assert default_vault.resource.properties.enable_soft_delete is True
    assert default_vault.resource.properties.soft_delete_retention_in_days == 7


def test_soft_delete_retention_defaults_to_90_days(make_vault):
    vault = make_vault(tag="ret90", soft_delete_retention_in_days=None)
    assert vault.resource.properties.enable_soft_delete is True
    assert vault.resource.properties.soft_delete_retention_in_days == bs.DEFAULT_VAULT_RETENTION_DAYS


def test_new_vault_keeps_its_access_policies(default_vault, boot):
    assert bs.key_permissions_of(default_vault.resource, boot["admin"]["object_id"]) == {"all"}


def test_new_vault_uses_access_policies_unless_rbac_is_asked_for(default_vault):
    assert default_vault.resource.properties.enable_rbac_authorization in (None, False)


def test_create_with_rbac_authorization(make_vault):
    vault = make_vault(tag="rbac", rbac=True)
    assert vault.resource.properties.enable_rbac_authorization is True


def test_create_with_purge_protection(make_vault):
    vault = make_vault(tag="pp", purge_protection=True)
    assert vault.resource.properties.enable_purge_protection is True


# ---- read, list, update ----------------------------------------------------------------------------------


def test_get_returns_the_vault(admin_keyvault, default_vault):
    got = admin_keyvault.vaults.get(default_vault.rg, default_vault.name)
    assert got.id == default_vault.id
    assert got.properties.vault_uri == default_vault.uri
    assert _text(got.properties.provisioning_state) == "Succeeded"


def test_list_by_resource_group_lists_only_that_groups_vaults(admin_keyvault, make_rg, make_vault):
    rg = make_rg("kv-list")
    first, second = make_vault(rg, tag="l1"), make_vault(rg, tag="l2")
    make_vault(tag="elsewhere")
    listed = {v.name for v in admin_keyvault.vaults.list_by_resource_group(rg)}
    assert listed == {first.name, second.name}


def test_list_by_subscription_includes_vaults_of_every_group(admin_keyvault, make_vault):
    first, second = make_vault(tag="s1"), make_vault(tag="s2")
    listed = {v.id.lower() for v in admin_keyvault.vaults.list_by_subscription()}
    assert {first.id.lower(), second.id.lower()} <= listed


def test_update_changes_tags(admin_keyvault, make_vault):
    vault = make_vault(tag="tags")
    updated = bs.update_vault(admin_keyvault, vault, tags={"env": "test"})
    assert updated.tags == {"env": "test"}
    assert admin_keyvault.vaults.get(vault.rg, vault.name).tags == {"env": "test"}


def test_update_turns_purge_protection_on(admin_keyvault, make_vault):
    vault = make_vault(tag="ppon")
    updated = bs.update_vault(admin_keyvault, vault, enable_purge_protection=True)
    assert updated.properties.enable_purge_protection is True
    assert admin_keyvault.vaults.get(vault.rg, vault.name).properties.enable_purge_protection is True


def test_update_keeps_what_it_does_not_mention(admin_keyvault, make_vault, boot):
    vault = make_vault(tag="patch")
    bs.update_vault(admin_keyvault, vault, tags={"only": "tags"})
    got = admin_keyvault.vaults.get(vault.rg, vault.name)
    assert bs.key_permissions_of(got, boot["admin"]["object_id"]) == {"all"}
    assert got.properties.soft_delete_retention_in_days == 7
    assert got.properties.vault_uri == vault.uri


# ---- names -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["ab", "a" * 25, "1startswithdigit", "endswithhyphen-", "double--hyphen", "under_score", "dot.name"],
    ids=["too-short", "too-long", "leading-digit", "trailing-hyphen", "consecutive-hyphens", "underscore", "dot"],
)
def test_invalid_vault_name_is_rejected(admin_keyvault, make_rg, boot, name):
    rg = make_rg("kv-badname")
    bs.expect_arm_error(lambda: _create(admin_keyvault, boot, rg, name), 400, "VaultNameNotValid")


@pytest.mark.parametrize(
    "make_name",
    [lambda: f"k{uuid.uuid4().hex[:2]}", lambda: f"k-{uuid.uuid4().hex[:10]}-{uuid.uuid4().hex[:11]}"],
    ids=["3-chars", "24-chars-with-hyphens"],
)
def test_names_at_the_length_limits_are_accepted(admin_keyvault, make_rg, boot, make_name):
    name = make_name()
    assert len(name) in (3, 24)
    vault = _create(admin_keyvault, boot, make_rg("kv-len"), name, soft_delete_retention_in_days=7)
    assert vault.name == name


def test_name_taken_in_another_group_is_409(admin_keyvault, default_vault, make_rg, boot):
    other_rg = make_rg("kv-other")
    bs.expect_arm_error(lambda: _create(admin_keyvault, boot, other_rg, default_vault.name), 409,
                        "VaultAlreadyExists")


def test_name_of_a_soft_deleted_vault_is_taken(admin_keyvault, deleted_vault, make_rg, boot):
    other_rg = make_rg("kv-reuse")
    bs.expect_arm_error(lambda: _create(admin_keyvault, boot, other_rg, deleted_vault.name), 409,
                        ("VaultAlreadyExists", "ConflictError"))


# ---- soft delete and purge protection cannot be turned off ----------------------------------------------


def test_creating_without_soft_delete_is_400(admin_keyvault, make_rg, boot):
    rg = make_rg("kv-nosd")
    name = bs.vault_name("nosd")
    bs.expect_arm_error(lambda: _create(admin_keyvault, boot, rg, name, enable_soft_delete=False), 400, "BadRequest")
    with pytest.raises(ResourceNotFoundError):
        admin_keyvault.vaults.get(rg, name)


def test_turning_soft_delete_off_is_400(admin_keyvault, make_vault):
    vault = make_vault(tag="sdoff")
    bs.expect_arm_error(lambda: bs.update_vault(admin_keyvault, vault, enable_soft_delete=False), 400, "BadRequest")
    assert admin_keyvault.vaults.get(vault.rg, vault.name).properties.enable_soft_delete is True


def test_turning_purge_protection_off_is_400(admin_keyvault, make_vault):
    vault = make_vault(tag="ppoff", purge_protection=True)
    bs.expect_arm_error(lambda: bs.update_vault(admin_keyvault, vault, enable_purge_protection=False), 400,
                        "BadRequest")
    assert admin_keyvault.vaults.get(vault.rg, vault.name).properties.enable_purge_protection is True


# ---- delete, soft-deleted vaults, recover, purge ----------------------------------------------------------


def test_deleted_vault_is_not_found(admin_keyvault, deleted_vault):
    with pytest.raises(ResourceNotFoundError):
        admin_keyvault.vaults.get(deleted_vault.rg, deleted_vault.name)


def test_deleted_vault_is_not_listed_in_its_group(admin_keyvault, deleted_vault):
    assert deleted_vault.name not in {v.name for v in admin_keyvault.vaults.list_by_resource_group(deleted_vault.rg)}


def test_get_deleted_returns_the_soft_deleted_vault(admin_keyvault, deleted_vault, boot):
    deleted = admin_keyvault.vaults.get_deleted(deleted_vault.name, boot["location"])
    assert deleted.name == deleted_vault.name
    assert deleted.properties.vault_id.lower() == deleted_vault.id.lower()
    assert deleted.properties.scheduled_purge_date is not None


def test_deleted_vault_is_purged_after_its_retention(admin_keyvault, deleted_vault, boot):
    deleted = admin_keyvault.vaults.get_deleted(deleted_vault.name, boot["location"])
    # Retention is 7 days from the deletion (a moment ago).
    assert bs.utc_in(days=6) < deleted.properties.scheduled_purge_date < bs.utc_in(days=8)


def test_list_deleted_includes_the_soft_deleted_vault(admin_keyvault, deleted_vault):
    assert deleted_vault.name in _deleted_names(admin_keyvault)


def test_recover_brings_the_vault_back_at_the_same_uri(admin_keyvault, make_vault, boot):
    vault = make_vault(tag="recover")
    admin_keyvault.vaults.delete(vault.rg, vault.name)

    recovered = bs.recover_vault(admin_keyvault, boot, vault.rg, vault.name)
    assert recovered.id.lower() == vault.id.lower()
    assert recovered.properties.vault_uri == vault.uri
    assert admin_keyvault.vaults.get(vault.rg, vault.name).properties.vault_uri == vault.uri
    assert vault.name not in _deleted_names(admin_keyvault)


def test_recovered_vault_keeps_its_keys_and_policies(admin_keyvault, make_vault, key_client, admin_cred, boot):
    vault = make_vault(tag="reckeys")
    created = key_client(vault.uri, admin_cred).create_rsa_key("survivor", size=2048)
    admin_keyvault.vaults.delete(vault.rg, vault.name)

    recovered = bs.recover_vault(admin_keyvault, boot, vault.rg, vault.name)
    assert bs.key_permissions_of(recovered, boot["admin"]["object_id"]) == {"all"}
    got = key_client(recovered.properties.vault_uri, admin_cred).get_key("survivor")
    assert got.properties.version == created.properties.version
    assert got.key.n == created.key.n


def test_purge_removes_the_deleted_vault_for_good(admin_keyvault, make_vault, boot):
    vault = make_vault(tag="purge")
    admin_keyvault.vaults.delete(vault.rg, vault.name)

    admin_keyvault.vaults.begin_purge_deleted(vault.name, boot["location"]).result()
    with pytest.raises(ResourceNotFoundError):
        admin_keyvault.vaults.get_deleted(vault.name, boot["location"])
    assert vault.name not in _deleted_names(admin_keyvault)


def test_purged_name_can_be_used_again(admin_keyvault, make_vault, make_rg, boot):
    vault = make_vault(tag="rename")
    admin_keyvault.vaults.delete(vault.rg, vault.name)
    admin_keyvault.vaults.begin_purge_deleted(vault.name, boot["location"]).result()

    again = _create(admin_keyvault, boot, make_rg("kv-again"), vault.name, soft_delete_retention_in_days=7)
    assert again.name == vault.name
    assert re.fullmatch(bs.VAULT_URI_PATTERN, again.properties.vault_uri), again.properties.vault_uri


def test_purge_is_refused_with_purge_protection(admin_keyvault, make_vault, boot):
    vault = make_vault(tag="noPurge", purge_protection=True)
    admin_keyvault.vaults.delete(vault.rg, vault.name)

    exc = bs.expect_http_error(lambda: admin_keyvault.vaults.begin_purge_deleted(vault.name, boot["location"]).result())
    assert 400 <= exc.status_code < 500, f"{exc.status_code}: {exc.message[:500]}"
    deleted = admin_keyvault.vaults.get_deleted(vault.name, boot["location"])
    assert deleted.properties.vault_id.lower() == vault.id.lower()


# ---- access policies ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def policy_vault(make_vault):
    """A vault whose access policies the tests below change, each for its own principal (the admin's
    entry stays)."""
    return make_vault(tag="policies")


def test_add_access_policy_grants_a_principal(admin_keyvault, policy_vault, new_principal, boot):
    principal = new_principal("kv-add")
    bs.update_access_policy(admin_keyvault, policy_vault, "add", boot["tenant_id"], principal.object_id,
                            ["get", "wrapKey", "unwrapKey"])
    got = admin_keyvault.vaults.get(policy_vault.rg, policy_vault.name)
    assert bs.key_permissions_of(got, principal.object_id) == {"get", "wrapKey", "unwrapKey"}
    assert bs.key_permissions_of(got, boot["admin"]["object_id"]) == {"all"}


def test_remove_access_policy_removes_that_principals_entry(admin_keyvault, policy_vault, new_principal, boot):
    principal = new_principal("kv-remove")
    bs.update_access_policy(admin_keyvault, policy_vault, "add", boot["tenant_id"], principal.object_id, ["get"])
    bs.update_access_policy(admin_keyvault, policy_vault, "remove", boot["tenant_id"], principal.object_id, ["get"])
    got = admin_keyvault.vaults.get(policy_vault.rg, policy_vault.name)
    assert bs.key_permissions_of(got, principal.object_id) is None
    assert bs.key_permissions_of(got, boot["admin"]["object_id"]) == {"all"}


def test_replace_access_policy_replaces_that_principals_permissions(admin_keyvault, policy_vault, new_principal,
                                                                    boot):
    principal = new_principal("kv-replace")
    bs.update_access_policy(admin_keyvault, policy_vault, "add", boot["tenant_id"], principal.object_id,
                            ["get", "list"])
    bs.update_access_policy(admin_keyvault, policy_vault, "replace", boot["tenant_id"], principal.object_id,
                            ["unwrapKey"])
    got = admin_keyvault.vaults.get(policy_vault.rg, policy_vault.name)
    assert bs.key_permissions_of(got, principal.object_id) == {"unwrapKey"}


# ---- RBAC on the management action ----------------------------------------------------------------------


def test_principal_without_roles_cannot_create_a_vault(new_principal, keyvault_mgmt, make_rg, boot, sub):
    rg = make_rg("kv-denied")
    name = bs.vault_name("denied")
    keyvault = keyvault_mgmt(new_principal("kv-norole").credential)
    bs.expect_authorization_failed(lambda: _create(keyvault, boot, rg, name), bs.VAULT_WRITE,
                                   bs.vault_id(sub, rg, name))
