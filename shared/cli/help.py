"""`--help` text: examples per command, the environment variables the CLI reads, the exit codes."""

from __future__ import annotations

from shared.cli.exit_codes import table_text

PROG = "appgw-cert-bot"
GW = "/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.Network/applicationGateways/<gw>"

EXAMPLES: dict[str, tuple[str, ...]] = {
    "diagnose": (
        f"{PROG} diagnose --gateway-id {GW}",
        f"{PROG} diagnose --gateway-id <rg>/<name> --format json",
        f"{PROG} diagnose --gateway gw.json --health health.json --no-probe",
    ),
    "export-cert": (
        f"{PROG} export-cert --address 10.0.1.4 --port 443 --sni app.contoso.com --out app.cer",
    ),
    "fix": (
        f"{PROG} fix --gateway-id <rg>/<name> --dry-run",
        f"{PROG} fix --gateway-id <rg>/<name> --yes --format json",
        f"{PROG} fix --gateway-id <rg>/<name> --mode propose",
    ),
    "proposals": (
        f"{PROG} proposals list --status open",
        f"{PROG} proposals show <id>",
        f"{PROG} proposals approve <id> --yes",
    ),
    "rollback": (
        f"{PROG} rollback --change <change id> --dry-run",
        f"{PROG} rollback --change <change id> --yes",
    ),
    "changes": (f"{PROG} changes list --gateway-id <rg>/<name>", f"{PROG} changes show <id>"),
    "holds": (
        f"{PROG} holds list",
        f"{PROG} holds add --gateway-id <rg>/<name> --reason 'migration' --expires 7d",
        f"{PROG} holds release <hold id> --yes",
    ),
    "jobs": (f"{PROG} jobs list --gateway-id <rg>/<name>", f"{PROG} jobs show <job id>"),
    "gateways": (f"{PROG} gateways list", f"{PROG} gateways list --format json"),
}

# The settings an operator sets for the CLI, in the order they are needed.
ENVIRONMENT = (
    ("AZURE_SUBSCRIPTION_ID", "subscription of a --gateway-id given as RG/NAME"),
    ("ALLOWED_SCOPES", "subscriptions or resource groups the bot may act in (empty: none)"),
    ("REMEDIATION_MODE", "diagnose, propose or apply (the highest a command may use)"),
    ("REMEDIATION_KILL_SWITCH", "true: no gateway writes at all"),
    ("APPROVERS", "who may approve proposals, roll back and release holds"),
    ("STATE_DIR", "local state (proposals, changes, holds, locks); default ./.state"),
    ("AzureWebJobsStorage", "the function app's storage: share its ledger instead of STATE_DIR"),
    ("AZURE_CLIENT_ID", "user-assigned managed identity (else az login / the credential chain)"),
    ("KEY_VAULT_URL", "Key Vault of trusted certificates (with TRUSTED_CERT_NAMES)"),
)


def environment_text() -> str:
    width = max(len(name) for name, _ in ENVIRONMENT)
    return "environment variables (all settings: docs/operations.md):\n" + "".join(
        f"  {name:<{width}}  {text}\n" for name, text in ENVIRONMENT
    )


def examples_text(command: str | None = None) -> str:
    lines = (
        EXAMPLES.get(command, ())
        if command
        else tuple(e for cmd in ("diagnose", "fix", "rollback", "holds") for e in EXAMPLES[cmd][:1])
    )
    return "examples:\n" + "".join(f"  {line}\n" for line in lines) if lines else ""


def epilog(command: str | None = None) -> str:
    """The text after the options: examples, then (top level, and commands that write) the
    environment and exit codes."""
    parts = [examples_text(command)]
    if command is None or command in {"fix", "rollback", "proposals", "holds"}:
        parts += [environment_text(), table_text()]
    return "\n".join(p for p in parts if p)
