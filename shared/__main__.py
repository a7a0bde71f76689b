"""`python -m shared ...`: the bot's command line (shared/cli/main.py)."""

from __future__ import annotations

import sys

import shared.cli.remediate  # noqa: F401 - registers fix, proposals and rollback
from shared.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
