"""`byos doctor <account id>`: a BYOS Speech deployment checked against every hardening step of the seed
(byos-speech-resource-setup.md), each rule pass / warn / fail with the az command that fixes it.

The module builds the seed's speech-to-text deployment with the Azure SDKs (a storage account with public access
and shared key off, a firewall that denies by default and admits the Speech resource by a resource instance rule,
Speech Studio's CORS rule, a BYOS Speech account whose identity holds Storage Blob Data Contributor on it), sees
doctor green, then breaks one link at a time and sees exactly that check fail with its fix. Doctor is read-only:
every ARM GET and the activity log are the same before and after it.

It runs its own server: BYOS needs Microsoft.CognitiveServices/byoxPreview registered and approved, and the
session server's subscription must keep it NotRegistered (test_cognitive_byos.py starts from there)."""

import uuid
from types import SimpleNamespace

import pytest
from azure.mgmt.authorization.models import Permission, RoleDefinition
from azure.mgmt.storage.models import BlobServiceProperties, CorsRule, CorsRules, Identity, NetworkRuleSet, \
    ResourceAccessRule

import byos_support as bs
import cognitive_support as cs

NAMESPACE, FEATURE = "Microsoft.CognitiveServices", "byoxPreview"
STUDIO_ORIGIN = "https://speech.microsoft.com"  # the seed's "Allowed origins", without a trailing slash
CHECK_IDS = ["account.byos", "account.identity", "account.cmk", "storage.exists", "storage.role", "storage.public-access",
             "storage.shared-key", "storage.firewall", "storage.cors", "storage.cmk", "storage.region"]
# What BYOS asks of the storage account (doctor's list): a custom role granting these is the seed's role in effect.
BYOS_ACTIONS = ["Microsoft.Storage/storageAccounts/blobServices/containers/read",
                "Microsoft.Storage/storageAccounts/blobServices/containers/write",
                "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action"]
BYOS_DATA_ACTIONS = ["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
                     "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
                     "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete"]


@pytest.fixture(scope="module")
def own(byos_bin, tmp_path_factory):
    """This module's server: its subscription registers byoxPreview, which the session server's must not."""
    yield from bs.module_server(byos_bin, tmp_path_factory.mktemp("byos-doctor"))


@pytest.fixture(scope="module")
def clients(own):
    """The admin's management clients on this module's server."""
    boot, admin = own.boot, bs.admin_credential(own.boot)
    return SimpleNamespace(credential=admin, storage=bs.storage_client(boot, admin), cognitive=cs.cognitive_client(boot, admin),
                           auth=bs.authorization_client(boot, admin), keyvault=bs.keyvault_mgmt_client(boot, admin))


@pytest.fixture(scope="module")
def boot(own):
    return own.boot


@pytest.fixture(scope="module")
def rg(boot, clients):
    return bs.create_resource_group(bs.resource_client(boot, clients.credential), boot, "doctor")


@pytest.fixture(scope="module")
def approved(own, boot, clients):
    features = bs.features_client(boot, clients.credential)
    features.features.register(NAMESPACE, FEATURE)
    own.feature_approve(NAMESPACE, FEATURE)


def _studio_cors() -> CorsRules:
    """The seed's record: origin without trailing slash, GET and OPTIONS, headers *, max age 1000."""
    return CorsRules(cors_rules=[CorsRule(allowed_origins=[STUDIO_ORIGIN], allowed_methods=["GET", "OPTIONS"],
                                          allowed_headers=["*"], exposed_headers=["*"], max_age_in_seconds=1000)])


def _locked_firewall(boot, account_id: str) -> NetworkRuleSet:
    """The seed's speech-to-text firewall: selected networks, no exceptions, the Speech resource as an instance."""
    return NetworkRuleSet(default_action="Deny", bypass="None", ip_rules=[],
                          resource_access_rules=[ResourceAccessRule(tenant_id=boot["tenant_id"], resource_id=account_id)])


def _assign_seed_role(clients, boot, deployment):
    deployment.assignment = bs.assign_role(clients.auth, deployment.storage.id, bs.STORAGE_BLOB_DATA_CONTRIBUTOR,
                                           deployment.principal, sub=boot["subscription_id"])


@pytest.fixture(scope="module")
def deployment(approved, boot, clients, rg):
    """The seed's hardened speech-to-text deployment, built step by step as the seed describes it."""
    storage = bs.create_storage_account(clients.storage, boot, rg, bs.storage_account_name("doctor"))
    model = cs.account_model(boot, "SpeechServices", user_owned_storage=cs.user_owned_storage(storage.id))
    account = clients.cognitive.accounts.begin_create(rg, cs.account_name("doctor"), model).result()
    built = SimpleNamespace(storage=storage, account=account, principal=account.identity.principal_id, assignment=None)
    _assign_seed_role(clients, boot, built)
    bs.update_storage_account(clients.storage, storage, allow_blob_public_access=False, allow_shared_key_access=False,
                              network_rule_set=_locked_firewall(boot, account.id))
    clients.storage.blob_services.set_service_properties(rg, storage.name, BlobServiceProperties(cors=_studio_cors()))
    return built


def _arm_view(clients, deployment) -> dict:
    """Everything doctor reads, as ARM answers it, plus the activity log (every write is recorded there)."""
    storage = deployment.storage
    assignments = clients.auth.role_assignments.list_for_scope(storage.id)
    return {
        "storage": clients.storage.storage_accounts.get_properties(storage.rg, storage.name).as_dict(),
        "blob_service": clients.storage.blob_services.get_service_properties(storage.rg, storage.name).as_dict(),
        "account": clients.cognitive.accounts.get(storage.rg, deployment.account.name).as_dict(),
        "assignments": sorted((a.name, a.role_definition_id, a.principal_id, a.scope) for a in assignments),
    }


def _activity(own) -> list[str]:
    res = own.cli("audit", "activity", "--data-dir", str(own.data_dir))
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


def _doctor_read_only(own, clients, deployment, **kwargs):
    """`byos doctor --json` on the deployment's account, checking that it changed nothing."""
    before, activity = _arm_view(clients, deployment), _activity(own)
    rc, report = own.doctor(deployment.account.id, **kwargs)
    assert _arm_view(clients, deployment) == before
    assert _activity(own) == activity
    return rc, report


def _by_id(report) -> dict:
    return {check["id"]: check for check in report["checks"]}


def _not_passing(report) -> dict:
    return {check["id"]: check for check in report["checks"] if check["status"] != "pass"}


# ---- green ------------------------------------------------------------------------------------------------------


def test_the_seeds_deployment_passes_every_check(own, clients, deployment):
    rc, report = _doctor_read_only(own, clients, deployment)
    assert rc == 0, report
    assert report["account"].lower() == deployment.account.id.lower()
    assert [check["id"] for check in report["checks"]] == CHECK_IDS
    assert _not_passing(report) == {}
    assert report["ok"] is True and report["summary"] == {"pass": len(CHECK_IDS), "warn": 0, "fail": 0}
    assert all(check["fix"] is None for check in report["checks"])


def test_the_table_names_every_check(own, deployment):
    rc, table = own.doctor(deployment.account.id, json=False)
    assert rc == 0, table
    for check_id in CHECK_IDS:
        assert f"PASS  {check_id}" in table
    assert f"{len(CHECK_IDS)} pass, 0 warn, 0 fail" in table


# ---- each link broken -------------------------------------------------------------------------------------------


def _without_role(clients, boot, deployment):
    clients.auth.role_assignments.delete(deployment.storage.id, deployment.assignment.name)
    return lambda: _assign_seed_role(clients, boot, deployment)


def _storage_setting(**broken):
    def apply(clients, boot, deployment):
        bs.update_storage_account(clients.storage, deployment.storage, **broken)
        restored = {name: not value for name, value in broken.items()}
        return lambda: bs.update_storage_account(clients.storage, deployment.storage, **restored)

    return apply


def _open_firewall(clients, boot, deployment):
    bs.update_storage_account(clients.storage, deployment.storage, network_rule_set=NetworkRuleSet(default_action="Allow"))
    return lambda: bs.update_storage_account(clients.storage, deployment.storage,
                                             network_rule_set=_locked_firewall(boot, deployment.account.id))


def _without_cors(clients, boot, deployment):
    storage = deployment.storage

    def set_cors(rules):
        clients.storage.blob_services.set_service_properties(storage.rg, storage.name, BlobServiceProperties(cors=rules))

    set_cors(CorsRules(cors_rules=[]))
    return lambda: set_cors(_studio_cors())


def _role_fix(d):
    return (f"az role assignment create --assignee-object-id {d.principal} --assignee-principal-type ServicePrincipal "
            f'--role "Storage Blob Data Contributor" --scope {d.storage.id}')


def _update_fix(args):
    return lambda d: f"az storage account update -n {d.storage.name} -g {d.storage.rg} {args}"


def _firewall_fix(d, boot):
    return (f"az storage account network-rule add -g {d.storage.rg} --account-name {d.storage.name} "
            f"--resource-id {d.account.id} --tenant-id {boot['tenant_id']} && "
            f"az storage account update -n {d.storage.name} -g {d.storage.rg} --default-action Deny --bypass None")


def _cors_fix(d):
    return (f"az storage account blob-service-properties cors-rule add --account-name {d.storage.name} "
            f"--resource-group {d.storage.rg} --allowed-origins {STUDIO_ORIGIN} --allowed-methods GET OPTIONS "
            "--allowed-headers '*' --exposed-headers '*' --max-age 1000")


BREAKS = [
    ("storage.role", _without_role, lambda d, boot: _role_fix(d)),
    ("storage.public-access", _storage_setting(allow_blob_public_access=True),
     lambda d, boot: _update_fix("--allow-blob-public-access false")(d)),
    ("storage.shared-key", _storage_setting(allow_shared_key_access=True),
     lambda d, boot: _update_fix("--allow-shared-key-access false")(d)),
    ("storage.firewall", _open_firewall, _firewall_fix),
    ("storage.cors", _without_cors, lambda d, boot: _cors_fix(d)),
]


@pytest.mark.parametrize("check_id, break_link, expected_fix", BREAKS, ids=[b[0] for b in BREAKS])
def test_a_broken_link_fails_its_check_with_the_fix(own, boot, clients, deployment, check_id, break_link, expected_fix):
    restore = break_link(clients, boot, deployment)
    try:
        rc, report = _doctor_read_only(own, clients, deployment)
    finally:
        restore()
    assert rc == 1, report
    assert list(_not_passing(report)) == [check_id], report
    broken = _by_id(report)[check_id]
    assert broken["status"] == "fail"
    assert broken["fix"] == expected_fix(deployment, boot)
    assert report["ok"] is False and report["summary"]["fail"] == 1
    rc, report = own.doctor(deployment.account.id)
    assert (rc, _not_passing(report)) == (0, {}), "restoring the link makes doctor green again"


def test_the_table_shows_a_failure_with_its_fix(own, boot, clients, deployment):
    restore = _without_cors(clients, boot, deployment)
    try:
        rc, table = own.doctor(deployment.account.id, json=False)
    finally:
        restore()
    assert rc == 1, table
    assert "FAIL  storage.cors" in table
    assert f"      fix: {_cors_fix(deployment)}" in table


def test_text_to_speech_takes_the_seeds_relaxed_firewall_rule(own, boot, clients, deployment):
    rc, report = own.doctor(deployment.account.id, text_to_speech=True)
    strict = _by_id(report)["storage.firewall"]
    assert (rc, strict["status"]) == (0, "warn"), report
    assert strict["fix"] == _update_fix("--default-action Allow")(deployment)
    restore = _open_firewall(clients, boot, deployment)
    try:
        rc, report = own.doctor(deployment.account.id, text_to_speech=True)
    finally:
        restore()
    assert (rc, _not_passing(report)) == (0, {}), report
    assert report["textToSpeech"] is True


def test_a_custom_role_with_the_needed_actions_warns(own, boot, clients, deployment):
    sub = boot["subscription_id"]
    role_guid = str(uuid.uuid4())
    role = clients.auth.role_definitions.create_or_update(bs.sub_scope(sub), role_guid, RoleDefinition(
        role_name=bs.unique("byos-test-byos-writer"), description="what BYOS needs",
        permissions=[Permission(actions=BYOS_ACTIONS, data_actions=BYOS_DATA_ACTIONS)],
        assignable_scopes=[bs.sub_scope(sub)]))
    custom = bs.assign_role(clients.auth, deployment.storage.id, role_guid, deployment.principal, sub=sub,
                            definition_id=role.id)
    restore = _without_role(clients, boot, deployment)
    try:
        rc, report = _doctor_read_only(own, clients, deployment)
    finally:
        restore()
        clients.auth.role_assignments.delete(deployment.storage.id, custom.name)
    warned = _by_id(report)["storage.role"]
    assert (rc, warned["status"]) == (0, "warn"), report
    assert f"custom role '{role.role_name}'" in warned["detail"]
    assert warned["fix"] == _role_fix(deployment)
    assert list(_not_passing(report)) == ["storage.role"]


# ---- accounts doctor cannot pass, or cannot find --------------------------------------------------------------


def test_an_account_without_byos_fails_and_skips_the_storage_checks(own, boot, clients, rg):
    account = cs.create_account(clients.cognitive, boot, rg, "SpeechServices")
    rc, report = own.doctor(account.id)
    assert rc == 1, report
    checks = _by_id(report)
    assert checks["account.byos"]["status"] == "fail"
    assert checks["account.byos"]["fix"].startswith(
        f"az cognitiveservices account create -n NEW_NAME -g {rg} --assign-identity --kind SpeechServices")
    assert checks["account.identity"]["fix"] == f"az cognitiveservices account identity assign -n {account.name} -g {rg}"
    storage = [check for check in report["checks"] if check["id"].startswith("storage.")]
    assert storage and all(c["status"] == "warn" and c["detail"].startswith("skipped:") for c in storage), storage


def test_an_unknown_account_exits_2(own, boot, rg):
    rc, report = own.doctor(cs.account_id(boot["subscription_id"], rg, cs.account_name("ghost")))
    assert (rc, report) == (2, None)


# ---- customer-managed keys: the storage account's, the account's own ----------------------------------------------------------------


@pytest.fixture(scope="module")
def cmk(boot, clients, rg, deployment):
    """The deployment's storage account under a customer-managed key: an RBAC vault with purge protection, an RSA
    key, the storage account's system-assigned identity holding Key Vault Crypto Service Encryption User."""
    sub, admin = boot["subscription_id"], boot["admin"]["object_id"]
    vault = bs.create_vault(clients.keyvault, boot, rg, bs.vault_name("doctor"), enable_rbac_authorization=True,
                            enable_purge_protection=True, soft_delete_retention_in_days=7)
    bs.assign_role(clients.auth, vault.id, bs.KEY_VAULT_CRYPTO_OFFICER, admin, sub=sub)
    key = bs.key_client(vault.uri, clients.credential, boot["ca_file"]).create_rsa_key(bs.unique("cmk"), size=2048)
    storage = bs.update_storage_account(clients.storage, deployment.storage, identity=Identity(type="SystemAssigned"))
    principal = storage.identity.principal_id
    grant = bs.assign_role(clients.auth, vault.id, bs.KEY_VAULT_CRYPTO_SERVICE_ENCRYPTION_USER, principal, sub=sub)
    bs.enable_cmk(clients.storage, deployment.storage, vault, key.name)
    return SimpleNamespace(vault=vault, key=key, principal=principal, grant=grant)


def _key_checked_then_lost(own, boot, clients, deployment, prefix, version, vault_id, principal, grant):
    """Doctor passes `prefix`.vault/.key/.access for a key in use at `version`; with `grant` (the identity's key role
    on the vault) deleted, `prefix`.access alone fails, with the role as its fix. Returns a grant restoring it."""
    rc, report = _doctor_read_only(own, clients, deployment)
    assert rc == 0, report
    checks = _by_id(report)
    assert prefix not in checks, "with a customer key on, its preconditions are checked instead"
    for part in ["vault", "key", "access"]:
        assert checks[f"{prefix}.{part}"]["status"] == "pass", checks[f"{prefix}.{part}"]
    assert version in checks[f"{prefix}.key"]["detail"]

    clients.auth.role_assignments.delete(vault_id, grant.name)
    try:
        rc, report = _doctor_read_only(own, clients, deployment)
    finally:
        restored = bs.assign_role(clients.auth, vault_id, bs.KEY_VAULT_CRYPTO_SERVICE_ENCRYPTION_USER, principal,
                                  sub=boot["subscription_id"])
    assert rc == 1, report
    assert list(_not_passing(report)) == [f"{prefix}.access"]
    assert _by_id(report)[f"{prefix}.access"]["fix"] == (
        f"az role assignment create --assignee-object-id {principal} --assignee-principal-type ServicePrincipal "
        f'--role "Key Vault Crypto Service Encryption User" --scope {vault_id}')
    return restored


def test_the_storage_accounts_customer_managed_key_is_checked(own, boot, clients, deployment, cmk):
    cmk.grant = _key_checked_then_lost(own, boot, clients, deployment, "storage.cmk", cmk.key.properties.version,
                                       cmk.vault.id, cmk.principal, cmk.grant)


def test_the_accounts_own_customer_managed_key_is_checked(own, boot, clients, rg, deployment, cmk):
    from azure.mgmt.cognitiveservices.models import Account, AccountProperties, Encryption, KeyVaultProperties

    grant = bs.assign_role(clients.auth, cmk.vault.id, bs.KEY_VAULT_CRYPTO_SERVICE_ENCRYPTION_USER,
                           deployment.principal, sub=boot["subscription_id"])
    key = bs.key_client(cmk.vault.uri, clients.credential, boot["ca_file"]).create_rsa_key(bs.unique("cs"), size=2048)
    encryption = Encryption(key_source="Microsoft.KeyVault", key_vault_properties=KeyVaultProperties(
        key_name=key.name, key_version=key.properties.version, key_vault_uri=cmk.vault.uri))
    clients.cognitive.accounts.begin_update(rg, deployment.account.name,
                                            Account(properties=AccountProperties(encryption=encryption))).result()
    _key_checked_then_lost(own, boot, clients, deployment, "account.cmk", key.properties.version, cmk.vault.id,
                           deployment.principal, grant)
