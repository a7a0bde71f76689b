"""The operator docs: written for operators, and every JSON sample in them matches the code.

- No issue references (`issue 7`, `#12`) and no test names in docs/ and the README.
- A repository file the docs name by path is a Markdown link, and it exists.
- Every ```json block parses (an HTTP answer may be prefixed with its status: `202 {...}`).
- Every remediation outcome line (`{"gateway": ..., "action": ...}`), wherever it is shown, has
  exactly the keys of `RemediationOutcome.to_json`; a job sample exactly those of `Job.to_dict`;
  the diagnosis report sample exactly those of `shared.core.report.to_json` for the same case.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import test_tls_probe
from test_diagnosis import run, seed_v1
from test_tls_probe import Pki, TlsServer

from shared.core.report import to_json
from shared.remediation.remediate import RemediationOutcome
from shared.service.storage import Job, JobState

ROOT = Path(__file__).resolve().parents[1]
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]

pki = test_tls_probe.pki
servers = test_tls_probe.servers

ISSUE_REF = re.compile(r"(?i)\bissues?\s*#?\d+|(?<![\w&/])#\d+\b(?!-)")
TEST_NAME = re.compile(r"\btest_\w+")
# A path into the repository's code: shared/x.py, sandbox/x.py, bench/x.py, tests/x.py.
CODE_PATH = re.compile(r"\b(?:shared|sandbox|bench|tests)/[\w./-]*\.py\b")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^[ \t]*```(\w*)[^\n]*\n(.*?)^[ \t]*```", re.S | re.M)


def _name(p: Path) -> str:
    return p.relative_to(ROOT).as_posix()


def _blocks(lang: str | None = None) -> list[tuple[str, str]]:
    out = []
    for p in DOCS:
        for m in FENCE.finditer(p.read_text()):
            if lang is None or m.group(1) == lang:
                out.append((_name(p), m.group(2)))
    return out


def _json_documents(block: str) -> list[Any]:
    """One document, or one per line group that starts with an HTTP status (`409 {...}`)."""
    if not re.match(r"\s*\d{3} ", block):
        return [json.loads(block)]
    parts = re.split(r"^(\d{3}) ", block, flags=re.M)[1:]
    return [json.loads(body) for body in parts[1::2]]


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_no_issue_references_or_test_names(doc: Path) -> None:
    text = doc.read_text()
    assert ISSUE_REF.findall(text) == []
    assert TEST_NAME.findall(text) == []


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_code_paths_are_links_to_files_that_exist(doc: Path) -> None:
    text = doc.read_text()
    for target in LINK.findall(text):
        if target.startswith(("http:", "https:", "#", "mailto:")):
            continue
        path = (doc.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{_name(doc)} links to {target}, which does not exist"
    bare = LINK.sub("", text)
    for path in CODE_PATH.findall(bare):
        raise AssertionError(f"{_name(doc)} names {path} outside a link")


def test_every_json_block_parses() -> None:
    blocks = _blocks("json")
    assert len(blocks) >= 5
    for where, block in blocks:
        try:
            _json_documents(block)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"{where}: a json block does not parse: {exc}") from exc


def _outcome_keys() -> set[str]:
    return set(RemediationOutcome(gateway="g", mode="apply", action="none").to_json())


def _outcome_lines() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for where, block in _blocks():
        for line in block.splitlines():
            line = line.strip()
            if line.startswith('{"gateway"') and '"action"' in line:
                found.append((where, json.loads(line)))
    return found


def test_outcome_samples_carry_exactly_the_outcome_keys() -> None:
    lines = _outcome_lines()
    assert len(lines) >= 10  # the remediation walk-throughs
    for where, outcome in lines:
        assert set(outcome) == _outcome_keys(), f"{where}: {outcome}"


def test_job_sample_carries_exactly_the_job_keys() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    job = Job("j", "g", "fix", "apply", JobState.SUCCEEDED, "me", now, now)
    samples = [
        doc
        for _, block in _blocks("json")
        for doc in _json_documents(block)
        if isinstance(doc, dict) and "job_id" in doc
    ]
    assert samples
    for sample in samples:
        assert set(sample) == set(job.to_dict())
        assert set(sample["outcome"]) == _outcome_keys()
        assert set(sample["diagnosis"]) <= {"gateway", "findings", "vantage"}


def _shape_errors(sample: Any, code: Any, where: str) -> list[str]:
    """Where an object of the sample has other keys than its counterpart in the code's report."""
    errors = []
    if isinstance(sample, dict) and isinstance(code, dict):
        if set(sample) != set(code):
            errors.append(
                f"{where}: only in the docs {sorted(set(sample) - set(code))}, "
                f"missing from the docs {sorted(set(code) - set(sample))}"
            )
        for key in set(sample) & set(code):
            errors += _shape_errors(sample[key], code[key], f"{where}.{key}")
    elif isinstance(sample, list) and isinstance(code, list) and code:
        for i, item in enumerate(sample):
            if not (isinstance(item, str) and item.startswith("...")):
                errors += _shape_errors(item, code[min(i, len(code) - 1)], f"{where}[{i}]")
    return errors


def test_diagnosis_sample_matches_the_report(pki: Pki, servers: list[TlsServer]) -> None:
    doc, health = seed_v1(pki, servers, auth_data=None)
    code = json.loads(json.dumps(to_json(run(doc, health))))
    seed = next(f for f in code["findings"] if f["settings"] == "ase-https")
    text = (ROOT / "docs" / "diagnosis.md").read_text()
    samples = [
        d
        for _, block in _blocks("json")
        for d in _json_documents(block)
        if isinstance(d, dict) and "findings" in d
    ]
    assert samples, "diagnosis.md shows a report"
    assert "```json" in text
    for sample in samples:
        errors = _shape_errors(sample, {**code, "findings": [seed]}, "report")
        assert not errors, "\n".join(errors)
