"""The unchanged Azure CLI (az, from .venv-az) against a byos server, as a user points it there.

What az needs (README, "The Azure CLI"): its own config dir; the server's CA as an *absolute*
REQUESTS_CA_BUNDLE (az reads the path relative to the directory it runs in); instance discovery off (MSAL
would ask login.microsoftonline.com about the authority); telemetry off (az would send it to Microsoft);
then `az cloud register` with the resource manager's URL (az reads the rest from /metadata/endpoints),
`az cloud set` and `az login --service-principal`. Every command runs in a subprocess with only that
environment, and answers parsed JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
AZ_TIMEOUT_S = 180
CLOUD_NAME = "byos"

# What the process running the tests may have that would send az elsewhere: az settings and credentials
# (AZURE_*), managed-identity endpoints, another CA bundle.
_AMBIENT_PREFIXES = ("AZURE_", "IDENTITY_", "MSI_", "IMDS_")
_AMBIENT_NAMES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def az_binary() -> Path:
    """$BYOS_AZ (scripts/test.sh sets it), else <repo>/.venv-az/bin/az."""
    path = Path(os.environ.get("BYOS_AZ") or REPO_ROOT / ".venv-az" / "bin" / "az")
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise RuntimeError(
            f"az not found at {path}: run scripts/test.sh (it installs tests/sdk/requirements-az.txt into .venv-az)"
        )
    return path


def az_env(config_dir: Path, ca_file: str) -> dict[str, str]:
    """The environment az runs with: isolated, trusting byos's CA, talking to nobody else."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_AMBIENT_PREFIXES) and k not in _AMBIENT_NAMES}
    env.update({
        "AZURE_CONFIG_DIR": str(config_dir),
        "REQUESTS_CA_BUNDLE": str(Path(ca_file).resolve()),
        "AZURE_CORE_INSTANCE_DISCOVERY": "false",
        "AZURE_CORE_COLLECT_TELEMETRY": "false",
        "AZURE_CORE_SURVEY_MESSAGE": "false",
        "AZURE_CORE_NO_COLOR": "true",
        "AZURE_CORE_OUTPUT": "json",
        # A command from an extension would otherwise make az fetch the extension from the internet.
        "AZURE_EXTENSION_USE_DYNAMIC_INSTALL": "no",
    })
    return env


class AzCli:
    """One az configuration (config dir, cloud, login) against one byos server."""

    def __init__(self, binary: Path, config_dir: Path, ca_file: str):
        self.binary = binary
        self.env = az_env(config_dir, ca_file)
        # Values never to show in a failure message (the login secret).
        self._secrets: list[str] = []

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "<secret>")
        return text

    def completed(self, *args: str) -> subprocess.CompletedProcess:
        """`az <args...>` run to completion, whatever its exit code."""
        return subprocess.run(
            [str(self.binary), *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=AZ_TIMEOUT_S,
        )

    def run(self, *args: str) -> Any:
        """`az <args...>`, which must succeed; its JSON output parsed (None when it printed nothing)."""
        res = self.completed(*args)
        assert res.returncode == 0, self._redact(f"az {' '.join(args)} exited {res.returncode}:\n{res.stderr[-3000:]}")
        return json.loads(res.stdout) if res.stdout.strip() else None

    def fails(self, *args: str) -> str:
        """`az <args...>`, which must fail; its error output (what the user reads)."""
        res = self.completed(*args)
        assert res.returncode != 0, self._redact(f"az {' '.join(args)} succeeded: {res.stdout[-2000:]}")
        return res.stderr

    def sign_in(self, boot: dict[str, Any], client_id: str, secret: str) -> None:
        """Register byos as a cloud (with the trailing slash users type), select it, log in as a service
        principal."""
        self._secrets.append(secret)
        self.run("cloud", "register", "-n", CLOUD_NAME, "--endpoint-resource-manager", boot["resource_manager"] + "/")
        self.run("cloud", "set", "-n", CLOUD_NAME)
        self.run(*login_args(client_id, secret, boot["tenant_id"]))


def login_args(client_id: str, secret: str, tenant_id: str) -> tuple[str, ...]:
    """`az login` as a service principal. `--password=...` in one argument: a secret may begin with '-',
    which az would otherwise read as an option (a random secret did, and login failed)."""
    return ("login", "--service-principal", "-u", client_id, f"--password={secret}", "--tenant", tenant_id)


def signed_in_as_admin(boot: dict[str, Any], config_dir: Path) -> AzCli:
    """az with its own config dir, signed in to the server of `boot` as its bootstrap admin."""
    az = AzCli(az_binary(), config_dir, boot["ca_file"])
    az.sign_in(boot, boot["admin"]["client_id"], boot["admin"]["client_secret"])
    return az
