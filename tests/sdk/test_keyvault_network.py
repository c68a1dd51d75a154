"""A vault's network rules, enforced on its keys data plane: `networkAcls` (defaultAction Deny admits only the
listed IPv4 addresses and CIDR ranges, and with bypass AzureServices the Azure services Key Vault trusts) and
`publicNetworkAccess: Disabled`. Refusals are Key Vault's 403 Forbidden with innererror ForbiddenByFirewall /
ForbiddenByConnection, explained by byos. Clients pick their source address in 127.0.0.0/8.

How storage accounts reach a vault with a firewall (customer-managed keys) is in test_cmk.py.
"""

import pytest
from azure.core.exceptions import HttpResponseError

import byos_support as bs

ALLOWED, OTHER = "127.0.0.2", "127.0.0.3"


def _keys_from(vault, cred, ca, source_ip):
    return bs.key_client(vault.uri, cred, ca, source_ip=source_ip)


def _expect_refused(call, inner: str) -> dict:
    error = bs.expect_keyvault_error(call, 403, "Forbidden", inner)
    explanations = [i for i in error.get("additionalInfo") or [] if i.get("type") == "ByosAccessExplanation"]
    assert explanations, f"the denial is not explained: {error}"
    return error


@pytest.fixture
def firewalled(make_vault):
    """An access-policy vault (the admin has every key permission) admitting only ALLOWED and 127.0.0.1/32."""
    return make_vault(tag="kvfw", network_acls=bs.network_rules(ips=(f"{ALLOWED}/32", "127.0.0.1")))


def test_network_rules_round_trip(firewalled):
    acls = firewalled.resource.properties.network_acls
    assert (bs.text_of(acls.default_action), bs.text_of(acls.bypass)) == ("Deny", "AzureServices")
    assert sorted(r.value for r in acls.ip_rules) == sorted([f"{ALLOWED}/32", "127.0.0.1"])


def test_get_vault_shows_the_network_rules(admin_keyvault, firewalled):
    acls = admin_keyvault.vaults.get(firewalled.rg, firewalled.name).properties.network_acls
    assert bs.text_of(acls.default_action) == "Deny" and len(acls.ip_rules) == 2


def test_listed_address_is_admitted(firewalled, admin_cred, ca):
    keys = _keys_from(firewalled, admin_cred, ca, ALLOWED)
    key = keys.create_rsa_key(bs.unique("fw"), size=2048)
    assert keys.get_key(key.name).id == key.id


def test_unlisted_address_is_forbidden_by_firewall(firewalled, admin_cred, ca):
    keys = _keys_from(firewalled, admin_cred, ca, OTHER)
    error = _expect_refused(lambda: keys.create_rsa_key(bs.unique("fw"), size=2048), "ForbiddenByFirewall")
    assert f"Client address: {OTHER}" in error["message"], error["message"]


def test_refused_operations_touch_nothing(firewalled, admin_cred, ca):
    name = bs.unique("fw")
    _expect_refused(lambda: _keys_from(firewalled, admin_cred, ca, OTHER).create_rsa_key(name, size=2048),
                    "ForbiddenByFirewall")
    bs.expect_keyvault_error(lambda: _keys_from(firewalled, admin_cred, ca, ALLOWED).get_key(name), 404, "KeyNotFound")


def test_allowing_by_default_opens_the_vault(admin_keyvault, firewalled, admin_cred, ca):
    keys = _keys_from(firewalled, admin_cred, ca, OTHER)
    _expect_refused(lambda: keys.create_rsa_key(bs.unique("fw"), size=2048), "ForbiddenByFirewall")
    bs.update_vault(admin_keyvault, firewalled, network_acls=bs.network_rules(default_action="Allow"))
    assert keys.create_rsa_key(bs.unique("fw"), size=2048).key_type


def test_disabled_public_network_access_refuses_every_address(admin_keyvault, make_vault, admin_cred, ca):
    vault = make_vault(tag="kvpna", public_network_access="Disabled")
    assert bs.text_of(admin_keyvault.vaults.get(vault.rg, vault.name).properties.public_network_access) == "Disabled"
    for source in (ALLOWED, "127.0.0.1"):
        _expect_refused(lambda: _keys_from(vault, admin_cred, ca, source).create_rsa_key(bs.unique("pna"), size=2048),
                        "ForbiddenByConnection")
    bs.update_vault(admin_keyvault, vault, public_network_access="Enabled")
    assert _keys_from(vault, admin_cred, ca, ALLOWED).create_rsa_key(bs.unique("pna"), size=2048).key_type


@pytest.mark.parametrize("rules", [
    {"ips": ("not-an-address",)},
    {"ips": ("127.0.0.1/33",)},
    {"bypass": "Everyone"},
    {"default_action": "Sometimes"},
], ids=["bad-address", "bad-prefix", "bad-bypass", "bad-default-action"])
def test_malformed_network_rules_are_refused(make_vault, rules):
    exc = bs.expect_http_error(lambda: make_vault(tag="kvbad", network_acls=bs.network_rules(**rules)))
    assert exc.status_code == 400, exc.message


def test_public_network_access_must_be_enabled_or_disabled(make_vault):
    exc = bs.expect_http_error(lambda: make_vault(tag="kvbad", public_network_access="Sometimes"))
    assert exc.status_code == 400, exc.message


def test_firewall_denials_are_audited(firewalled, admin_cred, ca, server):
    keys = _keys_from(firewalled, admin_cred, ca, ALLOWED)
    key = keys.create_rsa_key(bs.unique("fw"), size=2048)
    with pytest.raises(HttpResponseError):
        _keys_from(firewalled, admin_cred, ca, OTHER).get_key(key.name)
    entries = server.audit_list(firewalled.name)
    # The SDK's first, token-less challenge request is recorded too (as "unauthenticated").
    assert [(e["operation"], e["result"]) for e in entries
            if e["key"].endswith(f"keys/{key.name}") and e["result"] != "unauthenticated"] == [
        ("create", "success"), ("get", "denied")]
