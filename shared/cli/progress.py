"""Progress on standard error: `[  12.3s] PUT accepted; waiting for the operation ...`.

Standard output stays the contract (the report, the JSON line); progress goes to standard error,
one line per phase with the time since the command started. A gateway update plus verification
can take 10-25 minutes in Azure, during which a phase may not change: a heartbeat repeats the
last phase ("still: ...") every `heartbeat` seconds so a silent terminal never means a hang.
`--quiet` turns it off.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

HEARTBEAT_SECONDS = 30.0


def printable(text: str) -> str:
    """Control and line-breaking characters escaped: a phase names what it touches (an SNI, a
    host name from a document), and no such value may break the line or drive the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


class StderrProgress:
    """A `shared.common.progress.Progress` that writes to `stream` (default: sys.stderr)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        enabled: bool = True,
        heartbeat: float = HEARTBEAT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self.enabled = enabled
        self._heartbeat = heartbeat
        self._clock = clock
        self._start = clock()
        self._last = ""
        self._last_at = self._start
        self.used = False  # a phase was reported (main then ends with "done")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self, message: str) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._last, self._last_at = message, self._clock()
            self.used = True
            self._write(message)
        if self._thread is None and self._heartbeat > 0:
            self._thread = threading.Thread(target=self._beat, name="cli-progress", daemon=True)
            self._thread.start()

    def _write(self, message: str) -> None:
        stream = self._stream or sys.stderr
        stream.write(f"[{self._clock() - self._start:7.1f}s] {printable(message)}\n")
        stream.flush()

    def _beat(self) -> None:
        while not self._stop.wait(self._heartbeat / 4):
            with self._lock:
                if self._clock() - self._last_at >= self._heartbeat:
                    self._last_at = self._clock()
                    self._write(f"still: {self._last}")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)

    def __enter__(self) -> StderrProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = ["HEARTBEAT_SECONDS", "StderrProgress"]
