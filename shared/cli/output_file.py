"""Writing an output file (`export-cert --out`) without harming what is already there.

- Without `force`, the file is created with O_CREAT|O_EXCL|O_NOFOLLOW: an existing file, and a
  symbolic link (even a dangling one), are refused, never truncated or followed.
- With `force`, the text goes to a new temporary file beside it (created the same way) that is
  then renamed over the path: a symbolic link there is replaced, never followed, and a reader
  never sees half a file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from shared.common.errors import InputError

_MODE = 0o644  # certificates are public; the umask still applies
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)


def check_new_file(path: str, *, force: bool) -> None:
    """Refuse early (before any work) what `write_new_file` would refuse."""
    try:
        target = Path(path)
        if target.is_symlink() and not force:
            raise InputError(
                f"--out {path} is a symbolic link: refused (--force replaces the link itself)"
            )
        if target.is_dir():
            raise InputError(f"--out {path} is a directory")
        if target.exists() and not force:
            raise InputError(f"--out {path} exists: refused (--force replaces it)")
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise InputError(f"cannot write --out {path!r}: {exc}") from None


def write_new_file(path: str, text: str, *, force: bool) -> None:
    """Write `text` to a new file at `path` (see the module docstring); InputError otherwise."""
    check_new_file(path, force=force)
    data = text.encode("utf-8")
    if not force:
        _create(path, data)
        return
    target = Path(path)
    temp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    _create(str(temp), data)
    try:
        temp.replace(target)  # rename(2): over a link, never through it
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise InputError(f"cannot write --out {path!r}: {exc.strerror or exc}") from None


def _create(path: str, data: bytes) -> None:
    try:
        fd = os.open(path, _FLAGS, _MODE)
    except FileExistsError:
        raise InputError(f"--out {path} exists: refused (--force replaces it)") from None
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise InputError(f"cannot write --out {path!r}: {reason}") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
