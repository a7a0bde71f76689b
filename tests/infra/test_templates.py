"""The Bicep deployment in infra/, checked without the Bicep CLI (issue 6).

The templates are parsed with pycep-parser (infra/checks.py) and their security-relevant parts
compared with what the bot's code needs: the custom roles with shared/cloud/arm.py, the app settings
with shared/common/settings.py. checkov runs on infra/ as the policy check.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import infra_checks as checks  # loaded from infra/checks.py by conftest.py
import pytest

from shared.cloud.arm import ARM_ACTIONS, LINKED_RESOURCE_ACTIONS, LINKED_RESOURCE_READS
from shared.cloud.monitor import METRICS_ACTION
from shared.common.settings import SETTINGS

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))

# Built-in roles far broader than the bot's needs; none may be granted anywhere.
BROAD_ROLES = {
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "4d97b98b-1d4f-4787-a291-c67834d212e7": "Network Contributor",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
}
# The only built-in roles granted: data roles on the bot's own storage account.
STORAGE_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
}
# Reading a Key Vault certificate's public part; the secret (private key) is never needed.
KEY_VAULT_DATA_ACTIONS = {"Microsoft.KeyVault/vaults/certificates/read"}
# Entra ID ingestion into the bot's own Application Insights (DisableLocalAuth).
MONITORING_ROLES = {"3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher"}
# Tracking a PUT or backend health: granted on the gateway's resource group (async-operations).
OPERATION_ACTIONS = {
    "Microsoft.Network/locations/operations/read",
    "Microsoft.Network/locations/operationResults/read",
}
ROLE_ASSIGNMENTS = "Microsoft.Authorization/roleAssignments"
BOT_SETTINGS = {s.name: s for s in SETTINGS if s.consumer == "bot"}


def _resource_type(action: str) -> str:
    """'Microsoft.Network/publicIPAddresses/join/action' -> its resource type."""
    return action.rsplit("/", 2)[0]


def _equals_literal(condition: Any, name: str) -> str | None:
    """The literal of `name == 'x'` in a parsed condition, else None."""
    operator = (condition or {}).get("operator", {})
    operands = operator.get("operands", {})
    if operator.get("type") == "equals" and operands.get("operand_1") == name:
        return operands.get("operand_2")
    return None


def _site(templates: dict[str, Any]) -> Any:
    (site,) = templates["modules/functionapp.bicep"].resources("Microsoft.Web/sites")
    return site


# --- parsing and policy checks -------------------------------------------------------------


def test_infra_has_a_template_per_concern() -> None:
    names = {p.relative_to(INFRA).as_posix() for p in BICEP_FILES}
    concerns = {"identity", "storage", "monitoring", "network", "functionapp", "rbac", "auth"}
    assert {"main.bicep", "alerts.bicep"} <= names
    assert {f"modules/{c}.bicep" for c in concerns | {"alerts"}} <= names


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_every_bicep_file_parses(path: Path) -> None:
    parsed = checks.parse_bicep(path)
    assert parsed.get("resources") or parsed.get("modules"), f"{path} declares nothing"


def test_every_module_reference_points_at_a_file(templates: dict[str, Any]) -> None:
    for template in templates.values():
        for module in template.modules():
            assert module.path in templates, f"{template.name}: {module.symbol} -> {module.path}"


def test_checkov_passes_with_every_skip_justified() -> None:
    if not checks.CHECKOV.exists():
        pytest.skip(
            f"checkov is not installed at {checks.CHECKOV} (the Makefile installs it into its "
            "own virtualenv: .venv/tools/checkov)"
        )
    env = {**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true"}  # no PyPI version check
    run = subprocess.run(
        checks.checkov_argv(), capture_output=True, text=True, env=env, timeout=300, check=False
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    assert "Failed checks: 0" in report, report
    # checkov bundles its own pycep-parser and silently skips files it cannot parse.
    assert "Parsing errors" not in report, report
    # A skip without a reason shows up as "No comment provided" in checkov's report.
    for path in BICEP_FILES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "checkov:skip=" in line:
                reason = line.split("checkov:skip=", 1)[1].partition(":")[2].strip()
                assert len(reason) > 20, f"{path.name}:{number}: skip without a reason"


# --- least privilege -----------------------------------------------------------------------


def test_gateway_role_grants_exactly_the_arm_calls_the_bot_makes(rbac: Any) -> None:
    (grant,) = rbac.modules("modules/rbac-gateway.bicep")
    role = _role(rbac, _symbol(grant.params["roleDefinitionName"]))
    (tracking,) = rbac.modules("modules/rbac-operations.bicep")
    operations = _role(rbac, _symbol(tracking.params["roleDefinitionName"]))
    (sweeping,) = rbac.modules("modules/rbac-subscription.bicep")
    sweep = _role(rbac, _symbol(sweeping.params["roleDefinitionName"]))
    assert role.actions | operations.actions | sweep.actions == set(ARM_ACTIONS.values()) | {
        METRICS_ACTION
    }
    assert operations.actions == OPERATION_ACTIONS
    assert not role.actions & OPERATION_ACTIONS, "operation reads on the gateway are useless"
    for granted in (role, operations):
        assert not granted.not_actions and not granted.data_actions
    # One grant per target gateway, on the gateway itself.
    assert grant.loop["detail"]["array_name"] == "gatewayIds"


def test_operation_tracking_is_granted_on_each_gateways_resource_group(
    templates: dict[str, Any], rbac: Any
) -> None:
    """ "If you only have permission at the resource level, you can start the operation but you
    can't track its status" (learn.microsoft.com/azure/azure-resource-manager/management/
    async-operations): the status URLs are /subscriptions/{s}/providers/Microsoft.Network/..."""
    (tracking,) = rbac.modules("modules/rbac-operations.bicep")
    groups = tracking.loop["detail"]["array_name"]
    union = rbac.variables[groups]["function"]
    assert union["type"] == "union", "each group once"
    per_gateway = rbac.variables[union["parameters"]["arg_1"]]
    assert per_gateway["loop_type"]["detail"]["array_name"] == "gatewayIds"
    assert "resourceGroups/${split(id, '/')[4]}" in json.dumps(per_gateway["config"])
    call = _call(tracking.body["scope"])
    assert call["type"] == "resource_group"
    template = templates["modules/rbac-operations.bicep"]
    (assignment,) = template.resources(ROLE_ASSIGNMENTS)
    assert "scope" not in assignment.body, "assigned on the module's group itself"


def test_sweep_reads_gateways_and_metrics_on_each_gateways_subscription(
    templates: dict[str, Any], rbac: Any
) -> None:
    """The metrics batch API (metrics:getBatch) is authorized at the subscription, and the sweep
    lists each subscription's gateways (for their regions): read only, nothing else."""
    (sweeping,) = rbac.modules("modules/rbac-subscription.bicep")
    sweep = _role(rbac, _symbol(sweeping.params["roleDefinitionName"]))
    assert sweep.actions == {"Microsoft.Network/applicationGateways/read", METRICS_ACTION}
    assert not sweep.not_actions and not sweep.data_actions
    subscriptions = sweeping.loop["detail"]["array_name"]
    union = rbac.variables[subscriptions]["function"]
    assert union["type"] == "union", "each subscription once"
    per_gateway = rbac.variables[union["parameters"]["arg_1"]]
    assert per_gateway["loop_type"]["detail"]["array_name"] == "gatewayIds"
    assert _call(sweeping.body["scope"])["type"] == "subscription"
    template = templates["modules/rbac-subscription.bicep"]
    (assignment,) = template.resources(ROLE_ASSIGNMENTS)
    assert "scope" not in assignment.body, "assigned on the module's subscription itself"


def test_gateway_role_is_assigned_on_the_gateway(templates: dict[str, Any]) -> None:
    template = templates["modules/rbac-gateway.bicep"]
    (assignment,) = template.resources(ROLE_ASSIGNMENTS)
    scope = template.resource(assignment.body["scope"])
    assert scope.type == "Microsoft.Network/applicationGateways" and scope.existing


def test_each_linked_resource_kind_gets_only_its_action_on_that_resource(
    templates: dict[str, Any], rbac: Any
) -> None:
    linked = templates["modules/rbac-linked.bicep"]
    grants = rbac.modules("modules/rbac-linked.bicep")
    assert {g.params["kind"] for g in grants} == set(LINKED_RESOURCE_ACTIONS)
    (allowed,) = [d for d in linked.parameters["kind"]["decorators"] if d["type"] == "allowed"]
    assert set(allowed["argument"]) == set(LINKED_RESOURCE_ACTIONS)
    for grant in grants:
        kind = grant.params["kind"]
        action = LINKED_RESOURCE_ACTIONS[kind]
        role = _role(rbac, _symbol(grant.params["roleDefinitionName"]))
        # configuration-infrastructure#permissions: read AND join/action on existing subnets,
        # public IPs and WAF policies.
        reads = {LINKED_RESOURCE_READS[kind]} if kind in LINKED_RESOURCE_READS else set()
        assert role.actions == {action} | reads, kind
        assert not role.data_actions, kind
        # The ids looped over are the linked ids of this kind's resource type.
        type_segment = f"/{_resource_type(action).rsplit('/', 1)[1].lower()}/"
        ids_var = grant.loop["detail"]["array_name"]
        assert any(type_segment in t for t in _strings(rbac.variables[ids_var])), kind

    by_kind: dict[str, list[Any]] = {}
    for assignment in linked.resources(ROLE_ASSIGNMENTS):
        kind = _equals_literal(assignment.condition, "kind")
        assert kind in LINKED_RESOURCE_ACTIONS, assignment.symbol
        by_kind.setdefault(kind, []).append(assignment)
        scope = linked.resource(assignment.body["scope"])
        assert scope.existing
        assert scope.type.lower() == _resource_type(LINKED_RESOURCE_ACTIONS[kind]).lower()
        assert _equals_literal(scope.condition, "kind") == kind
    assert {k: len(v) for k, v in by_kind.items()} == dict.fromkeys(LINKED_RESOURCE_ACTIONS, 1)


def test_key_vault_grant_reads_certificates_not_secrets(
    templates: dict[str, Any], rbac: Any
) -> None:
    (grant,) = rbac.modules("modules/rbac-keyvault.bicep")
    role = _role(rbac, _symbol(grant.params["roleDefinitionName"]))
    assert role.data_actions == KEY_VAULT_DATA_ACTIONS
    assert not role.actions
    assert grant.condition is not None, "granted only when a Key Vault is given"
    template = templates["modules/rbac-keyvault.bicep"]
    (assignment,) = template.resources(ROLE_ASSIGNMENTS)
    assert template.resource(assignment.body["scope"]).type == "Microsoft.KeyVault/vaults"


def test_storage_data_roles_only_on_the_bots_own_account(templates: dict[str, Any]) -> None:
    template = templates["modules/rbac-storage.bicep"]
    granted = set()
    for assignment in template.resources(ROLE_ASSIGNMENTS):
        scope = template.resource(assignment.body["scope"])
        assert scope.type == "Microsoft.Storage/storageAccounts" and scope.existing
        granted |= _guids(template, assignment.properties["roleDefinitionId"])
    assert granted == set(STORAGE_ROLES)
    main_grant = templates["modules/rbac.bicep"].modules("modules/rbac-storage.bicep")[0]
    assert main_grant.params["storageAccountName"] == "storageAccountName"


def test_no_broad_built_in_role_anywhere(templates: dict[str, Any]) -> None:
    for path in [*BICEP_FILES, INFRA / "main.parameters.json"]:
        text = path.read_text().lower()
        for guid, role in BROAD_ROLES.items():
            assert guid not in text, f"{path.name} grants {role}"
    for template in templates.values():
        for assignment in template.resources(ROLE_ASSIGNMENTS):
            guids = _guids(template, assignment.properties["roleDefinitionId"])
            # Built-in roles appear as GUID literals; custom roles come in as a parameter.
            allowed = set(STORAGE_ROLES) | set(MONITORING_ROLES)
            assert guids <= allowed, f"{template.name}:{assignment.symbol}"


def test_custom_roles_have_no_wildcards(templates: dict[str, Any]) -> None:
    for template in templates.values():
        for role in template.role_definitions():
            for action in role.actions | role.data_actions:
                assert "*" not in action, f"{role.resource.symbol}: {action}"


# --- the function app ----------------------------------------------------------------------


def test_every_bot_setting_is_an_app_setting(templates: dict[str, Any], main: Any) -> None:
    functionapp = templates["modules/functionapp.bicep"]
    bot_settings = main.variables["botSettings"]
    platform_settings = functionapp.variables["platformSettings"]
    # main.bicep's botSettings reach siteConfig.appSettings through the module parameter.
    (module,) = main.modules("modules/functionapp.bicep")
    assert module.params["botSettings"] == "botSettings"
    union = functionapp.variables["appSettings"]["function"]
    assert union["type"] == "union"
    assert set(union["parameters"].values()) == {"botSettings", "platformSettings"}
    loop = _site(templates).properties["siteConfig"]["appSettings"]
    assert loop["loop_type"]["detail"]["array_name"]["function"]["parameters"]["arg_1"] == (
        "appSettings"
    )

    names = set(bot_settings) | set(platform_settings)
    assert set(BOT_SETTINGS) <= names, f"missing: {sorted(set(BOT_SETTINGS) - names)}"
    assert not set(bot_settings) & set(platform_settings)


def test_app_settings_default_to_the_registry(main: Any) -> None:
    """Literal values equal the registry default; values from parameters default to it."""
    azure_decides = {"ARM_ENDPOINT", "AZURE_SUBSCRIPTION_ID", "ALLOWED_SCOPES", "KEY_VAULT_URL"}
    azure_decides |= {"STATE_DIR", "REMEDIATION_KILL_SWITCH"}
    for name, value in main.variables["botSettings"].items():
        if name not in BOT_SETTINGS or name in azure_decides:
            continue
        default = BOT_SETTINGS[name].default or ""
        if isinstance(value, str) and value in main.parameters:
            assert main.parameters[value]["default"] == default, name
        else:
            assert value == default, name
    assert main.parameters["remediationMode"]["default"] == "propose"
    assert main.parameters["killSwitch"]["default"] is False


def test_identity_based_storage_and_secrets(templates: dict[str, Any], main: Any) -> None:
    platform = templates["modules/functionapp.bicep"].variables["platformSettings"]
    assert platform["AzureWebJobsStorage__credential"] == "managedidentity"
    assert platform["AzureWebJobsStorage__clientId"] == "identityClientId"
    assert platform["AZURE_CLIENT_ID"] == "identityClientId"
    assert "AzureWebJobsStorage__accountName" in platform
    assert "AzureWebJobsStorage" not in platform, "no connection string: shared keys are off"
    functionapp = templates["modules/functionapp.bicep"]
    # Secret settings come from @secure() parameters, never from plain ones.
    for name, setting in BOT_SETTINGS.items():
        source = platform.get(name)
        if setting.secret and isinstance(source, str) and source in functionapp.parameters:
            assert {"type": "secure"} in functionapp.parameters[source]["decorators"], name
    assert {"type": "secure"} in main.parameters["notifyWebhookUrl"]["decorators"]


def test_function_app_is_flex_consumption_python_https_only(templates: dict[str, Any]) -> None:
    functionapp = templates["modules/functionapp.bicep"]
    (plan,) = functionapp.resources("Microsoft.Web/serverfarms")
    assert plan.body["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    assert plan.properties["reserved"] is True  # Linux
    site = _site(templates)
    assert site.body["kind"] == "functionapp,linux"
    assert site.body["identity"]["type"] == "UserAssigned"
    props = site.properties
    assert props["httpsOnly"] is True
    assert props["siteConfig"]["minTlsVersion"] == "1.2"
    assert props["siteConfig"]["ftpsState"] == "Disabled"
    assert props["functionAppConfig"]["runtime"] == {"name": "python", "version": "3.11"}
    assert props["virtualNetworkSubnetId"] == "subnetId"
    policies = functionapp.resources("Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert {p.body["name"]: p.properties["allow"] for p in policies} == {
        "ftp": False,
        "scm": False,
    }


def test_storage_is_identity_only_with_the_bots_queues_tables_and_containers(
    templates: dict[str, Any],
) -> None:
    storage = templates["modules/storage.bicep"]
    (account,) = storage.resources("Microsoft.Storage/storageAccounts")
    assert account.properties["allowSharedKeyAccess"] is False
    assert account.properties["allowBlobPublicAccess"] is False
    assert account.properties["minimumTlsVersion"] == "TLS1_2"
    assert account.properties["supportsHttpsTrafficOnly"] is True

    def names(type_: str) -> set[str]:
        found = set()
        for resource in storage.resources(type_):
            name = resource.body["name"]
            found.add(storage.parameters[name]["default"] if name in storage.parameters else name)
        return found

    defaults = {s.name: s.default for s in SETTINGS}
    queue = defaults["JOBS_QUEUE"]
    assert names("Microsoft.Storage/storageAccounts/queueServices/queues") == {
        queue,
        "${jobsQueueName}-poison",
        "${jobsQueueName}-checks",
        "${jobsQueueName}-checks-poison",
    }
    assert storage.parameters["jobsQueueName"]["default"] == queue
    assert names("Microsoft.Storage/storageAccounts/tableServices/tables") == {
        defaults["LEDGER_TABLE"]
    }
    containers = names("Microsoft.Storage/storageAccounts/blobServices/containers")
    assert {defaults["EVIDENCE_CONTAINER"], defaults["LOCK_CONTAINER"]} <= containers


def test_integration_subnet_is_delegated_for_flex_consumption(templates: dict[str, Any]) -> None:
    network = templates["modules/network.bicep"]
    (vnet,) = network.resources("Microsoft.Network/virtualNetworks")
    (subnet,) = vnet.properties["subnets"]
    delegations = subnet["properties"]["delegations"]
    assert [d["properties"]["serviceName"] for d in delegations] == ["Microsoft.App/environments"]
    assert "existingSubnetId" in network.parameters


def test_approval_endpoints_need_entra_id_and_alerts_are_excluded(
    templates: dict[str, Any],
) -> None:
    (auth,) = templates["modules/auth.bicep"].resources("Microsoft.Web/sites/config")
    assert auth.body["name"] == "authsettingsV2"
    validation = auth.properties["globalValidation"]
    assert validation["requireAuthentication"] is True
    assert validation["unauthenticatedClientAction"] == "Return401"
    assert validation["excludedPaths"] == ["/api/alerts", "/runtime/webhooks/mcp"]
    assert auth.properties["identityProviders"]["azureActiveDirectory"]["enabled"] is True


# --- the alert wiring ----------------------------------------------------------------------


def test_action_group_calls_api_alerts_with_the_common_schema(templates: dict[str, Any]) -> None:
    alerts = templates["modules/alerts.bicep"]
    (group,) = alerts.resources("Microsoft.Insights/actionGroups")
    (receiver,) = group.properties["azureFunctionReceivers"]
    assert receiver["useCommonAlertSchema"] is True
    assert "/api/alerts?code=${functionKey}" in receiver["httpTriggerUrl"]
    assert {"type": "secure"} in alerts.parameters["functionKey"]["decorators"]


def test_metric_alert_per_gateway_on_unhealthy_hosts_by_settings_pool(
    templates: dict[str, Any],
) -> None:
    alerts = templates["modules/alerts.bicep"]
    (rule,) = alerts.resources("Microsoft.Insights/metricAlerts")
    assert rule.loop["detail"]["array_name"] == "gatewayIds"
    assert rule.properties["scopes"] == [rule.loop["detail"]["item_name"]]
    (criterion,) = rule.properties["criteria"]["allOf"]
    assert criterion["metricNamespace"] == "Microsoft.Network/applicationGateways"
    assert criterion["metricName"] == "UnhealthyHostCount"
    assert criterion["dimensions"] == [
        {"name": "BackendSettingsPool", "operator": "Include", "values": ["*"]}
    ]
    (action,) = rule.properties["actions"]
    assert _symbol(action["actionGroupId"]) == "actionGroup"


def test_post_deploy_step_reads_the_alert_functions_own_key(templates: dict[str, Any]) -> None:
    """A host key would also open /api/fix, /api/jobs and /api/proposals."""
    step = templates["alerts.bicep"]
    (module,) = step.modules("modules/alerts.bicep")
    expression = module.params["functionKey"]
    assert expression["operator"]["operands"]["operand_2"] == "default"
    key = _call(expression)
    assert key["parameters"]["func_name"] == "listKeys"
    assert key["parameters"]["resource_identifier"] == "${site.id}/functions/${alertFunctionName}"
    assert "host/" not in json.dumps(module.params)
    assert "functionKey" not in json.dumps(step.outputs), "the key must not be an output"


# --- first-try deployability (issue 12) -----------------------------------------------------


def test_conditional_key_vault_module_has_a_guarded_scope(rbac: Any) -> None:
    """ARM evaluates a module's scope even when its condition is false (Azure/bicep #2371,
    #11463): without a Key Vault, split('', '/')[2] would fail the deployment."""
    for module in rbac.modules():
        scope = module.body.get("scope")
        if module.condition is None or not isinstance(scope, dict):
            continue
        tested = {s for s in _strings(module.condition) if s in rbac.parameters}
        for name in tested:
            if name not in json.dumps(scope):
                continue
            conditional = scope.get("operator", {})
            assert conditional.get("type") == "conditional", module.symbol
            guard = conditional["operands"]
            assert guard["condition"] == {
                "function": {"type": "empty", "parameters": {"item_to_test": name}}
            }, module.symbol
            assert name not in json.dumps(guard["true_value"]), module.symbol
    assert rbac.modules("modules/rbac-keyvault.bicep")[0].condition is not None


def test_application_insights_takes_entra_id_ingestion_only(templates: dict[str, Any]) -> None:
    monitoring = templates["modules/monitoring.bicep"]
    (component,) = monitoring.resources("Microsoft.Insights/components")
    assert component.properties["DisableLocalAuth"] is True
    (assignment,) = monitoring.resources(ROLE_ASSIGNMENTS)
    assert monitoring.resource(assignment.body["scope"]).symbol == component.symbol
    assert _guids(monitoring, assignment.properties["roleDefinitionId"]) == set(MONITORING_ROLES)
    platform = templates["modules/functionapp.bicep"].variables["platformSettings"]
    assert platform["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == (
        "Authorization=AAD;ClientId=${identityClientId}"
    )


def test_approval_endpoints_admit_only_the_given_principals(
    templates: dict[str, Any], main: Any
) -> None:
    (auth,) = templates["modules/auth.bicep"].resources("Microsoft.Web/sites/config")
    validation = auth.properties["identityProviders"]["azureActiveDirectory"]["validation"]
    policy = json.dumps(validation["defaultAuthorizationPolicy"])
    assert "allowedPrincipals" in policy and "allowedPrincipalIds" in policy
    (module,) = main.modules("modules/auth.bicep")
    assert module.params["allowedPrincipalIds"] == "approverIds"


def test_comma_separated_ids_are_trimmed(main: Any, templates: dict[str, Any]) -> None:
    def trimmed(template: Any, name: str) -> bool:
        value = template.variables[name]
        return "loop_type" in value and value["config"] == {
            "function": {"type": "trim", "parameters": {"string_to_trim": "id"}}
        }

    for name in ("gatewayIds", "linkedIds", "approverIds"):
        assert trimmed(main, name), name
    step = templates["alerts.bicep"]
    (module,) = step.modules("modules/alerts.bicep")
    assert trimmed(step, module.params["gatewayIds"])


# --- azd and docs --------------------------------------------------------------------------


def _azd_substituted(text: str) -> str:
    """main.parameters.json as azd reads it: ${NAME=default} -> default, ${NAME} -> x."""
    return re.sub(
        r"\$\{([A-Z_]+)(?:=([^}]*))?\}", lambda m: m[2] if m[2] is not None else "x", text
    )


def test_main_parameters_file_matches_main_bicep(main: Any) -> None:
    raw = (INFRA / "main.parameters.json").read_text()
    values = json.loads(_azd_substituted(raw))["parameters"]
    params = main.parameters
    assert set(values) <= set(params), sorted(set(values) - set(params))
    required = {name for name, p in params.items() if p["default"] is None}
    assert required <= set(values), sorted(required - set(values))
    # Typed values keep their type (azd substitutes before it parses the JSON).
    assert values["killSwitch"]["value"] is False
    assert values["roleAssignableScopes"]["value"] == []


def test_settings_documented_for_azd_are_mapped() -> None:
    values = json.loads(_azd_substituted((INFRA / "main.parameters.json").read_text()))
    documented = {"killSwitch", "trustedSubjectPattern", "storageNetworkDefaultAction"}
    documented |= {"roleAssignableScopes", "approverObjectIds"}
    assert documented <= set(values["parameters"]), sorted(documented - set(values["parameters"]))


def test_azure_yaml_deploys_the_bot_and_wires_alerts_after_deploy() -> None:
    text = (REPO / "azure.yaml").read_text()
    lines = [line.strip() for line in text.splitlines()]
    assert "bot:" in lines
    assert "language: python" in lines and "host: function" in lines
    assert "postdeploy:" in lines
    assert text.count("az deployment group create") >= 1
    assert "infra/alerts.bicep" in text
    # The hooks name the subscription; az's own default may be another one.
    assert text.count('--subscription "$AZURE_SUBSCRIPTION_ID"') == 2
    assert text.count('--subscription "$env:AZURE_SUBSCRIPTION_ID"') == 2
    # Flex Consumption's subnet delegation needs Microsoft.App registered.
    assert "preprovision:" in lines
    assert text.count("az provider register --namespace Microsoft.App") == 2


def test_deploy_doc_covers_parameters_and_limits(main: Any) -> None:
    doc = (REPO / "docs" / "deploy.md").read_text()
    for name in main.parameters:
        assert f"`{name}`" in doc, f"docs/deploy.md does not describe parameter {name}"
    for phrase in ("azd up", "az deployment sub create", "appgw-cert-bot-mode", "az group delete"):
        assert phrase in doc, phrase
    assert "checkov" in doc and "pycep" in doc


# --- helpers over parsed values ------------------------------------------------------------


def _symbol(expression: Any) -> str:
    symbol = checks.symbol_of(expression)
    assert symbol is not None, expression
    return str(symbol)


def _role(template: Any, symbol: str) -> Any:
    for role in template.role_definitions():
        if role.resource.symbol == symbol:
            return role
    raise AssertionError(f"{template.name}: no role definition {symbol}")


def _call(expression: Any) -> dict[str, Any]:
    call = checks.function_call(expression)
    assert call is not None, expression
    return dict(call)


def _strings(value: Any) -> list[str]:
    return list(checks.strings_in(value))


def _guids(template: Any, expression: Any) -> set[str]:
    """GUID literals an expression names, following variable references."""
    return {g for text in _strings(expression) for g in checks.guids_in(template.resolve(text))}
