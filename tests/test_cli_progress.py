"""The stderr progress renderer: elapsed time per phase, a heartbeat while a phase lasts, quiet."""

from __future__ import annotations

import io
import time

from shared.cli.progress import StderrProgress


def test_lines_carry_the_elapsed_time_and_a_heartbeat_repeats_a_long_phase() -> None:
    out = io.StringIO()
    with StderrProgress(out, heartbeat=0.1) as progress:
        progress("reading the gateway agw")
        progress("PUT accepted; waiting for the operation")
        time.sleep(0.35)  # the heartbeat under test: a phase that lasts
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("] reading the gateway agw") and lines[0].startswith("[    0.0s]")
    assert lines[1].endswith("] PUT accepted; waiting for the operation")
    assert lines[2:] and all(
        line.endswith("] still: PUT accepted; waiting for the operation") for line in lines[2:]
    )
    assert progress.used


def test_disabled_writes_nothing() -> None:
    out = io.StringIO()
    with StderrProgress(out, enabled=False) as progress:
        progress("reading the gateway agw")
    assert out.getvalue() == "" and not progress.used


def test_a_phase_naming_control_characters_stays_one_line() -> None:
    stream = io.StringIO()
    progress = StderrProgress(stream, heartbeat=0, clock=lambda: 0.0)
    progress("probing sni 'a\x85b\nc\x1b[2J'")
    [line] = stream.getvalue().splitlines()
    assert line == "[    0.0s] probing sni 'a\\x85b\\nc\\x1b[2J'"
