"""`weightprep run RECIPE` and `weightprep recipes`."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from weightprep.cli.common import quiet_libraries, run_core
from weightprep.cli.progress import make_progress
from weightprep.errors import WeightprepError


def _size(n: int | None) -> str:
    from weightprep.io.atomic import human_bytes

    return "?" if n is None else human_bytes(n)


def _secs(s: float | None) -> str:
    if s is None:
        return "?"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min"


def totals(plan) -> dict:
    todo = [p for p in plan if p.action == "run"]
    return {
        "to_run": len(todo),
        "done": sum(p.action in ("skip", "pruned") for p in plan),
        "disk": sum(p.disk or 0 for p in todo),
        "disk_unknown": [p.id for p in todo if p.disk is None],
        "peak_memory": max((p.memory or 0 for p in todo), default=0),
        "seconds": sum(p.seconds or 0 for p in todo),
    }


def print_checks(checks) -> None:
    if checks:
        typer.echo("preflight:")
    for c in checks:
        typer.echo(f"  {'OK  ' if c.ok else 'FAIL'} {c.what}: {c.detail}")


def print_plan(plan, workdir: Path) -> None:
    typer.echo(f"plan for {workdir}:")
    for p in plan:
        typer.echo(f"  {p.action:6} {p.id:14} {p.run:19} {p.reason}")
        if p.action == "run":
            typer.echo(
                f"         disk {_size(p.disk)}, memory {_size(p.memory)}, time {_secs(p.seconds)}"
                f"  ({p.command})"
            )
    t = totals(plan)
    typer.echo(
        f"  {t['to_run']} to run, {t['done']} done: "
        f"disk {_size(t['disk'])}{'+' if t['disk_unknown'] else ''}, "
        f"peak memory {_size(t['peak_memory'])}, "
        f"about {_secs(t['seconds'])} (estimates from measured rates)"
    )


def run_cmd(
    recipe: Annotated[
        str,
        typer.Argument(
            help="A recipe file, or a shipped recipe's name (`weightprep recipes`).",
            metavar="RECIPE",
        ),
    ],
    workdir: Annotated[
        Path | None,
        typer.Option(
            help="Where stage outputs, state.json, run.json and RUN.md go (default: ./weightprep-NAME).",
            metavar="PATH",
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="KEY=VALUE for a setting, inputs.NAME=VALUE for an input (repeatable).",
            metavar="TEXT",
        ),
    ] = None,
    plan_only: Annotated[
        bool,
        typer.Option(
            "--plan", help="Print the plan and the preflight checks and stop; reads no weights."
        ),
    ] = False,
    from_: Annotated[
        str | None,
        typer.Option(
            "--from", help="Start at this stage (earlier ones must have run).", metavar="TEXT"
        ),
    ] = None,
    only: Annotated[str | None, typer.Option(help="Run only this stage.", metavar="TEXT")] = None,
    redo: Annotated[
        list[str] | None,
        typer.Option(help="Run this stage again even if done (repeatable).", metavar="TEXT"),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="Allow what cannot be undone (a public upload).")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No plan, no stage lines, no bars; errors only.")
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the run record (with --plan: the plan) as JSON on stdout, also when it fails.",
        ),
    ] = False,
) -> None:
    """Run a recipe's stages in a work dir: a plan and a preflight of everything cheap first,
    each stage's start and end as they happen, a record after, and on a re-run only what is
    not already done and verified.

    Examples:

      weightprep run example

      weightprep run instructblip-vicuna7b --set inputs.llama=~/LLaMA --set inputs.lavis=~/LAVIS --plan
    """
    from weightprep.recipe.engine import Runner
    from weightprep.recipe.schema import apply_sets, resolve

    # inside a run only weightprep's own bars show: transformers' and huggingface_hub's are off
    quiet_libraries(progress=False)
    bars = not (quiet or as_json) and sys.stderr.isatty()

    def failing(fn, doc=None):
        """fn(); on our error, --json prints a JSON document naming it before the one line."""
        try:
            return fn()
        except (WeightprepError, KeyboardInterrupt, OSError) as exc:
            if as_json:
                out = doc() if doc else {}
                out.update(ok=False, error=str(exc) or type(exc).__name__)
                typer.echo(json.dumps({"ok": False, **out}, indent=1, default=str))

            return run_core(partial(_reraise, exc))

    def prepare():
        r = apply_sets(resolve(recipe), list(set_ or []))
        wd = workdir or Path(f"weightprep-{r.name}")
        return Runner(
            r,
            wd,
            yes=yes,
            progress=make_progress(not bars),
            listener=StageLines(show=not quiet, tty=sys.stderr.isatty()),
        )

    runner = failing(prepare)
    plan = failing(
        lambda: runner.plan(from_=from_, only=only, redo=tuple(redo or ())),
        lambda: {"recipe": runner.recipe.name, "workdir": str(runner.workdir)},
    )

    def plan_doc() -> dict:
        return {
            "recipe": runner.recipe.name,
            "workdir": str(runner.workdir),
            "failed_stage": None,
            "preflight": [asdict(c) for c in runner.checks],
            "plan": [asdict(p) for p in plan],
            "totals": totals(plan),
        }

    if not (quiet or as_json):
        print_plan(plan, runner.workdir)
    refused: WeightprepError | None = None
    try:
        runner.preflight(plan)
    except WeightprepError as exc:
        refused = exc
    if not (quiet or as_json):
        print_checks(runner.checks)
    if refused is not None:
        failing(partial(_reraise, refused), plan_doc)
    if plan_only:
        if as_json:
            typer.echo(json.dumps({"ok": True, **plan_doc()}, indent=1, default=str))
        return

    def record() -> dict:
        try:
            return json.loads((runner.workdir / "run.json").read_text())
        except (OSError, ValueError):
            return plan_doc()

    records = failing(lambda: runner.run(plan), record)
    if as_json:
        typer.echo((runner.workdir / "run.json").read_text())
        return
    if quiet:
        return
    for r in records:
        typer.echo(f"  {r.status:8} {r.id:14} {r.seconds:6.1f} s  {r.output or ''}")
    ran = sum(r.status.startswith("ran") for r in records)
    done = sum(r.status.startswith(("skipped", "pruned")) for r in records)
    typer.echo(
        f"done: {ran} stage(s) ran, {done} already done (skipped); record: "
        f"{runner.workdir / 'RUN.md'} and run.json"
    )


def _reraise(exc: BaseException):
    raise exc


class StageLines:
    """Each stage's start and end as one plain line on stderr, when they happen (a terminal, a
    pipe or a log file alike); skipped stages in one line each."""

    def __init__(self, show: bool, tty: bool) -> None:
        self.show = show
        self.tty = tty

    def _echo(self, text: str) -> None:
        if self.show:
            typer.echo(text, err=True)

    def started(self, p, index: int, total: int) -> None:
        import time

        self._echo(
            f"[{index}/{total}] {p.id} ({p.run}): started {time.strftime('%H:%M:%S')}: {p.command}"
        )

    def finished(self, p, r, index: int, total: int) -> None:
        head = f"[{index}/{total}] {p.id} ({p.run}):"
        if r.status == "failed":
            self._echo(f"{head} FAILED after {r.seconds:.1f} s: {r.error}")
        elif r.status == "ran":
            wrote = f", wrote {_size(r.output_bytes)} to {r.output}" if r.output else ""
            self._echo(f"{head} done in {r.seconds:.1f} s{wrote}")
        elif r.status == "off":
            self._echo(f"{head} off ({p.reason})")
        else:
            why = (
                p.reason
                if r.status == p.action or p.action != "run"
                else "inputs came out the same"
            )
            self._echo(f"{head} {r.status} ({why})")


recipes_app = typer.Typer(help="The recipes that ship with weightprep.", no_args_is_help=False)


@recipes_app.callback(invoke_without_command=True)
def recipes_list(ctx: typer.Context) -> None:
    """List the shipped recipes."""
    if ctx.invoked_subcommand is not None:
        return
    import yaml

    from weightprep.recipe.schema import shipped

    for name, text in shipped().items():
        desc = " ".join(str(yaml.safe_load(text).get("description", "")).split())
        typer.echo(f"{name:24} {desc[:100]}{'…' if len(desc) > 100 else ''}")


@recipes_app.command("show")
def recipes_show(
    name: Annotated[str, typer.Argument(help="A shipped recipe's name.", metavar="NAME")],
) -> None:
    """Print a shipped recipe, to copy and edit."""
    from weightprep.recipe.schema import RecipeError, shipped

    def text() -> str:
        known = shipped()
        if name not in known:
            raise RecipeError(f"{name}: not a shipped recipe ({', '.join(known)})")
        return known[name]

    typer.echo(run_core(text), nl=False)
