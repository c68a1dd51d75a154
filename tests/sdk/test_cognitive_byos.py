"""Binding a Speech account to a storage account the customer owns (BYOS, `properties.userOwnedStorage`), with
every rule of the seed (byos-speech-resource-setup.md) and Azure's error for each: the subscription feature
Microsoft.CognitiveServices/byoxPreview (registered, then approved by an operator), an Owner creating it, an existing
storage account, Speech kinds only, only at creation, the system-assigned identity kept.

The module runs its own server: the feature's state is per subscription and these tests start from NotRegistered."""

import pytest
import requests

import byos_support as bs
import cognitive_support as cs

NAMESPACE, FEATURE = "Microsoft.CognitiveServices", "byoxPreview"
ROLE_ASSIGNMENT_WRITE = "Microsoft.Authorization/roleAssignments/write"


@pytest.fixture(scope="module")
def own(byos_bin, tmp_path_factory):
    srv = bs.ByosServer(byos_bin, tmp_path_factory.mktemp("byos-byos"), env=bs.TEST_SERVER_ENV)
    srv.start()
    yield srv
    assert srv.stop() == 0, srv.log_tail()


@pytest.fixture(scope="module")
def boot(own):
    return own.boot


@pytest.fixture(scope="module")
def admin(boot):
    return bs.admin_credential(boot)


@pytest.fixture(scope="module")
def admin_cs(boot, admin):
    return cs.cognitive_client(boot, admin)


@pytest.fixture(scope="module")
def rg(boot, admin):
    return bs.create_resource_group(bs.resource_client(boot, admin), boot, "byos")


@pytest.fixture(scope="module")
def storage(boot, admin, rg):
    return bs.create_storage_account(bs.storage_client(boot, admin), boot, rg, bs.storage_account_name("byos"))


@pytest.fixture(scope="module")
def approved(own, boot, admin):
    """The feature registered by the customer and approved by the operator."""
    features = bs.features_client(boot, admin)
    features.features.register(NAMESPACE, FEATURE)
    own.feature_approve(NAMESPACE, FEATURE)
    assert features.features.get(NAMESPACE, FEATURE).properties.state == "Registered"


def _byos_model(boot, storage_id, kind="SpeechServices", **kwargs):
    return cs.account_model(boot, kind, user_owned_storage=cs.user_owned_storage(storage_id), **kwargs)


def _create(client, rg, model, name=None):
    return client.accounts.begin_create(rg, name or cs.account_name("byos"), model).result()


# ---- the feature gate (these run first: the module's server starts with the feature NotRegistered) ----------


def test_without_the_feature_byos_is_refused_naming_it(admin_cs, boot, rg, storage):
    name = cs.account_name("nofeat")
    error = bs.expect_arm_error(lambda: _create(admin_cs, rg, _byos_model(boot, storage.id), name), 400,
                                "BringOwnFeatureNotEnabled")
    assert f"{NAMESPACE}/{FEATURE}" in error["message"] and "NotRegistered" in error["message"]
    assert name not in {a.name for a in admin_cs.accounts.list_by_resource_group(rg)}
    assert name not in {a.name for a in admin_cs.deleted_accounts.list()}


def test_a_registration_waiting_for_approval_is_still_refused(admin_cs, admin, boot, rg, storage):
    features = bs.features_client(boot, admin)
    assert features.features.register(NAMESPACE, FEATURE).properties.state == "Pending"
    error = bs.expect_arm_error(lambda: _create(admin_cs, rg, _byos_model(boot, storage.id)), 400,
                                "BringOwnFeatureNotEnabled")
    assert "Pending" in error["message"] and "byos feature approve" in error["message"]


# ---- with the feature -------------------------------------------------------------------------------------------


def test_byos_account_is_bound_and_gets_a_system_identity(approved, admin_cs, boot, rg, storage):
    account = _create(admin_cs, rg, _byos_model(boot, storage.id))
    assert [s.resource_id for s in account.properties.user_owned_storage] == [storage.id]
    assert account.identity.type == "SystemAssigned" and account.identity.principal_id
    got = admin_cs.accounts.get(rg, account.name)
    assert [s.resource_id for s in got.properties.user_owned_storage] == [storage.id]


def test_one_storage_account_serves_many_accounts(approved, admin_cs, boot, rg, storage):
    first = _create(admin_cs, rg, _byos_model(boot, storage.id))
    second = _create(admin_cs, rg, _byos_model(boot, storage.id))
    assert first.identity.principal_id != second.identity.principal_id


def test_form_recognizer_cannot_bring_its_own_storage(approved, admin_cs, boot, rg, storage):
    error = bs.expect_arm_error(lambda: _create(admin_cs, rg, _byos_model(boot, storage.id, "FormRecognizer")), 400,
                                "BringOwnFeatureNotEnabled")
    assert "FormRecognizer" in error["message"]


def test_storage_must_be_a_storage_account_id(approved, admin_cs, boot, rg, sub_id):
    wrong_type = f"{bs.rg_scope(sub_id, rg)}/providers/Microsoft.KeyVault/vaults/nope"
    error = bs.expect_arm_error(lambda: _create(admin_cs, rg, _byos_model(boot, wrong_type)), 400,
                                "InvalidUserOwnedStorage")
    assert wrong_type in error["message"]
    bs.expect_arm_error(lambda: _create(admin_cs, rg, _byos_model(boot, "mystorage")), 400, "InvalidUserOwnedStorage")


def test_storage_must_exist(approved, admin_cs, boot, rg, sub_id):
    missing = bs.storage_account_id(sub_id, rg, bs.storage_account_name("gone"))
    error = bs.expect_arm_error(lambda: _create(admin_cs, rg, _byos_model(boot, missing)), 404,
                                "StorageAccountNotFound")
    assert missing in error["message"]


@pytest.fixture(scope="module")
def sub_id(boot):
    return boot["subscription_id"]


def test_creator_must_be_able_to_grant_roles_at_the_subscription(approved, own, boot, admin, rg, storage, sub_id):
    info = own.create_principal(bs.unique("byos-contrib"))
    bs.assign_role(bs.authorization_client(boot, admin), bs.rg_scope(sub_id, rg), bs.CONTRIBUTOR, info["object_id"],
                   sub=sub_id)
    contributor = cs.cognitive_client(boot, bs.client_secret_credential(boot, info["client_id"], info["client_secret"]))
    bs.expect_authorization_failed(lambda: _create(contributor, rg, _byos_model(boot, storage.id)),
                                   ROLE_ASSIGNMENT_WRITE, bs.sub_scope(sub_id))
    # Without BYOS the same Contributor may create the account.
    assert _create(contributor, rg, cs.account_model(boot, "SpeechServices")).properties.user_owned_storage is None


def test_storage_cannot_be_added_changed_or_removed_later(approved, admin_cs, boot, rg, storage):
    from azure.mgmt.cognitiveservices.models import Account, AccountProperties

    bound = _create(admin_cs, rg, _byos_model(boot, storage.id))
    plain = _create(admin_cs, rg, cs.account_model(boot, "SpeechServices"))
    for account, storage_list in [(bound, []), (plain, cs.user_owned_storage(storage.id))]:
        patch = Account(properties=AccountProperties(user_owned_storage=storage_list))
        bs.expect_arm_error(lambda: admin_cs.accounts.begin_update(rg, account.name, patch).result(), 400,
                            "UserOwnedStorageCanOnlyBeAttachedWhileCreation")
    assert admin_cs.accounts.get(rg, plain.name).properties.user_owned_storage is None
    # Sending the binding it already has is no change.
    same = Account(tags={"t": "1"}, properties=AccountProperties(user_owned_storage=cs.user_owned_storage(storage.id)))
    assert admin_cs.accounts.begin_update(rg, bound.name, same).result().tags == {"t": "1"}


def test_the_system_identity_of_a_byos_account_cannot_be_removed(approved, admin_cs, boot, rg, storage):
    from azure.mgmt.cognitiveservices.models import Account, Identity

    account = _create(admin_cs, rg, _byos_model(boot, storage.id))
    error = bs.expect_arm_error(lambda: admin_cs.accounts.begin_update(
        rg, account.name, Account(identity=Identity(type="None"))).result(), 400, "InvalidIdentity")
    assert storage.id in error["message"]
    assert admin_cs.accounts.get(rg, account.name).identity.principal_id == account.identity.principal_id
    bs.expect_arm_error(lambda: _create(admin_cs, rg, _byos_model(boot, storage.id, identity="None")), 400,
                        "InvalidIdentity")


def test_storage_in_another_region_is_allowed_and_reported(approved, own, boot, admin, rg):
    far = bs.create_storage_account(bs.storage_client(boot, admin), {**boot, "location": "westeurope"}, rg,
                                    bs.storage_account_name("far"))
    token = admin.get_token(bs.MGMT_SCOPE).token
    resp = cs.raw_put_account(boot, token, rg, cs.account_name("far"), {
        "kind": "SpeechServices", "sku": {"name": "S0"}, "location": boot["location"],
        "properties": {"userOwnedStorage": [{"resourceId": far.id}]}})
    assert resp.status_code == 201, resp.text
    assert "westeurope" in resp.headers.get("x-byos-warning", ""), resp.headers


# ---- datasets land in the customer's storage ---------------------------------------------------------------


@pytest.fixture(scope="module")
def byos_speech(approved, own, boot, admin, admin_cs, rg, storage):
    """A BYOS Speech account whose identity is Storage Blob Data Contributor on the storage account."""
    account = _create(admin_cs, rg, _byos_model(boot, storage.id))
    bs.assign_role(bs.authorization_client(boot, admin), storage.id, bs.STORAGE_BLOB_DATA_CONTRIBUTOR,
                   account.identity.principal_id, sub=boot["subscription_id"])
    key = admin_cs.accounts.list_keys(rg, account.name).key1
    return account, cs.SpeechRest(account.properties.endpoint, key, boot["ca_file"])


def _artifacts(boot, storage, prefix: str) -> list[str]:
    service = bs.blob_service(storage.blob_url, storage.shared_key(), boot["ca_file"])
    return [b.name for b in service.get_container_client("customspeech-artifacts").list_blobs(name_starts_with=prefix)]


def test_a_dataset_of_a_byos_account_is_kept_in_the_customers_storage(byos_speech, boot, storage):
    _, api = byos_speech
    done = api.wait(api.upload("Language", b"kept in my own storage\n", display_name="byos").json()["self"])
    assert done["status"] == "Succeeded", done
    dataset_id = done["self"].rsplit("/", 1)[1]
    stored = _artifacts(boot, storage, f"LanguageData/{dataset_id}/")
    assert len(stored) == 2 and any(n.endswith("report.json") for n in stored), stored
    files = api.get(done["links"]["files"]).json()["values"]
    data = next(f for f in files if f["kind"] == "LanguageData")
    link = data["links"]["contentUrl"]
    assert "skoid=" in link and "sig=" in link, link
    assert requests.get(link, verify=boot["ca_file"], timeout=30).content == b"kept in my own storage\n"
    plain = api.get(data["self"], params={"sasValidityInSeconds": 0}).json()["links"]["contentUrl"]
    assert "?" not in plain and plain.startswith(storage.blob_url), plain
    assert api.delete(done["self"]).status_code == 204
    assert _artifacts(boot, storage, f"LanguageData/{dataset_id}/") == [], "deleting the dataset deletes its files"


def test_without_its_role_a_byos_account_cannot_keep_a_dataset_and_says_why(approved, admin_cs, boot, rg, storage):
    account = _create(admin_cs, rg, _byos_model(boot, storage.id))
    api = cs.SpeechRest(account.properties.endpoint, admin_cs.accounts.list_keys(rg, account.name).key1, boot["ca_file"])
    done = api.wait(api.upload("Language", b"no role\n", display_name="denied").json()["self"])
    assert done["status"] == "Failed", done
    assert "cannot be accessed" in done["properties"]["error"]["message"], done


# ---- last: restarts the module's server (the fixtures above point at its old ports) ------------------------


def test_accounts_keep_their_endpoint_keys_and_binding_across_a_restart(approved, own, boot, admin_cs, rg, storage):
    account = _create(admin_cs, rg, _byos_model(boot, storage.id))
    key = admin_cs.accounts.list_keys(rg, account.name).key1
    boot = own.restart()
    client = cs.cognitive_client(boot, bs.admin_credential(boot))
    again = client.accounts.get(rg, account.name)
    assert again.properties.endpoint == account.properties.endpoint
    assert [s.resource_id for s in again.properties.user_owned_storage] == [storage.id]
    resp = requests.post(again.properties.endpoint + "sts/v1.0/issueToken",
                         headers={"Ocp-Apim-Subscription-Key": key}, verify=boot["ca_file"], timeout=30)
    assert resp.status_code == 200, resp.text
