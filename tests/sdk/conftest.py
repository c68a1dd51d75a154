"""Fixtures for the Azure-SDK-for-Python tests against a real `byos serve`.

One byos server runs for the whole session (own temp data dir, `--port 0`); tests keep out of each
other's way by using resource-group and principal names with random suffixes. Tests that stop or
restart a server get their own instance from `private_server`. Every server runs with
`bs.TEST_SERVER_ENV` in its environment (a 1 s customer-managed-key cache, so revocations show quickly).

The binary comes from $BYOS_BIN (scripts/test.sh sets it), else <repo>/target/debug/byos.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest
import requests

import byos_support as bs

# Never send loopback traffic through a proxy someone configured for the outside world.
os.environ["NO_PROXY"] = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"]))
os.environ["no_proxy"] = os.environ["NO_PROXY"]

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def byos_bin() -> Path:
    path = Path(os.environ.get("BYOS_BIN") or REPO_ROOT / "target" / "debug" / "byos")
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise RuntimeError(f"byos binary not found at {path}: run `cargo build --bin byos` or set BYOS_BIN")
    return path


@pytest.fixture(scope="session")
def server(byos_bin, tmp_path_factory) -> bs.ByosServer:
    srv = bs.ByosServer(byos_bin, tmp_path_factory.mktemp("byos-data"), env=bs.TEST_SERVER_ENV)
    srv.start()
    yield srv
    rc = srv.stop()
    assert rc == 0, f"byos serve exited with {rc} on SIGTERM\n{srv.log_tail()}"


@pytest.fixture(scope="session")
def boot(server) -> dict:
    return server.boot


@pytest.fixture(scope="session")
def sub(boot) -> str:
    return boot["subscription_id"]


@pytest.fixture(scope="session")
def ca(boot) -> str:
    return boot["ca_file"]


@pytest.fixture(scope="session")
def admin_cred(boot):
    return bs.admin_credential(boot)


@pytest.fixture(scope="session")
def admin_token(admin_cred) -> str:
    return admin_cred.get_token(bs.MGMT_SCOPE).token


# ---- client factories (for any credential) and the admin's clients ----------------------------


@pytest.fixture(scope="session")
def arm_client(boot) -> Callable:
    return lambda cred: bs.resource_client(boot, cred)


@pytest.fixture(scope="session")
def auth_client(boot) -> Callable:
    return lambda cred: bs.authorization_client(boot, cred)


@pytest.fixture(scope="session")
def msi_client(boot) -> Callable:
    return lambda cred: bs.identity_client(boot, cred)


@pytest.fixture(scope="session")
def admin_arm(arm_client, admin_cred):
    return arm_client(admin_cred)


@pytest.fixture(scope="session")
def admin_auth(auth_client, admin_cred):
    return auth_client(admin_cred)


@pytest.fixture(scope="session")
def admin_msi(msi_client, admin_cred):
    return msi_client(admin_cred)


# ---- things tests create ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def new_principal(server, boot) -> Callable[[str], bs.Principal]:
    """`new_principal(name)`: a fresh service principal with no roles (via `byos principal create`)."""

    def create(name: str) -> bs.Principal:
        info = server.create_principal(bs.unique(f"byos-test-{name}"))
        for key in ("client_id", "client_secret", "object_id", "display_name"):
            assert info.get(key), f"`principal create` output lacks {key}: {info}"
        cred = bs.client_secret_credential(boot, info["client_id"], info["client_secret"])
        return bs.Principal(info["client_id"], info["client_secret"], info["object_id"], info["display_name"], cred)

    return create


@pytest.fixture(scope="session")
def make_rg(admin_arm, boot) -> Callable[..., str]:
    """`make_rg(prefix="rg", tags=None)`: create a uniquely named resource group as admin; returns its name."""
    return lambda prefix="rg", tags=None: bs.create_resource_group(admin_arm, boot, prefix, tags)


@pytest.fixture(scope="session")
def make_identity(admin_msi, boot):
    """`make_identity(rg)`: create a user-assigned identity in `rg` as admin; returns the SDK Identity."""
    from azure.mgmt.msi.models import Identity

    def create(rg: str):
        return admin_msi.user_assigned_identities.create_or_update(
            rg, bs.unique("byos-test-id"), Identity(location=boot["location"])
        )

    return create


@pytest.fixture(scope="session")
def assign(admin_auth, sub) -> Callable:
    """`assign(scope, role_guid, principal_id)`: the admin creates a role assignment."""
    return lambda scope, role_guid, principal_id, **kw: bs.assign_role(
        admin_auth, scope, role_guid, principal_id, sub=sub, **kw
    )


# ---- storage accounts and blobs ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def storage_client(boot) -> Callable:
    """`storage_client(cred)`: a StorageManagementClient (azure-mgmt-storage) for any credential."""
    return lambda cred: bs.storage_client(boot, cred)


@pytest.fixture(scope="session")
def admin_storage(storage_client, admin_cred):
    return storage_client(admin_cred)


@pytest.fixture(scope="session")
def make_account(admin_storage, make_rg, boot) -> Callable[..., bs.StorageAccountRef]:
    """`make_account(rg=None, tag="", **properties)`: the admin creates a Standard_LRS StorageV2 account
    (in a new resource group unless `rg` is given; `properties` as StorageAccountCreateParameters takes
    them, e.g. identity=Identity(type="SystemAssigned"), allow_blob_public_access=True)."""

    def create(rg: str | None = None, tag: str = "", **properties) -> bs.StorageAccountRef:
        return bs.create_storage_account(admin_storage, boot, rg or make_rg("st"), bs.storage_account_name(tag),
                                         **properties)

    return create


@pytest.fixture(scope="session")
def shared_account(make_account) -> bs.StorageAccountRef:
    """One account with default settings for data-plane tests that change nothing account-wide
    (each test uses its own containers and principals)."""
    return make_account(tag="shared")


@pytest.fixture(scope="session")
def shared_service(shared_account, ca):
    """A Shared Key BlobServiceClient on `shared_account`."""
    return bs.blob_service(shared_account.blob_url, shared_account.shared_key(), ca)


@pytest.fixture
def container(shared_service):
    """A fresh container on `shared_account` (a ContainerClient using Shared Key)."""
    return bs.new_container(shared_service)


@pytest.fixture(scope="session")
def principal_with_role(new_principal, assign) -> Callable:
    """`principal_with_role(name, role_guid, scope)`: a new principal holding that role at that scope;
    returns (Principal, RoleAssignment)."""

    def create(name: str, role_guid: str, scope: str):
        principal = new_principal(name)
        return principal, assign(scope, role_guid, principal.object_id)

    return create


# ---- AI-services accounts ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def cognitive(boot) -> Callable:
    """`cognitive(cred)`: a CognitiveServicesManagementClient (azure-mgmt-cognitiveservices) for any credential."""
    import cognitive_support as cs

    return lambda cred: cs.cognitive_client(boot, cred)


@pytest.fixture(scope="session")
def admin_cognitive(cognitive, admin_cred):
    return cognitive(admin_cred)


# ---- the Azure CLI ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def az(boot, tmp_path_factory):
    """The unchanged Azure CLI (.venv-az) with its own config dir, signed in to the session server as the
    bootstrap admin: `az cloud register` with the resource manager's URL, `az cloud set`, `az login
    --service-principal` (az_support.py)."""
    import az_support

    return az_support.signed_in_as_admin(boot, tmp_path_factory.mktemp("az-config"))


# ---- Key Vault ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def keyvault_mgmt(boot) -> Callable:
    """`keyvault_mgmt(cred)`: a KeyVaultManagementClient (azure-mgmt-keyvault) for any credential."""
    return lambda cred: bs.keyvault_mgmt_client(boot, cred)


@pytest.fixture(scope="session")
def admin_keyvault(keyvault_mgmt, admin_cred):
    return keyvault_mgmt(admin_cred)


@pytest.fixture(scope="session")
def make_vault(admin_keyvault, make_rg, assign, boot) -> Callable[..., bs.VaultRef]:
    """`make_vault(rg=None, rbac=False, purge_protection=False, policies_for=None, tag="", tags=None,
    **properties)`: the admin creates a standard vault (in a new resource group unless `rg` is given) with a
    7-day soft-delete retention (pass soft_delete_retention_in_days=None for the default).

    The admin, an Owner, has no data-plane rights of its own (as in Azure), so the principals in
    `policies_for` (object ids; default: the admin) get full key rights: an access policy with keys=["all"]
    on an access-policy vault, or Key Vault Crypto Officer at the vault's scope on an RBAC vault (which is
    then created without access policies). `policies_for=[]` gives nobody anything."""

    def create(rg: str | None = None, rbac: bool = False, purge_protection: bool = False,
               policies_for: list[str] | None = None, tag: str = "", tags: dict[str, str] | None = None,
               **properties) -> bs.VaultRef:
        principals = [boot["admin"]["object_id"]] if policies_for is None else list(policies_for)
        properties.setdefault("soft_delete_retention_in_days", 7)
        properties.setdefault("access_policies",
                              [] if rbac else [bs.access_policy(boot["tenant_id"], oid) for oid in principals])
        # enablePurgeProtection is sent only to turn it on: Azure refuses an explicit false, even on create.
        vault = bs.create_vault(admin_keyvault, boot, rg or make_rg("kv"), bs.vault_name(tag), tags=tags,
                                enable_rbac_authorization=rbac, enable_purge_protection=purge_protection or None,
                                **properties)
        if rbac:
            for oid in principals:
                assign(vault.id, bs.KEY_VAULT_CRYPTO_OFFICER, oid)
        return vault

    return create


@pytest.fixture(scope="session")
def key_client(ca) -> Callable:
    """`key_client(vault_uri, cred)`: an azure-keyvault-keys KeyClient on that vault."""
    return lambda vault_uri, cred, **kw: bs.key_client(vault_uri, cred, ca, **kw)


@pytest.fixture(scope="session")
def crypto_client(ca) -> Callable:
    """`crypto_client(key_or_id, cred)`: a CryptographyClient for a KeyVaultKey or a key id."""
    return lambda key_or_id, cred, **kw: bs.crypto_client(key_or_id, cred, ca, **kw)


# ---- the token service --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def oidc(boot, ca) -> dict:
    """The tenant's OpenID Connect discovery document."""
    url = f"{boot['authority'].rstrip('/')}/{boot['tenant_id']}/v2.0/.well-known/openid-configuration"
    resp = requests.get(url, verify=ca, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()


# ---- private servers, for tests that stop or restart one -----------------------------------------


@pytest.fixture
def private_server(byos_bin, tmp_path) -> Callable[..., bs.ByosServer]:
    """`private_server(env=None)`: a started server with its own data dir and `bs.TEST_SERVER_ENV` (plus
    `env`, which overrides it) in its environment; stopped (and checked) at teardown."""
    servers: list[bs.ByosServer] = []

    def start(env: dict[str, str] | None = None) -> bs.ByosServer:
        srv = bs.ByosServer(byos_bin, tmp_path / f"byos-data-{len(servers)}",
                            env={**bs.TEST_SERVER_ENV, **(env or {})})
        srv.data_dir.mkdir()
        servers.append(srv)
        srv.start()
        return srv

    yield start
    for srv in servers:
        if srv.proc is not None:
            rc = srv.stop()
            assert rc == 0, f"byos serve exited with {rc} on SIGTERM\n{srv.log_tail()}"


# ---- diagnostics ------------------------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """When a test fails, attach the tail of the session server's log to its report."""
    outcome = yield
    report = outcome.get_result()
    srv = item.funcargs.get("server") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(srv, bs.ByosServer):
        report.sections.append(("byos server log", srv.log_tail(60)))
