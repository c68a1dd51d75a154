"""Regressions of the Blob operation table and its credentials (issue 8: bug 3 / F8, F2, F5, F7, F20).

- Bug 3 / F8: a request that selects a feature byos does not implement (Copy Blob, leases, snapshots,
  tiers, tags, append and page blobs, ...) is refused and changes nothing; Put Blob needs x-ms-blob-type.
- F2: a container SAS (service or user delegation) grants blob operations and List Blobs only.
- F5: Shared Key requests carry a date within 15 minutes of now.
- F7: ?snapshot=, ?versionid= and snapshot/version SAS never act on the live blob.
- F20: x-byos-denial tells anonymous, Shared Key and SAS callers only the kind of check that refused them.
"""

import base64
import hashlib
import hmac
import time
import urllib.parse

import pytest
from azure.mgmt.storage.models import IPRule, NetworkRuleSet
from azure.storage.blob import (
    AccessPolicy,
    AccountSasPermissions,
    BlobSasPermissions,
    BlobType,
    ContainerSasPermissions,
    ResourceTypes,
    StandardBlobTier,
    generate_account_sas,
    generate_blob_sas,
    generate_container_sas,
)

import byos_support as bs

ORIGINAL = b"the destination's original content"
SNAPSHOT = "2020-01-01T00:00:00.0000000Z"
VERSION = "2020-01-01T00:00:00.0000000Z"


def _blob(container, name="target.txt", data=ORIGINAL):
    client = container.get_blob_client(name)
    client.upload_blob(data, overwrite=True)
    return client


def _unchanged(client, data=ORIGINAL):
    assert client.download_blob().readall() == data


def _write_sas(account, container_name, blob):
    return generate_blob_sas(account.name, container_name, blob, account_key=account.keys["key1"],
                             permission=BlobSasPermissions(read=True, write=True, create=True),
                             expiry=bs.utc_in(hours=1))


# ---- bug 3 / F8: unimplemented features are refused and change nothing ----------------------------------------


def test_regression_bug3_f08_copy_blob_leaves_the_destination_intact(container):
    source = _blob(container, "source.txt", b"source content")
    destination = _blob(container)
    bs.expect_blob_error(lambda: destination.start_copy_from_url(source.url), 400, "UnsupportedHeader")
    _unchanged(destination)


def test_regression_bug3_f08_put_blob_from_url_leaves_the_destination_intact(container):
    source = _blob(container, "source.txt", b"source content")
    destination = _blob(container)
    bs.expect_blob_error(lambda: destination.upload_blob_from_url(source.url, overwrite=True), 400,
                         "UnsupportedHeader")
    _unchanged(destination)


def test_regression_bug3_put_blob_without_blob_type_is_missing_required_header(shared_account, container, ca):
    destination = _blob(container)
    url = bs.with_sas(destination.url, _write_sas(shared_account, container.container_name, "target.txt"))
    resp = bs.raw_blob_request("PUT", url, ca, data=b"replacement")
    bs.assert_raw_blob_error(resp, 400, "MissingRequiredHeader")
    _unchanged(destination)
    # The same request naming the block blob type is a Put Blob.
    resp = bs.raw_blob_request("PUT", url, ca, headers={"x-ms-blob-type": "BlockBlob"}, data=b"replacement")
    assert resp.status_code == 201, resp.text
    _unchanged(destination, b"replacement")


@pytest.mark.parametrize("blob_type", ["AppendBlob", "PageBlob"])
def test_regression_bug3_put_blob_of_another_blob_type_is_refused(shared_account, container, ca, blob_type):
    destination = _blob(container)
    url = bs.with_sas(destination.url, _write_sas(shared_account, container.container_name, "target.txt"))
    headers = {"x-ms-blob-type": blob_type, "x-ms-blob-content-length": "512"}
    resp = bs.raw_blob_request("PUT", url, ca, headers={"x-ms-blob-type": blob_type}, data=b"")
    bs.assert_raw_blob_error(resp, 400, "UnsupportedHeader")
    resp = bs.raw_blob_request("PUT", url, ca, headers=headers, data=b"")
    bs.assert_raw_blob_error(resp, 400, "UnsupportedHeader")
    _unchanged(destination)


# Each case: what the SDK call does to the blob `target.txt` (holding ORIGINAL), and the code it must get.
UNIMPLEMENTED_CALLS = {
    "append_blob_upload": (lambda b: b.upload_blob(b"appended", blob_type=BlobType.APPENDBLOB, overwrite=True),
                           "UnsupportedHeader"),
    "create_append_blob": (lambda b: b.create_append_blob(), "UnsupportedHeader"),
    "append_block": (lambda b: b.append_block(b"appended"), "UnsupportedQueryParameter"),
    "page_blob_upload": (lambda b: b.upload_blob(b"\0" * 512, blob_type=BlobType.PAGEBLOB, overwrite=True),
                         "UnsupportedHeader"),
    "create_page_blob": (lambda b: b.create_page_blob(512), "UnsupportedHeader"),
    "upload_page": (lambda b: b.upload_page(b"\0" * 512, 0, 512), "UnsupportedQueryParameter"),
    "acquire_lease": (lambda b: b.acquire_lease(), "UnsupportedQueryParameter"),
    "write_with_lease_id": (lambda b: b.upload_blob(b"leased", overwrite=True,
                                                    lease="00000000-0000-0000-0000-000000000001"),
                            "UnsupportedHeader"),
    "delete_with_lease_id": (lambda b: b.delete_blob(lease="00000000-0000-0000-0000-000000000001"),
                             "UnsupportedHeader"),
    "create_snapshot": (lambda b: b.create_snapshot(), "UnsupportedQueryParameter"),
    "delete_only_snapshots": (lambda b: b.delete_blob(delete_snapshots="only"), "UnsupportedHeader"),
    "set_standard_blob_tier": (lambda b: b.set_standard_blob_tier("Cool"), "UnsupportedQueryParameter"),
    "upload_with_tier": (lambda b: b.upload_blob(b"tiered", overwrite=True, standard_blob_tier=StandardBlobTier.COOL),
                         "UnsupportedHeader"),
    "set_blob_tags": (lambda b: b.set_blob_tags({"k": "v"}), "UnsupportedQueryParameter"),
    "get_blob_tags": (lambda b: b.get_blob_tags(), "UnsupportedQueryParameter"),
    "upload_with_tags": (lambda b: b.upload_blob(b"tagged", overwrite=True, tags={"k": "v"}), "UnsupportedHeader"),
    "upload_if_tags": (lambda b: b.upload_blob(b"conditional", overwrite=True, if_tags_match_condition="\"k\"='v'"),
                       "UnsupportedHeader"),
    "delete_if_tags": (lambda b: b.delete_blob(if_tags_match_condition="\"k\"='v'"), "UnsupportedHeader"),
    "undelete_blob": (lambda b: b.undelete_blob(), "UnsupportedQueryParameter"),
    "abort_copy": (lambda b: b.abort_copy("00000000-0000-0000-0000-000000000001"), "UnsupportedQueryParameter"),
}


@pytest.mark.parametrize("case", sorted(UNIMPLEMENTED_CALLS))
def test_regression_bug3_unimplemented_blob_feature_is_refused_and_changes_nothing(container, case):
    call, code = UNIMPLEMENTED_CALLS[case]
    target = _blob(container)
    bs.expect_blob_error(lambda: call(target), 400, code)
    _unchanged(target)


def test_regression_bug3_container_lease_is_refused(container):
    bs.expect_blob_error(lambda: container.acquire_lease(), 400, "UnsupportedQueryParameter")
    bs.expect_blob_error(lambda: container.delete_container(lease="00000000-0000-0000-0000-000000000001"), 400,
                         "UnsupportedHeader")
    assert container.get_container_properties().name == container.container_name


# ---- F2: a container SAS grants blob operations and List Blobs only ------------------------------------------


def _container_sas_client(account, container, ca, **kwargs):
    sas = generate_container_sas(account.name, container.container_name, account_key=account.keys["key1"], **kwargs)
    return bs.container_at(bs.with_sas(account.container_url(container.container_name), sas), None, ca)


def test_regression_f02_container_sas_cannot_set_acl(shared_account, container, ca):
    _blob(container, "payroll.csv", b"salaries")
    container.set_container_access_policy({"uploaders": AccessPolicy(permission=ContainerSasPermissions(write=True),
                                                                     expiry=bs.utc_in(hours=1))})
    uploader = _container_sas_client(shared_account, container, ca, policy_id="uploaders")
    uploader.get_blob_client("upload.txt").upload_blob(b"uploaded", overwrite=True)  # what the policy is for

    widened = {"uploaders": AccessPolicy(permission=ContainerSasPermissions(read=True, write=True, delete=True,
                                                                            list=True),
                                         expiry=bs.utc_in(days=365))}
    bs.expect_blob_denial(lambda: uploader.set_container_access_policy(widened), 403,
                          "AuthorizationPermissionMismatch")
    bs.expect_blob_denial(lambda: uploader.set_container_access_policy({}, public_access="container"), 403,
                          "AuthorizationPermissionMismatch")
    stored = container.get_container_access_policy()
    assert stored["public_access"] is None
    assert [(p.id, p.access_policy.permission) for p in stored["signed_identifiers"]] == [("uploaders", "w")]
    bs.expect_blob_denial(lambda: uploader.get_blob_client("payroll.csv").download_blob().readall(), 403,
                          "AuthorizationPermissionMismatch")


def test_regression_f02_container_sas_cannot_read_the_acl(shared_account, container, ca):
    reader = _container_sas_client(shared_account, container, ca,
                                   permission=ContainerSasPermissions(read=True, write=True, list=True),
                                   expiry=bs.utc_in(hours=1))
    bs.expect_blob_denial(lambda: reader.get_container_access_policy(), 403, "AuthorizationPermissionMismatch")


def test_regression_f02_container_sas_cannot_read_or_write_container_properties(shared_account, container, ca):
    container.set_container_metadata({"owner": "finance"})
    client = _container_sas_client(shared_account, container, ca,
                                   permission=ContainerSasPermissions(read=True, write=True, list=True),
                                   expiry=bs.utc_in(hours=1))
    bs.expect_blob_denial(lambda: client.set_container_metadata({"owner": "mallory"}), 403,
                          "AuthorizationPermissionMismatch")
    bs.expect_blob_denial(lambda: client.get_container_properties(), 403, "AuthorizationPermissionMismatch")
    assert container.get_container_properties().metadata == {"owner": "finance"}
    # Blob operations and List Blobs are what a container SAS is for.
    client.get_blob_client("via-sas.txt").upload_blob(b"ok", overwrite=True)
    assert client.get_blob_client("via-sas.txt").download_blob().readall() == b"ok"
    assert [b.name for b in client.list_blobs()] == ["via-sas.txt"]


def test_regression_f02_container_sas_cannot_delete_the_container(shared_account, container, ca):
    target = _blob(container)
    deleter = _container_sas_client(shared_account, container, ca, permission=ContainerSasPermissions(delete=True),
                                    expiry=bs.utc_in(hours=1))
    bs.expect_blob_denial(lambda: deleter.delete_container(), 403, "AuthorizationPermissionMismatch")
    _unchanged(target)
    deleter.delete_blob("target.txt")  # the delete permission is for blobs


def test_regression_f02_user_delegation_container_sas_cannot_manage_the_container(shared_account, container,
                                                                                  principal_with_role, ca):
    principal, _ = principal_with_role("f02-delegator", bs.STORAGE_BLOB_DATA_CONTRIBUTOR, shared_account.id)
    key = bs.blob_service(shared_account.blob_url, principal.credential, ca).get_user_delegation_key(
        bs.utc_in(minutes=-1), bs.utc_in(hours=1))
    sas = generate_container_sas(shared_account.name, container.container_name, user_delegation_key=key,
                                 permission=ContainerSasPermissions(read=True, add=True, create=True, write=True,
                                                                    delete=True, list=True),
                                 expiry=bs.utc_in(hours=1))
    client = bs.container_at(bs.with_sas(shared_account.container_url(container.container_name), sas), None, ca)
    client.get_blob_client("delegated.txt").upload_blob(b"ok", overwrite=True)
    assert [b.name for b in client.list_blobs()] == ["delegated.txt"]
    for call in (lambda: client.set_container_access_policy({}, public_access="container"),
                 lambda: client.set_container_metadata({"k": "v"}),
                 lambda: client.get_container_access_policy(),
                 lambda: client.delete_container()):
        bs.expect_blob_denial(call, 403, "AuthorizationPermissionMismatch")
    assert container.get_container_access_policy()["public_access"] is None
    assert container.get_container_properties().metadata == {}


def test_f02_account_sas_with_container_resource_type_still_manages_containers(shared_account, container, ca):
    sas = generate_account_sas(shared_account.name, shared_account.keys["key1"], ResourceTypes(container=True),
                               AccountSasPermissions(read=True, write=True), expiry=bs.utc_in(hours=1))
    client = bs.container_at(shared_account.container_url(container.container_name), sas, ca)
    client.set_container_metadata({"via": "account-sas"})
    assert client.get_container_properties().metadata == {"via": "account-sas"}


# ---- F5: Shared Key requests are time-bound ----------------------------------------------------------------------


def _http_date(at: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(at))


def _shared_key_headers(account, method: str, url: str, headers: dict[str, str]) -> dict[str, str]:
    """`headers` plus a Shared Key Authorization over them (Azure's string-to-sign, 2009-09-19 and later)."""
    lower = {k.lower(): v for k, v in headers.items()}
    length = lower.get("content-length", "")
    standard = [method, lower.get("content-encoding", ""), lower.get("content-language", ""),
                "" if length == "0" else length, lower.get("content-md5", ""), lower.get("content-type", ""),
                "" if "x-ms-date" in lower else lower.get("date", ""), lower.get("if-modified-since", ""),
                lower.get("if-match", ""), lower.get("if-none-match", ""), lower.get("if-unmodified-since", ""),
                lower.get("range", "")]
    ms = "".join(f"{k}:{v.strip()}\n" for k, v in sorted(lower.items()) if k.startswith("x-ms-"))
    parsed = urllib.parse.urlsplit(url)
    resource = f"/{account.name}{parsed.path}"
    for name, values in sorted(urllib.parse.parse_qs(parsed.query, keep_blank_values=True).items()):
        resource += f"\n{name.lower()}:{','.join(sorted(values))}"
    string_to_sign = "\n".join(standard) + "\n" + ms + resource
    key = base64.b64decode(account.keys["key1"])
    signature = base64.b64encode(hmac.new(key, string_to_sign.encode(), hashlib.sha256).digest()).decode()
    return {**headers, "Authorization": f"SharedKey {account.name}:{signature}"}


def _signed(account, method, url, ca, headers, data=None):
    import requests

    return requests.request(method, url, headers=_shared_key_headers(account, method, url, headers), data=data,
                            verify=ca, timeout=30)


@pytest.mark.parametrize("dates", [
    {"x-ms-date": "Sat, 01 Jan 2000 00:00:00 GMT"},
    {"x-ms-date": "garbage"},
    {},
    {"Date": "Sat, 01 Jan 2000 00:00:00 GMT"},
    {"x-ms-date": "future"},
    {"x-ms-date": "iso"},
], ids=["ancient", "garbage", "missing", "ancient-date-header", "future", "not-rfc1123"])
def test_regression_f05_shared_key_needs_a_fresh_request_date(shared_account, container, ca, dates):
    target = _blob(container)
    replacements = {"future": _http_date(time.time() + 20 * 60),
                    "iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    dates = {k: replacements.get(v, v) for k, v in dates.items()}
    headers = {"x-ms-version": bs.BLOB_API_VERSION, **dates}
    bs.assert_raw_blob_error(_signed(shared_account, "GET", target.url, ca, headers), 403, "AuthenticationFailed")
    body = b"TAMPERED" + ORIGINAL[8:]
    put = {**headers, "x-ms-blob-type": "BlockBlob", "Content-Length": str(len(body))}
    bs.assert_raw_blob_error(_signed(shared_account, "PUT", target.url, ca, put, body), 403, "AuthenticationFailed")
    _unchanged(target)


@pytest.mark.parametrize("date_header", ["x-ms-date", "Date"])
def test_f05_shared_key_with_a_current_date_is_accepted(shared_account, container, ca, date_header):
    target = _blob(container)
    headers = {"x-ms-version": bs.BLOB_API_VERSION, date_header: _http_date(time.time() - 10 * 60)}
    resp = _signed(shared_account, "GET", target.url, ca, headers)
    assert resp.status_code == 200, resp.text
    assert resp.content == ORIGINAL


def test_regression_f05_x_ms_date_wins_over_date(shared_account, container, ca):
    target = _blob(container)
    headers = {"x-ms-version": bs.BLOB_API_VERSION, "x-ms-date": "Sat, 01 Jan 2000 00:00:00 GMT",
               "Date": _http_date(time.time())}
    bs.assert_raw_blob_error(_signed(shared_account, "GET", target.url, ca, headers), 403, "AuthenticationFailed")


# ---- F7: snapshots and versions never reach the live blob --------------------------------------------------------


def test_regression_f07_delete_blob_snapshot_keeps_the_base_blob(container):
    target = _blob(container)
    pinned = container.get_blob_client(target.blob_name, snapshot=SNAPSHOT)
    bs.expect_blob_error(lambda: pinned.delete_blob(), 400, "UnsupportedQueryParameter")
    _unchanged(target)


def test_regression_f07_delete_blob_version_keeps_the_live_blob(container):
    target = _blob(container)
    bs.expect_blob_error(lambda: target.delete_blob(version_id=VERSION), 400, "UnsupportedQueryParameter")
    _unchanged(target)


@pytest.mark.parametrize("selector", [{"snapshot": SNAPSHOT}, {"version_id": VERSION}], ids=["snapshot", "version"])
def test_regression_f07_snapshot_or_version_read_does_not_return_the_live_blob(container, selector):
    target = _blob(container)
    pinned = container.get_blob_client(target.blob_name, **selector)
    bs.expect_blob_error(lambda: pinned.download_blob().readall(), 400, "UnsupportedQueryParameter")
    bs.expect_blob_error(lambda: pinned.get_blob_properties(), 400, "UnsupportedQueryParameter")


def test_regression_f07_snapshot_sas_does_not_reach_the_live_blob(shared_account, container, ca):
    target = _blob(container)
    sas = generate_blob_sas(shared_account.name, container.container_name, target.blob_name,
                            account_key=shared_account.keys["key1"], snapshot=SNAPSHOT,
                            permission=BlobSasPermissions(read=True, write=True, delete=True),
                            expiry=bs.utc_in(hours=1))
    pinned = bs.blob_at(f"{target.url}?snapshot={urllib.parse.quote(SNAPSHOT)}", sas, ca)
    bs.expect_blob_error(lambda: pinned.download_blob().readall(), 400, "UnsupportedQueryParameter")
    bs.expect_blob_error(lambda: pinned.delete_blob(), 400, "UnsupportedQueryParameter")
    # Without ?snapshot= in the URL the signature still names a snapshot (sr=bs): not the live blob either.
    live_url = bs.with_sas(target.url, sas)
    bs.assert_raw_blob_error(bs.raw_blob_request("GET", live_url, ca), 400, "UnsupportedQueryParameter")
    resp = bs.raw_blob_request("PUT", live_url, ca, headers={"x-ms-blob-type": "BlockBlob"}, data=b"overwritten")
    bs.assert_raw_blob_error(resp, 400, "UnsupportedQueryParameter")
    bs.assert_raw_blob_error(bs.raw_blob_request("DELETE", live_url, ca), 400, "UnsupportedQueryParameter")
    _unchanged(target)


# ---- F20: denial explanations only for authenticated principals --------------------------------------------------


def test_regression_f20_delegation_sas_denial_does_not_disclose_the_delegator(shared_account, container,
                                                                              principal_with_role, admin_auth, ca):
    principal, assignment = principal_with_role("f20-delegator", bs.STORAGE_BLOB_DATA_CONTRIBUTOR, shared_account.id)
    target = _blob(container)
    key = bs.blob_service(shared_account.blob_url, principal.credential, ca).get_user_delegation_key(
        bs.utc_in(minutes=-1), bs.utc_in(hours=1))
    sas = generate_blob_sas(shared_account.name, container.container_name, target.blob_name,
                            user_delegation_key=key, permission=BlobSasPermissions(read=True),
                            expiry=bs.utc_in(hours=1))
    admin_auth.role_assignments.delete(shared_account.id, assignment.name)

    exc = bs.expect_blob_denial(lambda: bs.blob_at(target.url, sas, ca).download_blob().readall(), 403,
                                "AuthorizationPermissionMismatch")
    denial = exc.response.headers[bs.DENIAL_HEADER]
    assert principal.object_id not in denial and "assignment" not in denial and "/subscriptions/" not in denial, \
        denial
    assert denial == "denied by the permission check"

    # The principal itself, with its own token, is told the whole story.
    bearer = bs.blob_at(target.url, principal.credential, ca)
    exc = bs.expect_blob_denial(lambda: bearer.download_blob().readall(), 403, "AuthorizationPermissionMismatch")
    assert "role assignment" in exc.response.headers[bs.DENIAL_HEADER], exc.response.headers[bs.DENIAL_HEADER]


def test_regression_f20_firewall_denial_does_not_disclose_the_rules(make_account, admin_storage, ca):
    account = make_account(tag="f20fw")
    service = bs.blob_service(account.blob_url, account.shared_key(), ca)
    container = bs.new_container(service, "f20")
    _blob(container)
    bs.update_storage_account(admin_storage, account, network_rule_set=NetworkRuleSet(
        default_action="Deny", ip_rules=[IPRule(ip_address_or_range="127.0.0.2")]))
    sas = generate_account_sas(account.name, account.keys["key1"], ResourceTypes(object=True),
                               AccountSasPermissions(read=True), expiry=bs.utc_in(hours=1))
    for credential in (account.shared_key(), sas):
        client = bs.blob_service(account.blob_url, credential, ca)
        exc = bs.expect_blob_denial(lambda: bs.read_blob(client, container.container_name, "target.txt"), 403,
                                    "AuthorizationFailure")
        denial = exc.response.headers[bs.DENIAL_HEADER]
        assert "127.0.0" not in denial and "ipRules" not in denial, denial
        assert denial == "denied by the network check"


def test_regression_f20_anonymous_denial_is_generic(shared_account, container, ca):
    target = _blob(container)
    exc = bs.expect_blob_refusal(lambda: bs.blob_at(target.url, None, ca).download_blob().readall(), (409,))
    assert exc.response.headers[bs.DENIAL_HEADER] == "denied by the public access check"
