"""Regressions of customer-managed keys: the identity that uses the key (F16 / bug 2) and a vault whose port
moves at restart (F14). The account set-up is test_cmk's (`make_cmk`)."""

import socket

from azure.core.exceptions import HttpResponseError
from azure.mgmt.storage.models import Identity

import byos_support as bs
from test_cmk import BEFORE, _grant, admin, make_cmk, rbac_vault  # noqa: F401 (fixtures)

STRANDED_KEY = "InvalidValuesForRequestParameters"


def _identity_update(admin, cmk, identity):
    return lambda: bs.update_storage_account(admin.storage, cmk.account, identity=identity)


def test_regression_f16_identity_none_is_refused_while_cmk_uses_it(make_cmk, admin):
    cmk = make_cmk()
    error = bs.expect_arm_error(_identity_update(admin, cmk, Identity(type="None")), 400, STRANDED_KEY)
    assert "encryption" in error["message"], error
    account = admin.storage.storage_accounts.get_properties(cmk.account.rg, cmk.account.name)
    assert bs.text_of(account.identity.type) == "SystemAssigned"
    assert account.identity.principal_id == cmk.principal_id
    assert cmk.all_readable()


def test_regression_f16_detaching_the_cmk_user_identity_is_refused(make_cmk, make_identity, admin):
    cmk = make_cmk(identity="user")
    other = make_identity(cmk.account.rg)
    error = bs.expect_arm_error(_identity_update(admin, cmk, bs.user_assigned(other.id)), 400, STRANDED_KEY)
    assert "encryption.identity" in error["message"], error
    assert cmk.all_readable()


def test_regression_f16_deleted_user_identity_then_repoint_restores_data(make_cmk, make_identity, admin, admin_msi):
    cmk = make_cmk(identity="user")
    admin_msi.user_assigned_identities.delete(cmk.account.rg, cmk.uami_id.rsplit("/", 1)[-1])
    bs.wait_until(lambda: cmk.read_failure() is not None)
    bs.expect_blob_error(lambda: cmk.read(BEFORE), 403, bs.CMK_ACCESS_LOST)
    replacement = make_identity(cmk.account.rg)
    _grant(admin, cmk.vault, replacement.principal_id)
    bs.update_storage_account(admin.storage, cmk.account, identity=bs.user_assigned(replacement.id),
                              encryption=bs.cmk_encryption(cmk.vault.uri, cmk.key_name, identity=replacement.id))
    assert bs.poll(cmk.read_failure, until=lambda failure: failure is None) is None
    assert cmk.all_readable()


# ---- F14: a vault whose port is taken at restart ----------------------------------------------------------


def _vault_uri(kvm, rg, name) -> str:
    return kvm.vaults.get(rg, name).properties.vault_uri


def test_regression_f14_vault_port_move_is_persisted_and_cmk_follows(private_server):
    srv = private_server()
    boot = srv.boot
    cred = bs.admin_credential(boot)
    rg = bs.create_resource_group(bs.resource_client(boot, cred), boot, "f14")
    kvm = bs.keyvault_mgmt_client(boot, cred)
    vault = bs.create_vault(kvm, boot, rg, bs.vault_name("f14"), enable_purge_protection=True,
                            soft_delete_retention_in_days=7,
                            access_policies=[bs.access_policy(boot["tenant_id"], boot["admin"]["object_id"])])
    key = bs.key_client(vault.uri, cred, boot["ca_file"]).create_rsa_key(bs.unique("cmk"), size=2048)
    storage = bs.storage_client(boot, cred)
    account = bs.create_storage_account(storage, boot, rg, identity=Identity(type="SystemAssigned"))
    bs.update_access_policy(kvm, vault, "add", boot["tenant_id"], account.resource.identity.principal_id,
                            bs.CMK_KEY_PERMISSIONS)
    bs.enable_cmk(storage, account, vault, key.name)
    service = bs.blob_service(account.blob_url, account.shared_key(), boot["ca_file"])
    container = bs.new_container(service, "f14").container_name
    bs.put_blob(service, container, "kept.bin", b"survives a port move")
    old_port = bs.vault_port(vault.uri)

    srv.stop()
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", old_port))
        squatter.listen(1)
        boot = srv.start()
        moved = _vault_uri(bs.keyvault_mgmt_client(boot, bs.admin_credential(boot)), rg, vault.name)
        assert bs.vault_port(moved) != old_port, "ARM still advertises the port the vault could not have"
        _assert_cmk_data_readable(srv.boot, rg, account.name, key.name, moved, container)

    srv.restart()  # the old port is free again: the vault stays where ARM says it is
    assert _vault_uri(bs.keyvault_mgmt_client(srv.boot, bs.admin_credential(srv.boot)), rg, vault.name) == moved
    _assert_cmk_data_readable(srv.boot, rg, account.name, key.name, moved, container)


def _assert_cmk_data_readable(boot, rg, name, key_name, vault_uri, container):
    cred = bs.admin_credential(boot)
    assert bs.key_client(vault_uri, cred, boot["ca_file"]).get_key(key_name).name == key_name
    storage = bs.storage_client(boot, cred)
    account = storage.storage_accounts.get_properties(rg, name)
    assert account.encryption.key_vault_properties.key_vault_uri == vault_uri
    key = {"account_name": name, "account_key": bs.account_keys(storage, rg, name)["key1"]}
    service = bs.blob_service(account.primary_endpoints.blob, key, boot["ca_file"])
    assert bs.read_blob(service, container, "kept.bin") == b"survives a port move"


def test_regression_f14_cmk_accepts_the_vault_named_by_its_azure_uri(make_cmk, admin):
    cmk = make_cmk(enable=False)
    updated = bs.enable_cmk(admin.storage, cmk.account, f"https://{cmk.vault.name}.vault.azure.net/", cmk.key_name)
    assert updated.encryption.key_vault_properties.key_vault_uri == cmk.vault.uri
    cmk.store("after.bin", b"written under the customer key")
    assert cmk.all_readable()
