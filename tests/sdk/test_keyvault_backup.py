"""Key backup and restore: a backup restores every version of a key (same versions, same key material)
into its vault after a purge or into another vault of this deployment; a taken name and a forged backup
are refused."""

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError

import byos_support as bs


@pytest.fixture(scope="module")
def vaults(make_vault):
    return make_vault(tag="bak"), make_vault(tag="bak2")


def _keys(key_client, admin_cred, vault):
    return key_client(vault.uri, admin_cred)


def _two_versions(keys):
    name = bs.unique("bak")
    first = keys.create_rsa_key(name)
    second = keys.create_rsa_key(name)
    return name, first, second


def test_backup_restores_every_version_after_a_purge(vaults, key_client, admin_cred):
    keys = _keys(key_client, admin_cred, vaults[0])
    name, first, second = _two_versions(keys)
    backup = keys.backup_key(name)
    bs.finished(keys.begin_delete_key(name))
    keys.purge_deleted_key(name)
    restored = keys.restore_key_backup(backup)
    assert restored.id == second.id and restored.key.n == second.key.n
    versions = sorted(p.version for p in keys.list_properties_of_key_versions(name))
    assert versions == sorted([first.properties.version, second.properties.version])
    assert keys.get_key(name, first.properties.version).key.n == first.key.n


def test_backup_restores_into_another_vault(vaults, key_client, admin_cred):
    source, target = (_keys(key_client, admin_cred, v) for v in vaults)
    name, _, second = _two_versions(source)
    restored = target.restore_key_backup(source.backup_key(name))
    assert restored.id.startswith(vaults[1].uri)
    assert restored.properties.version == second.properties.version and restored.key.n == second.key.n


def test_restoring_over_an_existing_key_is_a_conflict(vaults, key_client, admin_cred):
    keys = _keys(key_client, admin_cred, vaults[0])
    name, _, _ = _two_versions(keys)
    with pytest.raises((ResourceExistsError, HttpResponseError)) as info:
        keys.restore_key_backup(keys.backup_key(name))
    assert info.value.status_code == 409


def test_a_forged_backup_is_bad_parameter(vaults, key_client, admin_cred):
    keys = _keys(key_client, admin_cred, vaults[0])
    with pytest.raises(HttpResponseError) as info:
        keys.restore_key_backup(b"not a byos backup")
    assert info.value.status_code == 400
