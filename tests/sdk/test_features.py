"""Microsoft.Features with azure-mgmt-resource-features: the subscription's preview features, and the
operator's approval of those Azure gates behind an access request (Microsoft.CognitiveServices/byoxPreview).

Registering a gated feature leaves it Pending until the operator runs `byos feature approve` (or started the
server with `--approve-feature` / BYOS_APPROVE_FEATURES); approving alone registers nothing. Tests that change
a feature's state run on a private server, so the session server's subscription keeps byoxPreview as it is
for other tests."""

from __future__ import annotations

import json

import byos_support as bs

NAMESPACE = "Microsoft.CognitiveServices"
FEATURE = "byoxPreview"
FULL_NAME = f"{NAMESPACE}/{FEATURE}"
STATES = {"NotRegistered", "Pending", "Registered", "Unregistered"}
READ = "Microsoft.Features/providers/features/read"
REGISTER = "Microsoft.Features/providers/features/register/action"
UNREGISTER = "Microsoft.Features/providers/features/unregister/action"


def _state(features) -> str:
    return features.features.get(NAMESPACE, FEATURE).properties.state


def _admin_features(srv: bs.ByosServer):
    return bs.features_client(srv.boot, bs.admin_credential(srv.boot))


def _assert_feature_result(result, sub: str) -> None:
    assert result.id == f"/subscriptions/{sub}/providers/Microsoft.Features/providers/{NAMESPACE}/features/{FEATURE}"
    assert (result.name, result.type) == (FULL_NAME, "Microsoft.Features/providers/features")
    assert result.properties.state in STATES, result.properties.state


def test_registering_waits_for_the_operators_approval(private_server):
    srv = private_server()
    features = _admin_features(srv)
    assert _state(features) == "NotRegistered"

    registered = features.features.register(NAMESPACE, FEATURE)
    _assert_feature_result(registered, srv.boot["subscription_id"])
    assert registered.properties.state == "Pending"
    assert _state(features) == "Pending"

    approval = srv.feature_approve(NAMESPACE, FEATURE)
    assert (approval["approved"], approval["state"]) == (True, "Registered"), approval
    assert _state(features) == "Registered"

    # Unregistering keeps the approval: registering again needs no new one.
    assert features.features.unregister(NAMESPACE, FEATURE).properties.state == "Unregistered"
    assert _state(features) == "Unregistered"
    assert features.features.register(NAMESPACE, FEATURE).properties.state == "Registered"


def test_registrations_are_in_the_activity_log(private_server):
    srv = private_server()
    features = _admin_features(srv)
    features.features.register(NAMESPACE, FEATURE)
    features.features.unregister(NAMESPACE, FEATURE)
    res = srv.cli("audit", "activity", "--data-dir", str(srv.data_dir))
    assert res.returncode == 0, res.stderr
    entries = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
    recorded = [(e["method"], e["path"].rsplit("/", 1)[-1], e["result"], e["caller"]) for e in entries
                if f"/features/{FEATURE}/".lower() in e["path"].lower()]
    admin = srv.boot["admin"]["object_id"]
    assert recorded == [("POST", "register", "success", admin), ("POST", "unregister", "success", admin)], recorded


def test_an_approval_alone_registers_nothing(private_server):
    srv = private_server()
    features = _admin_features(srv)
    assert srv.feature_approve(NAMESPACE, FEATURE)["state"] == "NotRegistered"
    assert _state(features) == "NotRegistered"
    assert features.features.register(NAMESPACE, FEATURE).properties.state == "Registered"


def test_a_feature_approved_at_start_registers_at_once(private_server):
    srv = private_server(env={"BYOS_APPROVE_FEATURES": FULL_NAME})
    features = _admin_features(srv)
    assert _state(features) == "NotRegistered"
    assert features.features.register(NAMESPACE, FEATURE).properties.state == "Registered"


def test_serve_refuses_an_unknown_feature_to_approve(server, tmp_path):
    res = server.cli("serve", "--data-dir", str(tmp_path / "never-started"), "--port", "0",
                     "--approve-feature", f"{NAMESPACE}/noSuchFeature")
    assert res.returncode != 0
    assert f"{NAMESPACE}/noSuchFeature" in res.stderr and FULL_NAME in res.stderr, res.stderr
    assert not (tmp_path / "never-started").exists()


def test_operator_approval_of_an_unknown_feature_is_refused(server):
    res = server.cli("feature", "approve", "--data-dir", str(server.data_dir), "--namespace", NAMESPACE,
                     "--name", "noSuchFeature")
    assert res.returncode != 0
    assert "404" in res.stderr and f"{NAMESPACE}/noSuchFeature" in res.stderr, res.stderr


def test_an_unknown_feature_is_not_found(boot, admin_cred):
    features = bs.features_client(boot, admin_cred)
    for call in (lambda: features.features.get(NAMESPACE, "noSuchFeature"),
                 lambda: features.features.register(NAMESPACE, "noSuchFeature"),
                 lambda: features.features.get("Microsoft.Nothing", FEATURE)):
        error = bs.expect_arm_error(call, 404, "FeatureNotFound")
        assert "noSuchFeature" in error["message"] or "Microsoft.Nothing" in error["message"], error


def test_features_are_listed_with_their_state(boot, sub, admin_cred):
    features = bs.features_client(boot, admin_cred)
    everything = list(features.features.list_all())
    in_namespace = list(features.features.list(NAMESPACE))
    for listed in (everything, in_namespace):
        [byox] = [f for f in listed if f.name == FULL_NAME]
        _assert_feature_result(byox, sub)
    assert all(f.name.startswith(f"{NAMESPACE}/") for f in in_namespace)
    assert list(features.features.list("Microsoft.Nothing")) == []


def test_a_principal_without_roles_is_refused(boot, sub, new_principal):
    features = bs.features_client(boot, new_principal("features-none").credential)
    scope = bs.sub_scope(sub)
    for call, action in ((lambda: features.features.get(NAMESPACE, FEATURE), READ),
                         (lambda: list(features.features.list_all()), READ),
                         (lambda: list(features.features.list(NAMESPACE)), READ),
                         (lambda: features.features.register(NAMESPACE, FEATURE), REGISTER),
                         (lambda: features.features.unregister(NAMESPACE, FEATURE), UNREGISTER)):
        bs.expect_authorization_failed(call, action, scope)


def test_a_reader_sees_features_but_cannot_register_them(boot, sub, principal_with_role):
    reader, _ = principal_with_role("features-reader", bs.READER, bs.sub_scope(sub))
    features = bs.features_client(boot, reader.credential)
    _assert_feature_result(features.features.get(NAMESPACE, FEATURE), sub)
    bs.expect_authorization_failed(lambda: features.features.register(NAMESPACE, FEATURE), REGISTER,
                                   bs.sub_scope(sub))
