"""The import graph: `remote/` sits below everything that uses it, and `publish` and `fetch`
never import each other (every import counted, also those inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "weightprep"
# what remote/ may import: the package's leaves
BELOW_REMOTE = (
    "weightprep.errors",
    "weightprep.progress",
    "weightprep.io",
    "weightprep.checksum",
    "weightprep.manifest",
    "weightprep.remote",
)


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in out if m.startswith("weightprep")}


def _modules(*globs: str) -> list[Path]:
    return sorted(p for g in globs for p in PKG.glob(g))


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_remote_imports_nothing_above_it():
    files = _modules("remote/*.py")
    assert files
    for path in files:
        for name in _imports(path):
            assert any(_under(name, ok) for ok in BELOW_REMOTE), f"{path.name} imports {name}"


def test_publish_and_fetch_never_import_each_other():
    for path in _modules("publish/*.py"):
        bad = [n for n in _imports(path) if _under(n, "weightprep.fetch")]
        assert not bad, f"publish/{path.name} imports {bad}"
    fetchers = _modules("fetch*.py", "fetch/*.py")
    assert fetchers
    for path in fetchers:
        bad = [n for n in _imports(path) if _under(n, "weightprep.publish")]
        assert not bad, f"{path.name} imports {bad}"
