"""`python -m shared ...`: the bot's command line (shared/cli.py)."""

from __future__ import annotations

import sys

import shared.cli_remediate  # noqa: F401 - registers fix, proposals and rollback
from shared.cli import main

if __name__ == "__main__":
    sys.exit(main())
