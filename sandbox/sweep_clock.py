"""`serve --functions --sweep-every SECONDS`: fire the function app's sweep timer on a fixed
interval instead of its NCRONTAB schedule (0 = never), so a local service does not act on the
real 15-minute clock unless asked to."""

from __future__ import annotations

import threading
from typing import Any

SWEEP_FUNCTION = "sweep"  # function_app's timer trigger
DEPLOYED_SCHEDULE = "0 */15 * * * *"  # function_app's SWEEP_SCHEDULE default


def describe(every: float | None, schedule: str | None = None) -> str:
    """One line for the operator: when the local service sweeps."""
    if every is None:
        return (
            f"sweep: on the app's schedule {schedule or DEPLOYED_SCHEDULE!r} (SWEEP_SCHEDULE), "
            "as deployed; --sweep-every SECONDS to change, 0 for off"
        )
    if every == 0:
        return "sweep: off (--sweep-every 0); alerts and API requests still queue jobs"
    return f"sweep: every {every:g} s (--sweep-every), first in {every:g} s"


class SweepClock:
    """Calls `runner.run_timer("sweep")` every `every` seconds until stopped."""

    def __init__(self, runner: Any, every: float) -> None:
        self.runner = runner
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sweep-clock", daemon=True)

    def start(self) -> SweepClock:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.runner.run_timer(SWEEP_FUNCTION)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=60)
