"""Plain helpers shared by the SDK tests: the server process, CLI calls, ARM error checks, JWT decoding.

Fixtures live in conftest.py; everything here is ordinary code so test modules can import it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import re
import shlex
import signal
import stat
import subprocess
import sys
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jwt
import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.keyvault.keys._shared import http_challenge_cache as keyvault_challenge_cache

HERE = Path(__file__).resolve().parent
MI_PROBE = HERE / "mi_probe.py"
BLOB_PROBE = HERE / "blob_probe.py"

MGMT_SCOPE = "https://management.azure.com/.default"
STORAGE_SCOPE = "https://storage.azure.com/.default"
# Entra issues ARM tokens with either spelling of the audience; accept both.
MGMT_AUDIENCES = ["https://management.azure.com", "https://management.azure.com/"]
RG_API_VERSION = "2021-04-01"

OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"

RG_READ = "Microsoft.Resources/subscriptions/resourceGroups/read"
RG_WRITE = "Microsoft.Resources/subscriptions/resourceGroups/write"
ROLE_ASSIGNMENT_WRITE = "Microsoft.Authorization/roleAssignments/write"

BOOTSTRAP_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
CLI_TIMEOUT_S = 60

# How long the server caches an account's unwrapped customer-managed KEK before it uses the customer's key
# again (byos's default is 30 s, at most 60). Every test server runs with 1 s, so a revoked key shows within
# about a second; tests poll for it (every POLL_INTERVAL_S, up to POLL_TIMEOUT_S) instead of sleeping.
CMK_CACHE_ENV = "BYOS_CMK_CACHE_SECONDS"
TEST_SERVER_ENV = {CMK_CACHE_ENV: "1"}
POLL_INTERVAL_S = 0.2
POLL_TIMEOUT_S = 5.0


def unique(prefix: str) -> str:
    """A name no other test uses: prefix plus a random suffix."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def sub_scope(sub: str) -> str:
    return f"/subscriptions/{sub}"


def rg_scope(sub: str, rg: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}"


def role_definition_id(sub: str, role_guid: str) -> str:
    return f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{role_guid}"


def poll(fetch: Callable[[], Any], until: Callable[[Any], bool] = bool, *, timeout: float = POLL_TIMEOUT_S,
         interval: float = POLL_INTERVAL_S, ignore: tuple[type[BaseException], ...] = ()) -> Any:
    """Call `fetch` every `interval` seconds until `until(value)` holds or `timeout` passes; returns the last
    value either way (an exception of a type in `ignore` counts as "not yet" and is returned if it was last).
    For fixtures that must not fail themselves: the tests then assert on what was seen."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = fetch()
        except ignore as exc:  # noqa: PERF203 - polling
            value, done = exc, False
        else:
            done = until(value)
        if done or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def wait_until(predicate: Callable[[], Any], *, timeout: float = POLL_TIMEOUT_S, interval: float = POLL_INTERVAL_S,
               ignore: tuple[type[BaseException], ...] = (), what: str | None = None) -> Any:
    """Call `predicate` every `interval` seconds until it returns something truthy, and return that; fail after
    `timeout` seconds, naming the last value (or ignored exception) seen."""
    last = poll(predicate, timeout=timeout, interval=interval, ignore=ignore)
    if isinstance(last, BaseException) or not last:
        detail = f"{type(last).__name__}: {str(last)[:500]}" if isinstance(last, BaseException) else repr(last)
        raise AssertionError(f"{what or 'condition'} did not hold within {timeout}s; last seen: {detail}")
    return last


def refused(call: Callable[[], Any]) -> HttpResponseError | None:
    """The HttpResponseError `call` raises, or None when it succeeds (for polling until a call is refused)."""
    try:
        call()
    except HttpResponseError as exc:
        return exc
    return None


# --------------------------------------------------------------------------------------------------
# The server process and its command line


def forget_vault_challenges() -> None:
    """Empty azure-keyvault-keys' process-wide challenge cache. It is keyed by scheme://host:port and, in
    Azure, a vault's host is its own forever; here each vault is a 127.0.0.1 port, so once a server stops,
    a vault of another server (another tenant) may get the same port, and the SDK would ask the credential
    for a token of the stopped server's tenant from the cached challenge instead of reading the new one."""
    keyvault_challenge_cache.clear()


class ByosServer:
    """One `byos serve` process on its own data dir, on free ports (`--port 0`)."""

    def __init__(self, binary: Path, data_dir: Path, env: dict[str, str] | None = None):
        self.binary = binary
        self.data_dir = data_dir
        # Added to (and overriding) this process's environment for `byos serve`, e.g. TEST_SERVER_ENV.
        self.env = dict(env or {})
        self.log_path = data_dir.parent / f"{data_dir.name}.server.log"
        self.proc: subprocess.Popen | None = None
        self.boot: dict[str, Any] | None = None
        self._log = None

    @property
    def bootstrap_path(self) -> Path:
        return self.data_dir / "bootstrap.json"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, ports: tuple[int, int] | None = None) -> dict[str, Any]:
        """Start the server and wait for a *new* bootstrap.json; returns its contents. `ports` (resource manager,
        blob) pins the ports, e.g. to restart on the ones URLs stored before a crash name; else any free ports."""
        assert self.proc is None, "server already started"
        self.bootstrap_path.unlink(missing_ok=True)
        self._log = open(self.log_path, "ab")
        port_args = ["--port", str(ports[0]), "--blob-port", str(ports[1])] if ports else ["--port", "0"]
        self.proc = subprocess.Popen(
            [str(self.binary), "serve", "--data-dir", str(self.data_dir), *port_args],
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + BOOTSTRAP_TIMEOUT_S
        while not self.bootstrap_path.exists():
            rc = self.proc.poll()
            if rc is not None:
                self._forget_process()
                raise RuntimeError(
                    f"byos serve exited with {rc} before writing bootstrap.json\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                self._forget_process()
                raise RuntimeError(
                    f"byos serve wrote no bootstrap.json within {BOOTSTRAP_TIMEOUT_S}s\n{self.log_tail()}"
                )
            time.sleep(0.05)
        self.boot = json.loads(self.bootstrap_path.read_text())
        return self.boot

    def stop(self) -> int:
        """SIGTERM the server and return its exit code (kills it if it does not exit in time)."""
        assert self.proc is not None, "server not started"
        proc = self.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            self._forget_process()
            raise AssertionError(
                f"byos serve did not exit within {STOP_TIMEOUT_S}s of SIGTERM\n{self.log_tail()}"
            )
        self._forget_process()
        return rc

    def kill(self) -> None:
        """SIGKILL the server (a crash: nothing is shut down in order)."""
        assert self.proc is not None, "server not started"
        self.proc.kill()
        self.proc.wait()
        self._forget_process()

    def restart(self) -> dict[str, Any]:
        rc = self.stop()
        assert rc == 0, f"byos serve exited with {rc} on SIGTERM\n{self.log_tail()}"
        return self.start()

    def _forget_process(self) -> None:
        self.proc = None
        forget_vault_challenges()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no server log)"
        return "--- server log (tail) ---\n" + "\n".join(text.splitlines()[-lines:])

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """Run `byos <args...>` (args must include --data-dir where the command needs it)."""
        return run_byos(self.binary, *args)

    def create_principal(self, name: str) -> dict[str, str]:
        res = self.cli("principal", "create", "--data-dir", str(self.data_dir), "--name", name)
        assert res.returncode == 0, f"principal create failed ({res.returncode}): {res.stderr}"
        return json.loads(res.stdout)

    def identity_env(self, identity: str) -> dict[str, str]:
        res = self.cli("identity", "env", "--data-dir", str(self.data_dir), "--identity", identity)
        assert res.returncode == 0, f"identity env failed ({res.returncode}): {res.stderr}"
        return parse_exports(res.stdout)

    def identity_host_binding(self, verb: str, identity: str) -> None:
        res = self.cli("identity", verb, "--data-dir", str(self.data_dir), "--identity", identity)
        assert res.returncode == 0, f"identity {verb} failed ({res.returncode}): {res.stderr}"

    def audit_list(self, vault: str) -> list[dict[str, Any]]:
        """`byos audit list --vault NAME`: the vault's audit records, one JSON object a line."""
        res = self.cli("audit", "list", "--data-dir", str(self.data_dir), "--vault", vault)
        assert res.returncode == 0, f"audit list failed ({res.returncode}): {res.stderr}"
        records = []
        for line in res.stdout.splitlines():
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise AssertionError(f"audit list printed a line that is not JSON: {line!r}") from exc
        return records

    def feature_approve(self, namespace: str, name: str) -> dict[str, Any]:
        """`byos feature approve --namespace NS --name NAME`: the operator approves a preview feature."""
        res = self.cli("feature", "approve", "--data-dir", str(self.data_dir), "--namespace", namespace,
                       "--name", name)
        assert res.returncode == 0, f"feature approve failed ({res.returncode}): {res.stderr}"
        return json.loads(res.stdout)

    def audit_verify(self, vault: str) -> subprocess.CompletedProcess:
        """`byos audit verify --vault NAME` (the caller checks the exit code and output)."""
        return self.cli("audit", "verify", "--data-dir", str(self.data_dir), "--vault", vault)

    def doctor(self, account_id: str, json: bool = True, text_to_speech: bool = False) -> tuple[int, Any]:
        """`byos doctor ACCOUNT_ID [--json] [--text-to-speech]`: (exit code, the report parsed from its JSON; with
        json=False the printed table). The report is None when the command printed nothing (exit code 2)."""
        args = ["doctor", "--data-dir", str(self.data_dir), account_id]
        args += ["--json"] * json + ["--text-to-speech"] * text_to_speech
        res = self.cli(*args)
        if not json:
            return res.returncode, res.stdout
        return res.returncode, _json_or_none(res.stdout)


def module_server(binary: Path, data_dir: Path):
    """A started server for one test module (`yield from` it in a module fixture): for modules whose
    subscription state must not leak into the session server's. Stopped, and its exit code checked, at teardown."""
    srv = ByosServer(binary, data_dir, env=TEST_SERVER_ENV)
    srv.start()
    yield srv
    assert srv.stop() == 0, srv.log_tail()


def _json_or_none(text: str) -> Any:
    return json.loads(text) if text.strip() else None


def run_byos(binary: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(binary), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )


def parse_exports(text: str) -> dict[str, str]:
    """Parse `export KEY=VALUE` lines (values possibly shell-quoted) into a dict."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, value = words[1].split("=", 1)
            env[key] = value
    return env


# --------------------------------------------------------------------------------------------------
# Managed-identity workloads run in a subprocess so their environment never leaks into the tests

_AMBIENT_IDENTITY_PREFIXES = ("IDENTITY_", "MSI_", "IMDS_", "AZURE_")


def workload_env(ca_file: str, extra: dict[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_AMBIENT_IDENTITY_PREFIXES) and k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
    }
    env.update(extra)
    env["REQUESTS_CA_BUNDLE"] = ca_file
    return env


def run_mi_probe(
    env: dict[str, str],
    *,
    client_id: str | None = None,
    resource_manager: str | None = None,
    subscription: str | None = None,
    resource_group: str | None = None,
) -> dict[str, Any]:
    """Run mi_probe.py with `env`; returns its JSON report ({"token"} or {"token_error"}, maybe "rg")."""
    cmd = [sys.executable, str(MI_PROBE)]
    if client_id:
        cmd += ["--client-id", client_id]
    if resource_group:
        cmd += ["--resource-manager", resource_manager, "--subscription", subscription,
                "--resource-group", resource_group]
    res = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, f"mi_probe crashed ({res.returncode}):\n{res.stderr}"
    return json.loads(res.stdout)


# --------------------------------------------------------------------------------------------------
# Errors


def expect_http_error(call: Callable[[], Any]) -> HttpResponseError:
    with pytest.raises(HttpResponseError) as info:
        call()
    return info.value


def expect_arm_error(call: Callable[[], Any], status: int, code: str | tuple[str, ...]) -> dict[str, Any]:
    """`call` must fail with an ARM error of this status and code (or one of a tuple of acceptable codes);
    returns the raw `error` object."""
    exc = expect_http_error(call)
    # Not exc.response.json(): legacy-transport responses (azure-mgmt-authorization) only have text().
    body = json.loads(exc.response.text())
    assert exc.status_code == status, f"expected {status} {code}, got {exc.status_code}: {body}"
    assert body["error"]["code"] in _codes(code), body
    assert exc.error is not None and exc.error.code == body["error"]["code"]
    return body["error"]


def expect_authorization_failed(call: Callable[[], Any], action: str, scope: str) -> dict[str, Any]:
    """`call` must be denied with 403 AuthorizationFailed naming `action` and `scope`, with byos's explanation."""
    error = expect_arm_error(call, 403, "AuthorizationFailed")
    message = error["message"].lower()
    assert action.lower() in message, error["message"]
    assert scope.lower() in message, error["message"]
    explanations = [e for e in error.get("additionalInfo") or [] if e.get("type") == "ByosAccessExplanation"]
    assert explanations, f"no ByosAccessExplanation in additionalInfo: {error}"
    assert explanations[0]["info"]["action"].lower() == action.lower(), explanations[0]
    return error


def assert_raw_arm_error(resp: requests.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """A raw ARM response must have this status and an ARM error body (with this code, if given)."""
    assert resp.status_code == status, f"expected {status}, got {resp.status_code}: {resp.text[:500]}"
    error = resp.json()["error"]
    assert error.get("code"), error
    if code is not None:
        assert error["code"] == code, error
    return error


# --------------------------------------------------------------------------------------------------
# Tokens


def jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, without verifying it (verification is tested separately)."""
    return jwt.decode(token, options={"verify_signature": False})


def _b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def with_tampered_claim(token: str, claim: str, value: Any) -> str:
    """The same token (header and signature kept) with one payload claim changed."""
    header, payload, signature = token.split(".")
    claims = json.loads(_b64url_decode(payload))
    assert claims.get(claim) != value
    claims[claim] = value
    return ".".join([header, _b64url_encode(json.dumps(claims).encode()), signature])


def with_header(token: str, header: dict[str, Any], keep_signature: bool = True) -> str:
    """The same token with its header replaced (and its signature kept or dropped)."""
    _, payload, signature = token.split(".")
    return ".".join([_b64url_encode(json.dumps(header).encode()), payload, signature if keep_signature else ""])


@dataclass
class Principal:
    client_id: str
    client_secret: str
    object_id: str
    display_name: str
    credential: Any


# --------------------------------------------------------------------------------------------------
# Clients, configured exactly as contract.md tells SDK users to


def client_secret_credential(boot: dict[str, Any], client_id: str, client_secret: str):
    from azure.identity import ClientSecretCredential

    return ClientSecretCredential(
        boot["tenant_id"],
        client_id,
        client_secret,
        authority=boot["authority"],
        disable_instance_discovery=True,
        connection_verify=boot["ca_file"],
    )


def admin_credential(boot: dict[str, Any]):
    return client_secret_credential(boot, boot["admin"]["client_id"], boot["admin"]["client_secret"])


def _mgmt_kwargs(boot: dict[str, Any]) -> dict[str, Any]:
    return {
        "base_url": boot["resource_manager"],
        "credential_scopes": [MGMT_SCOPE],
        "connection_verify": boot["ca_file"],
    }


def resource_client(boot: dict[str, Any], credential):
    from azure.mgmt.resource.resources import ResourceManagementClient

    return ResourceManagementClient(credential, boot["subscription_id"], **_mgmt_kwargs(boot))


def authorization_client(boot: dict[str, Any], credential):
    from azure.mgmt.authorization import AuthorizationManagementClient

    return AuthorizationManagementClient(credential, boot["subscription_id"], **_mgmt_kwargs(boot))


def identity_client(boot: dict[str, Any], credential):
    from azure.mgmt.msi import ManagedServiceIdentityClient

    return ManagedServiceIdentityClient(credential, boot["subscription_id"], **_mgmt_kwargs(boot))


def features_client(boot: dict[str, Any], credential):
    """A FeatureClient (azure-mgmt-resource-features): the subscription's preview features."""
    from azure.mgmt.resource.features import FeatureClient

    return FeatureClient(credential, boot["subscription_id"], **_mgmt_kwargs(boot))


def subscription_client(boot: dict[str, Any], credential):
    from azure.mgmt.resource.subscriptions import SubscriptionClient

    return SubscriptionClient(credential, **_mgmt_kwargs(boot))


def create_resource_group(arm, boot: dict[str, Any], prefix: str = "rg", tags: dict[str, str] | None = None) -> str:
    name = unique(f"byos-test-{prefix}")
    arm.resource_groups.create_or_update(name, {"location": boot["location"], "tags": tags or {}})
    return name


def assign_role(auth, scope: str, role_guid: str, principal_id: str, *, sub: str,
                name: str | None = None, definition_id: str | None = None):
    """Create a role assignment (as whoever `auth` authenticates); returns the SDK's RoleAssignment."""
    from azure.mgmt.authorization.models import RoleAssignmentCreateParameters

    params = RoleAssignmentCreateParameters(
        role_definition_id=definition_id or role_definition_id(sub, role_guid),
        principal_id=principal_id,
        principal_type="ServicePrincipal",
    )
    return auth.role_assignments.create(scope, name or str(uuid.uuid4()), params)


def arm_request(boot: dict[str, Any], method: str, path: str, token: str | None, **kwargs) -> requests.Response:
    """A raw HTTPS request to byos's ARM endpoint, optionally with a bearer token."""
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.request(method, boot["resource_manager"].rstrip("/") + path, headers=headers,
                            verify=boot["ca_file"], timeout=30, **kwargs)


def arm_get(boot: dict[str, Any], path: str, token: str | None, **kwargs) -> requests.Response:
    return arm_request(boot, "GET", path, token, **kwargs)


# --------------------------------------------------------------------------------------------------
# Storage: accounts (azure-mgmt-storage) and the Blob data plane (azure-storage-blob)

STORAGE_BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
STORAGE_ACCOUNT_WRITE = "Microsoft.Storage/storageAccounts/write"
STORAGE_LIST_KEYS = "Microsoft.Storage/storageAccounts/listKeys/action"
STORAGE_ACCOUNT_TYPE = "Microsoft.Storage/storageAccounts"
# Every denial on the data plane (401, 403, and the 409 of the public-access lock) carries byos's own
# explanation of which rule refused the request.
DENIAL_HEADER = "x-byos-denial"
# The service version azure-storage-blob sends by default; raw requests send the same.
BLOB_API_VERSION = "2026-10-06"
MIB = 1024 * 1024


def storage_account_name(tag: str = "") -> str:
    """A fresh, valid storage account name (3-24 lowercase letters and digits): 'bt' + tag + random hex."""
    tag = re.sub(r"[^a-z0-9]", "", tag.lower())[:8]
    return f"bt{tag}{uuid.uuid4().hex}"[:24]


def storage_account_id(sub: str, rg: str, name: str) -> str:
    return f"{rg_scope(sub, rg)}/providers/{STORAGE_ACCOUNT_TYPE}/{name}"


def blob_container_scope(account_id: str, container: str) -> str:
    """The RBAC scope of one blob container, under the account's resource id."""
    return f"{account_id}/blobServices/default/containers/{container}"


def storage_client(boot: dict[str, Any], credential):
    from azure.mgmt.storage import StorageManagementClient

    return StorageManagementClient(credential, boot["subscription_id"], **_mgmt_kwargs(boot))


@dataclass
class StorageAccountRef:
    """A storage account a test created: where it is, its ARM view at creation, and its keys then."""

    rg: str
    name: str
    id: str
    blob_url: str  # properties.primaryEndpoints.blob, e.g. https://127.0.0.1:PORT/name/
    resource: Any  # the SDK's StorageAccount as begin_create returned it
    keys: dict[str, str]  # key name -> value, from listKeys right after creation

    def shared_key(self, key_name: str = "key1") -> dict[str, str]:
        """The credential azure-storage-blob takes for Shared Key authorization."""
        return {"account_name": self.name, "account_key": self.keys[key_name]}

    def container_url(self, container: str) -> str:
        return f"{self.blob_url.rstrip('/')}/{container}"

    def blob_url_of(self, container: str, blob: str) -> str:
        return f"{self.container_url(container)}/{urllib.parse.quote(blob)}"


def account_keys(storage, rg: str, name: str) -> dict[str, str]:
    """listKeys as {key name: value}."""
    return {k.key_name: k.value for k in storage.storage_accounts.list_keys(rg, name).keys_property}


def storage_create_parameters(boot: dict[str, Any], **properties):
    """StorageAccountCreateParameters for a Standard_LRS StorageV2 account in the tenant's location;
    `properties` are the flattened model's keyword arguments (identity=..., allow_blob_public_access=...)."""
    from azure.mgmt.storage.models import Sku, StorageAccountCreateParameters

    return StorageAccountCreateParameters(
        sku=Sku(name="Standard_LRS"), kind="StorageV2", location=boot["location"], **properties
    )


def create_storage_account(storage, boot: dict[str, Any], rg: str, name: str | None = None,
                           **properties) -> StorageAccountRef:
    """Create an account (as whoever `storage` authenticates) and read its keys."""
    name = name or storage_account_name()
    account = storage.storage_accounts.begin_create(rg, name, storage_create_parameters(boot, **properties)).result()
    assert account.primary_endpoints is not None and account.primary_endpoints.blob, account
    return StorageAccountRef(rg, name, account.id, account.primary_endpoints.blob, account,
                             account_keys(storage, rg, name))


def storage_update_parameters(**properties):
    from azure.mgmt.storage.models import StorageAccountUpdateParameters

    return StorageAccountUpdateParameters(**properties)


def update_storage_account(storage, account: StorageAccountRef, **properties):
    """PATCH the account with StorageAccountUpdateParameters(**properties); returns the updated account."""
    return storage.storage_accounts.update(account.rg, account.name, storage_update_parameters(**properties))


def utc_in(**delta) -> dt.datetime:
    """Now (UTC) plus a timedelta, e.g. utc_in(hours=1) or utc_in(minutes=-5)."""
    return dt.datetime.now(dt.timezone.utc) + dt.timedelta(**delta)


# ---- the source address a data-plane client connects from ------------------------------------------


def source_address_session(source_ip: str) -> requests.Session:
    """A requests Session whose connections come from `source_ip` (any 127.0.0.0/8 address works on Linux:
    the whole range is routed to lo), so the tests can exercise firewalls."""
    from requests.adapters import HTTPAdapter

    class SourceAddressAdapter(HTTPAdapter):
        def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):
            pool_kwargs["source_address"] = (source_ip, 0)
            super().init_poolmanager(connections, maxsize, block, **pool_kwargs)

    session = requests.Session()
    session.mount("https://", SourceAddressAdapter())
    session.mount("http://", SourceAddressAdapter())
    return session


def source_address_transport(source_ip: str, ca_file: str):
    """An azure-core transport whose connections come from `source_ip` (see source_address_session)."""
    from azure.core.pipeline.transport import RequestsTransport

    return RequestsTransport(session=source_address_session(source_ip), connection_verify=ca_file)


# ---- Blob clients ---------------------------------------------------------------------------------------


def _blob_client_kwargs(ca_file: str, source_ip: str | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    # No retries: a wrong answer should fail the test at once, not after the SDK's exponential back-off
    # (15 s and up). Nothing else about the clients changes.
    kwargs.setdefault("retry_total", 0)
    if source_ip is not None:
        kwargs["transport"] = source_address_transport(source_ip, ca_file)
    else:
        kwargs["connection_verify"] = ca_file
    return kwargs


def blob_service(account_url: str, credential, ca_file: str, *, source_ip: str | None = None, **kwargs):
    """BlobServiceClient(account_url, credential=...) trusting byos's CA; `credential` is a key dict, a
    TokenCredential, a SAS string or None (anonymous). `source_ip` picks the client's TCP source address."""
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient(account_url, credential=credential, **_blob_client_kwargs(ca_file, source_ip, kwargs))


def blob_at(url: str, credential, ca_file: str, *, source_ip: str | None = None, **kwargs):
    """BlobClient.from_blob_url (a SAS may be in the URL or the credential)."""
    from azure.storage.blob import BlobClient

    return BlobClient.from_blob_url(url, credential=credential, **_blob_client_kwargs(ca_file, source_ip, kwargs))


def container_at(url: str, credential, ca_file: str, *, source_ip: str | None = None, **kwargs):
    """ContainerClient.from_container_url."""
    from azure.storage.blob import ContainerClient

    return ContainerClient.from_container_url(url, credential=credential,
                                              **_blob_client_kwargs(ca_file, source_ip, kwargs))


def new_container(service, prefix: str = "c", **kwargs):
    """Create a uniquely named container through a BlobServiceClient; returns its ContainerClient."""
    return service.create_container(unique(f"byos-{prefix}"), **kwargs)


def put_blob(service, container: str, blob: str, data: bytes | str = b"hello", **kwargs):
    """Upload (overwriting) one blob through a BlobServiceClient; returns its BlobClient."""
    client = service.get_blob_client(container, blob)
    client.upload_blob(data, overwrite=True, **kwargs)
    return client


def read_blob(service, container: str, blob: str) -> bytes:
    return service.get_blob_client(container, blob).download_blob().readall()


# ---- SAS ---------------------------------------------------------------------------------------------------


def with_sas(url: str, sas: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{sas.lstrip('?')}"


def with_tampered_sas_signature(sas: str) -> str:
    """The same SAS with one bit of its signature flipped (still valid base64, same length)."""
    params = urllib.parse.parse_qsl(sas.lstrip("?"), keep_blank_values=True)
    out = []
    for name, value in params:
        if name == "sig":
            raw = bytearray(base64.b64decode(value))
            raw[0] ^= 0x01
            value = base64.b64encode(bytes(raw)).decode()
        out.append((name, value))
    assert any(name == "sig" for name, _ in params), sas
    return urllib.parse.urlencode(out)


# ---- data-plane errors --------------------------------------------------------------------------------


def _code_text(code: Any) -> str | None:
    return None if code is None else str(getattr(code, "value", code))


def _codes(code: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    return (code,) if isinstance(code, str) else tuple(code)


def assert_denial_explained(headers) -> str:
    """A data-plane denial must say why, in byos's x-byos-denial header."""
    explanation = headers.get(DENIAL_HEADER)
    assert explanation and explanation.strip(), f"no {DENIAL_HEADER} header on a denial: {dict(headers)}"
    return explanation


def expect_blob_error(call: Callable[[], Any], status: int, code: str | tuple[str, ...]) -> HttpResponseError:
    """`call` must fail with this status and storage error code (SDK `.error_code` and `x-ms-error-code`);
    `code` may be a tuple of acceptable codes."""
    exc = expect_http_error(call)
    headers = exc.response.headers if exc.response is not None else {}
    detail = f"{exc.status_code} {_code_text(getattr(exc, 'error_code', None))}: {exc.message[:500]}"
    assert exc.status_code == status, f"expected {status} {code}, got {detail}"
    assert _code_text(getattr(exc, "error_code", None)) in _codes(code), f"expected {code}, got {detail}"
    assert headers.get("x-ms-error-code") in _codes(code), f"x-ms-error-code: {headers.get('x-ms-error-code')}"
    return exc


def expect_blob_denial(call: Callable[[], Any], status: int, code: str | tuple[str, ...]) -> HttpResponseError:
    """Like expect_blob_error, and the denial is explained in x-byos-denial."""
    exc = expect_blob_error(call, status, code)
    assert_denial_explained(exc.response.headers)
    return exc


def expect_blob_denial_status(call: Callable[[], Any], status: int) -> HttpResponseError:
    """`call` must be denied with this status (any code), explained in x-byos-denial."""
    exc = expect_http_error(call)
    assert exc.status_code == status, f"expected {status}, got {exc.status_code}: {exc.message[:500]}"
    assert_denial_explained(exc.response.headers)
    return exc


def expect_blob_refusal(call: Callable[[], Any], statuses: tuple[int, ...] = (401, 403, 404)) -> HttpResponseError:
    """`call` must be refused with one of `statuses` (Azure hides some resources from anonymous callers
    behind a 404); a 401/403 must be explained in x-byos-denial."""
    exc = expect_http_error(call)
    assert exc.status_code in statuses, f"expected one of {statuses}, got {exc.status_code}: {exc.message[:500]}"
    if exc.status_code in (401, 403):
        assert_denial_explained(exc.response.headers)
    return exc


def blob_error_code(resp: requests.Response) -> str | None:
    """The storage error code of a raw response: x-ms-error-code, which must agree with the XML body."""
    header = resp.headers.get("x-ms-error-code")
    if resp.content:
        body_code = ET.fromstring(resp.content).findtext("Code")
        assert body_code == header, f"x-ms-error-code {header!r} but <Code>{body_code}</Code>"
    return header


def assert_raw_blob_error(resp: requests.Response, status: int, code: str | tuple[str, ...] | None = None) -> None:
    """A raw data-plane response must be this error (and explain itself if it is a 401/403 denial)."""
    assert resp.status_code == status, f"expected {status} {code}, got {resp.status_code}: {resp.text[:500]}"
    if code is not None:
        assert blob_error_code(resp) in _codes(code), resp.headers
    if status in (401, 403):
        assert_denial_explained(resp.headers)


def raw_blob_request(method: str, url: str, ca_file: str, *, headers: dict[str, str] | None = None,
                     **kwargs) -> requests.Response:
    """A raw HTTPS request to the Blob endpoint with the headers every SDK request has."""
    all_headers = {
        "x-ms-version": BLOB_API_VERSION,
        "x-ms-date": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()),
    }
    all_headers.update(headers or {})
    return requests.request(method, url, headers=all_headers, verify=ca_file, timeout=30, **kwargs)


# ---- a managed-identity workload that reads a blob ------------------------------------------------------


def run_blob_probe(env: dict[str, str], account_url: str, container: str, blob: str,
                   *, client_id: str | None = None) -> dict[str, Any]:
    """Run blob_probe.py with `env` (from `byos identity env`); returns its JSON report:
    {"ok": true, "data": ...} | {"ok": false, "status", "code", "denial"} | {"token_error": ...}."""
    cmd = [sys.executable, str(BLOB_PROBE), "--account-url", account_url, "--container", container, "--blob", blob]
    if client_id:
        cmd += ["--client-id", client_id]
    res = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, f"blob_probe crashed ({res.returncode}):\n{res.stderr}"
    return json.loads(res.stdout)


# ---- encryption at rest ---------------------------------------------------------------------------------


def scan_files_for(root: Path, needles: dict[str, bytes | re.Pattern[bytes]]) -> tuple[dict[str, list[str]], int]:
    """Every regular file under `root` (symlinks and sockets skipped), read in binary, searched for each
    needle: a byte string, or a compiled bytes regex for patterns with wildcards (e.g. a DER header whose
    length bytes vary). Returns ({needle name: [files containing it]}, total bytes scanned)."""
    found: dict[str, list[str]] = {name: [] for name in needles}
    scanned = 0
    for dirpath, _dirs, files in os.walk(root, followlinks=False):
        for file_name in files:
            path = Path(dirpath) / file_name
            try:
                if not stat.S_ISREG(path.lstat().st_mode):
                    continue
                data = path.read_bytes()
            except FileNotFoundError:  # a temp file the server removed while we walked
                continue
            scanned += len(data)
            for name, needle in needles.items():
                if needle.search(data) if isinstance(needle, re.Pattern) else needle in data:
                    found[name].append(str(path))
    return found, scanned


def object_hashes(data_dir: Path) -> dict[str, str]:
    """{path under DATA_DIR/objects: sha256 hex} of every stored object (partial uploads in objects/tmp
    skipped): compare two snapshots to prove nothing was rewritten."""
    root = Path(data_dir) / "objects"
    hashes: dict[str, str] = {}
    for dirpath, dirs, files in os.walk(root, followlinks=False):
        if Path(dirpath) == root:
            dirs[:] = [d for d in dirs if d != "tmp"]
        for file_name in files:
            path = Path(dirpath) / file_name
            try:
                if not stat.S_ISREG(path.lstat().st_mode):
                    continue
                hashes[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
            except FileNotFoundError:  # removed while we walked
                continue
    return hashes


# ---- customer-managed keys ------------------------------------------------------------------------------

KEY_SOURCE_STORAGE = "Microsoft.Storage"
KEY_SOURCE_KEYVAULT = "Microsoft.Keyvault"
# The key permissions an access policy must give an account's identity for customer-managed keys.
CMK_KEY_PERMISSIONS = ("get", "wrapKey", "unwrapKey")
# Data-plane error codes while the customer's key cannot be used.
CMK_ACCESS_LOST = "KeyVaultAccessTokenCannotBeAcquired"
CMK_KEY_NOT_FOUND = "KeyVaultEncryptionKeyNotFound"


def text_of(value: Any) -> str | None:
    """An SDK enum member or a plain string, as the string on the wire."""
    return None if value is None else str(getattr(value, "value", value))


def cmk_encryption(vault_uri: str, key_name: str, key_version: str | None = None, identity: str | None = None):
    """Encryption with keySource Microsoft.Keyvault on this key (a version pins it; without one the account
    follows the key's current version); `identity` is a user-assigned identity's resource id (default: the
    account's system-assigned identity)."""
    from azure.mgmt.storage.models import Encryption, EncryptionIdentity, KeyVaultProperties

    return Encryption(
        key_source=KEY_SOURCE_KEYVAULT,
        key_vault_properties=KeyVaultProperties(key_name=key_name, key_vault_uri=vault_uri, key_version=key_version),
        encryption_identity=EncryptionIdentity(encryption_user_assigned_identity=identity) if identity else None,
    )


def enable_cmk(storage, account: StorageAccountRef, vault, key_name: str, key_version: str | None = None,
               identity: str | None = None):
    """Protect the account with a customer-managed key (`vault`: a VaultRef or a vault URI) by PATCHing its
    encryption; returns the updated account as the SDK parsed it."""
    vault_uri = getattr(vault, "uri", vault)
    return update_storage_account(storage, account,
                                  encryption=cmk_encryption(vault_uri, key_name, key_version, identity))


def disable_cmk(storage, account: StorageAccountRef):
    """Back to Microsoft-managed keys; returns the updated account."""
    from azure.mgmt.storage.models import Encryption

    return update_storage_account(storage, account, encryption=Encryption(key_source=KEY_SOURCE_STORAGE))


def account_encryption(storage, account: StorageAccountRef):
    """The account's `encryption` as GET returns it now."""
    return storage.storage_accounts.get_properties(account.rg, account.name).encryption


def user_assigned(identity_resource_id: str):
    """An account Identity of type UserAssigned with this one user-assigned identity."""
    from azure.mgmt.storage.models import Identity, UserAssignedIdentity

    return Identity(type="UserAssigned", user_assigned_identities={identity_resource_id: UserAssignedIdentity()})


# --------------------------------------------------------------------------------------------------
# Key Vault: vaults (azure-mgmt-keyvault) and the keys data plane (azure-keyvault-keys)

KEYVAULT_RESOURCE = "https://vault.azure.net"
KEYVAULT_SCOPE = f"{KEYVAULT_RESOURCE}/.default"
# The data-plane api-version raw requests send (the SDK sends its own newer default; byos takes both).
KEYVAULT_API_VERSION = "7.5"
VAULT_TYPE = "Microsoft.KeyVault/vaults"
VAULT_WRITE = "Microsoft.KeyVault/vaults/write"
# Every vault is served on its own port of 127.0.0.1, with prefix-less paths (azure-keyvault-keys parses
# key ids as {vault root}/keys/{name}/{version}).
VAULT_URI_PATTERN = r"https://127\.0\.0\.1:(\d+)/"
DEFAULT_VAULT_RETENTION_DAYS = 90

KEY_VAULT_ADMINISTRATOR = "00482a5a-887f-4fb3-b363-3b7fe8e74483"
KEY_VAULT_CRYPTO_OFFICER = "14b46e9e-c2b7-41b4-b07b-48a6ebf60603"
KEY_VAULT_CRYPTO_SERVICE_ENCRYPTION_USER = "e147488a-f6f5-4113-8e2d-b22465e65bf6"

# A DER PKCS#8 PrivateKeyInfo of an RSA key: SEQUENCE (long length), INTEGER 0, AlgorithmIdentifier rsaEncryption.
PKCS8_RSA_DER_PATTERN = re.compile(
    rb"\x30\x82..\x02\x01\x00\x30\x0d\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01", re.DOTALL
)
# The members only a private JWK has (a key kept as plaintext JSON would show them).
PRIVATE_JWK_MEMBER_PATTERN = re.compile(rb'"(?:dp|dq|qi)"\s*:')


def keyvault_mgmt_client(boot: dict[str, Any], credential):
    from azure.mgmt.keyvault import KeyVaultManagementClient

    return KeyVaultManagementClient(credential, boot["subscription_id"], **_mgmt_kwargs(boot))


def vault_name(tag: str = "") -> str:
    """A fresh, valid vault name (3-24 characters, a letter first): 'kv' + tag + random hex."""
    tag = re.sub(r"[^a-z0-9]", "", tag.lower())[:8]
    return f"kv{tag}{uuid.uuid4().hex}"[:24]


def vault_id(sub: str, rg: str, name: str) -> str:
    return f"{rg_scope(sub, rg)}/providers/{VAULT_TYPE}/{name}"


def vault_scope(sub: str, rg: str, name: str) -> str:
    """The RBAC scope of a vault (its resource id): Key Vault data-plane roles are assigned here."""
    return vault_id(sub, rg, name)


def key_permissions(*keys: str):
    """An access policy's Permissions with these key permissions (the model calls the field keys_property;
    on the wire it is `keys`)."""
    from azure.mgmt.keyvault.models import Permissions

    return Permissions(keys_property=list(keys))


def access_policy(tenant_id: str, object_id: str, keys: list[str] | tuple[str, ...] = ("all",)):
    """An AccessPolicyEntry granting `object_id` these key permissions."""
    from azure.mgmt.keyvault.models import AccessPolicyEntry

    return AccessPolicyEntry(tenant_id=tenant_id, object_id=object_id, permissions=key_permissions(*keys))


def vault_properties(boot: dict[str, Any], **properties):
    """VaultProperties for a standard vault in the tenant; `properties` as VaultProperties takes them
    (access_policies=..., enable_rbac_authorization=..., create_mode="recover", ...)."""
    from azure.mgmt.keyvault.models import Sku, VaultProperties

    return VaultProperties(tenant_id=boot["tenant_id"], sku=Sku(family="A", name="standard"), **properties)


def vault_create_parameters(boot: dict[str, Any], tags: dict[str, str] | None = None, **properties):
    from azure.mgmt.keyvault.models import VaultCreateOrUpdateParameters

    return VaultCreateOrUpdateParameters(location=boot["location"], tags=tags,
                                         properties=vault_properties(boot, **properties))


@dataclass
class VaultRef:
    """A vault a test created: where it is and its ARM view at creation."""

    rg: str
    name: str
    id: str
    uri: str  # properties.vaultUri, e.g. https://127.0.0.1:PORT/
    resource: Any  # the SDK's Vault as begin_create_or_update returned it

    @property
    def port(self) -> int:
        return vault_port(self.uri)

    def key_id(self, name: str, version: str) -> str:
        return f"{self.uri}keys/{name}/{version}"


def vault_port(uri: str) -> int:
    match = re.fullmatch(VAULT_URI_PATTERN, uri or "")
    assert match, f"vault URI {uri!r} is not https://127.0.0.1:<port>/"
    return int(match.group(1))


def create_vault(keyvault, boot: dict[str, Any], rg: str, name: str | None = None,
                 tags: dict[str, str] | None = None, **properties) -> VaultRef:
    """Create a vault (as whoever `keyvault` authenticates); `properties` as VaultProperties takes them."""
    name = name or vault_name()
    vault = keyvault.vaults.begin_create_or_update(
        rg, name, vault_create_parameters(boot, tags=tags, **properties)).result()
    assert vault.properties is not None and vault.properties.vault_uri, vault
    return VaultRef(rg, name, vault.id, vault.properties.vault_uri, vault)


def recover_vault(keyvault, boot: dict[str, Any], rg: str, name: str):
    """Bring a soft-deleted vault back (create with createMode "recover"); returns the SDK's Vault."""
    return keyvault.vaults.begin_create_or_update(
        rg, name, vault_create_parameters(boot, create_mode="recover")).result()


def network_rules(default_action: str = "Deny", bypass: str = "AzureServices", ips: tuple[str, ...] = ()):
    """A vault's NetworkRuleSet: `ips` are addresses or CIDR ranges."""
    from azure.mgmt.keyvault.models import IPRule, NetworkRuleSet

    return NetworkRuleSet(default_action=default_action, bypass=bypass, ip_rules=[IPRule(value=ip) for ip in ips])


def update_vault(keyvault, vault: VaultRef, tags: dict[str, str] | None = None, **properties):
    """PATCH the vault with VaultPatchParameters(tags, VaultPatchProperties(**properties))."""
    from azure.mgmt.keyvault.models import VaultPatchParameters, VaultPatchProperties

    return keyvault.vaults.update(vault.rg, vault.name, VaultPatchParameters(
        tags=tags, properties=VaultPatchProperties(**properties) if properties else None))


def update_access_policy(keyvault, vault: VaultRef, kind: str, tenant_id: str, object_id: str,
                         keys: list[str] | tuple[str, ...] = ("all",)):
    """vaults.update_access_policy with one entry for `object_id`; kind is "add", "replace" or "remove"."""
    from azure.mgmt.keyvault.models import VaultAccessPolicyParameters, VaultAccessPolicyProperties

    return keyvault.vaults.update_access_policy(vault.rg, vault.name, kind, VaultAccessPolicyParameters(
        properties=VaultAccessPolicyProperties(access_policies=[access_policy(tenant_id, object_id, keys)])))


def key_permissions_of(vault, object_id: str) -> set[str] | None:
    """The key permissions a Vault (as the SDK returned it) grants `object_id` by access policy, or None when
    it has no entry for that principal."""
    for entry in vault.properties.access_policies or []:
        if entry.object_id == object_id:
            return {str(getattr(p, "value", p)) for p in (entry.permissions.keys_property or [])}
    return None


def _keyvault_client_kwargs(ca_file: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    # Vaults are addressed by IP, so the challenge's resource (vault.azure.net) cannot match the host.
    kwargs.setdefault("verify_challenge_resource", False)
    source_ip = kwargs.pop("source_ip", None)
    if source_ip is not None:
        kwargs["transport"] = source_address_transport(source_ip, ca_file)
    else:
        kwargs.setdefault("connection_verify", ca_file)
    # No retries: a 5xx should fail the test at once, not after the SDK's back-off.
    kwargs.setdefault("retry_total", 0)
    return kwargs


def key_client(vault_uri: str, credential, ca_file: str, **kwargs):
    """KeyClient on a vault (`source_ip=...` picks the client's TCP source address, for vault firewalls)."""
    from azure.keyvault.keys import KeyClient

    return KeyClient(vault_uri, credential, **_keyvault_client_kwargs(ca_file, kwargs))


def crypto_client(key_or_id, credential, ca_file: str, **kwargs):
    """CryptographyClient for a KeyVaultKey (public material known: no GET first) or a key id (the client GETs
    the key before its first operation, and works remotely only if that is forbidden)."""
    from azure.keyvault.keys.crypto import CryptographyClient

    return CryptographyClient(key_or_id, credential, **_keyvault_client_kwargs(ca_file, kwargs))


def finished(poller):
    """Wait for a Key Vault delete/recover poller (whose result() does not wait) and return its result."""
    poller.wait()
    return poller.result()


def expect_keyvault_error(call: Callable[[], Any], status: int, code: str, inner: str | None = None,
                          kind: type[HttpResponseError] = HttpResponseError) -> dict[str, Any]:
    """`call` must fail with a Key Vault error of this status and code (and innererror code, if given), raised
    as `kind` (e.g. ResourceNotFoundError); returns the raw `error` object."""
    exc = expect_http_error(call)
    text = exc.response.text() if exc.response is not None else ""
    detail = f"{type(exc).__name__} {exc.status_code}: {text[:500]}"
    assert isinstance(exc, kind), f"expected {kind.__name__}, got {detail}"
    assert exc.status_code == status, f"expected {status} {code}, got {detail}"
    error = json.loads(text)["error"]
    assert error["code"] == code, f"expected {code}, got {detail}"
    if inner is not None:
        assert (error.get("innererror") or {}).get("code") == inner, f"expected innererror {inner}, got {detail}"
    return error


def keyvault_request(method: str, url: str, ca_file: str, token: str | None = None, **kwargs) -> requests.Response:
    """A raw HTTPS request to a vault, optionally with a bearer token."""
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.request(method, url, headers=headers, verify=ca_file, timeout=30, **kwargs)


def assert_raw_keyvault_error(resp: requests.Response, status: int, code: str,
                              inner: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, f"expected {status} {code}, got {resp.status_code}: {resp.text[:500]}"
    error = resp.json()["error"]
    assert error["code"] == code, error
    if inner is not None:
        assert (error.get("innererror") or {}).get("code") == inner, error
    return error


def b64url(data: bytes) -> str:
    """Unpadded base64url, as Key Vault's JSON carries bytes."""
    return _b64url_encode(data)


def der_integer(value: bytes) -> bytes:
    """The DER encoding of a non-negative INTEGER given as big-endian bytes (e.g. an RSA modulus)."""
    value = value.lstrip(b"\x00") or b"\x00"
    if value[0] & 0x80:
        value = b"\x00" + value
    n = len(value)
    if n < 0x80:
        length = bytes([n])
    else:
        length_bytes = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(length_bytes)]) + length_bytes
    return b"\x02" + length + value


def rsa_private_key_der_head(modulus: bytes) -> bytes:
    """How a DER RSAPrivateKey (PKCS#1, also inside PKCS#8) of this modulus starts after its SEQUENCE header:
    version 0, then the modulus. A public-key encoding never has the version before the modulus."""
    return b"\x02\x01\x00" + der_integer(modulus)
