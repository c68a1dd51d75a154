"""AI-services accounts over ARM with azure-mgmt-cognitiveservices 14.1.0 (api-version 2025-09-01): create, get,
list, update, kinds and SKUs (one free account per kind), keys, custom subdomains, identity, network settings, soft
delete with restore and purge, and Azure's errors for bad input. Binding to the customer's storage (BYOS) is in
test_cognitive_byos.py."""

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

import byos_support as bs
import cognitive_support as cs


@pytest.fixture(scope="module")
def speech(admin_cognitive, make_rg, boot):
    """One SpeechServices S0 account the read-only tests share."""
    rg = make_rg("cs")
    return rg, cs.create_account(admin_cognitive, boot, rg, "SpeechServices", tags={"env": "test"})


def _purge(client, boot, rg, name):
    client.deleted_accounts.begin_purge(boot["location"], rg, name).result()


# ---- create and read -------------------------------------------------------------------------------------


def test_create_returns_a_succeeded_account_with_its_endpoint(speech, sub):
    rg, account = speech
    assert account.id == cs.account_id(sub, rg, account.name)
    assert (account.type, account.kind, account.sku.name) == (cs.ACCOUNT_TYPE, "SpeechServices", "S0")
    assert account.properties.provisioning_state == "Succeeded"
    assert account.properties.endpoint.startswith("https://127.0.0.1:") and account.properties.endpoint.endswith("/")
    assert account.properties.endpoint in account.properties.endpoints.values()
    assert len(account.properties.internal_id) == 32 and account.properties.date_created
    assert "CustomerManagedStorage" in {c.name for c in account.properties.capabilities}
    assert account.properties.public_network_access == "Enabled" and account.tags == {"env": "test"}


def test_the_endpoint_is_served_and_answers_in_azures_format(speech, ca):
    _, account = speech
    resp = requests.get(account.properties.endpoint + "no/such/api", verify=ca, timeout=30)
    assert resp.status_code == 401, resp.text
    assert resp.json()["error"]["code"] == "401" and "subscription key" in resp.json()["error"]["message"]


def test_get_returns_the_account(admin_cognitive, speech):
    rg, account = speech
    got = admin_cognitive.accounts.get(rg, account.name)
    assert (got.id, got.properties.endpoint) == (account.id, account.properties.endpoint)


def test_list_by_group_and_subscription(admin_cognitive, speech):
    rg, account = speech
    assert account.id in {a.id for a in admin_cognitive.accounts.list_by_resource_group(rg)}
    assert account.id in {a.id for a in admin_cognitive.accounts.list()}


def test_get_of_a_missing_account_is_not_found(admin_cognitive, speech):
    rg, _ = speech
    with pytest.raises(ResourceNotFoundError):
        admin_cognitive.accounts.get(rg, cs.account_name("missing"))


def test_form_recognizer_and_multi_service_kinds(admin_cognitive, make_rg, boot):
    rg = make_rg("cs-kinds")
    fr = cs.create_account(admin_cognitive, boot, rg, "FormRecognizer")
    multi = cs.create_account(admin_cognitive, boot, rg, "CognitiveServices")
    assert "FormRecognizer" in fr.properties.endpoints
    assert "CustomerManagedStorage" not in {c.name for c in fr.properties.capabilities}
    assert {"FormRecognizer", "Speech Services Speech to Text"} <= set(multi.properties.endpoints)
    assert fr.properties.endpoint != multi.properties.endpoint


# ---- bad input ---------------------------------------------------------------------------------------------


def test_unknown_kind_is_invalid_api_set_id(admin_cognitive, make_rg, boot):
    rg = make_rg("cs-bad")
    bs.expect_arm_error(lambda: cs.create_account(admin_cognitive, boot, rg, "Emotion"), 400, "InvalidApiSetId")


def test_sku_the_kind_does_not_have_is_refused(admin_cognitive, make_rg, boot):
    rg = make_rg("cs-bad")
    bs.expect_arm_error(lambda: cs.create_account(admin_cognitive, boot, rg, "SpeechServices", "P9"), 400,
                        "SpecialFeatureOrQuotaIdRequired")
    bs.expect_arm_error(lambda: cs.create_account(admin_cognitive, boot, rg, "CognitiveServices", "F0"), 400,
                        "SpecialFeatureOrQuotaIdRequired")


@pytest.mark.parametrize("name", ["a", "-speech", "speech!", "x" * 65])
def test_invalid_account_name_is_refused(admin_cognitive, make_rg, boot, name):
    rg = make_rg("cs-bad")
    bs.expect_arm_error(lambda: cs.create_account(admin_cognitive, boot, rg, name=name), 400, "InvalidAccountName")


def test_bad_public_network_access_is_refused_and_creates_nothing(admin_cognitive, make_rg, boot):
    rg, name = make_rg("cs-bad"), cs.account_name("badpna")
    bs.expect_arm_error(lambda: cs.create_account(admin_cognitive, boot, rg, name=name, public_network_access="Sometimes"),
                        400, "InvalidRequestPropertyValue")
    with pytest.raises(ResourceNotFoundError):
        admin_cognitive.accounts.get(rg, name)


def test_principal_without_roles_cannot_create(cognitive, new_principal, make_rg, boot, sub):
    rg, name = make_rg("cs-denied"), cs.account_name("denied")
    client = cognitive(new_principal("cs-norole").credential)
    bs.expect_authorization_failed(lambda: cs.create_account(client, boot, rg, name=name),
                                   "Microsoft.CognitiveServices/accounts/write", cs.account_id(sub, rg, name))


# ---- update ------------------------------------------------------------------------------------------------


def test_update_changes_tags_and_network_settings_and_keeps_the_rest(admin_cognitive, admin_cred, make_rg, boot):
    from azure.mgmt.cognitiveservices.models import Account, AccountProperties, IpRule, NetworkRuleSet

    rg = make_rg("cs-upd")
    account = cs.create_account(admin_cognitive, boot, rg)
    patch = Account(tags={"env": "prod"}, properties=AccountProperties(
        network_acls=NetworkRuleSet(default_action="Deny", ip_rules=[IpRule(value="127.0.0.2")]),
        public_network_access="Disabled", disable_local_auth=True))
    updated = admin_cognitive.accounts.begin_update(rg, account.name, patch).result()
    assert updated.tags == {"env": "prod"} and updated.properties.disable_local_auth is True
    assert updated.properties.public_network_access == "Disabled"
    assert updated.properties.network_acls.default_action == "Deny"
    assert [r.value for r in updated.properties.network_acls.ip_rules] == ["127.0.0.2"]
    assert (updated.properties.endpoint, updated.properties.internal_id) == (
        account.properties.endpoint, account.properties.internal_id)


def test_the_kind_cannot_change(admin_cognitive, speech, boot):
    rg, account = speech
    bs.expect_arm_error(
        lambda: admin_cognitive.accounts.begin_create(rg, account.name, cs.account_model(boot, "FormRecognizer")).result(),
        400, "KindChangeNotAllowed")


def test_one_free_account_per_kind(admin_cognitive, make_rg, boot):
    rg = make_rg("cs-free")
    free = cs.create_account(admin_cognitive, boot, rg, "FormRecognizer", "F0")
    try:
        assert free.sku.name == "F0" and free.sku.tier == "Free"
        bs.expect_arm_error(lambda: cs.create_account(admin_cognitive, boot, rg, "FormRecognizer", "F0"), 409,
                            "CanNotCreateMultipleFreeAccounts")
        other = cs.create_account(admin_cognitive, boot, rg, "FormRecognizer", "S0")
        bs.expect_arm_error(lambda: admin_cognitive.accounts.begin_update(
            rg, other.name, cs.account_model(boot, "FormRecognizer", "F0")).result(), 409, "CanNotCreateMultipleFreeAccounts")
    finally:
        admin_cognitive.accounts.begin_delete(rg, free.name).result()
        _purge(admin_cognitive, boot, rg, free.name)


# ---- keys ----------------------------------------------------------------------------------------------------


def test_list_keys_returns_two_distinct_keys(admin_cognitive, speech):
    rg, account = speech
    keys = admin_cognitive.accounts.list_keys(rg, account.name)
    assert len(keys.key1) == 32 and len(keys.key2) == 32 and keys.key1 != keys.key2


def test_regenerate_key_replaces_only_that_key(admin_cognitive, make_rg, boot):
    rg = make_rg("cs-keys")
    account = cs.create_account(admin_cognitive, boot, rg)
    before = admin_cognitive.accounts.list_keys(rg, account.name)
    after = admin_cognitive.accounts.regenerate_key(rg, account.name, "Key2")
    assert after.key1 == before.key1 and after.key2 != before.key2
    assert admin_cognitive.accounts.list_keys(rg, account.name).key2 == after.key2


def test_keys_need_list_keys_rights(cognitive, principal_with_role, speech):
    rg, account = speech
    reader, _ = principal_with_role("cs-reader", bs.READER, account.id)
    bs.expect_authorization_failed(lambda: cognitive(reader.credential).accounts.list_keys(rg, account.name),
                                   "Microsoft.CognitiveServices/accounts/listKeys/action", account.id)


def test_keys_are_not_stored_in_plaintext(server, admin_cognitive, speech):
    rg, account = speech
    keys = admin_cognitive.accounts.list_keys(rg, account.name)
    found, _ = bs.scan_files_for(server.data_dir, {"key1": keys.key1.encode(), "key2": keys.key2.encode()})
    assert not any(found.values()), found


# ---- custom subdomains --------------------------------------------------------------------------------------


def test_custom_subdomain_is_unique_and_checked(admin_cognitive, make_rg, boot):
    rg = make_rg("cs-dom")
    domain = cs.account_name("dom")
    account = cs.create_account(admin_cognitive, boot, rg, custom_sub_domain_name=domain)
    assert account.properties.custom_sub_domain_name == domain
    taken = admin_cognitive.check_domain_availability(subdomain_name=domain, type=cs.ACCOUNT_TYPE)
    assert taken.is_subdomain_available is False and taken.reason
    free = admin_cognitive.check_domain_availability(subdomain_name=cs.account_name("free"), type=cs.ACCOUNT_TYPE)
    assert free.is_subdomain_available is True
    invalid = admin_cognitive.check_domain_availability(subdomain_name="-bad-", type=cs.ACCOUNT_TYPE)
    assert invalid.is_subdomain_available is False
    bs.expect_arm_error(lambda: cs.create_account(admin_cognitive, boot, rg, custom_sub_domain_name=domain.upper()),
                        409, "CustomDomainInUse")
    bs.expect_arm_error(lambda: cs.create_account(admin_cognitive, boot, rg, custom_sub_domain_name="-bad-"), 400,
                        "CustomDomainInvalid")


def test_custom_subdomain_cannot_change_once_set(admin_cognitive, make_rg, boot):
    from azure.mgmt.cognitiveservices.models import Account, AccountProperties

    rg = make_rg("cs-dom")
    account = cs.create_account(admin_cognitive, boot, rg, custom_sub_domain_name=cs.account_name("fixed"))
    patch = Account(properties=AccountProperties(custom_sub_domain_name=cs.account_name("moved")))
    bs.expect_arm_error(lambda: admin_cognitive.accounts.begin_update(rg, account.name, patch).result(), 400,
                        "CustomSubDomainNameCannotBeChanged")


# ---- identity -------------------------------------------------------------------------------------------------


def test_system_identity_is_created_and_removed(admin_cognitive, make_rg, boot, server):
    from azure.mgmt.cognitiveservices.models import Account, Identity

    rg = make_rg("cs-id")
    account = cs.create_account(admin_cognitive, boot, rg, identity="SystemAssigned")
    assert account.identity.type == "SystemAssigned" and account.identity.principal_id
    assert account.identity.tenant_id == boot["tenant_id"]
    updated = admin_cognitive.accounts.begin_update(rg, account.name, Account(identity=Identity(type="None"))).result()
    assert updated.identity is None or updated.identity.type in (None, "None")


def test_user_assigned_identity_is_attached(admin_cognitive, make_rg, make_identity, boot):
    from azure.mgmt.cognitiveservices.models import Identity, UserAssignedIdentity

    rg = make_rg("cs-uai")
    uai = make_identity(rg)
    model = cs.account_model(boot, "FormRecognizer")
    model.identity = Identity(type="UserAssigned", user_assigned_identities={uai.id: UserAssignedIdentity()})
    account = admin_cognitive.accounts.begin_create(rg, cs.account_name("uai"), model).result()
    attached = {k.lower(): v for k, v in account.identity.user_assigned_identities.items()}
    assert attached[uai.id.lower()].principal_id == uai.principal_id


# ---- SKUs ---------------------------------------------------------------------------------------------------------


def test_resource_skus_list_every_kind(admin_cognitive, boot):
    skus = list(admin_cognitive.resource_skus.list())
    kinds = {(s.kind, s.name) for s in skus}
    assert {("SpeechServices", "F0"), ("SpeechServices", "S0"), ("FormRecognizer", "S0"),
            ("CognitiveServices", "S0")} <= kinds
    assert all(boot["location"] in s.locations for s in skus)


def test_account_skus_and_sku_availability(admin_cognitive, speech, boot):
    rg, account = speech
    assert {s.sku.name for s in admin_cognitive.accounts.list_skus(rg, account.name).value} == {"F0", "S0"}
    result = admin_cognitive.check_sku_availability(boot["location"], ["S0", "P9"], "SpeechServices", cs.ACCOUNT_TYPE)
    assert {(v.sku_name, v.sku_available) for v in result.value} == {("S0", True), ("P9", False)}


def test_usages_and_models_are_empty(admin_cognitive, speech):
    rg, account = speech
    assert admin_cognitive.accounts.list_usages(rg, account.name).value == []
    assert list(admin_cognitive.accounts.list_models(rg, account.name)) == []


# ---- soft delete, restore, purge -----------------------------------------------------------------------------------


def _restore(client, boot, rg, name, kind="SpeechServices"):
    from azure.mgmt.cognitiveservices.models import Account, AccountProperties, Sku

    return client.accounts.begin_create(rg, name, Account(
        kind=kind, sku=Sku(name="S0"), location=boot["location"], properties=AccountProperties(restore=True))).result()


def test_deleted_account_is_kept_for_48_hours(admin_cognitive, make_rg, boot):
    import datetime as dt

    rg = make_rg("cs-del")
    account = cs.create_account(admin_cognitive, boot, rg)
    admin_cognitive.accounts.begin_delete(rg, account.name).result()
    with pytest.raises(ResourceNotFoundError):
        admin_cognitive.accounts.get(rg, account.name)
    deleted = admin_cognitive.deleted_accounts.get(boot["location"], rg, account.name)
    assert deleted.type == "Microsoft.CognitiveServices/deletedAccounts" and deleted.kind == "SpeechServices"
    deletion = dt.datetime.fromisoformat(deleted.properties.deletion_date.replace("Z", "+00:00"))
    purge = dt.datetime.fromisoformat(deleted.properties.scheduled_purge_date.replace("Z", "+00:00"))
    assert purge - deletion == dt.timedelta(hours=48)
    assert account.name in {d.name for d in admin_cognitive.deleted_accounts.list()}


def test_recreating_a_deleted_account_needs_the_restore_flag(admin_cognitive, make_rg, boot):
    rg = make_rg("cs-del")
    account = cs.create_account(admin_cognitive, boot, rg)
    admin_cognitive.accounts.begin_delete(rg, account.name).result()
    bs.expect_arm_error(lambda: cs.create_account(admin_cognitive, boot, rg, name=account.name), 409,
                        "FlagMustBeSetForRestore")


def test_restore_brings_back_keys_endpoint_and_subdomain(admin_cognitive, make_rg, boot):
    rg = make_rg("cs-del")
    domain = cs.account_name("keep")
    account = cs.create_account(admin_cognitive, boot, rg, custom_sub_domain_name=domain)
    keys = admin_cognitive.accounts.list_keys(rg, account.name)
    admin_cognitive.accounts.begin_delete(rg, account.name).result()
    assert not admin_cognitive.check_domain_availability(subdomain_name=domain, type=cs.ACCOUNT_TYPE).is_subdomain_available
    restored = _restore(admin_cognitive, boot, rg, account.name)
    assert restored.properties.custom_sub_domain_name == domain
    assert restored.properties.internal_id == account.properties.internal_id
    assert admin_cognitive.accounts.list_keys(rg, account.name).key1 == keys.key1
    with pytest.raises(ResourceNotFoundError):
        admin_cognitive.deleted_accounts.get(boot["location"], rg, account.name)


def test_restore_without_a_deleted_account_is_not_found(admin_cognitive, make_rg, boot):
    rg = make_rg("cs-del")
    bs.expect_arm_error(lambda: _restore(admin_cognitive, boot, rg, cs.account_name("never")), 404, "ResourceNotFound")


def test_purge_frees_the_name_and_subdomain(admin_cognitive, make_rg, boot):
    rg = make_rg("cs-purge")
    domain = cs.account_name("gone")
    account = cs.create_account(admin_cognitive, boot, rg, custom_sub_domain_name=domain)
    admin_cognitive.accounts.begin_delete(rg, account.name).result()
    _purge(admin_cognitive, boot, rg, account.name)
    assert account.name not in {d.name for d in admin_cognitive.deleted_accounts.list()}
    again = cs.create_account(admin_cognitive, boot, rg, name=account.name, custom_sub_domain_name=domain)
    assert again.properties.internal_id != account.properties.internal_id


def test_purge_of_an_unknown_deleted_account_is_not_found(admin_cognitive, make_rg, boot):
    rg = make_rg("cs-purge")
    with pytest.raises(HttpResponseError) as exc:
        _purge(admin_cognitive, boot, rg, cs.account_name("unknown"))
    assert exc.value.status_code == 404


def test_deleting_the_group_soft_deletes_its_accounts(admin_cognitive, admin_arm, make_rg, boot):
    rg = make_rg("cs-grp")
    account = cs.create_account(admin_cognitive, boot, rg)
    admin_arm.resource_groups.begin_delete(rg).result()
    assert admin_cognitive.deleted_accounts.get(boot["location"], rg, account.name).name == account.name


def test_the_deleted_accounts_endpoint_stops_serving(admin_cognitive, make_rg, boot, ca):
    rg = make_rg("cs-del")
    account = cs.create_account(admin_cognitive, boot, rg)
    admin_cognitive.accounts.begin_delete(rg, account.name).result()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(account.properties.endpoint, verify=ca, timeout=5)
