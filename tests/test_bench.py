"""bench/ is code too: every script imports without side effects and answers --help, so a
rename in weightprep cannot break one silently (the measurements themselves: `make bench*`)."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_bench_script_answers_help(script: str, tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, str(BENCH / script), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "usage:" in res.stdout
    assert not list(tmp_path.iterdir())  # --help writes nothing


@pytest.mark.parametrize("script", SCRIPTS)
def test_bench_script_names_only_what_weightprep_has(script: str) -> None:
    """Every `from weightprep.X import Y` in a bench script, even inside a function or a child
    process's source text, names something that exists."""
    source = (BENCH / script).read_text()
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("weightprep"):
            found += [(node.module, a.name) for a in node.names]
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            for line in node.value.splitlines():
                words = line.strip().split()
                if words[:1] == ["from"] and len(words) >= 4 and words[1].startswith("weightprep"):
                    found += [(words[1], n.strip(",()")) for n in words[3:] if n.strip(",()")]
    for module, name in found:
        assert hasattr(importlib.import_module(module), name), f"{script}: {module}.{name}"
