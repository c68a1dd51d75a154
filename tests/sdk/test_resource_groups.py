"""Resource groups and subscriptions through azure-mgmt-resource, and ARM's error contract."""

import pytest
from azure.core.exceptions import ResourceNotFoundError

import byos_support as bs


def test_admin_creates_and_reads_a_resource_group(admin_arm, boot):
    name = bs.unique("byos-test-crud")
    created = admin_arm.resource_groups.create_or_update(name, {"location": boot["location"], "tags": {"team": "a"}})
    assert created.name == name
    assert created.location == boot["location"]
    assert created.tags == {"team": "a"}
    assert created.properties.provisioning_state == "Succeeded"
    assert created.id.lower() == bs.rg_scope(boot["subscription_id"], name).lower()

    got = admin_arm.resource_groups.get(name)
    assert (got.name, got.location, got.tags) == (name, boot["location"], {"team": "a"})


def test_resource_group_list_and_check_existence(admin_arm, make_rg):
    name = make_rg("list")
    assert name in {g.name for g in admin_arm.resource_groups.list()}
    assert admin_arm.resource_groups.check_existence(name) is True
    assert admin_arm.resource_groups.check_existence(bs.unique("byos-test-absent")) is False


def test_updating_a_resource_group_replaces_its_tags(admin_arm, make_rg, boot):
    name = make_rg("update", tags={"v": "1"})
    admin_arm.resource_groups.create_or_update(name, {"location": boot["location"], "tags": {"v": "2"}})
    assert admin_arm.resource_groups.get(name).tags == {"v": "2"}


def test_deleted_resource_group_is_gone(admin_arm, make_rg):
    name = make_rg("delete")
    admin_arm.resource_groups.begin_delete(name).result()

    assert admin_arm.resource_groups.check_existence(name) is False
    assert name not in {g.name for g in admin_arm.resource_groups.list()}
    with pytest.raises(ResourceNotFoundError) as info:
        admin_arm.resource_groups.get(name)
    assert info.value.error.code == "ResourceGroupNotFound"


def test_get_missing_resource_group_is_404_resource_group_not_found(admin_arm):
    error = bs.expect_arm_error(
        lambda: admin_arm.resource_groups.get(bs.unique("byos-test-never")), 404, "ResourceGroupNotFound"
    )
    assert error["message"]


def test_subscription_list_shows_the_bootstrap_subscription(boot, admin_cred):
    client = bs.subscription_client(boot, admin_cred)
    subs = {s.subscription_id: s for s in client.subscriptions.list()}
    assert boot["subscription_id"] in subs
    mine = subs[boot["subscription_id"]]
    assert mine.tenant_id == boot["tenant_id"]
    assert mine.state == "Enabled"
    assert mine.display_name


def test_subscription_get(boot, admin_cred):
    got = bs.subscription_client(boot, admin_cred).subscriptions.get(boot["subscription_id"])
    assert got.subscription_id == boot["subscription_id"]
    assert got.id.lower() == bs.sub_scope(boot["subscription_id"]).lower()


# ---- raw ARM error responses ---------------------------------------------------------------------


def test_missing_api_version_is_400(boot, admin_token):
    resp = bs.arm_get(boot, f"/subscriptions/{boot['subscription_id']}/resourcegroups", admin_token)
    bs.assert_raw_arm_error(resp, 400, "MissingApiVersionParameter")


def test_malformed_json_body_is_400_and_creates_nothing(boot, admin_token, admin_arm):
    name = bs.unique("byos-test-badjson")
    resp = bs.arm_request(
        boot, "PUT", f"/subscriptions/{boot['subscription_id']}/resourcegroups/{name}", admin_token,
        params={"api-version": bs.RG_API_VERSION},
        data=b'{"location": "eastus", ',
        headers={"Content-Type": "application/json"},
    )
    bs.assert_raw_arm_error(resp, 400, "InvalidRequestContent")
    assert admin_arm.resource_groups.check_existence(name) is False


@pytest.mark.parametrize(
    "path",
    [
        "/subscriptions/{sub}/providers/Microsoft.ByosNoSuchProvider/widgets",
        "/subscriptions/{sub}/resourcegroups/{rg}/providers/Microsoft.ByosNoSuchProvider/widgets/w1",
        "/subscriptions/{sub}/no-such-collection",
    ],
    ids=["unknown-provider", "unknown-provider-in-group", "unknown-collection"],
)
def test_unknown_path_is_a_4xx_arm_error(boot, admin_token, make_rg, path):
    url = path.format(sub=boot["subscription_id"], rg=make_rg("unknown-path"))
    resp = bs.arm_get(boot, url, admin_token, params={"api-version": bs.RG_API_VERSION})
    assert 400 <= resp.status_code < 500, f"{resp.status_code}: {resp.text[:500]}"
    assert resp.json()["error"]["code"]
