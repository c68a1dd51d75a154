"""Key rotation: rotate on demand, rotation policies, and automatic rotation when a policy's trigger is
due (recorded in the vault's audit log as done by the rotation policy)."""

import time

import pytest
from azure.core.exceptions import HttpResponseError
from azure.keyvault.keys import KeyRotationLifetimeAction, KeyRotationPolicy, KeyRotationPolicyAction

import byos_support as bs


def _wait_until(predicate, timeout=8.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


@pytest.fixture(scope="module")
def vault(make_vault):
    return make_vault(tag="rot")


@pytest.fixture
def keys(vault, key_client, admin_cred):
    return key_client(vault.uri, admin_cred)


def test_rotate_key_makes_a_new_current_version_of_the_same_kind(keys):
    name = bs.unique("rot")
    first = keys.create_rsa_key(name, size=3072)
    rotated = keys.rotate_key(name)
    assert rotated.properties.version != first.properties.version
    assert keys.get_key(name).properties.version == rotated.properties.version
    assert len(rotated.key.n) == len(first.key.n), "a rotated key keeps its size"
    assert sorted(rotated.key_operations) == sorted(first.key_operations)
    assert len(list(keys.list_properties_of_key_versions(name))) == 2


def test_rotation_policy_defaults_to_notify_before_expiry(keys):
    name = bs.unique("rot")
    keys.create_rsa_key(name)
    policy = keys.get_key_rotation_policy(name)
    assert [(a.action, a.time_before_expiry) for a in policy.lifetime_actions] == [(KeyRotationPolicyAction.notify, "P30D")]


def test_rotation_policy_round_trips(keys):
    name = bs.unique("rot")
    keys.create_rsa_key(name)
    wanted = KeyRotationPolicy(expires_in="P90D", lifetime_actions=[KeyRotationLifetimeAction(KeyRotationPolicyAction.rotate, time_after_create="P30D")])
    keys.update_key_rotation_policy(name, wanted)
    policy = keys.get_key_rotation_policy(name)
    assert policy.expires_in == "P90D"
    assert [(a.action, a.time_after_create) for a in policy.lifetime_actions] == [(KeyRotationPolicyAction.rotate, "P30D")]


def test_invalid_rotation_policy_is_bad_parameter(keys):
    name = bs.unique("rot")
    keys.create_rsa_key(name)
    bad = KeyRotationPolicy(lifetime_actions=[KeyRotationLifetimeAction(KeyRotationPolicyAction.rotate, time_after_create="thirty days")])
    with pytest.raises(HttpResponseError) as info:
        keys.update_key_rotation_policy(name, bad)
    assert info.value.status_code == 400


def test_a_due_rotation_policy_rotates_the_key_by_itself(keys, server, vault):
    name = bs.unique("auto")
    first = keys.create_rsa_key(name)
    policy = KeyRotationPolicy(expires_in="P30D", lifetime_actions=[KeyRotationLifetimeAction(KeyRotationPolicyAction.rotate, time_after_create="PT2S")])
    keys.update_key_rotation_policy(name, policy)
    assert _wait_until(lambda: keys.get_key(name).properties.version != first.properties.version), "the key was not rotated"
    rotated = keys.get_key(name)
    assert rotated.properties.expires_on is not None, "a version made under a policy with expiresIn gets an expiry"
    by_policy = [r for r in server.audit_list(vault.name) if r["operation"] == "rotate" and name in r["key"]]
    assert by_policy and by_policy[0]["authentication"] == "KeyRotationPolicy" and by_policy[0]["result"] == "success"


def test_a_notify_only_policy_never_rotates(keys):
    name = bs.unique("notify")
    first = keys.create_rsa_key(name)
    policy = KeyRotationPolicy(lifetime_actions=[KeyRotationLifetimeAction(KeyRotationPolicyAction.notify, time_after_create="PT1S")])
    keys.update_key_rotation_policy(name, policy)
    time.sleep(2.5)
    assert keys.get_key(name).properties.version == first.properties.version
