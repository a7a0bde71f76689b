"""The operator docs describe holds and the exit codes as the code has them."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from shared.cli.exit_codes import TABLE
from shared.remediation.holds import hold_for_rollback

OPERATIONS = Path(__file__).resolve().parents[1] / "docs" / "operations.md"


def _section(title: str) -> str:
    text = OPERATIONS.read_text()
    start = text.index(f"\n{title}\n")
    level = title.split()[0]
    end = text.find(f"\n{level} ", start + len(title) + 2)
    return text[start : end if end > 0 else None]


def test_the_hold_fields_table_matches_the_json_a_hold_has() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    view = hold_for_rollback(
        gateway_id="/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/"
        "applicationGateways/g",
        settings=["s"],
        kind="add_authentication_certificate",
        change="chg-1",
        rollback="chg-2",
        by="alice",
        now=now,
    ).view(now)
    rows = re.findall(r"^\| (`[^|]+`) \|", _section("## Holds"), re.MULTILINE)
    documented = {name for row in rows for name in re.findall(r"`([a-z_]+)`", row)}
    assert documented == set(view)


def test_the_exit_code_table_matches_the_cli() -> None:
    rows = re.findall(r"^\| (\d) \|", _section("### Exit codes"), re.MULTILINE)
    assert [int(r) for r in rows] == [code for code, _ in TABLE]
