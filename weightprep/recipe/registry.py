"""What a stage kind is: one declaration (`Kind`) per kind, in `recipe/stages.py`.

A declaration says everything the engine needs and nothing is said twice:
- `options`: the `with:` keys, each named and typed as the command's own parameter (a test
  holds them to `weightprep KIND --help`'s parameters), which are positional, which required;
- what it reads (its `Path` options; `only_reads` narrows an input to the files it opens) and
  writes (`writes_folder`: a folder of its own under the work dir; `edits`: a file it changes in
  place, such as LAVIS's config);
- `estimate`: disk, memory and time from the sizes of what it reads;
- `preflight`: its cheap checks, run before any stage starts (and by `--plan`);
- `run`: how it runs (weightprep's core, in-process), returning what the record keeps:
  `checks` (every check's result in words), `compared`, figures, and `links` (files the record
  links to, such as a report).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from weightprep.errors import InputError
from weightprep.progress import Progress


@dataclass(frozen=True)
class Opt:
    """One `with:` key: the command's parameter of the same name (or `param`) and type."""

    name: str
    type: type  # str, int, float, bool, Path, or list (a repeatable TEXT option)
    required: bool = False
    positional: bool = False  # an argument of the command, in declaration order
    param: str | None = None  # the command's parameter name, where the recipe's key differs

    @property
    def command_param(self) -> str:
        return self.param or self.name


@dataclass(frozen=True)
class Estimate:
    disk: int | None  # bytes the stage adds (None: unknown)
    memory: int | None  # peak resident bytes
    seconds: float | None
    disk_at: Path | None = None  # where those bytes go, when not under the work dir


@dataclass(frozen=True)
class Check:
    """One preflight check's result, in words."""

    what: str  # "inputs.llama", "publish hf://me/x", "disk", ...
    ok: bool
    detail: str
    exit_code: int = 2  # when not ok: 2 bad input, 3 the machine (disk, memory, network)


@dataclass
class Context:
    """What a running stage gets besides its options."""

    progress: Progress
    record: str | None = None  # the run record so far (RUN.md), for a publish stage's model card
    workdir: Path | None = None  # the run's work dir: where a stage puts files for people
    stage_id: str = ""


Sizes = dict[str, int | None]  # option name -> bytes of what it names (known or predicted)


@dataclass(frozen=True)
class Kind:
    name: str  # `run:` in a recipe, and the weightprep command it equals
    options: tuple[Opt, ...]
    run: Callable[[dict, Path | None, Context], dict]
    estimate: Callable[[dict, Sizes], Estimate]
    writes_folder: bool = False
    prunable: bool = False  # keep_intermediate=false may remove its folder once read
    edits: tuple[str, ...] = ()  # options naming what the stage edits itself (keyed by path)
    only_reads: Callable[[dict, Path], list[str] | None] | None = None
    # why it cannot run in this environment (a missing extra), or None; such a stage is planned off
    unavailable: Callable[[], str | None] | None = None
    input_size: Callable[[dict, str, Path], int | None] | None = None
    # its cheap checks: (options, the options naming what does not exist yet) -> checks
    preflight: Callable[[dict, set[str]], list[Check]] | None = None

    def opt(self, name: str) -> Opt:
        return next(o for o in self.options if o.name == name)

    @property
    def required(self) -> set[str]:
        return {o.name for o in self.options if o.required}

    @property
    def optional(self) -> set[str]:
        return {o.name for o in self.options if not o.required}


def coerce(kind: Kind, opts: dict, where: str) -> dict:
    """Resolved `with:` values as the command would take them: "" and None dropped, paths as
    Path (with ~ expanded), numbers and booleans parsed; a value that cannot be is one line."""
    out: dict = {}
    for o in kind.options:
        if o.name not in opts:
            continue
        v = opts[o.name]
        if v is None or v == "" or v == []:
            continue
        try:
            if o.type is bool:
                if isinstance(v, bool):
                    out[o.name] = v
                elif str(v).lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                    out[o.name] = str(v).lower() in ("1", "true", "yes", "on")
                else:
                    raise ValueError
            elif o.type is int:
                out[o.name] = int(str(v))
            elif o.type is float:
                out[o.name] = float(str(v))
            elif o.type is Path:
                out[o.name] = Path(str(v)).expanduser()
            elif o.type is list:
                out[o.name] = [str(x) for x in (v if isinstance(v, list) else [v])]
            else:
                out[o.name] = str(v)
        except ValueError:
            name = {bool: "true or false", int: "an integer", float: "a number"}[o.type]
            raise InputError(f"{where} with.{o.name}: {v!r} is not {name}") from None
    return out


def command_line(kind: Kind, opts: dict, out: Path | None) -> str:
    """The single command a stage equals: `weightprep KIND POSITIONALS [OUT] --flags`."""
    words = ["weightprep", kind.name]
    words += [str(opts[o.name]) for o in kind.options if o.positional and o.name in opts]
    if out is not None:
        words.append(str(out))
    for o in kind.options:
        if o.positional or o.name not in opts:
            continue
        flag, v = "--" + o.command_param.replace("_", "-"), opts[o.name]
        if isinstance(v, bool):
            words += [flag] if v else []
        elif isinstance(v, list):
            for item in v:
                words += [flag, str(item)]
        else:
            words += [flag, str(v)]
    return " ".join(shlex.quote(w) for w in words)


def kinds() -> dict[str, Kind]:
    from weightprep.recipe.stages import KINDS

    return KINDS


def kind(name: str) -> Kind:
    return kinds()[name]
