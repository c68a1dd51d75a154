"""Who may use the Blob data plane: Shared Key, account SAS, service SAS, bearer tokens with data roles
(Owner has none), user delegation SAS (bounded by, and dying with, the delegator's role), anonymous
access to public containers. Every denial carries its status, code and x-byos-denial explanation.
"""

import base64
import os

import pytest
from azure.storage.blob import (
    AccountSasPermissions,
    BlobSasPermissions,
    ResourceTypes,
    generate_account_sas,
    generate_blob_sas,
)

import byos_support as bs


def _blob_in(container, name="doc.txt", data=b"secret document"):
    container.get_blob_client(name).upload_blob(data, overwrite=True)
    return name, data


def _account_sas(account, **permissions):
    return generate_account_sas(
        account.name, account.keys["key1"], ResourceTypes(service=True, container=True, object=True),
        AccountSasPermissions(**permissions), expiry=bs.utc_in(hours=1),
    )


def _blob_sas(account, container_name, blob, *, expiry=None, start=None, permission=None):
    return generate_blob_sas(
        account.name, container_name, blob, account_key=account.keys["key1"],
        permission=permission or BlobSasPermissions(read=True), expiry=expiry or bs.utc_in(hours=1), start=start,
    )


def _bearer_service(account, principal, ca):
    return bs.blob_service(account.blob_url, principal.credential, ca)


# ---- Shared Key -------------------------------------------------------------------------------------------------


def test_shared_key_reads_and_writes(shared_account, container, ca):
    service = bs.blob_service(shared_account.blob_url, shared_account.shared_key("key2"), ca)
    bs.put_blob(service, container.container_name, "sk.txt", b"via key2")
    assert bs.read_blob(service, container.container_name, "sk.txt") == b"via key2"


def test_wrong_shared_key_is_authentication_failed(shared_account, container, ca):
    wrong = {"account_name": shared_account.name, "account_key": base64.b64encode(os.urandom(64)).decode()}
    service = bs.blob_service(shared_account.blob_url, wrong, ca)
    bs.expect_blob_denial(lambda: service.get_container_client(container.container_name).get_container_properties(),
                          403, "AuthenticationFailed")


# ---- account SAS ---------------------------------------------------------------------------------------------------


def test_account_sas_allows_listing_and_reading(shared_account, container, ca):
    blob, data = _blob_in(container)
    service = bs.blob_service(shared_account.blob_url, _account_sas(shared_account, read=True, list=True), ca)
    assert container.container_name in {c.name for c in service.list_containers()}
    assert [b.name for b in service.get_container_client(container.container_name).list_blobs()] == [blob]
    assert bs.read_blob(service, container.container_name, blob) == data


def test_account_sas_without_write_cannot_upload(shared_account, container, ca):
    service = bs.blob_service(shared_account.blob_url, _account_sas(shared_account, read=True, list=True), ca)
    bs.expect_blob_denial(lambda: bs.put_blob(service, container.container_name, "nope.txt"),
                          403, "AuthorizationPermissionMismatch")


# ---- service SAS ---------------------------------------------------------------------------------------------------


def test_service_sas_reads_its_blob(shared_account, container, ca):
    blob, data = _blob_in(container)
    sas = _blob_sas(shared_account, container.container_name, blob)
    client = bs.blob_at(bs.with_sas(shared_account.blob_url_of(container.container_name, blob), sas), None, ca)
    assert client.download_blob().readall() == data


def test_read_only_service_sas_cannot_overwrite(shared_account, container, ca):
    blob, _ = _blob_in(container)
    sas = _blob_sas(shared_account, container.container_name, blob)
    client = bs.blob_at(shared_account.blob_url_of(container.container_name, blob), sas, ca)
    bs.expect_blob_denial(lambda: client.upload_blob(b"overwritten", overwrite=True),
                          403, "AuthorizationPermissionMismatch")


@pytest.mark.parametrize(
    "window",
    [{"expiry": -5}, {"start": 60, "expiry": 120}],
    ids=["expired", "not-yet-valid"],
)
def test_service_sas_outside_its_time_window_is_authentication_failed(shared_account, container, ca, window):
    blob, _ = _blob_in(container)
    sas = _blob_sas(shared_account, container.container_name, blob,
                    expiry=bs.utc_in(minutes=window["expiry"]),
                    start=bs.utc_in(minutes=window["start"]) if "start" in window else None)
    client = bs.blob_at(shared_account.blob_url_of(container.container_name, blob), sas, ca)
    bs.expect_blob_denial(lambda: client.download_blob().readall(), 403, "AuthenticationFailed")


def test_service_sas_with_tampered_signature_is_authentication_failed(shared_account, container, ca):
    blob, _ = _blob_in(container)
    sas = bs.with_tampered_sas_signature(_blob_sas(shared_account, container.container_name, blob))
    client = bs.blob_at(shared_account.blob_url_of(container.container_name, blob), sas, ca)
    bs.expect_blob_denial(lambda: client.download_blob().readall(), 403, "AuthenticationFailed")


def test_service_sas_for_one_blob_does_not_read_another(shared_account, container, ca):
    blob, _ = _blob_in(container, "granted.txt")
    other, _ = _blob_in(container, "other.txt")
    sas = _blob_sas(shared_account, container.container_name, blob)
    client = bs.blob_at(shared_account.blob_url_of(container.container_name, other), sas, ca)
    bs.expect_blob_denial(lambda: client.download_blob().readall(), 403, "AuthenticationFailed")


# ---- bearer tokens and data roles --------------------------------------------------------------------------------


def test_owner_has_no_data_actions(shared_account, container, admin_cred, ca):
    blob, _ = _blob_in(container)
    service = bs.blob_service(shared_account.blob_url, admin_cred, ca)
    bs.expect_blob_denial(lambda: bs.read_blob(service, container.container_name, blob),
                          403, "AuthorizationPermissionMismatch")


@pytest.fixture
def data_reader(shared_account, principal_with_role):
    principal, _ = principal_with_role("blob-reader", bs.STORAGE_BLOB_DATA_READER, shared_account.id)
    return principal


def test_blob_data_reader_can_read(shared_account, container, data_reader, ca):
    blob, data = _blob_in(container)
    assert bs.read_blob(_bearer_service(shared_account, data_reader, ca), container.container_name, blob) == data


def test_blob_data_reader_can_list(shared_account, container, data_reader, ca):
    blob, _ = _blob_in(container)
    client = _bearer_service(shared_account, data_reader, ca).get_container_client(container.container_name)
    assert [b.name for b in client.list_blobs()] == [blob]


def test_blob_data_reader_cannot_write(shared_account, container, data_reader, ca):
    service = _bearer_service(shared_account, data_reader, ca)
    bs.expect_blob_denial(lambda: bs.put_blob(service, container.container_name, "nope.txt"),
                          403, "AuthorizationPermissionMismatch")


@pytest.fixture
def container_contributor(shared_account, shared_service, principal_with_role):
    """(principal, its container, another container): Data Contributor on the first container only."""
    mine, other = bs.new_container(shared_service, "mine"), bs.new_container(shared_service, "other")
    scope = bs.blob_container_scope(shared_account.id, mine.container_name)
    principal, _ = principal_with_role("blob-contrib-c", bs.STORAGE_BLOB_DATA_CONTRIBUTOR, scope)
    return principal, mine, other


def test_container_scoped_contributor_writes_its_container(shared_account, container_contributor, ca):
    principal, mine, _ = container_contributor
    service = _bearer_service(shared_account, principal, ca)
    bs.put_blob(service, mine.container_name, "written.txt", b"by the contributor")
    assert mine.get_blob_client("written.txt").download_blob().readall() == b"by the contributor"


def test_container_scoped_contributor_cannot_write_another_container(shared_account, container_contributor, ca):
    principal, _, other = container_contributor
    service = _bearer_service(shared_account, principal, ca)
    bs.expect_blob_denial(lambda: bs.put_blob(service, other.container_name, "nope.txt"),
                          403, "AuthorizationPermissionMismatch")


def test_principal_without_data_role_cannot_read(shared_account, container, new_principal, ca):
    blob, _ = _blob_in(container)
    service = _bearer_service(shared_account, new_principal("blob-norole"), ca)
    bs.expect_blob_denial(lambda: bs.read_blob(service, container.container_name, blob),
                          403, "AuthorizationPermissionMismatch")


# ---- user delegation SAS ------------------------------------------------------------------------------------------


def _user_delegation_sas(account, principal, ca, container_name, blob):
    service = _bearer_service(account, principal, ca)
    key = service.get_user_delegation_key(bs.utc_in(minutes=-1), bs.utc_in(hours=1))
    return generate_blob_sas(account.name, container_name, blob, user_delegation_key=key,
                             permission=BlobSasPermissions(read=True, write=True), expiry=bs.utc_in(hours=1))


@pytest.fixture
def delegation(shared_account, container, principal_with_role, ca):
    """A Data Contributor (at the account) and a read+write user delegation SAS it signed for one blob:
    (sas url, role assignment)."""
    principal, assignment = principal_with_role("blob-delegator", bs.STORAGE_BLOB_DATA_CONTRIBUTOR,
                                                shared_account.id)
    sas = _user_delegation_sas(shared_account, principal, ca, container.container_name, "delegated.txt")
    return bs.with_sas(shared_account.blob_url_of(container.container_name, "delegated.txt"), sas), assignment


def test_user_delegation_sas_writes_and_reads_without_credentials(delegation, ca):
    url, _ = delegation
    client = bs.blob_at(url, None, ca)
    client.upload_blob(b"delegated write", overwrite=True)
    assert client.download_blob().readall() == b"delegated write"


def test_user_delegation_sas_dies_with_the_role_assignment(delegation, container, admin_auth, shared_account, ca):
    url, assignment = delegation
    container.get_blob_client("delegated.txt").upload_blob(b"still here", overwrite=True)
    client = bs.blob_at(url, None, ca)
    assert client.download_blob().readall() == b"still here"

    admin_auth.role_assignments.delete(shared_account.id, assignment.name)

    bs.expect_blob_denial(lambda: client.download_blob().readall(), 403, "AuthorizationPermissionMismatch")


def test_reader_role_cannot_get_a_user_delegation_key(shared_account, principal_with_role, ca):
    principal, _ = principal_with_role("blob-armreader", bs.READER, shared_account.id)
    service = _bearer_service(shared_account, principal, ca)
    bs.expect_blob_denial_status(lambda: service.get_user_delegation_key(bs.utc_in(minutes=-1), bs.utc_in(hours=1)),
                                 403)


# ---- anonymous access ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def public_account(make_account):
    return make_account(tag="public", allow_blob_public_access=True)


@pytest.fixture(scope="module")
def public_service(public_account, ca):
    return bs.blob_service(public_account.blob_url, public_account.shared_key(), ca)


def _public_container(service, level):
    container = bs.new_container(service, f"pub{level}")
    container.set_container_access_policy({}, public_access=level)
    container.get_blob_client("open.txt").upload_blob(b"for everyone", overwrite=True)
    return container


@pytest.mark.parametrize("level", ["blob", "container"])
def test_container_public_access_level_round_trips(public_service, level):
    container = _public_container(public_service, level)
    assert container.get_container_properties().public_access == level
    assert container.get_container_access_policy()["public_access"] == level


def test_anonymous_reads_a_blob_in_a_public_container(public_account, public_service, ca):
    container = _public_container(public_service, "blob")
    client = bs.blob_at(public_account.blob_url_of(container.container_name, "open.txt"), None, ca)
    assert client.download_blob().readall() == b"for everyone"


def test_anonymous_cannot_list_a_blob_level_public_container(public_account, public_service, ca):
    container = _public_container(public_service, "blob")
    anonymous = bs.container_at(public_account.container_url(container.container_name), None, ca)
    bs.expect_blob_refusal(lambda: list(anonymous.list_blobs()))


def test_anonymous_lists_a_container_level_public_container(public_account, public_service, ca):
    container = _public_container(public_service, "container")
    anonymous = bs.container_at(public_account.container_url(container.container_name), None, ca)
    assert [b.name for b in anonymous.list_blobs()] == ["open.txt"]


def test_anonymous_cannot_read_a_private_container(public_account, public_service, ca):
    container = bs.new_container(public_service, "private")
    container.get_blob_client("closed.txt").upload_blob(b"not for everyone")
    client = bs.blob_at(public_account.blob_url_of(container.container_name, "closed.txt"), None, ca)
    bs.expect_blob_refusal(lambda: client.download_blob().readall())


def test_public_access_cannot_be_set_when_the_account_forbids_it(container):
    bs.expect_blob_denial(lambda: container.set_container_access_policy({}, public_access="blob"),
                          409, "PublicAccessNotPermitted")
    assert container.get_container_properties().public_access in (None, "off")


def test_anonymous_read_is_refused_when_the_account_forbids_public_access(shared_account, container, ca):
    blob, _ = _blob_in(container)
    client = bs.blob_at(shared_account.blob_url_of(container.container_name, blob), None, ca)
    bs.expect_blob_denial(lambda: client.download_blob().readall(), 409, "PublicAccessNotPermitted")
