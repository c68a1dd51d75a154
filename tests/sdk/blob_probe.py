"""A tiny managed-identity workload that reads one blob, run by the tests in a subprocess.

Like mi_probe.py it is configured only by its environment (IDENTITY_ENDPOINT/IDENTITY_HEADER from
`byos identity env`, plus REQUESTS_CA_BUNDLE): `ManagedIdentityCredential` gets a storage token and
`BlobServiceClient` downloads the blob with it. Prints one JSON object:
  {"ok": true, "data": "<blob content as text>"}
  {"ok": false, "status": 403, "code": "AuthorizationFailure", "denial": "<x-byos-denial>"}
or {"token_error": "<message>"} when no token could be obtained.
"""

import argparse
import json
import sys

from azure.core.exceptions import HttpResponseError
from azure.identity import ManagedIdentityCredential
from azure.storage.blob import BlobServiceClient

STORAGE_SCOPE = "https://storage.azure.com/.default"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--account-url", required=True)
    parser.add_argument("--container", required=True)
    parser.add_argument("--blob", required=True)
    parser.add_argument("--client-id")
    args = parser.parse_args()

    credential = ManagedIdentityCredential(client_id=args.client_id) if args.client_id else ManagedIdentityCredential()
    try:
        credential.get_token(STORAGE_SCOPE)
    except Exception as exc:  # noqa: BLE001 - the test inspects whatever went wrong
        print(json.dumps({"token_error": f"{type(exc).__name__}: {exc}"}))
        return

    service = BlobServiceClient(args.account_url, credential=credential, retry_total=0)
    try:
        data = service.get_blob_client(args.container, args.blob).download_blob().readall()
        report = {"ok": True, "data": data.decode("utf-8", errors="replace")}
    except HttpResponseError as exc:
        code = getattr(exc, "error_code", None)
        headers = exc.response.headers if exc.response is not None else {}
        report = {
            "ok": False,
            "status": exc.status_code,
            "code": None if code is None else str(getattr(code, "value", code)),
            "denial": headers.get("x-byos-denial"),
        }
    print(json.dumps(report))


if __name__ == "__main__":
    sys.exit(main())
