"""Regression tests for F18 (credential revocation): `byos principal delete|reset` and
`byos identity rotate-header`, through the CLI, the token endpoint, ARM and ManagedIdentityCredential."""

import json

import requests

import byos_support as bs


def _token_response(boot, client_id, client_secret):
    url = f"{boot['authority'].rstrip('/')}/{boot['tenant_id']}/oauth2/v2.0/token"
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret,
            "scope": bs.MGMT_SCOPE}
    return requests.post(url, data=form, verify=boot["ca_file"], timeout=30)


def _token(boot, principal):
    resp = _token_response(boot, principal.client_id, principal.client_secret)
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]


def _principal_cli(server, verb, principal):
    return server.cli("principal", verb, "--data-dir", str(server.data_dir), "--principal", principal)


def _read_group(boot, sub, rg, token):
    return bs.arm_get(boot, f"/subscriptions/{sub}/resourcegroups/{rg}", token,
                      params={"api-version": bs.RG_API_VERSION})


def _msi_token_response(boot, header):
    return requests.get(
        boot["managed_identity_endpoint"],
        params={"api-version": "2019-08-01", "resource": "https://management.azure.com"},
        headers={"X-IDENTITY-HEADER": header}, verify=boot["ca_file"], timeout=30,
    )


def test_regression_f18_principal_delete_revokes_secret_and_tokens(server, boot, sub, make_rg, new_principal,
                                                                     assign, admin_auth):
    rg = make_rg("f18-del")
    app = new_principal("f18-del")
    assign(bs.rg_scope(sub, rg), bs.READER, app.object_id)
    token = _token(boot, app)
    assert _read_group(boot, sub, rg, token).status_code == 200

    res = _principal_cli(server, "delete", app.client_id)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["object_id"] == app.object_id

    bs.assert_raw_arm_error(_read_group(boot, sub, rg, token), 401, "InvalidAuthenticationToken")
    resp = _token_response(boot, app.client_id, app.client_secret)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] == "unauthorized_client"
    assert resp.json()["error_codes"] == [700016]
    # As in Azure, the assignment stays (shown for a principal that no longer exists) and grants nothing.
    listed = [a.principal_id for a in admin_auth.role_assignments.list_for_scope(bs.rg_scope(sub, rg))]
    assert app.object_id in listed

    again = _principal_cli(server, "delete", app.object_id)
    assert again.returncode != 0 and "No service principal" in again.stderr, again.stderr


def test_regression_f18_principal_reset_replaces_the_secret(server, boot, sub, make_rg, new_principal, assign):
    rg = make_rg("f18-reset")
    app = new_principal("f18-reset")
    assign(bs.rg_scope(sub, rg), bs.READER, app.object_id)
    issued_before = _token(boot, app)

    res = _principal_cli(server, "reset", app.object_id)
    assert res.returncode == 0, res.stderr
    reset = json.loads(res.stdout)
    assert reset["client_id"] == app.client_id and reset["object_id"] == app.object_id
    assert reset["client_secret"] and reset["client_secret"] != app.client_secret

    old = _token_response(boot, app.client_id, app.client_secret)
    assert old.status_code == 401, old.text
    assert old.json()["error"] == "invalid_client"
    assert old.json()["error_codes"] == [7000215]
    new = _token_response(boot, app.client_id, reset["client_secret"])
    assert new.status_code == 200, new.text
    assert _read_group(boot, sub, rg, new.json()["access_token"]).status_code == 200
    # Tokens issued before the reset live until they expire, as in Entra.
    assert _read_group(boot, sub, rg, issued_before).status_code == 200


def test_regression_f18_bootstrap_admin_cannot_be_deleted_or_reset(server, boot, admin_arm):
    for verb in ("delete", "reset"):
        res = _principal_cli(server, verb, boot["admin"]["client_id"])
        assert res.returncode != 0, f"`principal {verb}` of the bootstrap admin succeeded: {res.stdout}"
        assert "bootstrap admin" in res.stderr, res.stderr
    resp = _token_response(boot, boot["admin"]["client_id"], boot["admin"]["client_secret"])
    assert resp.status_code == 200, resp.text


def test_regression_f18_managed_identity_is_not_a_deletable_principal(server, make_rg, make_identity):
    identity = make_identity(make_rg("f18-mi-del"))
    res = _principal_cli(server, "delete", identity.client_id)
    assert res.returncode != 0 and "No service principal" in res.stderr, res.stderr
    assert server.identity_env(identity.id)["IDENTITY_HEADER"]


def test_regression_f18_identity_header_rotation(server, boot, make_rg, make_identity):
    identity = make_identity(make_rg("f18-hdr"))
    old_env = server.identity_env(identity.id)
    assert _msi_token_response(boot, old_env["IDENTITY_HEADER"]).status_code == 200

    res = server.cli("identity", "rotate-header", "--data-dir", str(server.data_dir), "--identity", identity.id)
    assert res.returncode == 0, res.stderr

    refused = _msi_token_response(boot, old_env["IDENTITY_HEADER"])
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"] == "unauthorized_client"
    new_env = server.identity_env(identity.id)
    assert new_env["IDENTITY_HEADER"] != old_env["IDENTITY_HEADER"]
    report = bs.run_mi_probe(bs.workload_env(boot["ca_file"], new_env), client_id=identity.client_id)
    assert "token" in report, report
    assert bs.jwt_claims(report["token"])["oid"] == identity.principal_id
    stale = bs.run_mi_probe(bs.workload_env(boot["ca_file"], old_env), client_id=identity.client_id)
    assert "token_error" in stale, stale
