"""The repository stands on its own (issue 10).

- No file names the private notes that once sat beside the checkout: a reader of the public
  repository must be able to open every source a comment, docstring or document cites. Public
  sources are listed in docs/sources.md and cited as `docs/sources.md#<anchor>`.
- Every such anchor exists in docs/sources.md.
- No module or test climbs out of the repository with `Path(__file__)...parents[N]`, `.parent`
  chains or a `".."` path segment, so nothing reads files that only exist beside this checkout.
"""

from __future__ import annotations

import ast
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "docs" / "sources.md"
THIS = Path(__file__).resolve().relative_to(ROOT).as_posix()

# Assembled from parts so that this file does not match itself.
PRIVATE = tuple(
    "".join(parts)
    for parts in (
        ("..", "/shared"),
        ("shared", "/reference"),
        ("appgw-backend", "-tls.md"),
        ("peers", ".md"),
        ("functions-and", "-alerts"),
    )
)


def _files() -> list[str]:
    """Tracked files plus new, not ignored ones (a file not yet added must pass too)."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    return sorted({f for f in out.decode().split("\0") if f and (ROOT / f).is_file()})


def _text(name: str) -> str | None:
    data = (ROOT / name).read_bytes()
    if b"\0" in data[:8192]:
        return None  # binary
    return data.decode("utf-8", errors="replace")


FILES = _files()


def test_git_lists_this_repository() -> None:
    assert THIS in FILES and "docs/sources.md" in FILES


def test_no_file_names_the_private_notes() -> None:
    found = []
    for name in FILES:
        if name == THIS or (text := _text(name)) is None:
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            found += [f"{name}:{lineno}: {word}" for word in PRIVATE if word in line]
    assert found == [], "\n".join(found)


# ---- anchors --------------------------------------------------------------------------------

CITATION = re.compile(r"sources\.md#([A-Za-z0-9_-]+)")
LOCAL_LINK = re.compile(r"\]\(#([A-Za-z0-9_-]+)\)")


def _slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    found = {_slug(m) for m in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", markdown, re.MULTILINE)}
    return found | set(re.findall(r"""<a\s+(?:id|name)=["']([^"']+)["']""", markdown))


def test_slug_follows_github() -> None:
    assert _slug("SNI rules") == "sni-rules"
    assert _slug("ARM LROs: polling, `Retry-After`") == "arm-lros-polling-retry-after"
    assert anchors("# a\n## probe-log-texts\ntext ## not a heading\n") == {"a", "probe-log-texts"}


def test_every_cited_anchor_exists() -> None:
    known = anchors(SOURCES.read_text())
    missing = []
    for name in FILES:
        if name == THIS or (text := _text(name)) is None:
            continue
        cited = set(CITATION.findall(text))
        if name == "docs/sources.md":
            cited |= set(LOCAL_LINK.findall(text))
        missing += [f"{name}: #{a}" for a in sorted(cited - known)]
    assert missing == [], "\n".join(missing)


def test_sources_are_cited_and_public() -> None:
    text = SOURCES.read_text()
    cited = {a for name in FILES if name != THIS for a in CITATION.findall(_text(name) or "")}
    assert {"probe-log-texts", "sni-rules", "certificate-formats", "overlapping-writes"} <= cited
    # Every URL is public: https, no local file, no host of this machine.
    for url in re.findall(r"https?://[^\s)>]+", text):
        assert url.startswith("https://") and "localhost" not in url and "127.0.0.1" not in url
    # Relative links resolve inside the repository.
    for link in re.findall(r"\]\((\.\./[^)#]+|[a-z][^):#]*\.md)[)#]", text):
        target = (SOURCES.parent / link).resolve()
        assert target.is_relative_to(ROOT) and target.exists(), link


# ---- no path outside the repository ---------------------------------------------------------


def _levels_up(node: ast.expr, names: dict[str, int]) -> int | None:
    """How many directories above the file's own directory `node` points, when it is built from
    `__file__` (or a module-level name that is); None for anything else."""
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Name) and func.id in {"Path", "PurePath"} and node.args:
            inner = node.args[0]
            if isinstance(inner, ast.Name) and inner.id == "__file__":
                return -1  # the file itself: its parent is level 0
            return _levels_up(inner, names)
        if isinstance(func, ast.Attribute) and func.attr in {"resolve", "absolute"}:
            return _levels_up(func.value, names)
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "dirname"
            and isinstance(func.value, ast.Attribute)
            and func.value.attr == "path"
            and node.args
        ):
            inner = node.args[0]
            if isinstance(inner, ast.Name) and inner.id == "__file__":
                return 0
            base = _levels_up(inner, names)
            return None if base is None else base + 1
        return None
    if isinstance(node, ast.Attribute) and node.attr == "parent":
        base = _levels_up(node.value, names)
        return None if base is None else base + 1
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute):
        if node.value.attr == "parents" and isinstance(node.slice, ast.Constant):
            base = _levels_up(node.value.value, names)
            index = node.slice.value
            if base is not None and isinstance(index, int):
                return base + 1 + index
        return None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        base = _levels_up(node.left, names)
        right = node.right
        if base is None or not isinstance(right, ast.Constant) or not isinstance(right.value, str):
            return None
        for part in Path(right.value).parts:
            if part == "..":
                base += 1
            elif part != ".":
                return None  # went down into a named directory: no longer a plain ancestor
        return base
    if isinstance(node, ast.Name):
        return names.get(node.id)
    return None


def escapes(source: str, path: str) -> list[str]:
    """Expressions in `source` (the file at repository path `path`) that point above the root."""
    depth = len(Path(path).parts) - 1  # levels from the file's directory up to the root
    tree = ast.parse(source)
    names: dict[str, int] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target = stmt.targets[0]
            if isinstance(target, ast.Name):
                level = _levels_up(stmt.value, names)
                if level is not None:
                    names[target.id] = level
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.expr):
            level = _levels_up(node, names)
            if level is not None and level > depth:
                bad.append(f"{path}:{node.lineno}: {ast.unparse(node)}")
    return bad


@pytest.mark.parametrize(
    ("source", "path", "bad"),
    [
        ("R = Path(__file__).resolve().parents[1]", "tests/t.py", False),
        ("R = Path(__file__).resolve().parents[2]", "tests/t.py", True),
        ("R = Path(__file__).parent.parent", "tests/t.py", False),
        ("R = Path(__file__).parent.parent.parent", "tests/t.py", True),
        ("R = Path(__file__).resolve().parents[1]\nX = R.parent / 'shared'", "tests/t.py", True),
        ("R = Path(__file__).resolve().parents[1]\nX = R / '..'", "tests/t.py", True),
        ("X = os.path.dirname(os.path.dirname(__file__))", "tests/t.py", False),
        ("X = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))", "tests/t.py", True),
        ("X = Path(__file__).parents[3]", "tests/a/b/t.py", False),
    ],
)
def test_escape_check_itself(source: str, path: str, bad: bool) -> None:
    assert bool(escapes(source, path)) is bad


def _python_files() -> Iterator[str]:
    yield from (f for f in FILES if f.endswith(".py"))


def test_no_module_or_test_reads_outside_the_repository() -> None:
    bad = [hit for name in _python_files() for hit in escapes((ROOT / name).read_text(), name)]
    assert bad == [], "\n".join(bad)
