"""The unchanged Azure CLI (azure-cli 2.91.0: accounts at api-version 2026-05-15-preview, Microsoft Graph for
role assignments) managing AI-services accounts, as a new user would: the cloud registered from byos's metadata
with a trailing slash, a service-principal login, then create / show / keys / identity / delete / recover /
purge / SKUs / kinds, `az feature`, and `az role assignment create --assignee <appId>` / `list`.

The session server's subscription keeps Microsoft.CognitiveServices/byoxPreview NotRegistered (other modules rely
on it), so the bring-your-own-storage flow (`--storage`) runs on this module's own server, where it registers the
feature with az and an operator approves it."""

import json
import re

import pytest

import az_support
import byos_support as bs
import cognitive_support as cs

NAMESPACE, FEATURE = "Microsoft.CognitiveServices", "byoxPreview"
ACCOUNT_KEY = re.compile(r"^[0-9a-f]{32}$")
BLOB_DATA_CONTRIBUTOR = "Storage Blob Data Contributor"


def _account(verb: str, name: str, rg: str, *args: str) -> tuple[str, ...]:
    return ("cognitiveservices", "account", *verb.split(), "-n", name, "-g", rg, *args)


def _create(name: str, rg: str, location: str, *args: str) -> tuple[str, ...]:
    """The issue's command: a Speech account with a system-assigned identity, S0, no prompt."""
    return _account("create", name, rg, "--assign-identity", "--kind", "SpeechServices", "--sku", "S0",
                    "-l", location, "--yes", *args)


def _feature(az: az_support.AzCli, verb: str) -> str:
    return az.run("feature", verb, "--namespace", NAMESPACE, "--name", FEATURE)["properties"]["state"]


def _new_group(az: az_support.AzCli, boot: dict) -> str:
    name = bs.unique("byos-test-az")
    assert az.run("group", "create", "-n", name, "-l", boot["location"])["name"] == name
    return name


def _new_storage(az: az_support.AzCli, boot: dict, rg: str) -> dict:
    name = bs.storage_account_name("az")
    return az.run("storage", "account", "create", "-n", name, "-g", rg, "-l", boot["location"],
                  "--sku", "Standard_LRS")


@pytest.fixture(scope="module")
def rg(az, boot) -> str:
    return _new_group(az, boot)


# ---- on the session server ------------------------------------------------------------------------------


def test_the_cloud_is_registered_from_the_metadata_behind_a_trailing_slash(az, boot):
    endpoints = az.run("cloud", "show", "-n", az_support.CLOUD_NAME)["endpoints"]
    assert endpoints["resourceManager"].rstrip("/") == boot["resource_manager"]
    assert endpoints["activeDirectory"] == boot["authority"]
    assert endpoints["microsoftGraphResourceId"] == boot["resource_manager"] + "/graph/"
    account = az.run("account", "show")
    assert (account["id"], account["tenantId"]) == (boot["subscription_id"], boot["tenant_id"])
    assert account["user"] == {"name": boot["admin"]["client_id"], "type": "servicePrincipal"}


def test_an_account_is_created_shown_and_its_keys_listed_and_regenerated(az, boot, rg):
    name = cs.account_name("az")
    created = az.run(*_create(name, rg, boot["location"]))
    assert created["properties"]["provisioningState"] == "Succeeded"
    assert created["identity"]["type"] == "SystemAssigned" and created["identity"]["principalId"]

    shown = az.run(*_account("show", name, rg))
    assert shown["id"] == cs.account_id(boot["subscription_id"], rg, name)
    assert (shown["kind"], shown["sku"]["name"], shown["location"]) == ("SpeechServices", "S0", boot["location"])
    assert shown["identity"]["principalId"] == created["identity"]["principalId"]
    assert shown["identity"]["tenantId"] == boot["tenant_id"]
    assert shown["properties"]["endpoint"].startswith("https://127.0.0.1:")
    assert shown["properties"]["userOwnedStorage"] is None
    assert name in {a["name"] for a in az.run("cognitiveservices", "account", "list", "-g", rg)}

    keys = az.run(*_account("keys list", name, rg))
    assert ACCOUNT_KEY.match(keys["key1"]) and ACCOUNT_KEY.match(keys["key2"]) and keys["key1"] != keys["key2"]
    regenerated = az.run(*_account("keys regenerate", name, rg, "--key-name", "key2"))
    assert regenerated["key1"] == keys["key1"] and regenerated["key2"] != keys["key2"]
    assert az.run(*_account("keys list", name, rg)) == regenerated

    skus = az.run(*_account("list-skus", name, rg))["value"]
    assert {s["sku"]["name"] for s in skus} == {"F0", "S0"}
    assert {s["resourceType"] for s in skus} == {cs.ACCOUNT_TYPE}


def test_skus_and_kinds_are_listed(az, boot):
    kinds = az.run("cognitiveservices", "account", "list-kinds")
    assert {"SpeechServices", "FormRecognizer", "CognitiveServices"} <= set(kinds)
    skus = az.run("cognitiveservices", "account", "list-skus", "--kind", "SpeechServices", "-l", boot["location"])
    assert {s["name"] for s in skus} == {"F0", "S0"}
    assert all(s["kind"] == "SpeechServices" and boot["location"] in s["locations"] for s in skus), skus


def test_the_identity_is_removed_and_assigned_again_with_a_new_principal(az, boot, rg):
    name = cs.account_name("azid")
    first = az.run(*_create(name, rg, boot["location"]))["identity"]["principalId"]
    assert az.run("ad", "sp", "show", "--id", first)["servicePrincipalType"] == "ManagedIdentity"

    removed = az.run(*_account("identity remove", name, rg))
    assert removed["identity"] is None
    assert az.run(*_account("identity show", name, rg)) == {}
    # The principal went with the identity: Graph no longer knows it.
    assert f"Resource '{first}' does not exist" in az.fails("ad", "sp", "show", "--id", first)

    assigned = az.run(*_account("identity assign", name, rg))
    assert assigned["type"] == "SystemAssigned" and assigned["principalId"] not in (None, first)
    assert az.run(*_account("show", name, rg))["identity"]["principalId"] == assigned["principalId"]


def test_a_deleted_account_is_shown_recovered_with_its_keys_then_purged(az, boot, rg):
    name, location = cs.account_name("azdel"), boot["location"]
    az.run(*_create(name, rg, location))
    keys = az.run(*_account("keys list", name, rg))

    assert az.run(*_account("delete", name, rg)) is None
    assert "(ResourceNotFound)" in az.fails(*_account("show", name, rg))
    assert name in {a["name"] for a in az.run("cognitiveservices", "account", "list-deleted")}
    deleted = az.run(*_account("show-deleted", name, rg, "-l", location))
    assert deleted["type"] == "Microsoft.CognitiveServices/deletedAccounts"
    assert deleted["properties"]["deletionDate"] and deleted["properties"]["scheduledPurgeDate"]

    recovered = az.run(*_account("recover", name, rg, "-l", location))
    assert recovered["properties"]["provisioningState"] == "Succeeded"
    assert az.run(*_account("keys list", name, rg)) == keys, "a recovered account keeps its keys"

    az.run(*_account("delete", name, rg))
    assert az.run(*_account("purge", name, rg, "-l", location)) is None
    assert name not in {a["name"] for a in az.run("cognitiveservices", "account", "list-deleted")}
    assert "(ResourceNotFound)" in az.fails(*_account("show-deleted", name, rg, "-l", location))
    # Purged, the name is free for a new account (with new keys).
    az.run(*_create(name, rg, location))
    assert az.run(*_account("keys list", name, rg))["key1"] != keys["key1"]


def test_without_the_feature_az_shows_why_storage_is_refused(az, boot, rg):
    storage = _new_storage(az, boot, rg)
    assert _feature(az, "show") == "NotRegistered"
    name = cs.account_name("aznofeat")
    error = az.fails(*_create(name, rg, boot["location"], "--storage", json.dumps([{"resourceId": storage["id"]}])))
    assert "(BringOwnFeatureNotEnabled)" in error and f"{NAMESPACE}/{FEATURE}" in error, error
    assert name not in {a["name"] for a in az.run("cognitiveservices", "account", "list", "-g", rg)}


def test_the_customers_storage_is_reached_by_its_blob_endpoint(az, boot, rg):
    """Given only --account-name, az would build <name>.blob.core.windows.net; --blob-endpoint names byos's."""
    storage = _new_storage(az, boot, rg)
    endpoint = storage["primaryEndpoints"]["blob"]
    assert endpoint == f"{boot['blob_endpoint']}/{storage['name']}/"
    container = bs.unique("az")
    data = ("--account-name", storage["name"], "--blob-endpoint", endpoint, "--auth-mode", "key")
    assert az.run("storage", "container", "create", "-n", container, *data) == {"created": True}
    assert container in {c["name"] for c in az.run("storage", "container", "list", *data)}


def test_a_role_is_assigned_to_a_principal_named_by_its_app_id(az, boot, rg, new_principal):
    principal = new_principal("az-assignee")
    scope = bs.rg_scope(boot["subscription_id"], rg)
    created = az.run("role", "assignment", "create", "--assignee", principal.client_id, "--role", "Reader",
                     "--scope", scope)
    assert (created["principalId"], created["principalType"]) == (principal.object_id, "ServicePrincipal")
    assert created["roleDefinitionId"] == bs.role_definition_id(boot["subscription_id"], bs.READER)
    # The same assignment asked for by object id (resolved through getByIds) is the one that exists.
    again = az.run("role", "assignment", "create", "--assignee", principal.object_id, "--role", "Reader",
                   "--scope", scope)
    assert again["id"] == created["id"]

    listed = [a for a in az.run("role", "assignment", "list", "--scope", scope)
              if a["principalId"] == principal.object_id]
    assert [(a["roleDefinitionName"], a["principalName"]) for a in listed] == [("Reader", principal.client_id)]
    sp = az.run("ad", "sp", "show", "--id", principal.client_id)
    assert (sp["id"], sp["displayName"], sp["servicePrincipalType"]) == (
        principal.object_id, principal.display_name, "Application")

    nobody = bs.unique("nobody")
    error = az.fails("role", "assignment", "create", "--assignee", nobody, "--role", "Reader", "--scope", scope)
    assert f"Cannot find user or service principal in graph database for '{nobody}'" in error


# ---- bring your own storage, on the module's own server -----------------------------------------------------


@pytest.fixture(scope="module")
def own(byos_bin, tmp_path_factory):
    yield from bs.module_server(byos_bin, tmp_path_factory.mktemp("byos-az"))


@pytest.fixture(scope="module")
def own_az(own, tmp_path_factory) -> az_support.AzCli:
    return az_support.signed_in_as_admin(own.boot, tmp_path_factory.mktemp("az-config-own"))


def test_byos_from_the_feature_registration_to_the_accounts_storage_role(own, own_az):
    az, boot = own_az, own.boot
    assert _feature(az, "show") == "NotRegistered"
    assert _feature(az, "register") == "Pending"
    own.feature_approve(NAMESPACE, FEATURE)
    assert _feature(az, "show") == "Registered"

    rg = _new_group(az, boot)
    storage = _new_storage(az, boot, rg)
    name = cs.account_name("azbyos")
    az.run(*_create(name, rg, boot["location"], "--storage", json.dumps([{"resourceId": storage["id"]}])))
    shown = az.run(*_account("show", name, rg))
    assert [s["resourceId"] for s in shown["properties"]["userOwnedStorage"]] == [storage["id"]]
    assert shown["identity"]["type"] == "SystemAssigned"
    principal = shown["identity"]["principalId"]

    sp = az.run("ad", "sp", "show", "--id", principal)
    assert sp["servicePrincipalType"] == "ManagedIdentity" and shown["id"] in sp["alternativeNames"], sp
    assignment = az.run("role", "assignment", "create", "--assignee", sp["appId"], "--role", BLOB_DATA_CONTRIBUTOR,
                        "--scope", storage["id"])
    assert (assignment["principalId"], assignment["principalType"]) == (principal, "ServicePrincipal")
    assert assignment["roleDefinitionId"] == bs.role_definition_id(boot["subscription_id"],
                                                                   bs.STORAGE_BLOB_DATA_CONTRIBUTOR)
    listed = az.run("role", "assignment", "list", "--scope", storage["id"])
    assert [(a["principalId"], a["roleDefinitionName"], a["principalName"]) for a in listed] == [
        (principal, BLOB_DATA_CONTRIBUTOR, sp["appId"])]

    # The binding reaches the storage as the system-assigned identity, which therefore stays.
    error = az.fails(*_account("identity remove", name, rg))
    assert "(InvalidIdentity)" in error and storage["id"] in error, error
    assert az.run(*_account("identity show", name, rg))["principalId"] == principal


def test_regression_az_login_takes_a_secret_beginning_with_a_dash():
    args = az_support.login_args("client", "-starts-with-a-dash", "tenant")
    assert "--password=-starts-with-a-dash" in args and "-p" not in args
