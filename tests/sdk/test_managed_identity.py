"""User-assigned managed identities: ARM CRUD via azure-mgmt-msi, and tokens through azure-identity's
ManagedIdentityCredential, both the App Service protocol (`byos identity env`) and IMDS
(`byos identity bind-host`). Workloads run in a subprocess (mi_probe.py) with their own environment.
"""

from contextlib import contextmanager

import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError

import byos_support as bs


def _identity_workload(server, boot, identity_selector, **probe_args):
    """Run mi_probe.py with the environment `byos identity env` prints for the identity."""
    env = bs.workload_env(boot["ca_file"], server.identity_env(identity_selector))
    return bs.run_mi_probe(env, **probe_args)


def _read_group_as_identity(server, boot, identity, rg):
    return _identity_workload(
        server, boot, identity.id, client_id=identity.client_id,
        resource_manager=boot["resource_manager"], subscription=boot["subscription_id"], resource_group=rg,
    )


def _token(report):
    assert "token" in report, f"no token: {report.get('token_error')}"
    return report["token"]


# ---- ARM -------------------------------------------------------------------------------------------


def test_create_user_assigned_identity(make_rg, make_identity, boot, sub):
    rg = make_rg("msi")
    identity = make_identity(rg)
    assert identity.client_id and identity.principal_id
    assert identity.client_id != identity.principal_id
    assert identity.tenant_id == boot["tenant_id"]
    assert identity.location == boot["location"]
    expected_id = f"{bs.rg_scope(sub, rg)}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{identity.name}"
    assert identity.id.lower() == expected_id.lower()


def test_get_and_list_user_assigned_identities(admin_msi, make_rg, make_identity):
    rg = make_rg("msi")
    identity = make_identity(rg)

    got = admin_msi.user_assigned_identities.get(rg, identity.name)
    assert (got.client_id, got.principal_id, got.tenant_id) == (
        identity.client_id, identity.principal_id, identity.tenant_id)
    assert [i.name for i in admin_msi.user_assigned_identities.list_by_resource_group(rg)] == [identity.name]


def test_deleting_a_resource_group_deletes_its_identities(admin_arm, admin_msi, make_rg, make_identity, boot):
    rg = make_rg("msi-cascade")
    identity = make_identity(rg)
    admin_arm.resource_groups.begin_delete(rg).result()

    assert identity.id.lower() not in {i.id.lower() for i in admin_msi.user_assigned_identities.list_by_subscription()}
    # A new group of the same name must not bring the identity back.
    admin_arm.resource_groups.create_or_update(rg, {"location": boot["location"]})
    with pytest.raises(ResourceNotFoundError):
        admin_msi.user_assigned_identities.get(rg, identity.name)


# ---- App Service protocol: `byos identity env` -------------------------------------------------------


def test_identity_env_prints_the_app_service_variables(server, make_rg, make_identity):
    env = server.identity_env(make_identity(make_rg("msi-env")).id)
    assert env["IDENTITY_ENDPOINT"].startswith("https://")
    assert env["IDENTITY_HEADER"]


@pytest.mark.parametrize("pass_client_id", [True, False], ids=["with-client-id", "without-client-id"])
def test_managed_identity_credential_gets_a_token_for_the_identity(server, boot, make_rg, make_identity,
                                                                   pass_client_id):
    identity = make_identity(make_rg("msi-token"))
    report = _identity_workload(server, boot, identity.id, client_id=identity.client_id if pass_client_id else None)
    claims = bs.jwt_claims(_token(report))
    assert claims["oid"] == identity.principal_id
    assert claims["tid"] == boot["tenant_id"]
    assert claims["aud"] in bs.MGMT_AUDIENCES


def test_identity_env_accepts_a_client_id(server, boot, make_rg, make_identity):
    identity = make_identity(make_rg("msi-byclient"))
    report = _identity_workload(server, boot, identity.client_id)
    assert bs.jwt_claims(_token(report))["oid"] == identity.principal_id


def test_identity_token_is_subject_to_rbac(server, boot, make_rg, make_identity, assign, sub):
    rg = make_rg("msi-rbac")
    identity = make_identity(rg)

    before = _read_group_as_identity(server, boot, identity, rg)
    assert before["rg"] == {"ok": False, "status": 403, "code": "AuthorizationFailed"}

    assign(bs.rg_scope(sub, rg), bs.READER, identity.principal_id)
    after = _read_group_as_identity(server, boot, identity, rg)
    assert after["rg"] == {"ok": True, "name": rg}


def test_deleted_identity_can_no_longer_authenticate(server, boot, admin_msi, make_rg, make_identity, assign, sub):
    rg = make_rg("msi-gone")
    identity = make_identity(rg)
    assign(bs.rg_scope(sub, rg), bs.READER, identity.principal_id)
    env = bs.workload_env(boot["ca_file"], server.identity_env(identity.id))
    old_token = _token(bs.run_mi_probe(env, client_id=identity.client_id))
    group_path = f"/subscriptions/{sub}/resourcegroups/{rg}"
    assert bs.arm_get(boot, group_path, old_token, params={"api-version": bs.RG_API_VERSION}).status_code == 200

    admin_msi.user_assigned_identities.delete(rg, identity.name)

    resp = bs.arm_get(boot, group_path, old_token, params={"api-version": bs.RG_API_VERSION})
    bs.assert_raw_arm_error(resp, 401)
    assert "token_error" in bs.run_mi_probe(env, client_id=identity.client_id)


# ---- IMDS: `byos identity bind-host` ------------------------------------------------------------------


def _imds_token_response(boot, client_id=None):
    params = {"api-version": "2018-02-01", "resource": "https://management.azure.com"}
    if client_id:
        params["client_id"] = client_id
    return requests.get(
        f"{boot['resource_manager'].rstrip('/')}/metadata/identity/oauth2/token",
        params=params, headers={"Metadata": "true"}, verify=boot["ca_file"], timeout=30,
    )


def _assert_imds_refuses(resp):
    assert resp.status_code == 400, f"{resp.status_code}: {resp.text[:500]}"
    assert resp.json().get("error_description"), resp.text


@contextmanager
def _bound_to_host(server, identity):
    server.identity_host_binding("bind-host", identity.id)
    try:
        yield
    finally:
        server.identity_host_binding("unbind-host", identity.id)


def test_imds_without_a_bound_identity_is_400(boot):
    _assert_imds_refuses(_imds_token_response(boot))


def test_imds_serves_the_bound_identity_until_unbound(server, boot, make_rg, make_identity):
    identity = make_identity(make_rg("imds"))
    with _bound_to_host(server, identity):
        resp = _imds_token_response(boot)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert bs.jwt_claims(body["access_token"])["oid"] == identity.principal_id
        assert body.get("expires_in") or body.get("expires_on")
    _assert_imds_refuses(_imds_token_response(boot))


def test_azure_identity_uses_imds_when_the_host_is_bound(server, boot, make_rg, make_identity):
    identity = make_identity(make_rg("imds-sdk"))
    env = bs.workload_env(boot["ca_file"], {"AZURE_POD_IDENTITY_AUTHORITY_HOST": boot["resource_manager"]})
    with _bound_to_host(server, identity):
        report = bs.run_mi_probe(env)
    assert bs.jwt_claims(_token(report))["oid"] == identity.principal_id
