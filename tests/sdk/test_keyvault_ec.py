"""EC P-256 keys: created with their public point, ES256 signatures made by the server over a digest,
checked by the SDK and independently; other curves and RSA-only operations are refused."""

import hashlib

import pytest
from azure.core.exceptions import HttpResponseError
from azure.keyvault.keys import KeyCurveName
from azure.keyvault.keys.crypto import SignatureAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

import byos_support as bs


@pytest.fixture(scope="module")
def vault(make_vault):
    return make_vault(tag="ec")


@pytest.fixture
def keys(vault, key_client, admin_cred):
    return key_client(vault.uri, admin_cred)


def test_created_ec_key_has_its_public_point(keys):
    key = keys.create_ec_key(bs.unique("ec"), curve=KeyCurveName.p_256)
    assert key.key_type == "EC"
    assert key.key.crv == "P-256"
    assert len(key.key.x) == 32 and len(key.key.y) == 32
    assert sorted(key.key_operations) == ["sign", "verify"]


def test_es256_signature_verifies_with_the_sdk_and_independently(keys, crypto_client, admin_cred):
    key = keys.create_ec_key(bs.unique("ec"), curve=KeyCurveName.p_256)
    digest = hashlib.sha256(b"message").digest()
    signed = crypto_client(key, admin_cred).sign(SignatureAlgorithm.es256, digest)
    assert crypto_client(key, admin_cred).verify(SignatureAlgorithm.es256, digest, signed.signature).is_valid
    public = ec.EllipticCurvePublicNumbers(int.from_bytes(key.key.x, "big"), int.from_bytes(key.key.y, "big"), ec.SECP256R1()).public_key()
    r, s = int.from_bytes(signed.signature[:32], "big"), int.from_bytes(signed.signature[32:], "big")
    public.verify(utils.encode_dss_signature(r, s), digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def test_unsupported_curve_is_bad_parameter(keys):
    with pytest.raises(HttpResponseError) as info:
        keys.create_ec_key(bs.unique("ec"), curve=KeyCurveName.p_384)
    assert info.value.status_code == 400


def test_rsa_operations_on_an_ec_key_are_refused(keys, admin_cred, boot):
    key = keys.create_ec_key(bs.unique("ec"), curve=KeyCurveName.p_256)
    token = admin_cred.get_token(bs.KEYVAULT_SCOPE).token
    response = bs.keyvault_request("POST", f"{key.id}/unwrapkey?api-version={bs.KEYVAULT_API_VERSION}", boot["ca_file"], token,
                                   json={"alg": "RSA-OAEP", "value": bs.b64url(b"x" * 256)})
    bs.assert_raw_keyvault_error(response, 400, "BadParameter")
