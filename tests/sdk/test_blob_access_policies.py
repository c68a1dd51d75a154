"""Stored access policies (a container's signed identifiers): Set/Get Container ACL round-trips them,
and a service SAS that names one (`si`) takes its permissions and time window from it, so changing or
removing the policy changes or revokes every such SAS at once. A field set both in the SAS and in the
policy is refused, as in Azure.
"""

import pytest
from azure.storage.blob import AccessPolicy, BlobSasPermissions, generate_blob_sas, generate_container_sas

import byos_support as bs


def _policy(permission="r", *, start_minutes=-5, expiry_minutes=60):
    return AccessPolicy(permission=permission, start=bs.utc_in(minutes=start_minutes), expiry=bs.utc_in(minutes=expiry_minutes))


def _policy_sas(account, container_name, blob, policy_id, **fields):
    return generate_blob_sas(account.name, container_name, blob, account_key=account.keys["key1"], policy_id=policy_id, **fields)


@pytest.fixture
def document(container):
    container.get_blob_client("doc.txt").upload_blob(b"policy-governed document", overwrite=True)
    return "doc.txt"


def _client(account, container, blob, sas, ca):
    return bs.blob_at(bs.with_sas(account.blob_url_of(container.container_name, blob), sas), None, ca)


def test_access_policies_round_trip(container):
    expiry = bs.utc_in(minutes=30).replace(microsecond=0)
    policies = {"readers": _policy("rl"), "writers": AccessPolicy(permission="racw", expiry=expiry)}
    container.set_container_access_policy(signed_identifiers=policies)
    got = container.get_container_access_policy()
    by_id = {s.id: s.access_policy for s in got["signed_identifiers"]}
    assert set(by_id) == {"readers", "writers"}
    assert by_id["readers"].permission == "rl" and by_id["writers"].permission == "racw"
    # Times come back as text in Azure's form (seven fractional digits); the SDK does not parse them.
    assert by_id["writers"].expiry == expiry.strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
    assert by_id["writers"].start is None


def test_public_access_and_policies_are_set_together(make_account, ca):
    public = make_account(allow_blob_public_access=True)
    service = bs.blob_service(public.blob_url, public.shared_key(), ca)
    container = bs.new_container(service)
    container.set_container_access_policy(signed_identifiers={"p": _policy()}, public_access="blob")
    got = container.get_container_access_policy()
    assert got["public_access"] == "blob"
    assert [s.id for s in got["signed_identifiers"]] == ["p"]


def test_an_empty_acl_removes_every_policy(container):
    container.set_container_access_policy(signed_identifiers={"p": _policy()})
    container.set_container_access_policy(signed_identifiers={})
    assert container.get_container_access_policy()["signed_identifiers"] == []


def test_sas_naming_a_policy_reads_with_its_permissions(shared_account, container, document, ca):
    container.set_container_access_policy(signed_identifiers={"readers": _policy("r")})
    client = _client(shared_account, container, document, _policy_sas(shared_account, container.container_name, document, "readers"), ca)
    assert client.download_blob().readall() == b"policy-governed document"
    bs.expect_blob_denial(lambda: client.upload_blob(b"overwritten", overwrite=True), 403, "AuthorizationPermissionMismatch")


def test_removing_the_policy_revokes_the_sas_and_restoring_it_brings_it_back(shared_account, container, document, ca):
    container.set_container_access_policy(signed_identifiers={"readers": _policy("r")})
    client = _client(shared_account, container, document, _policy_sas(shared_account, container.container_name, document, "readers"), ca)
    assert client.download_blob().readall()
    container.set_container_access_policy(signed_identifiers={})
    bs.expect_blob_denial(lambda: client.download_blob().readall(), 403, "AuthenticationFailed")
    container.set_container_access_policy(signed_identifiers={"readers": _policy("r")})
    assert client.download_blob().readall() == b"policy-governed document"


def test_shortening_the_policy_expires_the_sas(shared_account, container, document, ca):
    container.set_container_access_policy(signed_identifiers={"readers": _policy("r")})
    client = _client(shared_account, container, document, _policy_sas(shared_account, container.container_name, document, "readers"), ca)
    assert client.download_blob().readall()
    container.set_container_access_policy(signed_identifiers={"readers": _policy("r", start_minutes=-60, expiry_minutes=-1)})
    bs.expect_blob_denial(lambda: client.download_blob().readall(), 403, "AuthenticationFailed")


def test_policy_permissions_can_be_widened_without_a_new_sas(shared_account, container, document, ca):
    container.set_container_access_policy(signed_identifiers={"p": _policy("r")})
    client = _client(shared_account, container, document, _policy_sas(shared_account, container.container_name, document, "p"), ca)
    bs.expect_blob_denial(lambda: client.upload_blob(b"v2", overwrite=True), 403, "AuthorizationPermissionMismatch")
    container.set_container_access_policy(signed_identifiers={"p": _policy("rcw")})
    client.upload_blob(b"v2", overwrite=True)
    assert client.download_blob().readall() == b"v2"


def test_a_field_in_both_the_sas_and_the_policy_is_authentication_failed(shared_account, container, document, ca):
    container.set_container_access_policy(signed_identifiers={"p": _policy("r")})
    sas = _policy_sas(shared_account, container.container_name, document, "p", permission=BlobSasPermissions(read=True))
    bs.expect_blob_denial(lambda: _client(shared_account, container, document, sas, ca).download_blob().readall(),
                          403, "AuthenticationFailed")


def test_the_sas_may_carry_what_the_policy_leaves_out(shared_account, container, document, ca):
    container.set_container_access_policy(signed_identifiers={"p": AccessPolicy(start=bs.utc_in(minutes=-5), expiry=bs.utc_in(hours=1))})
    sas = _policy_sas(shared_account, container.container_name, document, "p", permission=BlobSasPermissions(read=True))
    assert _client(shared_account, container, document, sas, ca).download_blob().readall() == b"policy-governed document"


def test_a_container_sas_naming_a_policy_lists_the_container(shared_account, container, document, ca):
    container.set_container_access_policy(signed_identifiers={"listers": _policy("rl")})
    sas = generate_container_sas(shared_account.name, container.container_name, account_key=shared_account.keys["key1"], policy_id="listers")
    client = bs.container_at(bs.with_sas(shared_account.container_url(container.container_name), sas), None, ca)
    assert [b.name for b in client.list_blobs()] == [document]


def test_unknown_policy_is_authentication_failed(shared_account, container, document, ca):
    sas = _policy_sas(shared_account, container.container_name, document, "nobody")
    bs.expect_blob_denial(lambda: _client(shared_account, container, document, sas, ca).download_blob().readall(),
                          403, "AuthenticationFailed")


def test_policy_sas_is_key_based_and_refused_without_shared_key_access(make_account, admin_storage, ca):
    account = make_account()
    service = bs.blob_service(account.blob_url, account.shared_key(), ca)
    container = bs.new_container(service)
    container.get_blob_client("doc.txt").upload_blob(b"x")
    container.set_container_access_policy(signed_identifiers={"p": _policy("r")})
    client = _client(account, container, "doc.txt", _policy_sas(account, container.container_name, "doc.txt", "p"), ca)
    assert client.download_blob().readall() == b"x"
    bs.update_storage_account(admin_storage, account, allow_shared_key_access=False)
    bs.expect_blob_denial(lambda: client.download_blob().readall(), 403, "KeyBasedAuthenticationNotPermitted")


SIX_POLICIES = "".join(
    f"<SignedIdentifier><Id>p{i}</Id><AccessPolicy><Permission>r</Permission></AccessPolicy></SignedIdentifier>" for i in range(6)
)


@pytest.mark.parametrize("body", [
    f"<?xml version='1.0' encoding='utf-8'?><SignedIdentifiers>{SIX_POLICIES}</SignedIdentifiers>",
    "<SignedIdentifiers><SignedIdentifier><Id>" + "x" * 65 + "</Id></SignedIdentifier></SignedIdentifiers>",
    "<SignedIdentifiers><SignedIdentifier><Id>a</Id></SignedIdentifier><SignedIdentifier><Id>a</Id></SignedIdentifier></SignedIdentifiers>",
    "<SignedIdentifiers><SignedIdentifier><Id>a</Id><AccessPolicy><Permission>r</Permission></AccessPolicy></SignedIdentifier>",
    "<SignedIdentifiers><Other/></SignedIdentifiers>",
], ids=["six-policies", "id-too-long", "duplicate-id", "unclosed", "unknown-element"])
def test_malformed_acl_bodies_are_invalid_xml(shared_account, container, ca, body):
    url = bs.with_sas(f"{shared_account.container_url(container.container_name)}?restype=container&comp=acl",
                      _account_write_sas(shared_account))
    resp = bs.raw_blob_request("PUT", url, ca, headers={"Content-Type": "application/xml"}, data=body.encode())
    bs.assert_raw_blob_error(resp, 400, "InvalidXmlDocument")
    assert container.get_container_access_policy()["signed_identifiers"] == []


def test_a_policy_time_that_is_not_a_time_is_invalid_xml_node_value(shared_account, container, ca):
    url = bs.with_sas(f"{shared_account.container_url(container.container_name)}?restype=container&comp=acl",
                      _account_write_sas(shared_account))
    body = b"<SignedIdentifiers><SignedIdentifier><Id>a</Id><AccessPolicy><Expiry>tomorrow</Expiry></AccessPolicy></SignedIdentifier></SignedIdentifiers>"
    resp = bs.raw_blob_request("PUT", url, ca, headers={"Content-Type": "application/xml"}, data=body)
    bs.assert_raw_blob_error(resp, 400, "InvalidXmlNodeValue")


def _account_write_sas(account):
    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas
    return generate_account_sas(account.name, account.keys["key1"], ResourceTypes(container=True),
                                AccountSasPermissions(read=True, write=True), expiry=bs.utc_in(hours=1))
