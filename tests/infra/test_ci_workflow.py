"""The CI workflow: `make test` everywhere, the Bicep compiler everywhere, and what needs Azure only
where Azure OIDC is configured (docs/deploy.md, "What was checked here"; docs/sources.md#ci)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
OIDC_VARIABLES = ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_SUBSCRIPTION_ID")


def _workflow() -> dict[str, Any]:
    document = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(document, dict)
    # YAML 1.1 reads the key `on` as the boolean true.
    if True in document:
        document["on"] = document.pop(True)
    return document


def _runs(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in job.get("steps", []))


def _job_running(jobs: dict[str, Any], command: str) -> tuple[str, dict[str, Any]]:
    found = [(name, job) for name, job in jobs.items() if command in _runs(job)]
    assert len(found) == 1, f"one job runs {command!r}: {[n for n, _ in found]}"
    return found[0]


def test_workflow_runs_on_pushes_and_pull_requests() -> None:
    triggers = _workflow()["on"]
    assert "push" in triggers and "pull_request" in triggers


def test_make_test_runs_unconditionally() -> None:
    _, job = _job_running(_workflow()["jobs"], "make test")
    assert "if" not in job
    uses = [step.get("uses", "") for step in job["steps"]]
    assert any(u.startswith("actions/setup-python@") for u in uses)


def test_bicep_build_and_lint_cover_both_entry_templates() -> None:
    jobs = _workflow()["jobs"]
    _, job = _job_running(jobs, "az bicep build")
    script = _runs(job)
    assert "az bicep lint" in script and "az bicep install" in script
    assert "infra/main.bicep" in script and "infra/alerts.bicep" in script


def test_azd_preview_runs_only_where_azure_oidc_is_configured() -> None:
    """The `secrets` context is not available in a job's `if`; `vars` is (GitHub Actions,
    "Contexts", context availability). Without the variables the job is skipped, not failed."""
    name, job = _job_running(_workflow()["jobs"], "azd provision --preview")
    guard = str(job.get("if", ""))
    for variable in OIDC_VARIABLES:
        assert f"vars.{variable} != ''" in guard, f"{name}: no guard on {variable}"
    assert "secrets." not in guard
    assert " && " in guard and " || " not in guard, "every variable is required"
    # OIDC: azure/login exchanges the job's ID token (permissions id-token: write).
    assert job["permissions"]["id-token"] == "write"
    uses = [step.get("uses", "") for step in job["steps"]]
    assert any(u.startswith("azure/login@") for u in uses)
    assert any(u.lower().startswith("azure/setup-azd@") for u in uses)
    script = _runs(job)
    assert "--federated-credential-provider github" in script
    assert "--no-prompt" in script
    # No step outside this job signs in to Azure.
    for other, other_job in _workflow()["jobs"].items():
        if other != name:
            steps = other_job.get("steps", [])
            assert not any(s.get("uses", "").startswith("azure/login@") for s in steps), other


def test_workflow_grants_read_only_by_default() -> None:
    assert _workflow()["permissions"] == {"contents": "read"}
