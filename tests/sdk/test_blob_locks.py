"""The account's locks on the Blob data plane, each with Azure's exact status and code and byos's
x-byos-denial explanation: allowSharedKeyAccess=false, the IP firewall (exact addresses and CIDR
ranges, by the client's real TCP source address), resource instance rules (a workload acting as another
resource's managed identity), publicNetworkAccess=Disabled, and CORS (preflight and actual requests).

Management calls always come from 127.0.0.1; data-plane clients pick their source address with
byos_support.source_address_transport.
"""

from types import SimpleNamespace

import pytest
import requests
from azure.mgmt.storage.models import (
    BlobServiceProperties,
    CorsRule,
    CorsRules,
    Identity,
    IPRule,
    NetworkRuleSet,
    ResourceAccessRule,
)
from azure.storage.blob import (
    AccountSasPermissions,
    BlobSasPermissions,
    ResourceTypes,
    generate_account_sas,
    generate_blob_sas,
)

import byos_support as bs

BLOB = "locked.txt"
DATA = b"behind the locks"
STUDIO_ORIGIN = "https://studio.example"


def _account_with_blob(make_account, ca, tag, **properties):
    """A new account holding one container with BLOB (written with Shared Key before any lock is set)."""
    account = make_account(tag=tag, **properties)
    service = bs.blob_service(account.blob_url, account.shared_key(), ca)
    container = bs.new_container(service, tag)
    container.get_blob_client(BLOB).upload_blob(DATA)
    return account, container.container_name


def _read(account, credential, container, ca, source_ip=None):
    return bs.read_blob(bs.blob_service(account.blob_url, credential, ca, source_ip=source_ip), container, BLOB)


# ---- allowSharedKeyAccess = false ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyless(make_account, admin_storage, principal_with_role, ca):
    """An account with a blob and a Data Contributor, then allowSharedKeyAccess set to false."""
    account, container = _account_with_blob(make_account, ca, "nokey")
    principal, _ = principal_with_role("nokey-contrib", bs.STORAGE_BLOB_DATA_CONTRIBUTOR, account.id)
    updated = bs.update_storage_account(admin_storage, account, allow_shared_key_access=False)
    return SimpleNamespace(account=account, container=container, principal=principal, updated=updated)


def test_update_turns_shared_key_access_off(keyless, admin_storage):
    assert keyless.updated.allow_shared_key_access is False
    got = admin_storage.storage_accounts.get_properties(keyless.account.rg, keyless.account.name)
    assert got.allow_shared_key_access is False


def test_shared_key_is_refused_when_disabled(keyless, ca):
    bs.expect_blob_denial(lambda: _read(keyless.account, keyless.account.shared_key(), keyless.container, ca),
                          403, "KeyBasedAuthenticationNotPermitted")


def test_account_sas_is_refused_when_shared_key_is_disabled(keyless, ca):
    account = keyless.account
    sas = generate_account_sas(account.name, account.keys["key1"],
                               ResourceTypes(service=True, container=True, object=True),
                               AccountSasPermissions(read=True, list=True), expiry=bs.utc_in(hours=1))
    bs.expect_blob_denial(lambda: _read(account, sas, keyless.container, ca),
                          403, "KeyBasedAuthenticationNotPermitted")


def test_service_sas_is_refused_when_shared_key_is_disabled(keyless, ca):
    account = keyless.account
    sas = generate_blob_sas(account.name, keyless.container, BLOB, account_key=account.keys["key1"],
                            permission=BlobSasPermissions(read=True), expiry=bs.utc_in(hours=1))
    bs.expect_blob_denial(lambda: _read(account, sas, keyless.container, ca),
                          403, "KeyBasedAuthenticationNotPermitted")


def test_user_delegation_sas_still_works_when_shared_key_is_disabled(keyless, ca):
    account = keyless.account
    key = bs.blob_service(account.blob_url, keyless.principal.credential, ca).get_user_delegation_key(
        bs.utc_in(minutes=-1), bs.utc_in(hours=1))
    sas = generate_blob_sas(account.name, keyless.container, BLOB, user_delegation_key=key,
                            permission=BlobSasPermissions(read=True), expiry=bs.utc_in(hours=1))
    assert bs.blob_at(account.blob_url_of(keyless.container, BLOB), sas, ca).download_blob().readall() == DATA


def test_bearer_token_still_works_when_shared_key_is_disabled(keyless, ca):
    assert _read(keyless.account, keyless.principal.credential, keyless.container, ca) == DATA


# ---- IP firewall ----------------------------------------------------------------------------------------------


def _firewalled(make_account, admin_storage, ca, tag, rule):
    account, container = _account_with_blob(make_account, ca, tag)
    bs.update_storage_account(admin_storage, account, network_rule_set=NetworkRuleSet(
        default_action="Deny", ip_rules=[IPRule(ip_address_or_range=rule)]))
    return account, container


@pytest.fixture(scope="module")
def ip_firewall(make_account, admin_storage, ca):
    return _firewalled(make_account, admin_storage, ca, "fwip", "127.0.0.2")


@pytest.fixture(scope="module")
def cidr_firewall(make_account, admin_storage, ca):
    return _firewalled(make_account, admin_storage, ca, "fwcidr", "127.0.0.0/30")


def test_ip_rule_admits_its_address(ip_firewall, ca):
    account, container = ip_firewall
    assert _read(account, account.shared_key(), container, ca, source_ip="127.0.0.2") == DATA


@pytest.mark.parametrize("source_ip", ["127.0.0.3", "127.0.0.1"])
def test_ip_rule_refuses_other_addresses(ip_firewall, ca, source_ip):
    account, container = ip_firewall
    bs.expect_blob_denial(lambda: _read(account, account.shared_key(), container, ca, source_ip=source_ip),
                          403, "AuthorizationFailure")


@pytest.mark.parametrize("source_ip", ["127.0.0.2", "127.0.0.3"])
def test_cidr_rule_admits_addresses_in_range(cidr_firewall, ca, source_ip):
    account, container = cidr_firewall
    assert _read(account, account.shared_key(), container, ca, source_ip=source_ip) == DATA


def test_cidr_rule_refuses_an_address_outside_the_range(cidr_firewall, ca):
    account, container = cidr_firewall
    bs.expect_blob_denial(lambda: _read(account, account.shared_key(), container, ca, source_ip="127.0.0.5"),
                          403, "AuthorizationFailure")


# ---- resource instance rules and publicNetworkAccess -----------------------------------------------------------


@pytest.fixture(scope="module")
def instance_caller(make_account, server, boot):
    """Account A with a system-assigned identity, and the environment of a workload acting as it."""
    account = make_account(tag="caller", identity=Identity(type="SystemAssigned"))
    assert account.resource.identity.principal_id
    return SimpleNamespace(account=account, principal_id=account.resource.identity.principal_id,
                           env=bs.workload_env(boot["ca_file"], server.identity_env(account.id)))


def _instance_only_rules(boot, caller):
    return NetworkRuleSet(default_action="Deny", bypass="None", ip_rules=[],
                          resource_access_rules=[ResourceAccessRule(tenant_id=boot["tenant_id"],
                                                                    resource_id=caller.account.id)])


@pytest.fixture(scope="module")
def instance_target(make_account, admin_storage, assign, principal_with_role, instance_caller, boot, ca):
    """Account B: Deny by default, no IP rules, bypass None, one resource access rule for account A;
    A's identity and an ordinary service principal both hold Storage Blob Data Reader on B."""
    account, container = _account_with_blob(make_account, ca, "target")
    assign(account.id, bs.STORAGE_BLOB_DATA_READER, instance_caller.principal_id)
    principal, _ = principal_with_role("target-reader", bs.STORAGE_BLOB_DATA_READER, account.id)
    bs.update_storage_account(admin_storage, account, network_rule_set=_instance_only_rules(boot, instance_caller))
    return SimpleNamespace(account=account, container=container, principal=principal)


def test_resource_access_rule_admits_the_listed_resources_identity(instance_caller, instance_target):
    report = bs.run_blob_probe(instance_caller.env, instance_target.account.blob_url, instance_target.container, BLOB)
    assert report == {"ok": True, "data": DATA.decode()}


def test_resource_access_rule_refuses_an_ordinary_principal(instance_target, ca):
    target = instance_target
    bs.expect_blob_denial(lambda: _read(target.account, target.principal.credential, target.container, ca),
                          403, "AuthorizationFailure")


def test_public_network_access_disabled_refuses_a_data_role_principal(make_account, admin_storage,
                                                                      principal_with_role, ca):
    account, container = _account_with_blob(make_account, ca, "nopublic")
    principal, _ = principal_with_role("nopublic-reader", bs.STORAGE_BLOB_DATA_READER, account.id)
    assert _read(account, principal.credential, container, ca) == DATA

    bs.update_storage_account(admin_storage, account, public_network_access="Disabled")

    bs.expect_blob_denial(lambda: _read(account, principal.credential, container, ca), 403, "AuthorizationFailure")


def test_public_network_access_disabled_admits_a_listed_resource_instance(make_account, admin_storage, assign,
                                                                          instance_caller, boot, ca):
    account, container = _account_with_blob(make_account, ca, "nopubrai")
    assign(account.id, bs.STORAGE_BLOB_DATA_READER, instance_caller.principal_id)
    bs.update_storage_account(admin_storage, account, public_network_access="Disabled",
                              network_rule_set=_instance_only_rules(boot, instance_caller))

    report = bs.run_blob_probe(instance_caller.env, account.blob_url, container, BLOB)
    assert report == {"ok": True, "data": DATA.decode()}


# ---- CORS ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cors(make_account, admin_storage, ca):
    """An account with one CORS rule for STUDIO_ORIGIN (GET, OPTIONS; max age 1000) and a blob:
    (blob url, read SAS for it)."""
    account, container = _account_with_blob(make_account, ca, "cors")
    rule = CorsRule(allowed_origins=[STUDIO_ORIGIN], allowed_methods=["GET", "OPTIONS"], allowed_headers=["*"],
                    exposed_headers=["*"], max_age_in_seconds=1000)
    admin_storage.blob_services.set_service_properties(
        account.rg, account.name, BlobServiceProperties(cors=CorsRules(cors_rules=[rule])))
    sas = generate_blob_sas(account.name, container, BLOB, account_key=account.keys["key1"],
                            permission=BlobSasPermissions(read=True), expiry=bs.utc_in(hours=1))
    return account.blob_url_of(container, BLOB), sas


def _preflight(url, ca, origin=STUDIO_ORIGIN, method="GET"):
    headers = {"Origin": origin}
    if method is not None:
        headers["Access-Control-Request-Method"] = method
    return requests.options(url, headers=headers, verify=ca, timeout=30)


def test_preflight_from_an_allowed_origin_is_allowed(cors, ca):
    url, _ = cors
    resp = _preflight(url, ca)
    assert resp.status_code == 200, resp.text
    assert resp.headers.get("Access-Control-Allow-Origin") == STUDIO_ORIGIN
    assert resp.headers.get("Access-Control-Max-Age") == "1000"


def test_preflight_origin_with_a_trailing_slash_does_not_match(cors, ca):
    url, _ = cors
    resp = _preflight(url, ca, origin=STUDIO_ORIGIN + "/")
    bs.assert_raw_blob_error(resp, 403, "CorsPreflightFailure")
    assert "Access-Control-Allow-Origin" not in resp.headers


def test_preflight_for_a_method_no_rule_allows_is_refused(cors, ca):
    url, _ = cors
    bs.assert_raw_blob_error(_preflight(url, ca, method="PUT"), 403, "CorsPreflightFailure")


def test_preflight_without_a_request_method_is_400(cors, ca):
    url, _ = cors
    resp = _preflight(url, ca, method=None)
    assert resp.status_code == 400, f"{resp.status_code}: {resp.text[:500]}"


def test_actual_request_from_an_allowed_origin_gets_cors_headers(cors, ca):
    url, sas = cors
    resp = requests.get(bs.with_sas(url, sas), headers={"Origin": STUDIO_ORIGIN}, verify=ca, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.content == DATA
    assert resp.headers.get("Access-Control-Allow-Origin") == STUDIO_ORIGIN
    assert resp.headers.get("Access-Control-Expose-Headers")


def test_actual_request_from_another_origin_gets_no_allow_origin(cors, ca):
    url, sas = cors
    resp = requests.get(bs.with_sas(url, sas), headers={"Origin": "https://evil.example"}, verify=ca, timeout=30)
    assert resp.status_code == 200, resp.text
    assert "Access-Control-Allow-Origin" not in resp.headers
