"""Helpers for the AI-services account tests (azure-mgmt-cognitiveservices 14.1.0)."""

import io
import re
import uuid
import wave
from typing import Any

import requests

import byos_support as bs

ACCOUNT_TYPE = "Microsoft.CognitiveServices/accounts"


def cognitive_client(boot: dict[str, Any], credential):
    from azure.mgmt.cognitiveservices import CognitiveServicesManagementClient

    # polling_interval: the SDK's 30 s default would only matter for a non-terminal answer.
    return CognitiveServicesManagementClient(credential, boot["subscription_id"], polling_interval=0.2,
                                             **bs._mgmt_kwargs(boot))


def account_name(tag: str = "") -> str:
    """A fresh, valid account name: 'cs-' + tag + random hex."""
    tag = re.sub(r"[^a-z0-9]", "", tag.lower())[:12]
    return f"cs-{tag}-{uuid.uuid4().hex[:12]}"


def account_id(sub: str, rg: str, name: str) -> str:
    return f"{bs.rg_scope(sub, rg)}/providers/{ACCOUNT_TYPE}/{name}"


def account_model(boot: dict[str, Any], kind: str, sku: str = "S0", identity: str | None = None,
                  location: str | None = None, tags: dict[str, str] | None = None, **properties):
    """An Account to create: `properties` as AccountProperties takes them (custom_sub_domain_name=...,
    user_owned_storage=[UserOwnedStorage(resource_id=...)], network_acls=..., disable_local_auth=...)."""
    from azure.mgmt.cognitiveservices.models import Account, AccountProperties, Identity, Sku

    return Account(kind=kind, sku=Sku(name=sku), location=location or boot["location"], tags=tags,
                   identity=Identity(type=identity) if identity else None, properties=AccountProperties(**properties))


def create_account(client, boot: dict[str, Any], rg: str, kind: str = "SpeechServices", sku: str = "S0",
                   name: str | None = None, **kwargs):
    """Create an account (as whoever `client` authenticates) and return the SDK's Account."""
    return client.accounts.begin_create(rg, name or account_name(kind), account_model(boot, kind, sku, **kwargs)).result()


def user_owned_storage(storage_id: str):
    from azure.mgmt.cognitiveservices.models import UserOwnedStorage

    return [UserOwnedStorage(resource_id=storage_id)]


def raw_put_account(boot: dict[str, Any], token: str, rg: str, name: str, body: dict) -> requests.Response:
    """PUT an account with a raw request (to see response headers such as x-byos-warning)."""
    path = f"{bs.rg_scope(boot['subscription_id'], rg)}/providers/{ACCOUNT_TYPE}/{name}?api-version=2025-09-01"
    return bs.arm_request(boot, "PUT", path, token, json=body)


class SpeechRest:
    """Speech to text v3.2 on an account's endpoint, with one of its keys."""

    BASE = "speechtotext/v3.2/"

    def __init__(self, endpoint: str, key: str, ca_file: str, session=None):
        self.endpoint, self.key, self.ca = endpoint, key, ca_file
        self.session = session or requests.Session()

    def url(self, path: str) -> str:
        return self.endpoint + self.BASE + path

    def _call(self, method: str, url: str, **kwargs) -> requests.Response:
        headers = {"Ocp-Apim-Subscription-Key": self.key, **kwargs.pop("headers", {})}
        return self.session.request(method, url, headers=headers, verify=self.ca, timeout=60, **kwargs)

    def get(self, url: str, **kwargs) -> requests.Response:
        return self._call("GET", url, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self._call("POST", self.url(path), **kwargs)

    def patch(self, url: str, **kwargs) -> requests.Response:
        return self._call("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs) -> requests.Response:
        return self._call("DELETE", url, **kwargs)

    def upload(self, kind: str, data: bytes, display_name: str = "dataset", locale: str = "en-US") -> requests.Response:
        form = {"kind": kind, "locale": locale, "displayName": display_name}
        return self._call("POST", self.url("datasets/upload"), data=form, files={"data": ("data.bin", data)})

    def wait(self, url: str, timeout: float = 180.0) -> dict:
        """GET the entity (dataset, transcription, model, evaluation) until it is Succeeded or Failed; jobs that run
        the engine take seconds, more on a loaded machine, so the deadline is generous (it is only a deadline)."""
        done = bs.poll(lambda: self.get(url).json(), lambda d: d.get("status") in ("Succeeded", "Failed"),
                       timeout=timeout)
        return done


def silent_wav(seconds: float = 1.0, rate: int = 16000) -> bytes:
    """A mono 16-bit WAV of silence."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * int(rate * seconds))
    return buf.getvalue()
