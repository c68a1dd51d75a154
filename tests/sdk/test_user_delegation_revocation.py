"""F18 (part): `revokeUserDelegationKeys` on a storage account kills every user delegation key and SAS issued
before it, as in Azure."""

import pytest
from azure.storage.blob import BlobSasPermissions, generate_blob_sas

import byos_support as bs


def _delegation_sas_url(account, principal, ca, container: str, blob: str) -> str:
    service = bs.blob_service(account.blob_url, principal.credential, ca)
    key = service.get_user_delegation_key(bs.utc_in(minutes=-1), bs.utc_in(hours=1))
    sas = generate_blob_sas(account.name, container, blob, user_delegation_key=key,
                            permission=BlobSasPermissions(read=True, write=True), expiry=bs.utc_in(hours=1))
    return bs.with_sas(account.blob_url_of(container, blob), sas)


@pytest.fixture
def delegated(make_account, principal_with_role, ca):
    account = make_account(tag="udkrevoke")
    principal, _ = principal_with_role("udk-revoke", bs.STORAGE_BLOB_DATA_CONTRIBUTOR, account.id)
    container = bs.new_container(bs.blob_service(account.blob_url, account.shared_key(), ca), "udk").container_name
    url = _delegation_sas_url(account, principal, ca, container, "delegated.txt")
    bs.blob_at(url, None, ca).upload_blob(b"before the revocation", overwrite=True)
    return account, principal, container, url


def test_regression_f18_revoke_user_delegation_keys_kills_earlier_sas(delegated, admin_storage, ca):
    account, principal, container, url = delegated
    result = admin_storage.storage_accounts.revoke_user_delegation_keys(account.rg, account.name)
    assert result is None
    bs.expect_blob_denial_status(lambda: bs.blob_at(url, None, ca).download_blob().readall(), 403)
    fresh = _delegation_sas_url(account, principal, ca, container, "delegated.txt")
    assert bs.blob_at(fresh, None, ca).download_blob().readall() == b"before the revocation"


def test_regression_f18_revoke_user_delegation_keys_needs_its_action(delegated, principal_with_role, boot):
    account, *_ = delegated
    reader, _ = principal_with_role("udk-reader", bs.READER, account.id)
    storage = bs.storage_client(boot, reader.credential)
    bs.expect_authorization_failed(
        lambda: storage.storage_accounts.revoke_user_delegation_keys(account.rg, account.name),
        "Microsoft.Storage/storageAccounts/revokeUserDelegationKeys/action", account.id)
