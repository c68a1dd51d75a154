"""Plain helpers shared by the SDK tests: the server process, CLI calls, ARM error checks, JWT decoding.

Fixtures live in conftest.py; everything here is ordinary code so test modules can import it.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jwt
import pytest
import requests
from azure.core.exceptions import HttpResponseError

HERE = Path(__file__).resolve().parent
MI_PROBE = HERE / "mi_probe.py"

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


def unique(prefix: str) -> str:
    """A name no other test uses: prefix plus a random suffix."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def sub_scope(sub: str) -> str:
    return f"/subscriptions/{sub}"


def rg_scope(sub: str, rg: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}"


def role_definition_id(sub: str, role_guid: str) -> str:
    return f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{role_guid}"


# --------------------------------------------------------------------------------------------------
# The server process and its command line


class ByosServer:
    """One `byos serve` process on its own data dir, on free ports (`--port 0`)."""

    def __init__(self, binary: Path, data_dir: Path):
        self.binary = binary
        self.data_dir = data_dir
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

    def start(self) -> dict[str, Any]:
        """Start the server and wait for a *new* bootstrap.json; returns its contents."""
        assert self.proc is None, "server already started"
        self.bootstrap_path.unlink(missing_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(self.binary), "serve", "--data-dir", str(self.data_dir), "--port", "0"],
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

    def restart(self) -> dict[str, Any]:
        rc = self.stop()
        assert rc == 0, f"byos serve exited with {rc} on SIGTERM\n{self.log_tail()}"
        return self.start()

    def _forget_process(self) -> None:
        self.proc = None
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


def expect_arm_error(call: Callable[[], Any], status: int, code: str) -> dict[str, Any]:
    """`call` must fail with an ARM error of this status and code; returns the raw `error` object."""
    exc = expect_http_error(call)
    # Not exc.response.json(): legacy-transport responses (azure-mgmt-authorization) only have text().
    body = json.loads(exc.response.text())
    assert exc.status_code == status, f"expected {status} {code}, got {exc.status_code}: {body}"
    assert body["error"]["code"] == code, body
    assert exc.error is not None and exc.error.code == code
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
