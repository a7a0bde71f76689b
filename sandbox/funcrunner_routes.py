"""Route templates of HTTP-triggered functions, as the Functions host reads them (for
sandbox/funcrunner.py): ASP.NET-style `{name}`, `{name?}`, `{name:constraint}` and `{*rest}`
parameters, compiled to a regex plus a precedence key (docs/sources.md#functions).
"""

from __future__ import annotations

import re

_CONSTRAINTS: dict[str, str] = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "bool": r"(?:[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])",
    "alpha": r"[A-Za-z]+",
    "guid": r"\{?[0-9A-Fa-f]{8}-?(?:[0-9A-Fa-f]{4}-?){3}[0-9A-Fa-f]{12}\}?",
    "double": r"-?\d+(?:\.\d+)?",
    "float": r"-?\d+(?:\.\d+)?",
    "decimal": r"-?\d+(?:\.\d+)?",
    "datetime": r"[^/]+",
}


def compile_route(template: str) -> tuple[re.Pattern[str], tuple[int, ...]]:
    """Compile an ASP.NET-style route template to a regex over "/seg/seg" plus a precedence
    key (literal < constrained < plain < optional < catch-all, per segment)."""
    pattern = ""
    precedence: list[int] = []
    for segment in _split_template(template.strip("/")):
        regex, rank, optional = _segment(segment)
        pattern += f"(?:/{regex})?" if optional else f"/{regex}"
        precedence.append(rank)
    precedence.append(5)  # a longer template beats its own prefix at equal ranks
    return re.compile(pattern or "/", re.IGNORECASE), tuple(precedence)


def _split_template(template: str) -> list[str]:
    segments, current, depth = [], "", 0
    for ch in template:
        if ch in "{(":
            depth += 1
        elif ch in "})":
            depth -= 1
        if ch == "/" and depth == 0:
            segments.append(current)
            current = ""
        else:
            current += ch
    if current:
        segments.append(current)
    return segments


def _segment(segment: str) -> tuple[str, int, bool]:
    regex, rank, optional, pos = "", 0, False, 0
    while pos < len(segment):
        start = segment.find("{", pos)
        if start < 0:
            regex += re.escape(segment[pos:])
            break
        regex += re.escape(segment[pos:start])
        end = _closing_brace(segment, start)
        param, param_rank, param_optional = _parameter(segment[start + 1 : end])
        regex += param
        rank = max(rank, param_rank)
        optional = param_optional and start == 0 and end == len(segment) - 1
        pos = end + 1
    return regex, rank, optional


def _closing_brace(segment: str, start: int) -> int:
    depth = 0
    for index in range(start, len(segment)):
        if segment[index] in "{(":
            depth += 1
        elif segment[index] in "})":
            depth -= 1
            if depth == 0:
                return index
    raise ValueError(f"unbalanced braces in route segment {segment!r}")


def _parameter(spec: str) -> tuple[str, int, bool]:
    catch_all = spec.startswith("*")
    spec = spec.lstrip("*")
    optional = spec.endswith("?")
    spec = spec.rstrip("?")
    name, *constraints = _split_constraints(spec)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"unsupported route parameter name {name!r}")
    if catch_all:
        return f"(?P<{name}>.*)", 4, True
    checks = "".join(f"(?=(?:{_constraint(c)})(?:/|$))" for c in constraints)
    rank = 3 if optional else 1 if constraints else 2
    return f"(?P<{name}>{checks}[^/]+)", rank, optional


def _split_constraints(spec: str) -> list[str]:
    parts, current, depth = [], "", 0
    for ch in spec:
        depth += (ch == "(") - (ch == ")")
        if ch == ":" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def _constraint(text: str) -> str:
    match = re.fullmatch(r"(\w+)(?:\((.*)\))?", text, re.DOTALL)
    if not match:
        raise ValueError(f"unsupported route constraint {text!r}")
    kind, arg = match.group(1).lower(), match.group(2)
    if kind in _CONSTRAINTS and arg is None:
        return _CONSTRAINTS[kind]
    if kind == "regex" and arg is not None:
        return arg.removeprefix("^").removesuffix("$")
    if kind in {"minlength", "maxlength", "length"} and arg is not None:
        bounds = [int(b) for b in arg.split(",")]
        if kind == "minlength":
            return rf"[^/]{{{bounds[0]},}}"
        if kind == "maxlength":
            return rf"[^/]{{1,{bounds[0]}}}"
        return rf"[^/]{{{bounds[0]},{bounds[-1]}}}"
    raise ValueError(f"route constraint {text!r} is not supported by the local runner")
