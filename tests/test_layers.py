"""The package's plan holds: each subpackage of `shared` imports only what its `__init__`
docstring allows ("May import: ..."), and the pure layers import no SDK and no I/O module.

Imports are read from the source (every `import`, also inside functions), so a lazy import
cannot slip past.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1] / "shared"
SUBPACKAGES = sorted(p.parent.name for p in SHARED.glob("*/__init__.py"))

# Pure layers: data in, data out. Only the standard library's pure parts and `cryptography`
# (certificate parsing); `os` is allowed in common for reading settings from the environment.
_IO_MODULES = {
    "socket",
    "ssl",
    "select",
    "selectors",
    "http",
    "urllib",
    "subprocess",
    "shutil",
    "threading",
    "concurrent",
    "asyncio",
    "multiprocessing",
    "sqlite3",
    "tempfile",
    "pathlib",
    "io",
    "time",
}
_PURE = {
    "common": {"allowed_third_party": set(), "forbidden": _IO_MODULES},
    "core": {"allowed_third_party": {"cryptography"}, "forbidden": _IO_MODULES | {"os"}},
}
_STDLIB = set(__import__("sys").stdlib_module_names)


def _imports(path: Path) -> set[str]:
    """Absolute module names imported anywhere in the file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if node.module == "shared":  # `from shared import lease` names a module too
                names.update(f"shared.{alias.name}" for alias in node.names)
    return names


def _allowed(package: str) -> set[str]:
    doc = ast.get_docstring(ast.parse((SHARED / package / "__init__.py").read_text())) or ""
    match = re.search(r"May import:(.*?)(?:\.\s|\.$|$)", doc, re.DOTALL)
    assert match, f"shared/{package}/__init__.py must say what it may import ('May import: ...')"
    return set(re.findall(r"shared\.(\w+)", match.group(1))) | {package}


def test_every_subpackage_says_what_it_owns_and_may_import() -> None:
    expected = ["cli", "cloud", "common", "core", "probe", "remediation", "service"]
    assert expected == SUBPACKAGES
    for package in SUBPACKAGES:
        doc = ast.get_docstring(ast.parse((SHARED / package / "__init__.py").read_text()))
        assert doc and "Owns" in doc, f"shared/{package}/__init__.py lacks an 'Owns' docstring"
        assert _allowed(package) <= set(SUBPACKAGES), package


def test_no_module_is_left_at_the_top_of_the_package() -> None:
    top = sorted(p.name for p in SHARED.glob("*.py"))
    assert top == ["__init__.py", "__main__.py"]


@pytest.mark.parametrize("package", SUBPACKAGES)
def test_subpackage_imports_only_what_its_docstring_allows(package: str) -> None:
    allowed = _allowed(package)
    wrong = []
    for path in sorted((SHARED / package).rglob("*.py")):
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "shared" and len(parts) > 1 and parts[1] not in allowed:
                wrong.append(f"{path.relative_to(SHARED.parent)} imports {name}")
    assert wrong == []


@pytest.mark.parametrize("package", sorted(_PURE))
def test_pure_layers_import_no_sdk_and_no_io(package: str) -> None:
    rules = _PURE[package]
    wrong = []
    for path in sorted((SHARED / package).rglob("*.py")):
        for name in _imports(path):
            root = name.split(".")[0]
            if root in {"shared", "__future__"}:
                continue
            if root in rules["forbidden"] or (
                root not in _STDLIB and root not in rules["allowed_third_party"]
            ):
                wrong.append(f"{path.relative_to(SHARED.parent)} imports {name}")
    assert wrong == []


def test_the_checks_see_a_violation(tmp_path: Path) -> None:
    """The import reader finds lazy imports and `from shared import x` forms."""
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n    import socket\n"
        "    from shared import lease\n"
        "    from shared.cli import main\n"
    )
    assert {"socket", "shared.lease", "shared.cli"} <= _imports(module)
