"""Progress of long work: an injected callback that gets one short phrase per phase.

The Remediator, the gateway writer and verification report phases ("reading the gateway",
"PUT accepted; waiting for the operation", ...) through a `Progress`; the CLI renders them on
standard error with the elapsed time (shared.cli.progress), so standard output stays the
contract. Everything defaults to `no_progress`.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str], None]


def no_progress(message: str) -> None:
    """The default: report nothing."""


__all__ = ["Progress", "no_progress"]
