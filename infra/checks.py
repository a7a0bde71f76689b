"""Parse the Bicep templates in infra/ without the Bicep CLI, for the tests in tests/infra.

pycep-parser turns each .bicep file into JSON-like dicts. Two quirks shape the helpers here:
- identifiers (parameter, variable and resource names) come back as bare strings, so a value is
  resolved against the template's variables before it is read as a literal;
- loops and `if` conditions wrap a body as {"loop_type", "condition", "config"} or
  {"condition", "config"}; `Resource.body` is always the unwrapped object.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from pycep import BicepParser

INFRA_DIR = Path(__file__).resolve().parent
REPO_DIR = INFRA_DIR.parent
CHECKOV = REPO_DIR / ".venv" / "tools" / "checkov" / "bin" / "checkov"

_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


def bicep_files(root: Path = INFRA_DIR) -> list[Path]:
    """Every .bicep file under root, sorted."""
    return sorted(root.rglob("*.bicep"))


def parse_bicep(path: Path) -> dict[str, Any]:
    """Parse one file; raises (lark or ValueError) when pycep cannot read it."""
    return dict(BicepParser().parse(file_path=path))


def unwrap(config: Any) -> tuple[dict[str, Any], Any, dict[str, Any] | None]:
    """Split a resource or module value into (body, condition, loop)."""
    loop: dict[str, Any] | None = None
    condition: Any = None
    value = config
    if isinstance(value, dict) and "loop_type" in value:
        loop = value["loop_type"]
        condition = value.get("condition")
        value = value["config"]
    if isinstance(value, dict) and set(value) == {"condition", "config"}:
        condition = value["condition"]
        value = value["config"]
    return (value if isinstance(value, dict) else {}), condition, loop


def strings_in(value: Any) -> Iterator[str]:
    """Every string anywhere inside a parsed value (keys excluded)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def guids_in(value: Any) -> set[str]:
    return {m.lower() for s in strings_in(value) for m in _GUID.findall(s)}


def symbol_of(expression: Any) -> str | None:
    """`foo.name` / `foo.id` / `foo.outputs.x` -> 'foo'; None for anything else."""
    if isinstance(expression, dict) and "operator" in expression:
        operator = expression["operator"]
        if operator.get("type") == "property_accessor":
            first = operator["operands"]["operand_1"]
            return first if isinstance(first, str) else None
    return None


def function_call(expression: Any) -> dict[str, Any] | None:
    """The {"type", "parameters"} of a function call, also under a property accessor."""
    if isinstance(expression, dict):
        if "function" in expression:
            call: dict[str, Any] = expression["function"]
            return call
        if "operator" in expression and expression["operator"].get("type") == "property_accessor":
            return function_call(expression["operator"]["operands"]["operand_1"])
    return None


@dataclass(frozen=True)
class Resource:
    template: Template
    symbol: str
    type: str
    existing: bool
    body: dict[str, Any]
    condition: Any
    loop: dict[str, Any] | None

    @property
    def properties(self) -> dict[str, Any]:
        props = self.body.get("properties", {})
        return props if isinstance(props, dict) else {}


@dataclass(frozen=True)
class Module:
    template: Template
    symbol: str
    path: str  # relative to infra/, posix
    body: dict[str, Any]
    condition: Any
    loop: dict[str, Any] | None

    @property
    def params(self) -> dict[str, Any]:
        params = self.body.get("params", {})
        return params if isinstance(params, dict) else {}


@dataclass(frozen=True)
class RoleDefinition:
    resource: Resource
    actions: frozenset[str]
    not_actions: frozenset[str]
    data_actions: frozenset[str]


@dataclass(frozen=True, eq=False)
class Template:
    path: Path
    raw: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.relative_to(INFRA_DIR).as_posix()

    @cached_property
    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def parameters(self) -> dict[str, Any]:
        return dict(self.raw.get("parameters") or {})

    @property
    def variables(self) -> dict[str, Any]:
        return {name: v["value"] for name, v in (self.raw.get("variables") or {}).items()}

    @property
    def outputs(self) -> dict[str, Any]:
        return dict(self.raw.get("outputs") or {})

    def resolve(self, value: Any) -> Any:
        """A variable reference becomes the variable's value (recursively); else unchanged."""
        seen: set[str] = set()
        variables = self.variables
        while isinstance(value, str) and value in variables and value not in seen:
            seen.add(value)
            value = variables[value]
        return value

    def resources(self, type_: str | None = None) -> list[Resource]:
        found = []
        for symbol, item in (self.raw.get("resources") or {}).items():
            if type_ is not None and item["type"].lower() != type_.lower():
                continue
            body, condition, loop = unwrap(item["config"])
            found.append(
                Resource(self, symbol, item["type"], bool(item["existing"]), body, condition, loop)
            )
        return found

    def resource(self, symbol: str) -> Resource:
        for resource in self.resources():
            if resource.symbol == symbol:
                return resource
        raise KeyError(f"{self.name}: no resource {symbol}")

    def modules(self, path: str | None = None) -> list[Module]:
        found = []
        for symbol, item in (self.raw.get("modules") or {}).items():
            target = (self.path.parent / item["detail"]["path"]).resolve()
            relative = target.relative_to(INFRA_DIR).as_posix()
            if path is not None and relative != path:
                continue
            body, condition, loop = unwrap(item["config"])
            found.append(Module(self, symbol, relative, body, condition, loop))
        return found

    def role_definitions(self) -> list[RoleDefinition]:
        roles = []
        for resource in self.resources("Microsoft.Authorization/roleDefinitions"):
            actions: set[str] = set()
            not_actions: set[str] = set()
            data_actions: set[str] = set()
            for permission in resource.properties.get("permissions", []):
                actions |= set(self._string_list(permission.get("actions", [])))
                not_actions |= set(self._string_list(permission.get("notActions", [])))
                data_actions |= set(self._string_list(permission.get("dataActions", [])))
            roles.append(
                RoleDefinition(
                    resource, frozenset(actions), frozenset(not_actions), frozenset(data_actions)
                )
            )
        return roles

    def _string_list(self, value: Any) -> list[str]:
        resolved = self.resolve(value)
        if not isinstance(resolved, list) or not all(isinstance(v, str) for v in resolved):
            raise ValueError(f"{self.name}: expected a literal list of strings, got {resolved!r}")
        return resolved


def load_templates(root: Path = INFRA_DIR) -> dict[str, Template]:
    """Every template under root, keyed by path relative to infra/ ('modules/x.bicep')."""
    templates = [Template(path, parse_bicep(path)) for path in bicep_files(root)]
    return {t.name: t for t in templates}


def checkov_argv(directory: Path = INFRA_DIR) -> list[str]:
    """The checkov run CI makes: Bicep only, failures only, no code blocks, nothing downloaded."""
    return [
        str(CHECKOV),
        "--directory",
        str(directory),
        "--framework",
        "bicep",
        "--quiet",
        "--compact",
        "--skip-download",
    ]
