"""Role-based access control through azure-mgmt-authorization, enforced on ARM requests.

byos evaluates role assignments at request time, so a principal's existing token picks up a new
assignment (or loses a deleted one) on its very next request.
"""

import uuid

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.authorization.models import Permission, RoleDefinition

import byos_support as bs


def _update_tags(arm, rg, boot, tags):
    return arm.resource_groups.create_or_update(rg, {"location": boot["location"], "tags": tags})


def test_new_principal_cannot_create_a_resource_group(new_principal, arm_client, boot, sub):
    principal = new_principal("norole")
    name = bs.unique("byos-test-denied")
    error = bs.expect_authorization_failed(
        lambda: _update_tags(arm_client(principal.credential), name, boot, {}),
        action=bs.RG_WRITE,
        scope=bs.rg_scope(sub, name),
    )
    assert principal.object_id in error["message"]


def test_reader_at_a_group_can_read_only_that_group(new_principal, arm_client, make_rg, assign, boot, sub):
    rg, other = make_rg("reader"), make_rg("reader-other")
    principal = new_principal("reader")
    arm = arm_client(principal.credential)
    assign(bs.rg_scope(sub, rg), bs.READER, principal.object_id)

    assert arm.resource_groups.get(rg).name == rg
    bs.expect_authorization_failed(lambda: _update_tags(arm, rg, boot, {"x": "y"}), bs.RG_WRITE, bs.rg_scope(sub, rg))
    bs.expect_authorization_failed(lambda: arm.resource_groups.get(other), bs.RG_READ, bs.rg_scope(sub, other))


def test_contributor_at_a_group_can_update_it(new_principal, arm_client, make_rg, assign, boot, sub):
    rg = make_rg("contrib")
    principal = new_principal("contrib")
    assign(bs.rg_scope(sub, rg), bs.CONTRIBUTOR, principal.object_id)

    updated = _update_tags(arm_client(principal.credential), rg, boot, {"owner": "contributor"})
    assert updated.tags == {"owner": "contributor"}


def test_contributor_at_a_group_cannot_create_another_group(new_principal, arm_client, make_rg, assign, boot, sub):
    rg = make_rg("contrib")
    principal = new_principal("contrib")
    assign(bs.rg_scope(sub, rg), bs.CONTRIBUTOR, principal.object_id)

    elsewhere = bs.unique("byos-test-elsewhere")
    bs.expect_authorization_failed(
        lambda: _update_tags(arm_client(principal.credential), elsewhere, boot, {}),
        bs.RG_WRITE,
        bs.rg_scope(sub, elsewhere),
    )


def test_contributor_cannot_create_role_assignments(new_principal, auth_client, make_rg, assign, sub):
    rg = make_rg("contrib")
    scope = bs.rg_scope(sub, rg)
    principal = new_principal("contrib")
    assign(scope, bs.CONTRIBUTOR, principal.object_id)

    own_auth = auth_client(principal.credential)
    bs.expect_authorization_failed(
        lambda: bs.assign_role(own_auth, scope, bs.OWNER, principal.object_id, sub=sub),
        bs.ROLE_ASSIGNMENT_WRITE,
        scope,
    )


def test_created_role_assignment_describes_itself(new_principal, make_rg, assign, sub):
    scope = bs.rg_scope(sub, make_rg("ra"))
    principal = new_principal("ra")
    name = str(uuid.uuid4())
    created = assign(scope, bs.READER, principal.object_id, name=name)

    assert created.name == name
    assert created.id.lower() == f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}".lower()
    assert created.scope.lower() == scope.lower()
    assert created.principal_id == principal.object_id
    assert created.role_definition_id.lower() == bs.role_definition_id(sub, bs.READER).lower()


def test_duplicate_role_assignment_is_409(new_principal, make_rg, assign, sub):
    scope = bs.rg_scope(sub, make_rg("dup"))
    principal = new_principal("dup")
    assign(scope, bs.READER, principal.object_id)
    bs.expect_arm_error(lambda: assign(scope, bs.READER, principal.object_id), 409, "RoleAssignmentExists")


def test_role_assignments_list_at_scope_and_by_principal(admin_auth, new_principal, make_rg, assign, sub):
    scope = bs.rg_scope(sub, make_rg("list"))
    principal = new_principal("list")
    created = assign(scope, bs.READER, principal.object_id)

    at_scope = list(admin_auth.role_assignments.list_for_scope(scope, filter="atScope()"))
    assert created.name in {a.name for a in at_scope}

    by_principal = list(
        admin_auth.role_assignments.list_for_scope(scope, filter=f"principalId eq '{principal.object_id}'")
    )
    assert [a.name for a in by_principal] == [created.name]
    assert by_principal[0].principal_id == principal.object_id


def test_deleting_a_role_assignment_revokes_access(admin_auth, new_principal, arm_client, make_rg, assign, sub):
    rg = make_rg("revoke")
    scope = bs.rg_scope(sub, rg)
    principal = new_principal("revoke")
    arm = arm_client(principal.credential)
    created = assign(scope, bs.READER, principal.object_id)
    assert arm.resource_groups.get(rg).name == rg

    admin_auth.role_assignments.delete(scope, created.name)

    remaining = admin_auth.role_assignments.list_for_scope(scope, filter=f"principalId eq '{principal.object_id}'")
    assert list(remaining) == []
    bs.expect_authorization_failed(lambda: arm.resource_groups.get(rg), bs.RG_READ, scope)


# ---- role definitions ------------------------------------------------------------------------------


def test_builtin_reader_found_by_role_name(admin_auth, sub):
    found = list(admin_auth.role_definitions.list(scope=bs.sub_scope(sub), filter="roleName eq 'Reader'"))
    assert [d.name for d in found] == [bs.READER]
    reader = found[0]
    assert reader.role_name == "Reader"
    assert reader.role_type == "BuiltInRole"
    assert "*/read" in reader.permissions[0].actions


def test_builtin_role_definition_get_has_data_actions(admin_auth, sub):
    role = admin_auth.role_definitions.get(bs.sub_scope(sub), bs.STORAGE_BLOB_DATA_CONTRIBUTOR)
    assert role.role_name == "Storage Blob Data Contributor"
    data_actions = {a for p in role.permissions for a in p.data_actions}
    assert "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read" in data_actions


def test_custom_role_grants_exactly_its_actions(admin_auth, new_principal, arm_client, make_rg, assign, boot, sub):
    rg = make_rg("custom")
    principal = new_principal("custom")
    arm = arm_client(principal.credential)
    role_guid = str(uuid.uuid4())
    role_name = bs.unique("byos-test-rg-reader")

    role = admin_auth.role_definitions.create_or_update(
        bs.sub_scope(sub),
        role_guid,
        RoleDefinition(
            role_name=role_name,
            description="reads resource groups",
            permissions=[Permission(actions=[bs.RG_READ])],
            assignable_scopes=[bs.sub_scope(sub)],
        ),
    )
    assert role.name == role_guid
    assert role.role_name == role_name
    assert role.role_type == "CustomRole"
    listed = admin_auth.role_definitions.list(scope=bs.sub_scope(sub), filter=f"roleName eq '{role_name}'")
    assert [d.name for d in listed] == [role_guid]

    assignment = assign(bs.rg_scope(sub, rg), role_guid, principal.object_id, definition_id=role.id)
    assert arm.resource_groups.get(rg).name == rg
    bs.expect_authorization_failed(lambda: _update_tags(arm, rg, boot, {"x": "y"}), bs.RG_WRITE, bs.rg_scope(sub, rg))

    admin_auth.role_assignments.delete(bs.rg_scope(sub, rg), assignment.name)
    admin_auth.role_definitions.delete(bs.sub_scope(sub), role_guid)
    with pytest.raises(ResourceNotFoundError):
        admin_auth.role_definitions.get(bs.sub_scope(sub), role_guid)
