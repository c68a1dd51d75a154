"""A tiny managed-identity workload, run by the tests in a subprocess with its own environment.

It does what an app on Azure does: `ManagedIdentityCredential` (configured only by the environment:
IDENTITY_ENDPOINT/IDENTITY_HEADER, or AZURE_POD_IDENTITY_AUTHORITY_HOST for IMDS, plus REQUESTS_CA_BUNDLE),
gets an ARM token, and optionally reads a resource group with it. Prints one JSON object:
  {"token": "<jwt>", "rg": {"ok": true, "name": ...} | {"ok": false, "status": 403, "code": "..."}}
or {"token_error": "<message>"} when no token could be obtained.
"""

import argparse
import json
import sys

from azure.core.exceptions import HttpResponseError
from azure.identity import ManagedIdentityCredential
from azure.mgmt.resource.resources import ResourceManagementClient

MGMT_SCOPE = "https://management.azure.com/.default"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--client-id")
    parser.add_argument("--resource-manager")
    parser.add_argument("--subscription")
    parser.add_argument("--resource-group")
    args = parser.parse_args()

    credential = ManagedIdentityCredential(client_id=args.client_id) if args.client_id else ManagedIdentityCredential()
    try:
        token = credential.get_token(MGMT_SCOPE).token
    except Exception as exc:  # noqa: BLE001 - the test inspects whatever went wrong
        print(json.dumps({"token_error": f"{type(exc).__name__}: {exc}"}))
        return
    report = {"token": token}

    if args.resource_group:
        arm = ResourceManagementClient(
            credential, args.subscription, base_url=args.resource_manager, credential_scopes=[MGMT_SCOPE]
        )
        try:
            rg = arm.resource_groups.get(args.resource_group)
            report["rg"] = {"ok": True, "name": rg.name}
        except HttpResponseError as exc:
            code = exc.error.code if exc.error is not None else None
            report["rg"] = {"ok": False, "status": exc.status_code, "code": code}
    print(json.dumps(report))


if __name__ == "__main__":
    sys.exit(main())
