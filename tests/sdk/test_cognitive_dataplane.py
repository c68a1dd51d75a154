"""The data plane of an AI-services account at its `properties.endpoint`: the account's keys
(`Ocp-Apim-Subscription-Key`; regenerating one revokes it at once), its token service (`POST /sts/v1.0/issueToken`,
a 10-minute token usable as `Authorization: Bearer` on that account only), Entra tokens for Cognitive Services, and
the account's locks (`disableLocalAuth`, `networkAcls`, `publicNetworkAccess`), with errors in the Cognitive Services
format. The Speech and Document Intelligence APIs themselves have their own test files."""

import base64
import json

import pytest
import requests

import byos_support as bs
import cognitive_support as cs

COGNITIVE_SCOPE = "https://cognitiveservices.azure.com/.default"


@pytest.fixture(scope="module")
def rg(make_rg):
    return make_rg("cs-dp")


@pytest.fixture(scope="module")
def account(admin_cognitive, boot, rg):
    return cs.create_account(admin_cognitive, boot, rg, "SpeechServices")


def _keys(admin_cognitive, rg, account):
    return admin_cognitive.accounts.list_keys(rg, account.name)


def _issue(account, ca, key, session=requests):
    return session.post(account.properties.endpoint + "sts/v1.0/issueToken",
                        headers={"Ocp-Apim-Subscription-Key": key}, verify=ca, timeout=30)


def _get(account, ca, headers, path="no/such/api", session=requests):
    return session.get(account.properties.endpoint + path, headers=headers, verify=ca, timeout=30)


def _error(resp, status, code):
    assert resp.status_code == status, f"{resp.status_code}: {resp.text}"
    error = resp.json()["error"]
    assert error["code"] == code, error
    return error


def _claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_issue_token_with_either_key_gives_a_ten_minute_token(admin_cognitive, rg, account, ca):
    keys = _keys(admin_cognitive, rg, account)
    for key in (keys.key1, keys.key2):
        resp = _issue(account, ca, key)
        assert resp.status_code == 200, resp.text
        claims = _claims(resp.text)
        assert claims["exp"] - claims["iat"] == 600
        assert claims["azure-resource-id"] == account.id and claims["aud"] == "urn:ms.cognitiveservices"


def test_a_key_or_an_issued_token_authenticates(admin_cognitive, rg, account, ca):
    keys = _keys(admin_cognitive, rg, account)
    _error(_get(account, ca, {"Ocp-Apim-Subscription-Key": keys.key1}), 404, "404")
    token = _issue(account, ca, keys.key1).text
    _error(_get(account, ca, {"Authorization": f"Bearer {token}"}), 404, "404")


def test_a_wrong_or_missing_key_is_401(account, ca):
    error = _error(_get(account, ca, {"Ocp-Apim-Subscription-Key": "0" * 32}), 401, "401")
    assert "invalid subscription key" in error["message"]
    error = _error(_get(account, ca, {}), 401, "401")
    assert "missing subscription key" in error["message"]
    _error(_issue(account, ca, "0" * 32), 401, "401")


def test_the_token_service_needs_a_key(admin_cognitive, rg, account, ca):
    token = _issue(account, ca, _keys(admin_cognitive, rg, account).key1).text
    resp = requests.post(account.properties.endpoint + "sts/v1.0/issueToken",
                         headers={"Authorization": f"Bearer {token}"}, verify=ca, timeout=30)
    _error(resp, 401, "401")


def test_a_forged_token_is_401(admin_cognitive, rg, account, ca):
    token = _issue(account, ca, _keys(admin_cognitive, rg, account).key1).text
    header, payload, signature = token.split(".")
    forged = f"{header}.{payload}.{signature[:-4]}AAAA"
    _error(_get(account, ca, {"Authorization": f"Bearer {forged}"}), 401, "401")


def test_a_token_of_another_account_is_refused(admin_cognitive, boot, rg, account, ca):
    other = cs.create_account(admin_cognitive, boot, rg, "FormRecognizer")
    token = _issue(other, ca, _keys(admin_cognitive, rg, other).key1).text
    _error(_get(account, ca, {"Authorization": f"Bearer {token}"}), 401, "401")


def test_regenerating_a_key_revokes_it_at_once(admin_cognitive, boot, rg, ca):
    account = cs.create_account(admin_cognitive, boot, rg, "SpeechServices")
    old = _keys(admin_cognitive, rg, account).key1
    assert _issue(account, ca, old).status_code == 200
    new = admin_cognitive.accounts.regenerate_key(rg, account.name, "Key1").key1
    _error(_issue(account, ca, old), 401, "401")
    assert _issue(account, ca, new).status_code == 200


def test_an_entra_token_for_cognitive_services_authenticates(account, admin_cred, ca):
    token = admin_cred.get_token(COGNITIVE_SCOPE).token
    _error(_get(account, ca, {"Authorization": f"Bearer {token}"}), 404, "404")
    arm_token = admin_cred.get_token(bs.MGMT_SCOPE).token
    _error(_get(account, ca, {"Authorization": f"Bearer {arm_token}"}), 401, "401")


def test_disable_local_auth_refuses_keys_and_issued_tokens(admin_cognitive, boot, rg, ca):
    from azure.mgmt.cognitiveservices.models import Account, AccountProperties

    account = cs.create_account(admin_cognitive, boot, rg, "SpeechServices")
    key = _keys(admin_cognitive, rg, account).key1
    token = _issue(account, ca, key).text
    admin_cognitive.accounts.begin_update(rg, account.name, Account(properties=AccountProperties(disable_local_auth=True))).result()
    error = _error(_issue(account, ca, key), 403, "AuthenticationTypeDisabled")
    assert "Key based authentication is disabled" in error["message"]
    _error(_get(account, ca, {"Authorization": f"Bearer {token}"}), 403, "AuthenticationTypeDisabled")
    admin_cognitive.accounts.begin_update(rg, account.name, Account(properties=AccountProperties(disable_local_auth=False))).result()
    assert _issue(account, ca, key).status_code == 200


def test_the_firewall_admits_only_listed_addresses(admin_cognitive, boot, rg, ca):
    from azure.mgmt.cognitiveservices.models import IpRule, NetworkRuleSet

    account = cs.create_account(admin_cognitive, boot, rg, "SpeechServices", network_acls=NetworkRuleSet(
        default_action="Deny", ip_rules=[IpRule(value="127.0.0.2")]))
    key = _keys(admin_cognitive, rg, account).key1
    error = _error(_issue(account, ca, key, bs.source_address_session("127.0.0.3")), 403, "403")
    assert "Firewall" in error["message"]
    assert _issue(account, ca, key, bs.source_address_session("127.0.0.2")).status_code == 200


def test_public_network_access_disabled_refuses_every_address(admin_cognitive, boot, rg, ca):
    account = cs.create_account(admin_cognitive, boot, rg, "SpeechServices", public_network_access="Disabled")
    _error(_issue(account, ca, _keys(admin_cognitive, rg, account).key1), 403, "403")


def test_a_denial_tells_a_key_holder_only_the_check(admin_cognitive, boot, rg, ca):
    account = cs.create_account(admin_cognitive, boot, rg, "SpeechServices", public_network_access="Disabled")
    resp = _issue(account, ca, _keys(admin_cognitive, rg, account).key1)
    assert resp.headers.get("x-byos-denial") == "Network"
    assert "additionalInfo" not in resp.json()["error"]
