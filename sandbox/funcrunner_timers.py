"""Timer triggers of the local Functions runner (sandbox/funcrunner.py): the optional schedule
loop and its 6-field NCRONTAB expressions (second minute hour day month day-of-week). Timers
also fire on demand (`FunctionRunner.run_timer`), which is how tests and the demo use them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sandbox.funcrunner import FunctionRunner
    from sandbox.funcrunner_index import IndexedFunction


def timer_loop(runner: FunctionRunner, fn: IndexedFunction) -> None:
    cron = parse_ncrontab(runner._resolve(str(fn.trigger["schedule"])))
    last: datetime | None = None
    while not runner._stop.wait(0.25):
        now = datetime.now(UTC).replace(microsecond=0)
        if now != last and cron_matches(cron, now):
            last = now
            runner.run_timer(fn.name)


def parse_ncrontab(expr: str) -> list[set[int]]:
    """Six fields: second minute hour day month day-of-week (Functions' NCRONTAB)."""
    fields = expr.split()
    if len(fields) != 6:
        raise ValueError(f"NCRONTAB needs 6 fields, got {expr!r}")
    ranges = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]
    return [_cron_field(f, lo, hi) for f, (lo, hi) in zip(fields, ranges, strict=True)]


def _cron_field(text: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            start, end = low, high
        elif "-" in base:
            start, end = (int(x) for x in base.split("-", 1))
        else:
            start = int(base)
            end = high if step_text else start
        values.update(range(start, end + 1, step))
    return values


def cron_matches(cron: list[set[int]], at: datetime) -> bool:
    weekday = (at.weekday() + 1) % 7  # NCRONTAB: 0 = Sunday
    parts = (at.second, at.minute, at.hour, at.day, at.month, weekday)
    return all(value in allowed for value, allowed in zip(parts, cron, strict=True))
