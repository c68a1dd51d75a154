"""Storage accounts through azure-mgmt-storage: create/read/list/update/delete, name rules, keys,
Blob service CORS properties, RBAC on the management actions, and cascade delete with the group.
"""

import re

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.storage.models import (
    BlobServiceProperties,
    CorsRule,
    CorsRules,
    Identity,
    NetworkRuleSet,
    StorageAccountCheckNameAvailabilityParameters,
    StorageAccountRegenerateKeyParameters,
)

import byos_support as bs

STUDIO_ORIGIN = "https://studio.example"


def _text(value):
    """An SDK enum member or a plain string, as the string on the wire."""
    return None if value is None else str(getattr(value, "value", value))


def _check_name(storage, name):
    return storage.storage_accounts.check_name_availability(
        StorageAccountCheckNameAvailabilityParameters(name=name, type=bs.STORAGE_ACCOUNT_TYPE)
    )


def _cors_rule(origin=STUDIO_ORIGIN):
    return CorsRule(allowed_origins=[origin], allowed_methods=["GET", "OPTIONS"], allowed_headers=["*"],
                    exposed_headers=["*"], max_age_in_seconds=1000)


def _set_cors(storage, account, rules):
    return storage.blob_services.set_service_properties(
        account.rg, account.name, BlobServiceProperties(cors=CorsRules(cors_rules=rules))
    )


@pytest.fixture(scope="module")
def default_account(make_account):
    """An account created with nothing but sku, kind and location."""
    return make_account(tag="defaults")


# ---- create and its defaults ---------------------------------------------------------------------------


def test_create_returns_a_provisioned_account(default_account, boot, sub):
    account = default_account.resource
    assert account.provisioning_state == "Succeeded"
    assert account.name == default_account.name
    assert account.id.lower() == bs.storage_account_id(sub, default_account.rg, default_account.name).lower()
    assert account.type.lower() == bs.STORAGE_ACCOUNT_TYPE.lower()
    assert account.location == boot["location"]
    assert _text(account.kind) == "StorageV2"
    assert _text(account.sku.name) == "Standard_LRS"


def test_blob_endpoint_is_path_style_on_loopback(default_account):
    pattern = rf"https://127\.0\.0\.1:(\d+)/{default_account.name}/"
    assert re.fullmatch(pattern, default_account.resource.primary_endpoints.blob), \
        default_account.resource.primary_endpoints.blob


@pytest.mark.parametrize(
    "read, allowed",
    [
        pytest.param(lambda a: a.allow_blob_public_access, {False}, id="allowBlobPublicAccess-false"),
        pytest.param(lambda a: a.allow_shared_key_access, {None, True}, id="allowSharedKeyAccess-true"),
        pytest.param(lambda a: _text(a.public_network_access), {"Enabled"}, id="publicNetworkAccess-enabled"),
        pytest.param(lambda a: _text(a.network_rule_set.default_action), {"Allow"},
                     id="networkAcls-defaultAction-allow"),
    ],
)
def test_new_account_default(default_account, read, allowed):
    assert read(default_account.resource) in allowed


def test_new_account_encrypts_blobs_with_microsoft_managed_keys(default_account):
    encryption = default_account.resource.encryption
    assert _text(encryption.key_source) == "Microsoft.Storage"
    assert encryption.services.blob.enabled is True


def test_create_with_system_assigned_identity(make_account, boot):
    account = make_account(tag="sysid", identity=Identity(type="SystemAssigned")).resource
    assert _text(account.identity.type) == "SystemAssigned"
    assert account.identity.principal_id
    assert account.identity.tenant_id == boot["tenant_id"]


# ---- read, list, update, delete ------------------------------------------------------------------------


def test_get_properties_returns_the_account(admin_storage, default_account):
    got = admin_storage.storage_accounts.get_properties(default_account.rg, default_account.name)
    assert got.id == default_account.id
    assert got.primary_endpoints.blob == default_account.blob_url
    assert got.provisioning_state == "Succeeded"


def test_list_by_resource_group_lists_only_that_groups_accounts(admin_storage, make_rg, make_account):
    rg = make_rg("st-list")
    first, second = make_account(rg, tag="l1"), make_account(rg, tag="l2")
    make_account(tag="elsewhere")
    listed = {a.name for a in admin_storage.storage_accounts.list_by_resource_group(rg)}
    assert listed == {first.name, second.name}


def test_list_by_subscription_includes_accounts_of_every_group(admin_storage, make_account):
    first, second = make_account(tag="s1"), make_account(tag="s2")
    listed = {a.id.lower() for a in admin_storage.storage_accounts.list()}
    assert {first.id.lower(), second.id.lower()} <= listed


def test_update_changes_properties_and_tags(admin_storage, make_account):
    account = make_account(tag="upd")
    updated = bs.update_storage_account(admin_storage, account, allow_blob_public_access=True, tags={"env": "test"})
    assert updated.allow_blob_public_access is True
    assert updated.tags == {"env": "test"}

    got = admin_storage.storage_accounts.get_properties(account.rg, account.name)
    assert got.allow_blob_public_access is True
    assert got.tags == {"env": "test"}


def test_update_keeps_what_it_does_not_mention(admin_storage, make_account):
    account = make_account(tag="patch", network_rule_set=NetworkRuleSet(default_action="Deny"))
    bs.update_storage_account(admin_storage, account, tags={"only": "tags"})
    got = admin_storage.storage_accounts.get_properties(account.rg, account.name)
    assert _text(got.network_rule_set.default_action) == "Deny"


def test_delete_account_then_get_is_not_found(admin_storage, make_account):
    account = make_account(tag="del")
    admin_storage.storage_accounts.delete(account.rg, account.name)
    with pytest.raises(ResourceNotFoundError):
        admin_storage.storage_accounts.get_properties(account.rg, account.name)


def test_deleting_the_resource_group_deletes_its_accounts(admin_arm, admin_storage, make_account, boot):
    account = make_account(tag="cascade")
    admin_arm.resource_groups.begin_delete(account.rg).result()

    assert account.id.lower() not in {a.id.lower() for a in admin_storage.storage_accounts.list()}
    # A new group of the same name must not bring the account back.
    admin_arm.resource_groups.create_or_update(account.rg, {"location": boot["location"]})
    with pytest.raises(ResourceNotFoundError):
        admin_storage.storage_accounts.get_properties(account.rg, account.name)


# ---- names ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["ab", "a" * 25, "UpperCase123", "with-dash123", "under_score1", "dot.name123"],
    ids=["too-short", "too-long", "uppercase", "dash", "underscore", "dot"],
)
def test_invalid_account_name_is_rejected(admin_storage, make_rg, boot, name):
    rg = make_rg("st-badname")
    bs.expect_arm_error(
        lambda: admin_storage.storage_accounts.begin_create(rg, name, bs.storage_create_parameters(boot)).result(),
        400, "AccountNameInvalid",
    )


def test_name_taken_in_another_group_is_409(admin_storage, make_rg, make_account, boot):
    taken = make_account(tag="taken")
    other_rg = make_rg("st-other")
    bs.expect_arm_error(
        lambda: admin_storage.storage_accounts.begin_create(
            other_rg, taken.name, bs.storage_create_parameters(boot)).result(),
        409, "StorageAccountAlreadyTaken",
    )


def test_check_name_availability_free_name(admin_storage):
    result = _check_name(admin_storage, bs.storage_account_name("free"))
    assert result.name_available is True


def test_check_name_availability_taken_name(admin_storage, default_account):
    result = _check_name(admin_storage, default_account.name)
    assert result.name_available is False
    assert _text(result.reason) == "AlreadyExists"


def test_check_name_availability_invalid_name(admin_storage):
    result = _check_name(admin_storage, "Not-Valid_Name")
    assert result.name_available is False
    assert _text(result.reason) == "AccountNameInvalid"


# ---- keys ------------------------------------------------------------------------------------------------------


def test_list_keys_gives_two_full_keys(admin_storage, default_account):
    keys = admin_storage.storage_accounts.list_keys(default_account.rg, default_account.name).keys_property
    assert sorted(k.key_name for k in keys) == ["key1", "key2"]
    assert [_text(k.permissions).lower() for k in keys] == ["full", "full"]
    assert all(k.value for k in keys)
    assert keys[0].value != keys[1].value


@pytest.fixture(scope="module")
def regenerated(admin_storage, make_account):
    """An account whose key1 was regenerated: (account with the old keys, keys regenerate_key returned)."""
    account = make_account(tag="regen")
    result = admin_storage.storage_accounts.regenerate_key(
        account.rg, account.name, StorageAccountRegenerateKeyParameters(key_name="key1")
    )
    return account, {k.key_name: k.value for k in result.keys_property}


def test_regenerate_key1_changes_only_key1(admin_storage, regenerated):
    account, returned = regenerated
    now = bs.account_keys(admin_storage, account.rg, account.name)
    assert now == returned
    assert now["key1"] != account.keys["key1"]
    assert now["key2"] == account.keys["key2"]


def test_old_key1_fails_after_regeneration(regenerated, ca):
    account, _ = regenerated
    service = bs.blob_service(account.blob_url, account.shared_key("key1"), ca)
    bs.expect_blob_denial(lambda: list(service.list_containers()), 403, "AuthenticationFailed")


def test_new_key1_works_after_regeneration(regenerated, ca):
    account, returned = regenerated
    service = bs.blob_service(account.blob_url, {"account_name": account.name, "account_key": returned["key1"]}, ca)
    assert list(service.list_containers()) == []


def test_key2_still_works_after_regenerating_key1(regenerated, ca):
    account, _ = regenerated
    service = bs.blob_service(account.blob_url, account.shared_key("key2"), ca)
    assert list(service.list_containers()) == []


# ---- Blob service properties: CORS -------------------------------------------------------------------------


def test_cors_rules_round_trip(admin_storage, make_account):
    account = make_account(tag="cors")
    _set_cors(admin_storage, account, [_cors_rule()])

    rules = admin_storage.blob_services.get_service_properties(account.rg, account.name).cors.cors_rules
    assert len(rules) == 1
    rule = rules[0]
    assert rule.allowed_origins == [STUDIO_ORIGIN]
    assert [_text(m) for m in rule.allowed_methods] == ["GET", "OPTIONS"]
    assert rule.allowed_headers == ["*"]
    assert rule.exposed_headers == ["*"]
    assert rule.max_age_in_seconds == 1000


def test_more_than_five_cors_rules_is_400(admin_storage, make_account):
    account = make_account(tag="cors6")
    rules = [_cors_rule(f"https://app{i}.example") for i in range(6)]
    exc = bs.expect_http_error(lambda: _set_cors(admin_storage, account, rules))
    assert exc.status_code == 400, exc.message
    # Nothing of the refused request was applied.
    cors = admin_storage.blob_services.get_service_properties(account.rg, account.name).cors
    assert not (cors and cors.cors_rules)


# ---- RBAC on the management actions ------------------------------------------------------------------------


def test_principal_without_roles_cannot_create_an_account(new_principal, storage_client, make_rg, boot, sub):
    rg = make_rg("st-denied")
    name = bs.storage_account_name("denied")
    storage = storage_client(new_principal("st-norole").credential)
    bs.expect_authorization_failed(
        lambda: storage.storage_accounts.begin_create(rg, name, bs.storage_create_parameters(boot)).result(),
        bs.STORAGE_ACCOUNT_WRITE,
        bs.storage_account_id(sub, rg, name),
    )


def test_principal_without_roles_cannot_list_keys(new_principal, storage_client, default_account):
    storage = storage_client(new_principal("st-nokeys").credential)
    bs.expect_authorization_failed(
        lambda: storage.storage_accounts.list_keys(default_account.rg, default_account.name),
        bs.STORAGE_LIST_KEYS,
        default_account.id,
    )
