"""The stage registry: each kind's declared options are its command's own parameters (names,
types, argument or option), so that the two cannot drift apart."""

from __future__ import annotations

import types
import typing
from pathlib import Path

import typer

from weightprep.cli.app import app
from weightprep.recipe.registry import Kind, Opt, command_line
from weightprep.recipe.stages import KINDS


def _python_type(annotation) -> type:
    """`str | None` -> str, `list[str] | None` -> list, `Path` -> Path."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    return typing.get_origin(annotation) or annotation


def mismatches(kind: Kind) -> list[str]:
    """How `kind`'s declaration differs from `weightprep KIND`: a missing parameter, another
    type, an option declared positional (or the reverse)."""
    command = typer.main.get_command(app).commands.get(kind.name)  # type: ignore[attr-defined]
    if command is None:
        return [f"{kind.name}: no such command"]
    params = {p.name: p for p in command.params}
    callback = next(c.callback for c in app.registered_commands if c.name == kind.name)
    hints = typing.get_type_hints(callback)
    out = []
    for o in kind.options:
        p = params.get(o.command_param)
        if p is None:
            out.append(f"{kind.name} {o.name}: the command has no parameter {o.command_param}")
            continue
        if _python_type(hints[o.command_param]) is not o.type:
            out.append(
                f"{kind.name} {o.name}: declared {o.type.__name__}, the command takes "
                f"{hints[o.command_param]}"
            )
        if (p.param_type_name == "argument") != o.positional:
            out.append(
                f"{kind.name} {o.name}: positional={o.positional}, the command: {p.param_type_name}"
            )
        if o.type is list and not p.multiple:
            out.append(f"{kind.name} {o.name}: a list, the command's option is not repeatable")
    return out


def test_every_kind_declares_its_commands_own_parameters():
    assert {k: mismatches(k) for k in KINDS.values() if mismatches(k)} == {}


def test_the_check_catches_drift():
    ok = KINDS["make-example"]
    assert mismatches(ok) == []
    wrong_type = Kind("make-example", (Opt("seed", str),), ok.run, ok.estimate)
    renamed = Kind("make-example", (Opt("colour", int),), ok.run, ok.estimate)
    positional = Kind("make-example", (Opt("seed", int, positional=True),), ok.run, ok.estimate)
    assert "declared str, the command takes <class 'int'>" in mismatches(wrong_type)[0]
    assert "no parameter colour" in mismatches(renamed)[0]
    assert "positional=True" in mismatches(positional)[0]


def test_command_lines_use_the_commands_flags():
    k = KINDS["apply-delta"]
    line = command_line(
        k,
        {
            "base": Path("b"),
            "delta": "d",
            "verify": True,
            "allow_base_mismatch": False,
            "max_perplexity": 9.5,
        },
        Path("out"),
    )
    assert line == "weightprep apply-delta b d out --verify --max-perplexity 9.5"
    publish = command_line(
        KINDS["publish"], {"model": Path("m"), "to": "hf://me/x", "public": True}, None
    )
    assert publish == "weightprep publish m hf://me/x --public"
