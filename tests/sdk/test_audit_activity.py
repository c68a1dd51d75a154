"""F17: the resource manager's activity log. Every write and action (RBAC changes included) and every
refused request, reads too, is recorded with who, what, where and how it ended, hash-chained, and read
and verified with `byos audit activity`."""

from __future__ import annotations

import json

import pytest
from azure.core.exceptions import HttpResponseError

import byos_support as bs


def _activity(server) -> list[dict]:
    res = server.cli("audit", "activity", "--data-dir", str(server.data_dir))
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]


def _entries_for(server, path_part: str) -> list[dict]:
    return [e for e in _activity(server) if path_part.lower() in e["path"].lower()]


def test_regression_f17_denied_write_is_recorded_with_its_caller(server, boot, new_principal):
    stranger = new_principal("f17-denied")
    arm = bs.resource_client(boot, stranger.credential)
    name = bs.unique("byos-test-f17")
    with pytest.raises(HttpResponseError) as refused:
        arm.resource_groups.create_or_update(name, {"location": boot["location"]})
    assert refused.value.status_code == 403
    [entry] = _entries_for(server, f"/resourcegroups/{name}")
    assert (entry["caller"], entry["clientId"], entry["method"], entry["status"], entry["result"]) == (
        stranger.object_id, stranger.client_id, "PUT", 403, "denied")
    assert entry["authentication"] == "BearerToken" and entry["sourceIp"] == "127.0.0.1"


def test_regression_f17_rbac_change_is_recorded_with_its_caller(server, boot, sub, assign, new_principal):
    grantee = new_principal("f17-grantee")
    created = assign(f"/subscriptions/{sub}", bs.READER, grantee.object_id)
    [entry] = _entries_for(server, f"/roleAssignments/{created.name}")
    assert (entry["method"], entry["result"], entry["caller"]) == ("PUT", "success", boot["admin"]["object_id"])
    assert entry["status"] in (200, 201)


def test_regression_f17_unauthenticated_request_is_recorded(server, boot):
    path = f"/subscriptions/{boot['subscription_id']}/resourcegroups/{bs.unique('byos-test-f17u')}?api-version=2021-04-01"
    answer = bs.arm_request(boot, "GET", path, "not-a-token")
    assert answer.status_code == 401
    [entry] = _entries_for(server, path.split("?")[0])
    assert (entry["caller"], entry["authentication"], entry["result"]) == ("", "None", "unauthenticated")


def test_successful_reads_are_not_recorded_and_the_chain_verifies(server, boot, admin_arm, make_rg):
    name = make_rg("f17read")
    admin_arm.resource_groups.get(name)
    assert [e["method"] for e in _entries_for(server, f"/resourcegroups/{name}")] == ["PUT"]
    res = server.cli("audit", "activity", "--data-dir", str(server.data_dir), "--verify")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("ok: ") and "hash chain intact" in res.stdout
