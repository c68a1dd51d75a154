"""Server lifecycle: state survives a restart, and the CLI fails clearly when no server runs.
Each test here uses its own server instance (`private_server`), never the session one."""

import json
import re

import byos_support as bs

CLEAR_NO_SERVER_MESSAGE = re.compile(r"server|running|connect|bootstrap", re.IGNORECASE)


def test_state_survives_a_restart(private_server):
    srv = private_server()
    before = srv.boot
    admin_arm = bs.resource_client(before, bs.admin_credential(before))
    rg = bs.create_resource_group(admin_arm, before, "restart")
    principal = srv.create_principal(bs.unique("byos-test-restart"))
    admin_auth = bs.authorization_client(before, bs.admin_credential(before))
    bs.assign_role(admin_auth, bs.rg_scope(before["subscription_id"], rg), bs.READER, principal["object_id"],
                   sub=before["subscription_id"])
    ca_pem = open(before["ca_file"]).read()

    after = srv.restart()

    for key in ("tenant_id", "subscription_id"):
        assert after[key] == before[key], key
    assert after["admin"]["client_id"] == before["admin"]["client_id"]
    assert open(after["ca_file"]).read() == ca_pem, "CA certificate changed across restart"
    assert bs.resource_client(after, bs.admin_credential(after)).resource_groups.get(rg).name == rg
    principal_cred = bs.client_secret_credential(after, principal["client_id"], principal["client_secret"])
    assert principal_cred.get_token(bs.MGMT_SCOPE).token
    assert bs.resource_client(after, principal_cred).resource_groups.get(rg).name == rg


def _assert_fails_clearly(res):
    assert res.returncode != 0, f"succeeded without a server: {res.stdout}"
    assert CLEAR_NO_SERVER_MESSAGE.search(res.stderr), f"unclear error message: {res.stderr!r}"
    assert not _looks_like_principal(res.stdout), res.stdout


def _looks_like_principal(stdout):
    try:
        return "client_secret" in json.loads(stdout)
    except ValueError:
        return False


def test_principal_create_fails_clearly_on_a_fresh_data_dir(byos_bin, tmp_path):
    data_dir = tmp_path / "never-served"
    data_dir.mkdir()
    _assert_fails_clearly(bs.run_byos(byos_bin, "principal", "create", "--data-dir", str(data_dir), "--name", "x"))


def test_principal_create_fails_clearly_after_the_server_stopped(private_server):
    srv = private_server()
    assert srv.stop() == 0
    _assert_fails_clearly(srv.cli("principal", "create", "--data-dir", str(srv.data_dir), "--name", "x"))


def test_regression_stale_vault_challenge_after_a_server_stops(private_server):
    """CI failed test_keyvault_ec with "not configured to acquire tokens for tenant ...": a private server's
    vault had held the same 127.0.0.1 port before, and the Key Vault SDK's process-wide challenge cache still
    named that stopped server's tenant. Stopping a server forgets the cached challenges."""
    srv = private_server()
    boot = srv.boot
    cred = bs.admin_credential(boot)
    rg = bs.create_resource_group(bs.resource_client(boot, cred), boot, "challenge")
    vault = bs.create_vault(bs.keyvault_mgmt_client(boot, cred), boot, rg,
                            access_policies=[bs.access_policy(boot["tenant_id"], boot["admin"]["object_id"])])
    bs.key_client(vault.uri, cred, boot["ca_file"]).create_rsa_key(bs.unique("challenge"))
    assert bs.keyvault_challenge_cache.get_challenge_for_url(vault.uri) is not None, "the SDK cached no challenge"

    assert srv.stop() == 0

    assert bs.keyvault_challenge_cache.get_challenge_for_url(vault.uri) is None
