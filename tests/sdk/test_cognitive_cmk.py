"""Customer-managed keys for AI-services accounts (`encryption.keySource: Microsoft.KeyVault`,
`keyVaultProperties {keyName, keyVersion, keyVaultUri, identityClientId}`) over ARM, with the seed's preconditions,
each refused with a 400 naming its cause: S0, a managed identity that already exists (a system-assigned one only after
creation), a vault in the account's region with purge protection, an RSA 2048 key the identity may get, wrap and
unwrap. Changing the key, returning to service-managed keys and identity changes that would strand the key. What a
revoked key does to the account's service-held data is tested in crates/byos-server/tests/it/artifacts.rs."""

import pytest
from azure.mgmt.cognitiveservices.models import (Account, AccountProperties, Encryption, Identity, KeyVaultProperties,
                                                 UserAssignedIdentity)

import byos_support as bs
import cognitive_support as cs


@pytest.fixture(scope="module")
def rg(make_rg):
    return make_rg("cs-cmk")


@pytest.fixture(scope="module")
def vault(make_vault, rg):
    """An RBAC vault with purge protection; the admin is its Crypto Officer."""
    return make_vault(rg=rg, tag="cscmk", rbac=True, purge_protection=True)


@pytest.fixture(scope="module")
def keys(vault, key_client, admin_cred):
    return key_client(vault.uri, admin_cred)


def _key(keys, size=2048):
    return keys.create_rsa_key(bs.unique("cs"), size=size)


def _cmk(vault, key, client_id=None):
    return Encryption(key_source="Microsoft.KeyVault", key_vault_properties=KeyVaultProperties(
        key_name=key.name, key_version=key.properties.version, key_vault_uri=vault.uri, identity_client_id=client_id))


def _update(client, rg, account, **properties):
    return client.accounts.begin_update(rg, account.name, Account(properties=AccountProperties(**properties))).result()


@pytest.fixture
def granted_account(admin_cognitive, boot, rg, vault, assign):
    """An S0 Speech account whose system-assigned identity may use the vault's keys."""
    account = cs.create_account(admin_cognitive, boot, rg, "SpeechServices", identity="SystemAssigned")
    assign(vault.id, bs.KEY_VAULT_CRYPTO_SERVICE_ENCRYPTION_USER, account.identity.principal_id)
    return account


def test_customer_key_is_turned_on_after_creation(admin_cognitive, rg, vault, keys, granted_account):
    key = _key(keys)
    updated = _update(admin_cognitive, rg, granted_account, encryption=_cmk(vault, key))
    kv = updated.properties.encryption.key_vault_properties
    assert updated.properties.encryption.key_source == "Microsoft.KeyVault"
    assert (kv.key_name, kv.key_version, kv.key_vault_uri) == (key.name, key.properties.version, vault.uri)
    assert admin_cognitive.accounts.get(rg, granted_account.name).properties.encryption.key_vault_properties.key_name == key.name


def test_the_key_can_change_and_go_back_to_service_keys(admin_cognitive, rg, vault, keys, granted_account):
    first, second = _key(keys), _key(keys)
    _update(admin_cognitive, rg, granted_account, encryption=_cmk(vault, first))
    moved = _update(admin_cognitive, rg, granted_account, encryption=_cmk(vault, second))
    assert moved.properties.encryption.key_vault_properties.key_name == second.name
    back = _update(admin_cognitive, rg, granted_account, encryption=Encryption(key_source="Microsoft.CognitiveServices"))
    assert back.properties.encryption is None


def test_free_tier_cannot_use_a_customer_key(admin_cognitive, boot, rg, vault, keys, assign):
    account = cs.create_account(admin_cognitive, boot, rg, "FormRecognizer", "F0", identity="SystemAssigned")
    try:
        assign(vault.id, bs.KEY_VAULT_CRYPTO_SERVICE_ENCRYPTION_USER, account.identity.principal_id)
        error = bs.expect_arm_error(lambda: _update(admin_cognitive, rg, account, encryption=_cmk(vault, _key(keys))), 400,
                                    "InvalidEncryptionSettings")
        assert "S0" in error["message"]
    finally:
        admin_cognitive.accounts.begin_delete(rg, account.name).result()
        admin_cognitive.deleted_accounts.begin_purge(boot["location"], rg, account.name).result()


def test_a_system_identity_cannot_use_a_key_at_creation(admin_cognitive, boot, rg, vault, keys):
    name = cs.account_name("cmknew")
    model = cs.account_model(boot, "SpeechServices", identity="SystemAssigned", encryption=_cmk(vault, _key(keys)))
    error = bs.expect_arm_error(lambda: admin_cognitive.accounts.begin_create(rg, name, model).result(), 400,
                                "InvalidEncryptionSettings")
    assert "after the account is created" in error["message"]
    assert name not in {a.name for a in admin_cognitive.accounts.list_by_resource_group(rg)}


def test_a_user_assigned_identity_granted_beforehand_can_use_a_key_at_creation(admin_cognitive, boot, rg, vault, keys,
                                                                                make_identity, assign):
    uai = make_identity(rg)
    assign(vault.id, bs.KEY_VAULT_CRYPTO_SERVICE_ENCRYPTION_USER, uai.principal_id)
    model = cs.account_model(boot, "SpeechServices", encryption=_cmk(vault, _key(keys), client_id=uai.client_id))
    model.identity = Identity(type="UserAssigned", user_assigned_identities={uai.id: UserAssignedIdentity()})
    account = admin_cognitive.accounts.begin_create(rg, cs.account_name("cmkuai"), model).result()
    assert account.properties.encryption.key_vault_properties.identity_client_id == uai.client_id


def test_an_account_without_identity_cannot_use_a_key(admin_cognitive, boot, rg, vault, keys):
    account = cs.create_account(admin_cognitive, boot, rg, "SpeechServices")
    bs.expect_arm_error(lambda: _update(admin_cognitive, rg, account, encryption=_cmk(vault, _key(keys))), 400,
                        "InvalidIdentity")


def test_an_unknown_identity_client_id_is_refused(admin_cognitive, rg, vault, keys, granted_account):
    bs.expect_arm_error(lambda: _update(admin_cognitive, rg, granted_account,
                                        encryption=_cmk(vault, _key(keys), client_id=bs.unique("nobody"))), 400,
                        "InvalidIdentity")


def test_the_vault_needs_purge_protection(admin_cognitive, make_vault, rg, key_client, admin_cred, assign, granted_account):
    plain = make_vault(rg=rg, tag="cscmknp", rbac=True)
    assign(plain.id, bs.KEY_VAULT_CRYPTO_SERVICE_ENCRYPTION_USER, granted_account.identity.principal_id)
    key = key_client(plain.uri, admin_cred).create_rsa_key(bs.unique("np"), size=2048)
    bs.expect_arm_error(lambda: _update(admin_cognitive, rg, granted_account, encryption=_cmk(plain, key)), 400,
                        "KeyVaultPolicyError")


def test_the_vault_must_be_in_the_accounts_region(admin_cognitive, admin_keyvault, boot, rg, keys, vault, granted_account):
    far = bs.create_vault(admin_keyvault, {**boot, "location": "westeurope"}, rg, bs.vault_name("far"),
                          enable_rbac_authorization=True, enable_purge_protection=True, soft_delete_retention_in_days=7)
    key = _key(keys)
    encryption = Encryption(key_source="Microsoft.KeyVault", key_vault_properties=KeyVaultProperties(
        key_name=key.name, key_version=key.properties.version, key_vault_uri=far.uri))
    error = bs.expect_arm_error(lambda: _update(admin_cognitive, rg, granted_account, encryption=encryption), 400,
                                "InvalidEncryptionSettings")
    assert "westeurope" in error["message"]


def test_only_rsa_2048_keys(admin_cognitive, rg, vault, keys, granted_account):
    error = bs.expect_arm_error(lambda: _update(admin_cognitive, rg, granted_account, encryption=_cmk(vault, _key(keys, 3072))),
                                400, "KeyVaultKeyNotSupported")
    assert "3072" in error["message"]


def test_the_identity_needs_access_to_the_key(admin_cognitive, boot, rg, vault, keys):
    account = cs.create_account(admin_cognitive, boot, rg, "SpeechServices", identity="SystemAssigned")
    error = bs.expect_arm_error(lambda: _update(admin_cognitive, rg, account, encryption=_cmk(vault, _key(keys))), 400,
                                "KeyVaultAuthenticationFailure")
    assert "permission" in error["message"]
    assert admin_cognitive.accounts.get(rg, account.name).properties.encryption is None


def test_the_identity_the_key_uses_cannot_be_removed(admin_cognitive, rg, vault, keys, granted_account):
    _update(admin_cognitive, rg, granted_account, encryption=_cmk(vault, _key(keys)))
    error = bs.expect_arm_error(lambda: admin_cognitive.accounts.begin_update(
        rg, granted_account.name, Account(identity=Identity(type="None"))).result(), 400, "InvalidIdentity")
    assert "customer-managed key" in error["message"]
    assert admin_cognitive.accounts.get(rg, granted_account.name).identity.principal_id == granted_account.identity.principal_id
