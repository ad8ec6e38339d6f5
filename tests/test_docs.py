"""The docs' commands are real: every `weightprep SUBCOMMAND --option` in a code block of the
README and docs/ names a command and options the CLI has, and every `make TARGET` exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from weightprep.cli.app import app

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL = {"bash", "sh", "console", ""}


def _blocks(text: str) -> list[str]:
    """The shell code blocks of a Markdown page (fences tracked line by line, so a closing fence
    is never taken for an opening one)."""
    out, current, lang = [], None, None
    for line in text.splitlines():
        fence = re.match(r"^\s*```(\S*)", line)
        if fence and current is None:
            current, lang = [], fence.group(1)
        elif fence:
            if lang in SHELL:
                out.append("\n".join(current) + "\n")
            current = None
        elif current is not None:
            current.append(line)
    return out


def _commands(text: str) -> list[str]:
    out = []
    for block in _blocks(text):
        joined = re.sub(r"\\\n\s*", " ", block)
        pending = ""
        for line in joined.splitlines():
            line = line.strip().removeprefix("$ ").removeprefix("!")
            if pending:  # a usage synopsis continued on the next lines
                if line.startswith("["):
                    pending += " " + line
                    continue
                out.append(pending)
                pending = ""
            m = re.search(r"(?:^|&&\s*|\|\s*)(weightprep\s.*)", line)
            if m:
                pending = m.group(1).split(" && ")[0].split(" | ")[0].split("  #")[0]
        if pending:
            out.append(pending)
    return out


def _cli():
    return typer.main.get_command(app)


def _options(cmd) -> set[str]:
    opts = {"--help"}
    for p in cmd.params:
        opts |= {o for o in [*p.opts, *p.secondary_opts] if o.startswith("--")}
    return opts


def _found() -> list[tuple[str, str]]:
    return [(p.name, c) for p in PAGES for c in _commands(p.read_text())]


@pytest.mark.parametrize("page,line", _found())
def test_documented_command_exists(page, line):
    words = shlex.split(line.replace("[", " ").replace("]", " ").replace("|", " "), posix=True)
    assert words[0] == "weightprep"
    group = _cli()
    while len(words) > 2 and words[1] == "--debug":  # a global option before the command
        words.pop(1)
    name = words[1]
    if name.startswith("-"):
        assert name in ("--help", "--version", "--debug"), line
        return
    assert name in group.commands, f"{page}: {line}: no command {name!r}"
    cmd = group.commands[name]
    rest = words[2:]
    if hasattr(cmd, "commands") and rest and rest[0] in cmd.commands:  # a group: recipes show
        cmd = cmd.commands[rest[0]]
    known = _options(cmd)
    for w in rest:
        if w.startswith("--") and len(w) > 2:
            opt = w.split("=")[0]
            assert opt in known, f"{page}: {line}: {name} has no option {opt}"


def test_every_page_has_commands_and_make_targets_exist():
    assert len(_found()) >= 40
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.M))
    for page in PAGES:
        for block in _blocks(page.read_text()):
            for m in re.finditer(r"(?:^|\s)make ([a-z][a-z-]+)", block):
                assert m.group(1) in targets, f"{page.name}: make {m.group(1)}"
