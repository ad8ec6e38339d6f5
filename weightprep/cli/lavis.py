"""`weightprep patch-lavis-config`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from weightprep.cli.common import run_core


def patch_lavis_config_cmd(
    model_dir: Annotated[
        Path | None,
        typer.Argument(help="The prepared Vicuna folder (HF format).", metavar="MODEL_DIR"),
    ] = None,
    lavis: Annotated[
        Path | None,
        typer.Option(
            help="LAVIS source checkout, its lavis/ package folder, or the yaml itself. Default: the installed lavis package.",
            metavar="PATH",
        ),
    ] = None,
    model_type: Annotated[
        str, typer.Option(help="vicuna7b or vicuna13b.", metavar="TEXT")
    ] = "vicuna7b",
    dry_run: Annotated[bool, typer.Option(help="Print the diff; write nothing.")] = False,
    restore: Annotated[
        bool,
        typer.Option(help="Put back the original config (from the backup the first patch kept)."),
    ] = False,
    check: Annotated[
        bool, typer.Option(help="Check that MODEL_DIR is loadable by LAVIS first.")
    ] = True,
    verify: Annotated[
        bool, typer.Option(help="Also hash MODEL_DIR against its manifest.yaml / SHA256SUMS.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Point LAVIS's InstructBLIP config (model.llm_model) at MODEL_DIR, changing nothing else.

    Exit 0 patched or already set; 1 MODEL_DIR failed its check; 2 usage, not found, bad config.

    Examples:

      weightprep patch-lavis-config vicuna-7b --lavis ~/LAVIS

      weightprep patch-lavis-config vicuna-13b --model-type vicuna13b --dry-run

      weightprep patch-lavis-config --restore --lavis ~/LAVIS
    """
    from weightprep.errors import InputError
    from weightprep.lavis import patch_lavis_config, restore_lavis_config

    def go():
        if restore:
            return restore_lavis_config(lavis=lavis, model_type=model_type)
        if model_dir is None:
            raise InputError("MODEL_DIR is required (or pass --restore)")
        return patch_lavis_config(
            model_dir,
            lavis=lavis,
            model_type=model_type,
            dry_run=dry_run,
            check=check,
            verify=verify,
        )

    r = run_core(go)
    if json_out:
        typer.echo(
            json.dumps(
                {
                    "config": str(r.config),
                    "status": r.status,
                    "old": r.old,
                    "new": r.new,
                    "checks": list(r.checks),
                    "backup": str(r.backup) if r.backup else None,
                    "note": r.note,
                },
                indent=2,
            )
        )
        return
    for c in r.checks:
        typer.echo(f"check: {c}")
    if r.status == "dry run":
        typer.echo(r.diff, nl=False)
        typer.echo(f"dry run: {r.config} not changed")
    elif r.status == "already set":
        typer.echo(f"already set: {r.config} llm_model = {r.new}")
    elif r.status == "restored":
        typer.echo(f"restored {r.config} from {r.backup}")
    else:
        typer.echo(
            f"patched {r.config}: llm_model {r.old!r} -> {r.new!r} (original kept as {r.backup})"
        )
        if r.note:
            typer.echo(f"note: {r.note}")
