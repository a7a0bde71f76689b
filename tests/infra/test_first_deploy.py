"""What a first `azd up` trips over before any Azure API answers, checked without azd, Bicep or ARM.

Each rule names the page or issue it comes from; docs/sources.md#first-deploy lists them.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import infra_checks as checks  # loaded from infra/checks.py by conftest.py
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
PARAMETERS = INFRA / "main.parameters.json"
DOCS = [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md"]

# Learn, "App settings reference for Azure Functions", section "Flex Consumption plan
# deprecations" (https://learn.microsoft.com/azure/azure-functions/functions-app-settings
# #flex-consumption-plan-deprecations): app settings and site configuration properties a Flex
# Consumption app must not set. ARM refuses the site properties outright, error 51021 "The
# following site configuration property (Site.SiteConfig.FtpsState) for Flex Consumption sites is
# invalid" (microsoft/azure-pipelines-tasks#21032; Azure/terraform-azurerm-avm-res-web-site#283,
# #345 and #360: newer regional stamps reject what older ones ignore). The one list; lower case.
FLEX_DEPRECATED_SITE_PROPERTIES = frozenset(
    {
        "alwayson",
        "containersize",
        "ftpsstate",
        "isreserved",
        "isxenon",
        "javaversion",
        "linuxfxversion",
        "netframeworkversion",
        "powershellversion",
        "functionappscalelimit",
        "prewarmedinstancecount",
        "use32bitworkerprocess",
        "vnetbackuprestoreenabled",
        "vnetcontentshareenabled",
        "vnetimagepullenabled",
        # Not in the Learn table; named by ARM's 51021 error (AVM #360).
        "functionsruntimescalemonitoringenabled",
    }
)
FLEX_DEPRECATED_APP_SETTINGS = frozenset(
    {
        "ENABLE_ORYX_BUILD",
        "FUNCTIONS_EXTENSION_VERSION",
        "FUNCTIONS_MAX_HTTP_CONCURRENCY",
        "FUNCTIONS_WORKER_DYNAMIC_CONCURRENCY_ENABLED",
        "FUNCTIONS_WORKER_PROCESS_COUNT",
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_WORKER_RUNTIME_VERSION",
        "SCM_DO_BUILD_DURING_DEPLOYMENT",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "WEBSITE_CONTENTOVERVNET",
        "WEBSITE_CONTENTSHARE",
        "WEBSITE_DNS_SERVER",
        "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
        "WEBSITE_NODE_DEFAULT_VERSION",
        "WEBSITE_RUN_FROM_PACKAGE",
        "WEBSITE_SKIP_CONTENTSHARE_VALIDATION",
        "WEBSITE_VNET_ROUTE_ALL",
    }
)

# drone/envsubst forms main.parameters.json uses: ${NAME} and ${NAME=default}.
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:=([^}]*))?\}")
# Values azd itself provides (azd env new, azd's location prompt).
_AZD_ENV = {"AZURE_ENV_NAME": "prod", "AZURE_LOCATION": "westeurope"}


def azd_substitute(raw: str, env: dict[str, str]) -> dict[str, Any]:
    """main.parameters.json as azd >= 1.15 reads it (Azure/azure-dev bicep_provider.go,
    loadParameters and evalParamEnvSubst; PR #5061): the raw file must parse as JSON first
    ("error unmarshalling Bicep template parameters", azure-dev#5507); then, per parameter, its
    JSON text is re-marshalled, environment values are pasted into that text unescaped, and the
    result is parsed again. A parameter whose value is empty because its variable is unset is left
    out (azd then prompts for it when the template has no default)."""
    document = json.loads(raw)
    resolved: dict[str, Any] = {}
    for name, param in document["parameters"].items():
        text = json.dumps(param, separators=(",", ":"))
        unset = False

        def value(match: re.Match[str]) -> str:
            nonlocal unset
            if match[1] in env:
                return env[match[1]]
            unset = True
            return match[2] or ""

        substituted = json.loads(_PLACEHOLDER.sub(value, text))
        if substituted.get("value") == "" and unset:
            continue
        resolved[name] = substituted
    return resolved


def _strings(value: Any) -> list[str]:
    return list(checks.strings_in(value))


# --- 1. the parameters file ----------------------------------------------------------------


def test_parameters_file_is_json_with_every_placeholder_inside_a_string() -> None:
    """azd >= 1.15 parses the raw file before substituting (azure-dev PR #5061, issue #5507:
    "invalid character '$' looking for beginning of value"): `"value": ${X=false}` is not JSON."""
    raw = PARAMETERS.read_text()
    document = json.loads(raw)
    placeholders = _PLACEHOLDER.findall(raw)
    assert raw.count("${") == len(placeholders), "a placeholder azd would not read"
    inside = [m for s in _strings(document) for m in _PLACEHOLDER.findall(s)]
    assert len(inside) == len(placeholders), "every ${VAR} sits inside a JSON string"
    for name, param in document["parameters"].items():
        assert isinstance(param["value"], str), f"{name}: give bools, ints and arrays as strings"


def test_parameters_file_maps_onto_main_bicep(main: Any) -> None:
    values = azd_substitute(PARAMETERS.read_text(), {**_AZD_ENV, "TARGET_GATEWAY_IDS": "x"})
    assert set(values) <= set(main.parameters), sorted(set(values) - set(main.parameters))
    required = {n for n, p in main.parameters.items() if p["default"] is None}
    document = json.loads(PARAMETERS.read_text())
    assert required <= set(document["parameters"]), sorted(required - set(document["parameters"]))
    # Parameters that get a JSON string must be string parameters: azd passes the string as is.
    for name in document["parameters"]:
        assert main.parameters[name]["type"] == "string", name
    assert values["killSwitch"]["value"] == "false"
    assert values["storageNetworkDefaultAction"]["value"] == "Deny"


def test_unset_approvers_are_asked_for_not_deployed_empty(main: Any) -> None:
    """azd leaves out a parameter whose variable is unset and prompts for a required one
    (bicep_provider.go ensureParameters: "If a parameter is not defined in the parameters file
    AND there is not a default value defined in the template for it, AZD will prompt")."""
    assert main.parameters["approvers"]["default"] is None, "required: azd prompts"
    unset = azd_substitute(PARAMETERS.read_text(), {**_AZD_ENV})
    assert "approvers" not in unset
    given = azd_substitute(PARAMETERS.read_text(), {**_AZD_ENV, "APPROVERS": "oid-a, oid-b"})
    assert given["approvers"]["value"] == "oid-a, oid-b"


# --- 2. Flex Consumption site properties ---------------------------------------------------


def _flex_sites(templates: dict[str, Any]) -> list[Any]:
    """Every Microsoft.Web/sites on a Flex Consumption plan: functionAppConfig exists only there
    (Learn, Flex Consumption deprecations: settings moved into properties.functionAppConfig)."""
    sites = []
    for template in templates.values():
        plans = {
            p.symbol
            for p in template.resources("Microsoft.Web/serverfarms")
            if (p.body.get("sku") or {}).get("tier") == "FlexConsumption"
        }
        for site in template.resources("Microsoft.Web/sites"):
            if site.existing:
                continue
            farm = checks.symbol_of(site.properties.get("serverFarmId"))
            if "functionAppConfig" in site.properties or farm in plans:
                sites.append(site)
    return sites


def _keys(value: Any) -> set[str]:
    return {k.lower() for k in value} if isinstance(value, dict) else set()


def test_no_flex_site_sets_a_deprecated_property(templates: dict[str, Any]) -> None:
    sites = _flex_sites(templates)
    assert sites, "the bot's function app is a Flex Consumption site"
    for site in sites:
        properties = site.properties
        site_config = properties.get("siteConfig") or {}
        found = (_keys(properties) | _keys(site_config)) & FLEX_DEPRECATED_SITE_PROPERTIES
        assert not found, f"{site.template.name}:{site.symbol} sets {sorted(found)}"
        # The same properties through a sites/config 'web' child resource.
        for config in site.template.resources("Microsoft.Web/sites/config"):
            if config.body.get("name") == "web":
                found = _keys(config.properties) & FLEX_DEPRECATED_SITE_PROPERTIES
                assert not found, f"{site.template.name}:{config.symbol} sets {sorted(found)}"


def test_no_flex_site_sets_a_deprecated_app_setting(templates: dict[str, Any], main: Any) -> None:
    functionapp = templates["modules/functionapp.bicep"]
    names = set(main.variables["botSettings"]) | set(functionapp.variables["platformSettings"])
    assert not names & FLEX_DEPRECATED_APP_SETTINGS, sorted(names & FLEX_DEPRECATED_APP_SETTINGS)


# --- 3. scopes the Bicep compiler can resolve ----------------------------------------------


def test_no_scope_starts_with_a_ternary(templates: dict[str, Any]) -> None:
    """Bicep diagnostic BCP420 (Learn, "Bicep diagnostic code - BCP420"; Azure/bicep#17278,
    #17279): `scope: cond ? resourceGroup(a) : resourceGroup(b, c)` cannot be resolved at compile
    time. The condition belongs inside the arguments of one scope function."""
    for template in templates.values():
        entries = [(m.symbol, m.body) for m in template.modules()]
        entries += [(r.symbol, r.body) for r in template.resources()]
        for symbol, body in entries:
            scope = body.get("scope")
            if isinstance(scope, dict):
                kind = (scope.get("operator") or {}).get("type")
                assert kind != "conditional", f"{template.name}:{symbol}: scope is a ternary"
    # The same on the text, for a form the parser might read differently.
    for path in sorted(INFRA.rglob("*.bicep")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            head = re.match(r"\s*scope:\s*([^(\n]*)", line)
            assert not (head and "?" in head[1]), f"{path.name}:{number}: {line.strip()}"


def test_key_vault_scope_guards_each_argument(rbac: Any) -> None:
    """ARM evaluates a conditional module's scope even when the condition is false
    (Azure/bicep#2371, #11463): without a Key Vault, split('', '/')[2] must not be reached."""
    (grant,) = rbac.modules("modules/rbac-keyvault.bicep")
    call = checks.function_call(grant.body["scope"])
    assert call is not None and call["type"] == "resource_group"
    arguments = call["parameters"]
    assert set(arguments) == {"subscription_id", "resource_group_name"}
    guard = {"function": {"type": "empty", "parameters": {"item_to_test": "keyVaultId"}}}
    for argument in arguments.values():
        conditional = argument["operator"]
        assert conditional["type"] == "conditional"
        assert conditional["operands"]["condition"] == guard
        assert "keyVaultId" not in json.dumps(conditional["operands"]["true_value"])


# --- 4. documented azd env set examples ----------------------------------------------------

_ENV_SET = re.compile(r"azd env set\s+(.*)$")
_SHELL_EXPANSION = re.compile(r"\$\([^)]*\)|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?")
_SAMPLE_ID = "00000000-0000-0000-0000-000000000001"


def _documented_env_sets() -> list[tuple[str, str, str]]:
    """(where, NAME, value as the shell passes it) for each `azd env set NAME VALUE` in the docs."""
    found = []
    for path in DOCS:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = _ENV_SET.search(line)
            if not match or "`azd env set`" in line:
                continue
            words = shlex.split(match[1], comments=True)
            if len(words) != 2 or not re.fullmatch(r"[A-Z][A-Z0-9_]*", words[0]):
                continue
            # What the user's shell expands ($APP_ID, $(az ...)) becomes a sample id.
            value = _SHELL_EXPANSION.sub(_SAMPLE_ID, words[1])
            found.append((f"{path.relative_to(REPO)}:{number}", words[0], value))
    return found


def test_docs_show_azd_env_set_examples() -> None:
    names = {name for _, name, _ in _documented_env_sets()}
    assert {"TRUSTED_SUBJECT_PATTERN", "APPROVERS", "AUTH_CLIENT_ID"} <= names


@pytest.mark.parametrize(
    ("where", "name", "value"), _documented_env_sets(), ids=lambda v: str(v)[:40]
)
def test_documented_azd_env_set_survives_azd_substitution(
    where: str, name: str, value: str
) -> None:
    """azd pastes the value into the parameter's JSON text without escaping it (evalParamEnvSubst):
    `^CN=.*\\.contoso\\.com$` with single backslashes is an invalid JSON escape (`\\.`)."""
    raw = PARAMETERS.read_text()
    assert f"${{{name}" in raw or name in _AZD_ENV, f"{where}: {name} maps to no parameter"
    try:
        values = azd_substitute(raw, {**_AZD_ENV, "TARGET_GATEWAY_IDS": "x", name: value})
    except json.JSONDecodeError as error:
        pytest.fail(f"{where}: azd env set {name} {value!r} breaks main.parameters.json: {error}")
    if name == "TRUSTED_SUBJECT_PATTERN":
        pattern = re.compile(values["trustedSubjectPattern"]["value"])
        assert pattern.search("CN=app.contoso.com"), where
        assert not pattern.search("CN=appxcontoso.com"), f"{where}: the dot must be literal"


def test_a_single_backslash_would_break_the_parameters_file() -> None:
    """The failure the docs steer around, shown on the real file."""
    with pytest.raises(json.JSONDecodeError):
        azd_substitute(
            PARAMETERS.read_text(),
            {**_AZD_ENV, "TARGET_GATEWAY_IDS": "x", "TRUSTED_SUBJECT_PATTERN": r"^CN=.*\.x$"},
        )


# --- sign-in, azd version and the documented story -----------------------------------------


def test_postprovision_hook_gives_the_app_registration_its_redirect_uri(main: Any) -> None:
    """Learn, "Configure your App Service or Azure Functions app to use Microsoft Entra sign-in":
    web redirect URI `<app-url>/.auth/login/aad/callback`, and ID tokens enabled (no client secret
    here, so the implicit flow). The host name is an output of main.bicep, known after provision."""
    hooks = yaml.safe_load((REPO / "azure.yaml").read_text())["hooks"]
    for shell, prefix in (("posix", "$"), ("windows", "$env:")):
        hook = hooks["postprovision"][shell]
        run = " ".join(hook["run"].split())
        assert f'az ad app update --id "{prefix}AUTH_CLIENT_ID"' in run, shell
        callback = f'"https://{prefix}AZURE_FUNCTION_APP_HOST/.auth/login/aad/callback"'
        assert f"--web-redirect-uris {callback}" in run, shell
        assert "--enable-id-token-issuance true" in run, shell
    assert {"AUTH_CLIENT_ID", "AZURE_FUNCTION_APP_HOST"} <= set(main.outputs)


def test_deploy_doc_asks_for_azd_1_17() -> None:
    """azd packages a Python function app honouring .funcignore only from 1.17 (Azure/azure-dev
    PR #5383), and reads main.parameters.json as JSON first from 1.15 (PR #5061)."""
    doc = (REPO / "docs" / "deploy.md").read_text()
    assert "**1.17 or newer**" in doc and "5383" in doc
    assert not re.search(r"\b1\.(?:[0-9]|1[0-6]) or newer", doc), "an older azd minimum"


def test_docs_name_only_routes_that_exist() -> None:
    """function_app.py has no /api/fix route (fixing is /api/gateways/.../fix)."""
    app = (REPO / "function_app.py").read_text()
    assert 'route="fix"' not in app
    for path in [*DOCS, *INFRA.rglob("*.bicep")]:
        assert "/api/fix" not in path.read_text(), path.name


def test_docs_tell_one_story_for_the_action_group_key() -> None:
    """alerts.bicep embeds the alerts function's own key (listKeys on sites/functions/alerts):
    the docs must not tell operators to wire a host key, and must say how to read that key."""
    deploy = (REPO / "docs" / "deploy.md").read_text()
    operations = (REPO / "docs" / "operations.md").read_text()
    assert "az functionapp function keys list" in deploy and "--function-name alerts" in deploy
    assert "?code=<host key>" not in operations
    assert "host key or an Entra ID token" not in deploy
    assert "never lists gateways" not in deploy


def test_deploy_doc_says_how_an_operator_reaches_the_ledger() -> None:
    deploy = (REPO / "docs" / "deploy.md").read_text()
    section = deploy.split("## Operators: reaching the ledger", 1)[1].split("\n## ", 1)[0]
    for needed in ("operatorIpRanges", "Storage Table Data Reader", "Storage Blob Data Reader"):
        assert needed in section, needed
    assert "AzureWebJobsStorage__accountName" in section
