"""Small HTML building blocks of the review page: every value goes through `html.escape`."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any


class Raw(str):
    """Already-escaped HTML for `kv`."""


def e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def word(value: Any) -> Any:
    return {True: "yes", False: "no"}.get(value, value) if isinstance(value, bool) else value


def kv(rows: Sequence[tuple[str, Any]], *, cls: str = "kv") -> str:
    """A definition list; rows whose value is None, "" or [] are left out."""
    items = "".join(
        f"<dt>{e(k)}</dt><dd>{v if isinstance(v, Raw) else e(word(v))}</dd>"
        for k, v in rows
        if v not in (None, "", [])
    )
    return f'<dl class="{cls}">{items}</dl>'


def pre(text: Any, ident: str = "") -> str:
    attr = f' id="{e(ident)}"' if ident else ""
    return f"<pre{attr}>{e(text)}</pre>"
