"""`weightprep run RECIPE` and `weightprep recipes`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from weightprep.cli.common import make_progress, quiet_libraries, run_core


def _size(n: int | None) -> str:
    from weightprep.io.atomic import human_bytes

    return "?" if n is None else human_bytes(n)


def _secs(s: float | None) -> str:
    if s is None:
        return "?"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min"


def print_plan(plan, workdir: Path) -> None:
    typer.echo(f"plan for {workdir}:")
    for p in plan:
        typer.echo(f"  {p.action:6} {p.id:14} {p.run:19} {p.reason}")
        if p.action == "run":
            typer.echo(
                f"         disk {_size(p.disk)}, memory {_size(p.memory)}, time {_secs(p.seconds)}"
                f"  ({p.command})"
            )
    todo = [p for p in plan if p.action == "run"]
    disk = sum(p.disk or 0 for p in todo)
    unknown = any(p.disk is None for p in todo)
    mem = max((p.memory or 0 for p in todo), default=0)
    secs = sum(p.seconds or 0 for p in todo)
    typer.echo(
        f"  {len(todo)} to run, {sum(p.action in ('skip', 'pruned') for p in plan)} done: "
        f"disk {_size(disk)}{'+' if unknown else ''}, peak memory {_size(mem)}, "
        f"about {_secs(secs)} (estimates from measured rates)"
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
    plan_only: Annotated[bool, typer.Option("--plan", help="Print the plan and stop.")] = False,
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
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run record as JSON.")] = False,
) -> None:
    """Run a recipe's stages in a work dir: a plan first, a record after, and on a re-run only
    what is not already done and verified.

    Examples:

      weightprep run example

      weightprep run instructblip-vicuna7b --set inputs.llama=~/LLaMA --set inputs.lavis=~/LAVIS --plan
    """
    from weightprep.recipe.engine import Runner
    from weightprep.recipe.schema import apply_sets, resolve

    quiet_libraries(progress=not (quiet or as_json) and sys.stderr.isatty())

    def prepare():
        r = apply_sets(resolve(recipe), list(set_ or []))
        wd = workdir or Path(f"weightprep-{r.name}")
        return Runner(
            r, wd, yes=yes, progress=make_progress(quiet or as_json or not sys.stderr.isatty())
        )

    runner = run_core(prepare)
    plan = run_core(lambda: runner.plan(from_=from_, only=only, redo=tuple(redo or ())))
    if not (quiet or as_json):
        print_plan(plan, runner.workdir)
    if plan_only:
        return
    records = run_core(lambda: runner.run(plan))
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
