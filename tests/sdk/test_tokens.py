"""The Entra-compatible token service: discovery, signed JWTs checked with an independent library (PyJWT),
token-endpoint errors, and how ARM treats bad tokens."""

import time
import uuid

import jwt
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError

import byos_support as bs

CLOCK_SKEW_S = 300


def _post_token(url, ca, client_id, client_secret, scope=bs.MGMT_SCOPE):
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret,
            "scope": scope}
    return requests.post(url, data=form, verify=ca, timeout=30)


def _verify(token, oidc, ca, audience):
    """Verify signature, algorithm, audience, issuer and time claims against the published JWKS."""
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"
    jwks = requests.get(oidc["jwks_uri"], verify=ca, timeout=30).json()
    matching = [k for k in jwks["keys"] if k.get("kid") == header.get("kid")]
    assert len(matching) == 1, f"kid {header.get('kid')!r} not (uniquely) in JWKS {jwks}"
    return jwt.decode(
        token,
        jwt.PyJWK(matching[0]).key,
        algorithms=["RS256"],
        audience=audience,
        issuer=oidc["issuer"],
        options={"require": ["aud", "iss", "exp", "iat", "nbf"]},
        leeway=CLOCK_SKEW_S,
    )


def test_discovery_document_has_what_msal_and_verifiers_need(oidc, boot):
    for key in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri"):
        assert oidc.get(key), f"discovery lacks {key}: {oidc}"
    assert oidc["token_endpoint"].startswith("https://")
    assert boot["tenant_id"] in oidc["token_endpoint"]


def test_admin_token_verifies_against_published_keys(admin_token, oidc, boot, ca):
    claims = _verify(admin_token, oidc, ca, audience=bs.MGMT_AUDIENCES)
    assert claims["tid"] == boot["tenant_id"]
    assert claims["oid"] == boot["admin"]["object_id"]
    assert claims["appid"] == boot["admin"]["client_id"]
    now = time.time()
    assert claims["iat"] <= now + CLOCK_SKEW_S
    assert claims["nbf"] <= now + CLOCK_SKEW_S
    assert claims["exp"] > now


def test_token_for_another_resource_has_that_audience(admin_cred, oidc, ca):
    token = admin_cred.get_token(bs.STORAGE_SCOPE).token
    claims = _verify(token, oidc, ca, audience=["https://storage.azure.com", "https://storage.azure.com/"])
    assert claims["aud"].rstrip("/") == "https://storage.azure.com"


# ---- ARM rejects bad tokens --------------------------------------------------------------------------


def _list_groups(boot, token):
    return bs.arm_get(boot, f"/subscriptions/{boot['subscription_id']}/resourcegroups", token,
                      params={"api-version": bs.RG_API_VERSION})


def test_valid_admin_token_lists_groups(boot, admin_token):
    resp = _list_groups(boot, admin_token)
    assert resp.status_code == 200, resp.text
    assert isinstance(resp.json()["value"], list)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: bs.with_tampered_claim(t, "oid", str(uuid.uuid4())),
        lambda t: bs.with_tampered_claim(t, "exp", int(time.time()) + 10 * 365 * 86400),
        lambda t: t.rsplit(".", 1)[0] + ".",
        lambda t: bs.with_header(t, {"alg": "none", "typ": "JWT"}, keep_signature=False),
        lambda t: "not-a-jwt",
    ],
    ids=["changed-oid", "extended-exp", "signature-stripped", "alg-none", "garbage"],
)
def test_tampered_token_is_401_invalid_authentication_token(boot, admin_token, tamper):
    bs.assert_raw_arm_error(_list_groups(boot, tamper(admin_token)), 401, "InvalidAuthenticationToken")


def test_token_for_wrong_audience_is_401(boot, admin_cred):
    storage_token = admin_cred.get_token(bs.STORAGE_SCOPE).token
    bs.assert_raw_arm_error(_list_groups(boot, storage_token), 401, "InvalidAuthenticationTokenAudience")


def test_missing_authorization_header_is_401(boot):
    bs.assert_raw_arm_error(_list_groups(boot, None), 401)


# ---- token endpoint errors -----------------------------------------------------------------------------


def test_token_endpoint_issues_bearer_tokens(oidc, boot, ca):
    resp = _post_token(oidc["token_endpoint"], ca, boot["admin"]["client_id"], boot["admin"]["client_secret"])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"].lower() == "bearer"
    assert int(body["expires_in"]) > 0
    assert bs.jwt_claims(body["access_token"])["appid"] == boot["admin"]["client_id"]


def test_wrong_secret_is_401_invalid_client(oidc, boot, ca):
    resp = _post_token(oidc["token_endpoint"], ca, boot["admin"]["client_id"], "wrong-secret")
    assert resp.status_code == 401, resp.text
    assert resp.json()["error"] == "invalid_client"
    assert resp.json().get("error_description")


def test_unknown_client_is_400_unauthorized_client(oidc, ca):
    resp = _post_token(oidc["token_endpoint"], ca, str(uuid.uuid4()), "whatever")
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] == "unauthorized_client"


def test_unknown_tenant_discovery_is_400(boot, ca):
    url = f"{boot['authority'].rstrip('/')}/{uuid.uuid4()}/v2.0/.well-known/openid-configuration"
    resp = requests.get(url, verify=ca, timeout=30)
    assert resp.status_code == 400, resp.text
    assert resp.json().get("error")


def test_unknown_tenant_token_request_is_400(oidc, boot, ca):
    url = oidc["token_endpoint"].replace(boot["tenant_id"], str(uuid.uuid4()))
    resp = _post_token(url, ca, boot["admin"]["client_id"], boot["admin"]["client_secret"])
    assert resp.status_code == 400, resp.text
    assert resp.json().get("error")


def test_client_secret_credential_with_wrong_secret_raises(boot):
    cred = bs.client_secret_credential(boot, boot["admin"]["client_id"], "wrong-secret")
    with pytest.raises(ClientAuthenticationError):
        cred.get_token(bs.MGMT_SCOPE)
