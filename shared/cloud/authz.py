"""What ARM says the bot's identity may not do: the action and scope of a 403, for the operator.

ARM refuses a request the caller has no role for with 403 `AuthorizationFailed`, "The client
'<id>' with object id '<oid>' does not have authorization to perform action '<action>' over
scope '<scope>' or the scope is invalid. ..."
(https://learn.microsoft.com/azure/role-based-access-control/troubleshooting), and a write that
links a resource the caller may not join with 403 `LinkedAuthorizationFailed`, "... has
permission to perform action '<action>' on scope '<scope>'; however, it does not have permission
to perform action(s) '<a1>,<a2>' on the linked scope(s) '<s1>,<s2>' (respectively) or the linked
scope(s) are invalid." The fix is a role assignment (docs/deploy.md#permissions), never a
retry. (Before a write, the pre-flight reads the identity's permissions instead and turns a fix it
could not write into a proposal naming the missing action: shared/remediation/preflight.py.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

AUTHORIZATION_CODES = frozenset({"authorizationfailed", "linkedauthorizationfailed"})

_DIRECT = re.compile(
    r"does not have authorization to perform action '(?P<actions>[^']+)' over scope "
    r"'(?P<scopes>[^']+)'",
    re.IGNORECASE,
)
_LINKED = re.compile(
    r"does not have permission to perform action\(s\) '(?P<actions>[^']+)' on the linked "
    r"scope\(s\) '(?P<scopes>[^']+)'",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class MissingPermission:
    """The actions ARM refused, each with its scope (same order), and ARM's code."""

    code: str
    actions: tuple[str, ...]
    scopes: tuple[str, ...]

    @property
    def linked(self) -> bool:
        return self.code.lower() == "linkedauthorizationfailed"

    def describe(self) -> str:
        pairs = "; ".join(
            f"'{a}' on '{s}'" for a, s in zip(self.actions, self.scopes, strict=False)
        )
        where = "the linked resource(s)" if self.linked else "the scope"
        return (
            f"{self.code}: the bot's identity lacks {pairs} ({where}); grant it as infra/ does "
            "(docs/deploy.md#permissions)"
        )


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def missing_permission(
    codes: tuple[str, ...] | list[str], message: str
) -> MissingPermission | None:
    """The refused actions and scopes of an ARM 403, or None when it is no authorization error."""
    code = next((c for c in codes if c and c.lower() in AUTHORIZATION_CODES), None)
    if code is None:
        return None
    match = _LINKED.search(message) if code.lower() == "linkedauthorizationfailed" else None
    match = match or _DIRECT.search(message) or _LINKED.search(message)
    if match is None:
        return MissingPermission(code, ("(not named by ARM)",), ("(not named by ARM)",))
    actions, scopes = _split(match["actions"]), _split(match["scopes"])
    if len(scopes) == 1 and len(actions) > 1:
        scopes = scopes * len(actions)
    return MissingPermission(code, actions, scopes)
