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


# Exit codes: one table (docs/reliability.md#exit-codes); every page's claims are checked against
# it. A claim is `exit N` / `exits N` / `exit code is N` / `Exit codes: N ...`, continued by
# `, M ...` or `; M ...` items up to the end of its sentence; each item's text (up to the next
# item or semicolon) is what it claims.
TABLE_PAGE = REPO / "docs" / "reliability.md"
_CLAIM = re.compile(r"\bexit(?:s| code is| codes)?:?\s+(\d+)\b", re.I)
_NEXT = re.compile(r"[,;]\s+(\d+)\s+(?=[A-Za-z(`])")
_END = re.compile(r"\.(?:\s|$)|\||\n\s*\n|\n- ")  # a sentence, table cell, paragraph, item
# what an item says -> the code it must have; each phrase is in that code's row of the table
_MEANS = {
    3: r"disk full|not enough (?:free )?disk|disk space|free space|read-only|permission denied"
    r"|the disk has|quota|kept failing|still failing",
    130: r"interrupt|ctrl-c",
}


def _table() -> dict[int, str]:
    text = TABLE_PAGE.read_text()
    section = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\|\s*(\d+)\s*\|(.*)\|\s*$", section, re.M)
    return {int(code): rest for code, rest in rows}


def _claims(text: str) -> list[tuple[int, str]]:
    """(code, what the page says it means) for every exit-code claim on a page."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # commands, not claims
    out = []
    for m in _CLAIM.finditer(text):
        end = _END.search(text, m.end())
        sentence = text[m.start() : end.start() if end else len(text)]
        another = _CLAIM.search(sentence, 1)
        sentence = sentence[: another.start()] if another else sentence
        items = [(int(m.group(1)), 0, m.end() - m.start())]  # (code, where, its text starts)
        items += [(int(n.group(1)), n.start(), n.end()) for n in _NEXT.finditer(sentence)]
        for i, (code, _, at) in enumerate(items):
            stop = items[i + 1][1] if i + 1 < len(items) else len(sentence)
            says = sentence[at:stop].split(";")[0]  # a semicolon ends an item
            out.append((code, " ".join(says.split())))
    return out


def test_the_exit_code_table():
    table = _table()
    assert sorted(table) == [0, 1, 2, 3, 130]
    for code, pattern in _MEANS.items():  # the phrases the pages are held to are the table's own
        assert re.search(pattern, table[code], re.I), (code, table[code])


@pytest.mark.parametrize("page", [p for p in PAGES if p != TABLE_PAGE], ids=lambda p: p.name)
def test_exit_codes_a_page_claims_match_the_table(page):
    table = _table()
    text = page.read_text()
    claims = _claims(text)
    for code, says in claims:
        assert code in table, f"{page.name}: exit {code} ({says!r}) is not in the table"
        for want, pattern in _MEANS.items():
            if re.search(pattern, says, re.I):
                assert code == want, f"{page.name}: exit {code} for {says!r}: the table says {want}"
    if any(code != 0 for code, _ in claims):
        assert "reliability.md#exit-codes" in text, f"{page.name}: link the exit-code table"


def test_claims_are_found():
    """The claim reader on the shapes the pages use."""
    got = _claims(
        "Exit codes: 0 done; 1 a check failed; 2 usage, or not enough disk; 130 interrupted.\n"
        "It exits 1 naming the file. Exit 0 when all match, 1 on any mismatch, 2 on bad usage."
    )
    assert got == [
        (0, "done"),
        (1, "a check failed"),
        (2, "usage, or not enough disk"),
        (130, "interrupted"),
        (1, "naming the file"),
        (0, "when all match"),
        (1, "on any mismatch"),
        (2, "on bad usage"),
    ]
