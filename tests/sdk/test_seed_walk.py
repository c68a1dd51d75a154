"""The seed's walk (../shared/seeds/byos-speech-resource-setup.md) with the unchanged az CLI, end to end: lock the
storage account down as the seed says (no public access, no shared key, firewall default deny with the Speech
resource's resource-instance rule, Speech Studio's CORS rule), create the Speech resource with BYOS, grant its identity
Storage Blob Data Contributor, verify with `az cognitiveservices account show`, upload a dataset and read it back
through its link, `byos doctor` green; then break each link (the role, the firewall rule, the identity, the storage
account's customer-managed key) and see the explained error, and mend it again.

Runs on its own server: the subscription's byoxPreview feature is registered and approved here."""

import json

import pytest
import requests

import az_support
import byos_support as bs
import cognitive_support as cs

NAMESPACE, FEATURE = "Microsoft.CognitiveServices", "byoxPreview"
STUDIO_ORIGIN = "https://speech.microsoft.com"


@pytest.fixture(scope="module")
def own(byos_bin, tmp_path_factory):
    yield from bs.module_server(byos_bin, tmp_path_factory.mktemp("byos-walk"))


@pytest.fixture(scope="module")
def az(own, tmp_path_factory) -> az_support.AzCli:
    return az_support.signed_in_as_admin(own.boot, tmp_path_factory.mktemp("az-config-walk"))


@pytest.fixture(scope="module")
def walk(own, az):
    """The seed's deployment, built with az: returns what the tests need."""
    boot = own.boot
    az.run("feature", "register", "--namespace", NAMESPACE, "--name", FEATURE)
    own.feature_approve(NAMESPACE, FEATURE)
    rg = bs.unique("byos-test-walk")
    az.run("group", "create", "-n", rg, "-l", boot["location"])
    storage_name = bs.storage_account_name("walk")
    storage = az.run("storage", "account", "create", "-n", storage_name, "-g", rg, "-l", boot["location"],
                     "--sku", "Standard_LRS")
    speech_name = cs.account_name("walk")
    az.run("cognitiveservices", "account", "create", "-n", speech_name, "-g", rg, "--assign-identity",
           "--kind", "SpeechServices", "--sku", "S0", "-l", boot["location"], "--yes",
           "--storage", json.dumps([{"resourceId": storage["id"]}]))
    speech = az.run("cognitiveservices", "account", "show", "-n", speech_name, "-g", rg)
    # The seed's storage lockdown: no public access, no shared key, deny by default, the Speech resource admitted
    # by a resource-instance rule, this test's client by its address (to read results through their links).
    az.run("storage", "account", "update", "-n", storage_name, "-g", rg, "--allow-blob-public-access", "false",
           "--allow-shared-key-access", "false", "--default-action", "Deny", "--bypass", "None")
    az.run("storage", "account", "network-rule", "add", "-g", rg, "--account-name", storage_name,
           "--resource-id", speech["id"], "--tenant-id", boot["tenant_id"])
    az.run("storage", "account", "network-rule", "add", "-g", rg, "--account-name", storage_name,
           "--ip-address", "127.0.0.1")
    az.run("storage", "account", "blob-service-properties", "cors-rule", "add", "--account-name", storage_name,
           "-g", rg, "--allowed-origins", STUDIO_ORIGIN, "--allowed-methods", "GET", "OPTIONS",
           "--allowed-headers", "*", "--exposed-headers", "*", "--max-age", "1000")
    principal = speech["identity"]["principalId"]
    app_id = az.run("ad", "sp", "show", "--id", principal)["appId"]
    assignment = az.run("role", "assignment", "create", "--assignee", app_id, "--role", "Storage Blob Data Contributor",
                        "--scope", storage["id"])
    key = az.run("cognitiveservices", "account", "keys", "list", "-n", speech_name, "-g", rg)["key1"]
    return {
        "rg": rg, "storage": storage, "speech": speech, "app_id": app_id, "assignment": assignment,
        "api": cs.SpeechRest(speech["properties"]["endpoint"], key, boot["ca_file"]),
    }


def _upload(walk, text: bytes) -> dict:
    api = walk["api"]
    resp = api.upload("Language", text, display_name="walk")
    assert resp.status_code == 201, resp.text
    return api.wait(resp.json()["self"])


def _doctor(own, walk) -> dict[str, str]:
    code, report = own.doctor(walk["speech"]["id"])
    assert report is not None, code
    return {c["id"]: c["status"] for c in report["checks"]} | {"exit": code}


def test_the_account_shows_its_storage_binding(az, walk):
    shown = az.run("cognitiveservices", "account", "show", "-n", walk["speech"]["name"], "-g", walk["rg"])
    assert [s["resourceId"] for s in shown["properties"]["userOwnedStorage"]] == [walk["storage"]["id"]]


def test_a_dataset_lands_in_the_customers_storage_and_reads_back_through_its_link(own, walk):
    done = _upload(walk, b"my data stays in my storage\n")
    assert done["status"] == "Succeeded", done
    files = walk["api"].get(done["links"]["files"]).json()["values"]
    data = next(f for f in files if f["kind"] == "LanguageData")
    link = data["links"]["contentUrl"]
    assert link.startswith(walk["storage"]["primaryEndpoints"]["blob"]) and "sig=" in link, link
    assert requests.get(link, verify=own.boot["ca_file"], timeout=30).content == b"my data stays in my storage\n"


def test_doctor_is_green_on_the_seeds_deployment(own, walk):
    statuses = _doctor(own, walk)
    assert statuses.pop("exit") == 0, statuses
    assert all(s == "pass" for s in statuses.values()), statuses


def test_without_the_role_the_dataset_fails_with_the_explanation_and_doctor_says_so(own, az, walk):
    az.run("role", "assignment", "delete", "--ids", walk["assignment"]["id"])
    try:
        done = _upload(walk, b"no role\n")
        assert done["status"] == "Failed", done
        message = done["properties"]["error"]["message"]
        assert walk["storage"]["id"] in message and "has no role assignments" in message, message
        assert "Grant the resource's system-assigned identity Storage Blob Data Contributor" in message, message
        statuses = _doctor(own, walk)
        assert statuses["storage.role"] == "fail" and statuses["exit"] == 1, statuses
    finally:
        walk["assignment"] = az.run("role", "assignment", "create", "--assignee", walk["app_id"],
                                    "--role", "Storage Blob Data Contributor", "--scope", walk["storage"]["id"])
    assert _upload(walk, b"role back\n")["status"] == "Succeeded"


def test_without_the_resource_instance_rule_the_firewall_refuses_and_doctor_says_so(own, az, walk):
    args = ("-g", walk["rg"], "--account-name", walk["storage"]["name"], "--resource-id", walk["speech"]["id"],
            "--tenant-id", own.boot["tenant_id"])
    az.run("storage", "account", "network-rule", "remove", *args)
    try:
        done = _upload(walk, b"blocked\n")
        assert done["status"] == "Failed", done
        message = done["properties"]["error"]["message"]
        assert "firewall" in message and "resource instance rule for this resource" in message, message
        statuses = _doctor(own, walk)
        assert statuses["storage.firewall"] == "fail", statuses
    finally:
        az.run("storage", "account", "network-rule", "add", *args)
    assert _upload(walk, b"rule back\n")["status"] == "Succeeded"


def test_the_identity_that_reaches_the_storage_cannot_be_removed(az, walk):
    error = az.fails("cognitiveservices", "account", "identity", "remove", "-n", walk["speech"]["name"], "-g", walk["rg"])
    assert "(InvalidIdentity)" in error and walk["storage"]["id"] in error, error


@pytest.fixture(scope="module")
def storage_cmk(own, az, walk):
    """The storage account's data under a customer-managed key (the seed's encryption step), set up with az."""
    boot, rg, storage = own.boot, walk["rg"], walk["storage"]
    vault_name = bs.vault_name("walk")
    vault = az.run("keyvault", "create", "-n", vault_name, "-g", rg, "-l", boot["location"],
                   "--enable-purge-protection", "true", "--enable-rbac-authorization", "true", "--retention-days", "7")
    uri = vault["properties"]["vaultUri"]
    az.run("role", "assignment", "create", "--assignee", boot["admin"]["client_id"], "--role", "Key Vault Crypto Officer",
           "--scope", vault["id"])
    key = az.run("keyvault", "key", "create", "--id", f"{uri}keys/walk", "--kty", "RSA", "--size", "2048")
    identity = az.run("storage", "account", "update", "-n", storage["name"], "-g", rg, "--assign-identity")["identity"]
    az.run("role", "assignment", "create", "--assignee-object-id", identity["principalId"],
           "--assignee-principal-type", "ServicePrincipal", "--role", "Key Vault Crypto Service Encryption User",
           "--scope", vault["id"])
    az.run("storage", "account", "update", "-n", storage["name"], "-g", rg, "--encryption-key-source",
           "Microsoft.Keyvault", "--encryption-key-vault", uri, "--encryption-key-name", "walk")
    return {"uri": uri, "key_id": key["key"]["kid"]}


def test_a_revoked_storage_key_makes_the_dataset_fail_with_the_explanation(own, az, walk, storage_cmk):
    import time

    assert _upload(walk, b"under the customer's key\n")["status"] == "Succeeded"
    az.run("keyvault", "key", "set-attributes", "--id", storage_cmk["key_id"], "--enabled", "false")
    try:
        time.sleep(1.5)  # the server's customer-key cache in tests is 1 s
        done = _upload(walk, b"key revoked\n")
        assert done["status"] == "Failed", done
        message = done["properties"]["error"]["message"]
        assert "customer-managed key" in message and walk["storage"]["id"] in message, message
    finally:
        az.run("keyvault", "key", "set-attributes", "--id", storage_cmk["key_id"], "--enabled", "true")
    assert _upload(walk, b"key back\n")["status"] == "Succeeded"
