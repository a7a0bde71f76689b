"""Approvers are Entra object ids: the APPROVERS setting and the comparisons made with it.

A display name can change and two people can share one, so names are never identities here. An
APPROVERS entry is an object id, optionally followed by `=` and a display label::

    APPROVERS=6f1c2a9e-0b7d-4c39-9d0e-1a2b3c4d5e6f=Alice Smith,0b9d8e7f-1111-4222-8333-444455556666

The label is only shown (review page, messages); the object id alone is compared, without regard
to case. An entry that is not an object id is refused when the settings are read, so a name put
there by mistake is a configuration error rather than an approver who silently never matches.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from shared.common.errors import SettingsError

_OBJECT_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_LABEL = re.compile(r"^[^\x00-\x1f\x7f,]{0,128}$")


def is_object_id(value: str) -> bool:
    """An Entra object id: a GUID in its 8-4-4-4-12 form (either case)."""
    return bool(_OBJECT_ID.match(value.strip()))


@dataclass(frozen=True)
class Approver:
    """One APPROVERS entry: the object id compared, and a label shown beside it."""

    object_id: str
    label: str = ""

    def __str__(self) -> str:
        return f"{self.label} ({self.object_id})" if self.label else self.object_id


def parse_approver(entry: str) -> Approver:
    """`<object id>` or `<object id>=<label>`; SettingsError naming the entry otherwise."""
    oid, sep, label = entry.strip().partition("=")
    oid, label = oid.strip(), label.strip()
    if not is_object_id(oid):
        raise SettingsError(
            f"APPROVERS: {entry.strip()[:80]!r} is not an Entra object id; write "
            "<object id> or <object id>=<label> (names alone are not identities)"
        )
    if sep and not _LABEL.match(label):
        raise SettingsError(f"APPROVERS: the label of {oid} has control characters or is long")
    return Approver(oid.lower(), label)


def parse_approvers(name: str, raw: str) -> tuple[Approver, ...]:
    """The APPROVERS setting: comma-separated entries (empty: nobody may approve)."""
    del name  # the entries' errors name the setting
    return tuple(parse_approver(part) for part in raw.split(",") if part.strip())


def approver_ids(approvers: Iterable[Approver | str]) -> set[str]:
    """The object ids of `approvers` (entries given as text are parsed as APPROVERS entries;
    ones that are not object ids count for nobody)."""
    ids: set[str] = set()
    for entry in approvers:
        if isinstance(entry, Approver):
            ids.add(entry.object_id)
        else:
            oid = entry.partition("=")[0].strip()
            if is_object_id(oid):
                ids.add(oid.lower())
    return ids


def same_identity(a: str, b: str) -> bool:
    """Recorded identities compare without regard to case or surrounding blanks."""
    return bool(a.strip()) and a.strip().lower() == b.strip().lower()


def label_of(object_id: str, approvers: Iterable[Approver | str]) -> str:
    """How to show `object_id`: "<label> (<object id>)" when APPROVERS labels it."""
    for entry in approvers:
        if isinstance(entry, Approver):
            approver = entry
        else:
            try:
                approver = parse_approver(entry)
            except SettingsError:
                continue
        if approver.object_id == object_id.strip().lower():
            return str(approver)
    return object_id


__all__ = [
    "Approver",
    "approver_ids",
    "is_object_id",
    "label_of",
    "parse_approver",
    "parse_approvers",
    "same_identity",
]
