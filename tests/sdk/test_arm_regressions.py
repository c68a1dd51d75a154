"""Regression tests for the resource manager's authorization bugs (issue 8): resource-group delete
through each resource's authorized delete (bug 1), custom role takeover (F1), role assignments that
outlive their resource (F10), and ResourceGroupNotFound for resources in a missing group.
"""

import uuid

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.authorization.models import Permission, RoleDefinition
from azure.mgmt.msi.models import Identity

import byos_support as bs

RG_DELETE = "Microsoft.Resources/subscriptions/resourceGroups/delete"
ROLE_DEFINITION_WRITE = "Microsoft.Authorization/roleDefinitions/write"
ROLE_DEFINITION_DELETE = "Microsoft.Authorization/roleDefinitions/delete"
STORAGE_ACCOUNT_DELETE = "Microsoft.Storage/storageAccounts/delete"
IDENTITY_TYPE = "Microsoft.ManagedIdentity/userAssignedIdentities"


def _custom_role(auth, sub, actions, scopes, not_actions=(), name=None):
    """Create (or overwrite) a custom role as whoever `auth` authenticates; returns the SDK's definition."""
    return auth.role_definitions.create_or_update(
        scopes[0],
        name or str(uuid.uuid4()),
        RoleDefinition(
            role_name=bs.unique("byos-test-role"),
            permissions=[Permission(actions=list(actions), not_actions=list(not_actions))],
            assignable_scopes=list(scopes),
        ),
    )


# ---- bug 1: resource-group delete checks each resource -----------------------------------------------


def test_regression_bug1_group_delete_checks_each_resource(
    admin_auth, admin_storage, new_principal, arm_client, storage_client, make_rg, make_account, assign, sub
):
    rg = make_rg("bug1")
    account = make_account(rg=rg, tag="bug1")
    role = _custom_role(admin_auth, sub, ["*"], [bs.sub_scope(sub)], not_actions=["Microsoft.Storage/*"])
    principal = new_principal("bug1")
    assign(bs.rg_scope(sub, rg), role.name, principal.object_id, definition_id=role.id)
    arm = arm_client(principal.credential)

    bs.expect_authorization_failed(
        lambda: storage_client(principal.credential).storage_accounts.delete(rg, account.name),
        STORAGE_ACCOUNT_DELETE,
        account.id,
    )
    # The group delete is refused naming the resource the caller may not delete, and deletes nothing.
    bs.expect_authorization_failed(lambda: arm.resource_groups.begin_delete(rg).result(),
                                   STORAGE_ACCOUNT_DELETE, account.id)
    assert arm.resource_groups.get(rg).name == rg
    assert admin_storage.storage_accounts.get_properties(rg, account.name).name == account.name


def test_bug1_group_delete_with_rights_on_every_resource_deletes_all(
    admin_storage, new_principal, arm_client, make_rg, make_account, assign, sub
):
    rg = make_rg("bug1ok")
    account = make_account(rg=rg, tag="bug1ok")
    principal = new_principal("bug1ok")
    assign(bs.rg_scope(sub, rg), bs.CONTRIBUTOR, principal.object_id)

    arm_client(principal.credential).resource_groups.begin_delete(rg).result()
    with pytest.raises(ResourceNotFoundError):
        admin_storage.storage_accounts.get_properties(rg, account.name)


# ---- F1: custom role takeover -------------------------------------------------------------------------


@pytest.fixture
def helpdesk(admin_auth, new_principal, make_rg, make_account, assign, sub):
    """The review's F1 setup: an attacker who is Owner of one storage account and holds a harmless
    custom role ("Helpdesk": resource group read) at the subscription."""
    role = _custom_role(admin_auth, sub, [bs.RG_READ], [bs.sub_scope(sub)])
    attacker = new_principal("f01")
    account = make_account(tag="f01")
    assign(account.id, bs.OWNER, attacker.object_id)
    assign(bs.sub_scope(sub), role.name, attacker.object_id, definition_id=role.id)
    return role, attacker, account


def test_regression_f01_owner_of_one_account_cannot_rewrite_a_subscription_role(
    admin_auth, auth_client, arm_client, make_rg, helpdesk, sub
):
    role, attacker, account = helpdesk
    other = make_rg("f01-victim")
    takeover = RoleDefinition(role_name=role.role_name, permissions=[Permission(actions=["*"])],
                              assignable_scopes=[account.id])

    bs.expect_authorization_failed(
        lambda: auth_client(attacker.credential).role_definitions.create_or_update(account.id, role.name, takeover),
        ROLE_DEFINITION_WRITE,
        bs.sub_scope(sub),
    )
    stored = admin_auth.role_definitions.get(bs.sub_scope(sub), role.name)
    assert stored.permissions[0].actions == [bs.RG_READ]
    assert [s.lower() for s in stored.assignable_scopes] == [bs.sub_scope(sub).lower()]
    bs.expect_authorization_failed(lambda: arm_client(attacker.credential).resource_groups.begin_delete(other).result(),
                                   RG_DELETE, bs.rg_scope(sub, other))


def test_regression_f01_assignable_scopes_cannot_shrink_below_assignments(admin_auth, helpdesk, sub):
    role, _, account = helpdesk
    narrowed = RoleDefinition(role_name=role.role_name, permissions=[Permission(actions=["*"])],
                              assignable_scopes=[account.id])

    error = bs.expect_arm_error(lambda: admin_auth.role_definitions.create_or_update(account.id, role.name, narrowed),
                                400, "RoleScopeBeingRemovedContainsAssignments")
    assert bs.sub_scope(sub).lower() in error["message"].lower()
    assert admin_auth.role_definitions.get(bs.sub_scope(sub), role.name).permissions[0].actions == [bs.RG_READ]


def test_regression_f01_role_of_another_group_cannot_be_deleted_from_mine(
    admin_auth, auth_client, new_principal, make_rg, assign, sub
):
    theirs, mine = make_rg("f01-theirs"), make_rg("f01-mine")
    role = _custom_role(admin_auth, sub, [bs.RG_READ], [bs.rg_scope(sub, theirs)])
    owner = new_principal("f01-rgowner")
    assign(bs.rg_scope(sub, mine), bs.OWNER, owner.object_id)
    own_auth = auth_client(owner.credential)

    with pytest.raises(ResourceNotFoundError):
        own_auth.role_definitions.get(bs.rg_scope(sub, mine), role.name)
    own_auth.role_definitions.delete(bs.rg_scope(sub, mine), role.name)
    assert admin_auth.role_definitions.get(bs.rg_scope(sub, theirs), role.name).name == role.name


def test_regression_f01_delete_needs_rights_at_every_assignable_scope(
    admin_auth, auth_client, new_principal, make_rg, assign, sub
):
    rg = make_rg("f01-del")
    role = _custom_role(admin_auth, sub, [bs.RG_READ], [bs.sub_scope(sub)])
    owner = new_principal("f01-del")
    assign(bs.rg_scope(sub, rg), bs.OWNER, owner.object_id)

    bs.expect_authorization_failed(
        lambda: auth_client(owner.credential).role_definitions.delete(bs.rg_scope(sub, rg), role.name),
        ROLE_DEFINITION_DELETE,
        bs.sub_scope(sub),
    )
    assert admin_auth.role_definitions.get(bs.sub_scope(sub), role.name).name == role.name


def test_f01_owner_of_every_assignable_scope_may_update_a_role(admin_auth, auth_client, new_principal, make_rg,
                                                               assign, sub):
    rg = make_rg("f01-upd")
    role = _custom_role(admin_auth, sub, [bs.RG_READ], [bs.rg_scope(sub, rg)])
    owner = new_principal("f01-upd")
    assign(bs.rg_scope(sub, rg), bs.OWNER, owner.object_id)
    updated = RoleDefinition(role_name=role.role_name, permissions=[Permission(actions=[bs.RG_READ, bs.RG_WRITE])],
                             assignable_scopes=[bs.rg_scope(sub, rg)])

    got = auth_client(owner.credential).role_definitions.create_or_update(bs.rg_scope(sub, rg), role.name, updated)
    assert set(got.permissions[0].actions) == {bs.RG_READ, bs.RG_WRITE}


# ---- F10: role assignments are deleted with their resource ------------------------------------------


def _assignments_on(admin_auth, scope, principal):
    return list(admin_auth.role_assignments.list_for_scope(scope, filter=f"principalId eq '{principal.object_id}'"))


def test_regression_f10_storage_account_assignments_deleted_with_it(
    admin_auth, admin_storage, storage_client, new_principal, make_rg, assign, boot
):
    rg = make_rg("f10-st")
    name = bs.storage_account_name("f10")
    account = bs.create_storage_account(admin_storage, boot, rg, name)
    former = new_principal("f10-st")
    assign(account.id, bs.READER, former.object_id)
    assert storage_client(former.credential).storage_accounts.get_properties(rg, name).name == name

    admin_storage.storage_accounts.delete(rg, name)
    bs.create_storage_account(admin_storage, boot, rg, name)
    bs.expect_authorization_failed(lambda: storage_client(former.credential).storage_accounts.get_properties(rg, name),
                                   "Microsoft.Storage/storageAccounts/read", account.id)
    assert _assignments_on(admin_auth, account.id, former) == []


def test_regression_f10_vault_assignments_deleted_with_it(admin_auth, admin_keyvault, keyvault_mgmt, new_principal,
                                                          make_rg, assign, boot):
    rg = make_rg("f10-kv")
    name = bs.vault_name("f10")
    create = dict(soft_delete_retention_in_days=7, access_policies=[])
    vault = bs.create_vault(admin_keyvault, boot, rg, name, **create)
    former = new_principal("f10-kv")
    assign(vault.id, bs.READER, former.object_id)
    assert keyvault_mgmt(former.credential).vaults.get(rg, name).name == name

    admin_keyvault.vaults.delete(rg, name)
    admin_keyvault.vaults.begin_purge_deleted(name, boot["location"]).result()
    bs.create_vault(admin_keyvault, boot, rg, name, **create)
    bs.expect_authorization_failed(lambda: keyvault_mgmt(former.credential).vaults.get(rg, name),
                                   "Microsoft.KeyVault/vaults/read", vault.id)
    assert _assignments_on(admin_auth, vault.id, former) == []


def test_regression_f10_identity_assignments_deleted_with_it(admin_auth, admin_msi, msi_client, new_principal,
                                                             make_rg, assign, boot):
    rg = make_rg("f10-id")
    name = bs.unique("byos-test-f10")
    identity = admin_msi.user_assigned_identities.create_or_update(rg, name, Identity(location=boot["location"]))
    former = new_principal("f10-id")
    assign(identity.id, bs.READER, former.object_id)
    assert msi_client(former.credential).user_assigned_identities.get(rg, name).name == name

    admin_msi.user_assigned_identities.delete(rg, name)
    admin_msi.user_assigned_identities.create_or_update(rg, name, Identity(location=boot["location"]))
    bs.expect_authorization_failed(lambda: msi_client(former.credential).user_assigned_identities.get(rg, name),
                                   f"{IDENTITY_TYPE}/read", identity.id)
    assert _assignments_on(admin_auth, identity.id, former) == []


# ---- ResourceGroupNotFound for resources in a missing group ----------------------------------------


@pytest.mark.parametrize("kind", ["storage", "vault", "identity"])
def test_regression_get_resource_in_missing_group_is_resource_group_not_found(
    kind, admin_storage, admin_keyvault, admin_msi
):
    rg = bs.unique("byos-test-nogroup")
    get = {
        "storage": lambda: admin_storage.storage_accounts.get_properties(rg, bs.storage_account_name("nog")),
        "vault": lambda: admin_keyvault.vaults.get(rg, bs.vault_name("nog")),
        "identity": lambda: admin_msi.user_assigned_identities.get(rg, "byos-test-nog"),
    }[kind]
    bs.expect_arm_error(get, 404, "ResourceGroupNotFound")


def test_missing_group_is_not_revealed_to_a_caller_without_access(new_principal, msi_client, sub):
    rg = bs.unique("byos-test-nogroup")
    stranger = new_principal("nogroup")
    bs.expect_authorization_failed(
        lambda: msi_client(stranger.credential).user_assigned_identities.get(rg, "byos-test-nog"),
        f"{IDENTITY_TYPE}/read",
        f"{bs.rg_scope(sub, rg)}/providers/{IDENTITY_TYPE}/byos-test-nog",
    )
