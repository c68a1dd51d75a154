"""Key Vault keys through azure-keyvault-keys: RSA keys and their versions, cryptography with the key (the
SDK does the public-key half locally, so every round trip proves the vault holds the matching private key),
disabled keys, soft delete / recover / purge, access policies and RBAC on the data plane, the 401 challenge,
bad input, and private key material at rest.

As in Azure, the admin (Owner of the subscription) has no data-plane rights of its own: `make_vault` gives
it an access policy with every key permission, or Key Vault Crypto Officer on RBAC vaults.
"""

import hashlib
import os
import re
import uuid
from types import SimpleNamespace

import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.keyvault.keys.crypto import EncryptionAlgorithm, KeyWrapAlgorithm, SignatureAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

import byos_support as bs

MESSAGE = b"byos signs this message"
DIGEST = hashlib.sha256(MESSAGE).digest()
SIGNING_ALGORITHMS = [SignatureAlgorithm.rs256, SignatureAlgorithm.ps256]
WRAP_ALGORITHMS = [KeyWrapAlgorithm.rsa_oaep, KeyWrapAlgorithm.rsa_oaep_256, KeyWrapAlgorithm.rsa1_5]


def _text(value):
    """An SDK enum member or a plain string, as the string on the wire."""
    return None if value is None else str(getattr(value, "value", value))


def _key_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _modulus_bits(key) -> int:
    return int.from_bytes(key.key.n, "big").bit_length()


def _public_key(key) -> rsa.RSAPublicKey:
    """The key's public half, rebuilt by the cryptography package from the n and e the vault returned."""
    return rsa.RSAPublicNumbers(int.from_bytes(key.key.e, "big"), int.from_bytes(key.key.n, "big")).public_key()


def _round_trip(crypto, algorithm=KeyWrapAlgorithm.rsa_oaep) -> bytes:
    """Wrap a fresh 32-byte key (locally, with the public key) and have the vault unwrap it; returns what the
    vault gave back, which must be the original (asserted here)."""
    cek = os.urandom(32)
    wrapped = crypto.wrap_key(algorithm, cek).encrypted_key
    unwrapped = crypto.unwrap_key(algorithm, wrapped).key
    assert unwrapped == cek
    return unwrapped


def _expect_denied(call, inner: str) -> dict:
    """A data-plane denial: 403 Forbidden with this innererror code (AccessDenied, ForbiddenByRbac)."""
    return bs.expect_keyvault_error(call, 403, "Forbidden", inner)


def _create_and_delete(keys, prefix: str):
    """Create a 2048-bit key, delete it and wait until it is soft-deleted; returns (key, DeletedKey)."""
    key = keys.create_rsa_key(_key_name(prefix), size=2048)
    return key, bs.finished(keys.begin_delete_key(key.name))


# ---- the vaults, keys and principals the tests share ----------------------------------------------------


@pytest.fixture(scope="module")
def vault(make_vault):
    """An access-policy vault (no purge protection, 7-day retention); the admin has every key permission."""
    return make_vault(tag="keys")


@pytest.fixture(scope="module")
def keys(key_client, vault, admin_cred):
    """The admin's KeyClient on `vault`."""
    return key_client(vault.uri, admin_cred)


@pytest.fixture(scope="module")
def rsa_key(keys):
    """A 2048-bit RSA key in `vault`, for tests that only use it."""
    return keys.create_rsa_key(_key_name("rsa"), size=2048)


@pytest.fixture(scope="module")
def crypto(crypto_client, rsa_key, admin_cred):
    """The admin's CryptographyClient for `rsa_key` (built from the KeyVaultKey: its public half is known)."""
    return crypto_client(rsa_key, admin_cred)


@pytest.fixture(scope="module")
def vault_token(admin_cred) -> str:
    """An admin token for raw data-plane requests."""
    return admin_cred.get_token(bs.KEYVAULT_SCOPE).token


# ---- creating keys and versions -------------------------------------------------------------------------


def test_created_rsa_key_has_its_public_material(rsa_key):
    assert _text(rsa_key.key_type) == "RSA"
    assert _modulus_bits(rsa_key) == 2048
    assert int.from_bytes(rsa_key.key.e, "big") == 65537


def test_key_id_is_the_vault_uri_the_name_and_a_version(vault, rsa_key):
    assert re.fullmatch(r"[0-9a-f]{32}", rsa_key.properties.version), rsa_key.properties.version
    assert rsa_key.id == vault.key_id(rsa_key.name, rsa_key.properties.version)


def test_new_key_is_enabled(rsa_key):
    assert rsa_key.properties.enabled is True


@pytest.mark.parametrize("size", [3072, 4096])
def test_create_rsa_key_of_size(keys, size):
    key = keys.create_rsa_key(_key_name(f"rsa{size}"), size=size)
    assert _modulus_bits(key) == size


@pytest.fixture(scope="module")
def two_versions(keys):
    """One key name created twice: (first version, second version)."""
    name = _key_name("versions")
    return keys.create_rsa_key(name, size=2048), keys.create_rsa_key(name, size=2048)


def test_creating_a_key_again_makes_a_new_version(two_versions):
    first, second = two_versions
    assert second.name == first.name
    assert second.properties.version != first.properties.version
    assert second.key.n != first.key.n


def test_get_key_without_version_is_the_latest(keys, two_versions):
    _, second = two_versions
    got = keys.get_key(second.name)
    assert got.id == second.id
    assert got.key.n == second.key.n


def test_get_key_with_version_is_that_version(keys, two_versions):
    first, _ = two_versions
    got = keys.get_key(first.name, first.properties.version)
    assert got.id == first.id
    assert got.key.n == first.key.n


def test_list_properties_of_keys_lists_each_key_once(keys, rsa_key, two_versions):
    listed = [p.name for p in keys.list_properties_of_keys()]
    assert {rsa_key.name, two_versions[0].name} <= set(listed)
    assert len(listed) == len(set(listed)), listed


def test_list_properties_of_key_versions_lists_every_version(keys, two_versions):
    first, second = two_versions
    versions = {p.version for p in keys.list_properties_of_key_versions(first.name)}
    assert versions == {first.properties.version, second.properties.version}


def test_get_missing_key_is_key_not_found(keys):
    bs.expect_keyvault_error(lambda: keys.get_key(_key_name("missing")), 404, "KeyNotFound",
                             kind=ResourceNotFoundError)


# ---- cryptography with the key ---------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", WRAP_ALGORITHMS, ids=_text)
def test_wrap_unwrap_round_trip(crypto, algorithm):
    cek = os.urandom(32)
    wrapped = crypto.wrap_key(algorithm, cek).encrypted_key
    assert len(wrapped) == 256 and wrapped != cek
    assert crypto.unwrap_key(algorithm, wrapped).key == cek


def test_encrypt_decrypt_round_trip(crypto):
    plaintext = b"a secret only the vault can read"
    ciphertext = crypto.encrypt(EncryptionAlgorithm.rsa_oaep_256, plaintext).ciphertext
    assert crypto.decrypt(EncryptionAlgorithm.rsa_oaep_256, ciphertext).plaintext == plaintext


@pytest.mark.parametrize("algorithm", SIGNING_ALGORITHMS, ids=_text)
def test_signature_verifies(crypto, algorithm):
    signature = crypto.sign(algorithm, DIGEST).signature
    assert crypto.verify(algorithm, DIGEST, signature).is_valid is True


@pytest.mark.parametrize("algorithm", SIGNING_ALGORITHMS, ids=_text)
def test_signature_does_not_verify_another_digest(crypto, algorithm):
    signature = crypto.sign(algorithm, DIGEST).signature
    tampered = bytes([DIGEST[0] ^ 0x01]) + DIGEST[1:]
    assert crypto.verify(algorithm, tampered, signature).is_valid is False


@pytest.mark.parametrize(
    "algorithm, scheme",
    [
        pytest.param(SignatureAlgorithm.rs256, padding.PKCS1v15(), id="RS256"),
        pytest.param(SignatureAlgorithm.ps256, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                     id="PS256"),
    ],
)
def test_signature_verifies_with_the_cryptography_package(crypto, rsa_key, algorithm, scheme):
    signature = crypto.sign(algorithm, DIGEST).signature
    # Raises InvalidSignature unless the vault signed sha256(MESSAGE) with the private half of n/e.
    _public_key(rsa_key).verify(signature, MESSAGE, scheme, hashes.SHA256())


# ---- disabled keys --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def disabled(keys, crypto_client, admin_cred):
    """A key disabled after wrapping and encrypting something with it; its CryptographyClient was built from
    the KeyVaultKey before that (so it never asks the vault whether the key is enabled)."""
    key = keys.create_rsa_key(_key_name("disabled"), size=2048)
    crypto = crypto_client(key, admin_cred)
    wrapped = crypto.wrap_key(KeyWrapAlgorithm.rsa_oaep, os.urandom(32)).encrypted_key
    ciphertext = crypto.encrypt(EncryptionAlgorithm.rsa_oaep_256, b"secret").ciphertext
    updated = keys.update_key_properties(key.name, enabled=False)
    return SimpleNamespace(key=key, crypto=crypto, wrapped=wrapped, ciphertext=ciphertext, updated=updated)


def test_update_key_properties_disables_the_key(keys, disabled):
    assert disabled.updated.properties.enabled is False
    listed = {p.name: p.enabled for p in keys.list_properties_of_keys()}
    assert listed[disabled.key.name] is False


@pytest.mark.parametrize(
    "operation",
    [
        pytest.param(lambda d: d.crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep, d.wrapped), id="unwrapKey"),
        pytest.param(lambda d: d.crypto.decrypt(EncryptionAlgorithm.rsa_oaep_256, d.ciphertext), id="decrypt"),
        pytest.param(lambda d: d.crypto.sign(SignatureAlgorithm.rs256, DIGEST), id="sign"),
    ],
)
def test_disabled_key_refuses_private_key_operations(disabled, operation):
    bs.expect_keyvault_error(lambda: operation(disabled), 403, "Forbidden", "KeyDisabled")


def test_reenabled_key_works_again(keys, crypto_client, admin_cred):
    key = keys.create_rsa_key(_key_name("reenabled"), size=2048)
    crypto = crypto_client(key, admin_cred)
    wrapped = crypto.wrap_key(KeyWrapAlgorithm.rsa_oaep, b"k" * 32).encrypted_key
    keys.update_key_properties(key.name, enabled=False)
    bs.expect_keyvault_error(lambda: crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep, wrapped), 403, "Forbidden",
                             "KeyDisabled")

    assert keys.update_key_properties(key.name, enabled=True).properties.enabled is True
    assert crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep, wrapped).key == b"k" * 32


# ---- soft delete, recover, purge ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deleted_key(keys):
    """(the key as created, the DeletedKey) for a key deleted from `vault`."""
    return _create_and_delete(keys, "deleted")


def test_deleted_key_has_recovery_information(keys, vault, deleted_key):
    key, _ = deleted_key
    got = keys.get_deleted_key(key.name)
    assert got.name == key.name
    assert got.recovery_id == f"{vault.uri}deletedkeys/{key.name}"
    assert got.deleted_date is not None
    assert got.scheduled_purge_date is not None


def test_deleted_key_is_purged_after_the_vault_retention(keys, deleted_key):
    key, _ = deleted_key
    # The vault keeps deleted things for 7 days.
    assert bs.utc_in(days=6) < keys.get_deleted_key(key.name).scheduled_purge_date < bs.utc_in(days=8)


def test_deleted_key_is_key_not_found(keys, deleted_key):
    key, _ = deleted_key
    bs.expect_keyvault_error(lambda: keys.get_key(key.name), 404, "KeyNotFound", kind=ResourceNotFoundError)


def test_deleted_key_is_listed_only_among_deleted_keys(keys, deleted_key):
    key, _ = deleted_key
    assert key.name in {d.name for d in keys.list_deleted_keys()}
    assert key.name not in {p.name for p in keys.list_properties_of_keys()}


def test_recover_deleted_key_brings_it_back(keys, crypto_client, admin_cred):
    key, _ = _create_and_delete(keys, "recovered")
    bs.finished(keys.begin_recover_deleted_key(key.name))

    got = keys.get_key(key.name)
    assert got.id == key.id
    assert got.key.n == key.key.n
    with pytest.raises(ResourceNotFoundError):
        keys.get_deleted_key(key.name)
    _round_trip(crypto_client(got, admin_cred))


def test_purge_deleted_key_removes_it_for_good(keys):
    key, _ = _create_and_delete(keys, "purged")
    keys.purge_deleted_key(key.name)

    with pytest.raises(ResourceNotFoundError):
        keys.get_deleted_key(key.name)
    with pytest.raises(ResourceNotFoundError):
        keys.get_key(key.name)


def test_purge_deleted_key_is_refused_with_purge_protection(make_vault, key_client, admin_cred):
    protected = key_client(make_vault(tag="keypp", purge_protection=True).uri, admin_cred)
    key, _ = _create_and_delete(protected, "protected")

    exc = bs.expect_http_error(lambda: protected.purge_deleted_key(key.name))
    assert exc.status_code == 403, f"{exc.status_code}: {exc.message[:500]}"
    assert protected.get_deleted_key(key.name).name == key.name


# ---- access policies on the data plane -------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited(admin_keyvault, vault, new_principal, boot):
    """A principal whose access policy on `vault` is keys get, wrapKey, unwrapKey."""
    principal = new_principal("kv-limited")
    bs.update_access_policy(admin_keyvault, vault, "add", boot["tenant_id"], principal.object_id,
                            ["get", "wrapKey", "unwrapKey"])
    return principal


def test_principal_without_access_policy_is_denied(key_client, vault, rsa_key, new_principal):
    keys = key_client(vault.uri, new_principal("kv-nopolicy").credential)
    _expect_denied(lambda: keys.get_key(rsa_key.name), "AccessDenied")


def test_owner_has_no_key_rights_without_an_access_policy(make_vault, key_client, admin_cred):
    keys = key_client(make_vault(tag="nopolicy", policies_for=[]).uri, admin_cred)
    _expect_denied(lambda: keys.create_rsa_key(_key_name("owner"), size=2048), "AccessDenied")


def test_get_permission_allows_get_key(key_client, vault, rsa_key, limited):
    got = key_client(vault.uri, limited.credential).get_key(rsa_key.name)
    assert got.id == rsa_key.id
    assert got.key.n == rsa_key.key.n


def test_unwrap_permission_allows_unwrap(crypto_client, rsa_key, limited):
    _round_trip(crypto_client(rsa_key.id, limited.credential))


def test_access_policy_without_create_denies_create(key_client, vault, limited):
    keys = key_client(vault.uri, limited.credential)
    _expect_denied(lambda: keys.create_rsa_key(_key_name("limited"), size=2048), "AccessDenied")


def test_removing_the_access_policy_revokes_unwrap(admin_keyvault, vault, rsa_key, new_principal, crypto_client,
                                                   boot):
    principal = new_principal("kv-revoked")
    bs.update_access_policy(admin_keyvault, vault, "add", boot["tenant_id"], principal.object_id,
                            ["get", "unwrapKey"])
    crypto = crypto_client(rsa_key.id, principal.credential)
    _round_trip(crypto)

    bs.update_access_policy(admin_keyvault, vault, "remove", boot["tenant_id"], principal.object_id,
                            ["get", "unwrapKey"])
    wrapped = crypto.wrap_key(KeyWrapAlgorithm.rsa_oaep, os.urandom(32)).encrypted_key
    _expect_denied(lambda: crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep, wrapped), "AccessDenied")


# ---- RBAC vaults ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rbac_vault(make_vault):
    """A vault with enable_rbac_authorization; the admin holds Key Vault Crypto Officer at its scope."""
    return make_vault(tag="rbac", rbac=True)


@pytest.fixture(scope="module")
def rbac_key(key_client, rbac_vault, admin_cred):
    return key_client(rbac_vault.uri, admin_cred).create_rsa_key(_key_name("rbac"), size=2048)


@pytest.fixture(scope="module")
def encryption_user(principal_with_role, rbac_vault):
    """A principal holding Key Vault Crypto Service Encryption User at `rbac_vault`'s scope."""
    principal, _ = principal_with_role("kv-seu", bs.KEY_VAULT_CRYPTO_SERVICE_ENCRYPTION_USER, rbac_vault.id)
    return principal


def test_crypto_officer_can_create_keys(rbac_vault, rbac_key):
    assert rbac_key.id == rbac_vault.key_id(rbac_key.name, rbac_key.properties.version)


def test_owner_has_no_key_rights_without_a_data_role(make_vault, key_client, admin_cred):
    keys = key_client(make_vault(tag="norole", rbac=True, policies_for=[]).uri, admin_cred)
    _expect_denied(lambda: keys.create_rsa_key(_key_name("owner"), size=2048), "ForbiddenByRbac")


def test_rbac_vault_ignores_access_policies(admin_keyvault, rbac_vault, rbac_key, new_principal, key_client,
                                            boot):
    principal = new_principal("kv-ignored")
    bs.update_access_policy(admin_keyvault, rbac_vault, "add", boot["tenant_id"], principal.object_id, ["all"])
    keys = key_client(rbac_vault.uri, principal.credential)
    _expect_denied(lambda: keys.get_key(rbac_key.name), "ForbiddenByRbac")


def test_crypto_service_encryption_user_can_get_key(key_client, rbac_vault, rbac_key, encryption_user):
    got = key_client(rbac_vault.uri, encryption_user.credential).get_key(rbac_key.name)
    assert got.key.n == rbac_key.key.n


def test_crypto_service_encryption_user_can_unwrap(crypto_client, rbac_key, encryption_user):
    _round_trip(crypto_client(rbac_key.id, encryption_user.credential))


def test_crypto_service_encryption_user_cannot_create_keys(key_client, rbac_vault, encryption_user):
    keys = key_client(rbac_vault.uri, encryption_user.credential)
    _expect_denied(lambda: keys.create_rsa_key(_key_name("seu"), size=2048), "ForbiddenByRbac")


def test_removing_the_role_assignment_revokes_unwrap(admin_auth, principal_with_role, crypto_client, rbac_vault,
                                                     rbac_key):
    principal, assignment = principal_with_role("kv-revoke", bs.KEY_VAULT_CRYPTO_SERVICE_ENCRYPTION_USER,
                                                rbac_vault.id)
    crypto = crypto_client(rbac_key.id, principal.credential)
    _round_trip(crypto)

    admin_auth.role_assignments.delete(rbac_vault.id, assignment.name)
    wrapped = crypto.wrap_key(KeyWrapAlgorithm.rsa_oaep, os.urandom(32)).encrypted_key
    _expect_denied(lambda: crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep, wrapped), "ForbiddenByRbac")


def test_key_vault_administrator_can_create_keys(principal_with_role, key_client, rbac_vault):
    principal, _ = principal_with_role("kv-admin", bs.KEY_VAULT_ADMINISTRATOR, rbac_vault.id)
    key = key_client(rbac_vault.uri, principal.credential).create_rsa_key(_key_name("kvadmin"), size=2048)
    assert _modulus_bits(key) == 2048


def test_crypto_officer_at_the_resource_group_applies_to_its_vaults(principal_with_role, key_client, rbac_vault,
                                                                     sub):
    principal, _ = principal_with_role("kv-rg-officer", bs.KEY_VAULT_CRYPTO_OFFICER,
                                       bs.rg_scope(sub, rbac_vault.rg))
    key = key_client(rbac_vault.uri, principal.credential).create_rsa_key(_key_name("rgofficer"), size=2048)
    assert _modulus_bits(key) == 2048


# ---- authentication ---------------------------------------------------------------------------------------


def _challenge_parameters(header: str) -> dict[str, str]:
    assert header.startswith("Bearer "), header
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


def test_request_without_token_gets_the_bearer_challenge(vault, ca, boot):
    resp = requests.get(f"{vault.uri}keys?api-version={bs.KEYVAULT_API_VERSION}", verify=ca, timeout=30)
    assert resp.status_code == 401, resp.text[:500]
    params = _challenge_parameters(resp.headers.get("WWW-Authenticate", ""))
    assert params.get("resource") == bs.KEYVAULT_RESOURCE, params
    assert params.get("authorization", "").rstrip("/").endswith(f"/{boot['tenant_id']}"), params


def test_request_without_token_is_unauthorized(vault, ca):
    resp = bs.keyvault_request("GET", f"{vault.uri}keys?api-version={bs.KEYVAULT_API_VERSION}", ca)
    bs.assert_raw_keyvault_error(resp, 401, "Unauthorized")


def test_token_for_another_audience_is_refused(vault, ca, admin_token):
    # admin_token is an ARM token (audience https://management.azure.com/).
    resp = bs.keyvault_request("GET", f"{vault.uri}keys?api-version={bs.KEYVAULT_API_VERSION}", ca, admin_token)
    assert resp.status_code == 401, resp.text[:500]


# ---- bad input --------------------------------------------------------------------------------------------


def test_invalid_key_name_is_400(keys):
    bs.expect_keyvault_error(lambda: keys.create_rsa_key("bad_name!", size=2048), 400, "BadParameter")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"alg": "RSA-OAEP", "value": "***not-base64url***"}, id="value-not-base64url"),
        pytest.param({"alg": "A256GCM", "value": bs.b64url(b"\x01" * 256)}, id="symmetric-algorithm-on-rsa-key"),
        pytest.param({"alg": "RSA-OAEP", "value": bs.b64url(b"\x01" * 100)}, id="ciphertext-of-wrong-length"),
    ],
)
def test_bad_unwrap_request_is_400(rsa_key, vault_token, ca, body):
    resp = bs.keyvault_request("POST", f"{rsa_key.id}/unwrapkey?api-version={bs.KEYVAULT_API_VERSION}", ca,
                               vault_token, json=body)
    bs.assert_raw_keyvault_error(resp, 400, "BadParameter")


# ---- private key material at rest ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def key_material_scan(keys, server):
    """Create a 2048-bit and a 3072-bit key, then scan the session server's data dir for private-key
    encodings: PEM, DER PKCS#8 of any RSA key, DER RSAPrivateKey of the keys just created (found by their
    public modulus), private JWK members. Returns ({needle: [files]}, bytes scanned)."""
    created = [keys.create_rsa_key(_key_name(f"atrest{size}"), size=size) for size in (2048, 3072)]
    needles = {
        "PEM": b"PRIVATE KEY",
        "PKCS#8": bs.PKCS8_RSA_DER_PATTERN,
        "JWK": bs.PRIVATE_JWK_MEMBER_PATTERN,
    }
    for key in created:
        needles[f"RSAPrivateKey {_modulus_bits(key)}"] = bs.rsa_private_key_der_head(key.key.n)
    return bs.scan_files_for(server.data_dir, needles)


def test_data_dir_was_scanned(key_material_scan):
    _, scanned = key_material_scan
    assert scanned > 0


def test_no_pem_private_key_at_rest(key_material_scan):
    found, _ = key_material_scan
    assert found["PEM"] == []


def test_no_der_pkcs8_rsa_private_key_at_rest(key_material_scan):
    found, _ = key_material_scan
    assert found["PKCS#8"] == []


@pytest.mark.parametrize("bits", [2048, 3072])
def test_created_key_is_not_stored_as_der_rsa_private_key(key_material_scan, bits):
    found, _ = key_material_scan
    assert found[f"RSAPrivateKey {bits}"] == []


def test_no_private_jwk_at_rest(key_material_scan):
    found, _ = key_material_scan
    assert found["JWK"] == []
