"""The `weightprep` command."""

from __future__ import annotations

import sys

import typer

from weightprep import __version__
from weightprep.cli.checks import hash_cmd, manifests_cmd, verify_cmd
from weightprep.cli.convert import convert_llama
from weightprep.cli.delta import apply_delta_cmd, compare_cmd, make_delta_cmd
from weightprep.cli.example import make_example, make_example_delta
from weightprep.cli.fetch import fetch_cmd
from weightprep.cli.inspect import inspect_cmd
from weightprep.cli.lavis import patch_lavis_config_cmd
from weightprep.cli.publish import publish_cmd
from weightprep.cli.run import recipes_app, run_cmd
from weightprep.cli.smoke import make_example_vlm_cmd, smoke_test_cmd

app = typer.Typer(
    name="weightprep",
    help="Prepare and verify large-model weights for vision-language research.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts show [OPTIONAL/PARTS] literally, not as markup
)
app.command("convert-llama")(convert_llama)
app.command("make-example")(make_example)
app.command("make-example-delta")(make_example_delta)
app.command("hash")(hash_cmd)
app.command("verify")(verify_cmd)
app.command("manifests")(manifests_cmd)
app.command("apply-delta")(apply_delta_cmd)
app.command("make-delta")(make_delta_cmd)
app.command("compare")(compare_cmd)
app.command("patch-lavis-config")(patch_lavis_config_cmd)
app.command("smoke-test")(smoke_test_cmd)
app.command("publish")(publish_cmd)
app.command("fetch")(fetch_cmd)
app.command("run")(run_cmd)
app.add_typer(recipes_app, name="recipes")
app.command("make-example-vlm")(make_example_vlm_cmd)
app.command("inspect")(inspect_cmd)


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
    debug: bool = typer.Option(
        False, "--debug", help="Show full tracebacks (for bug reports) instead of one line."
    ),
) -> None:
    if debug:
        import os

        os.environ["WEIGHTPREP_DEBUG"] = "1"


def main(argv: list[str] | None = None) -> None:
    """The `weightprep` entry point: a usage error is one line and a hint, exit 2.

    Click would print the usage synopsis, a `Try ... --help` line and the error: three parts
    for one typo. Example: `main(["hash", "x", "--outptu", "x.yaml"])` prints `error: no such
    option: --outptu (Possible options: --output) (see: weightprep hash --help)`, exit 2.
    """
    try:
        rv = typer.main.get_command(app).main(argv, prog_name="weightprep", standalone_mode=False)
    except typer.TyperException as exc:  # Click's UsageError and its kind
        ctx = getattr(exc, "ctx", None)
        message = exc.format_message()
        if ctx is not None and message == ctx.get_help():  # no_args_is_help: the help itself
            typer.echo(message, err=True)
            sys.exit(exc.exit_code)
        where = ctx.command_path if ctx is not None else "weightprep"
        typer.echo(f"error: {_sentence(message)} (see: {where} --help)", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        sys.exit(1)
    # an Exit is returned, not raised, when standalone_mode is off: keep its code
    sys.exit(rv if isinstance(rv, int) else 0)


def _sentence(message: str) -> str:
    """Click's message as one line in our style: lower-case start, no closing period."""
    line = " ".join(message.split())
    if line[:2].istitle():  # "Missing argument", not "NAME" or "'--x'"
        line = line[0].lower() + line[1:]
    return line.removesuffix(".")
