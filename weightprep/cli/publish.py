"""`weightprep publish`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from weightprep.cli.common import hub_bars, parse_size, run_core
from weightprep.cli.progress import make_progress


def publish_cmd(
    model_dir: Annotated[
        Path,
        typer.Argument(
            help="The folder to publish (convert-llama / apply-delta output).", metavar="MODEL_DIR"
        ),
    ],
    dest: Annotated[
        str,
        typer.Argument(
            help="hf://NAMESPACE/NAME, gdrive://FOLDER_ID[/SUB/PATH] (gdrive://root is My Drive), or a folder.",
            metavar="DEST",
        ),
    ],
    public: Annotated[
        bool,
        typer.Option(
            help="Make a new Hub repo public. Default private: LLaMA-derived weights are under "
            "Meta's research licence and may only be shared with people who have permission."
        ),
    ] = False,
    revision: Annotated[
        str | None, typer.Option(help="Hub branch to commit to.", metavar="TEXT")
    ] = None,
    message: Annotated[str | None, typer.Option(help="Hub commit message.", metavar="TEXT")] = None,
    create_pr: Annotated[
        bool, typer.Option(help="Open a Hub pull request instead of committing.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option(help="Verify and say what would be sent; send nothing.")
    ] = False,
    credentials: Annotated[
        Path | None,
        typer.Option(
            help="Drive: a service-account or authorized-user JSON (default: Application Default Credentials, then GOOGLE_OAUTH_ACCESS_TOKEN).",
            metavar="PATH",
        ),
    ] = None,
    chunk_size: Annotated[
        str, typer.Option(help="Drive upload chunk (a multiple of 256 KiB).", metavar="TEXT")
    ] = "64MiB",
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Verify MODEL_DIR against its own SHA256SUMS / manifest, send it to DEST, and check every
    file against the destination's own record of it. Re-running sends only what differs.

    Examples:

      weightprep publish vicuna-7b hf://me/vicuna-7b

      weightprep publish vicuna-7b gdrive://root/models/vicuna-7b

      weightprep publish vicuna-7b /content/drive/MyDrive/vicuna-7b
    """
    from weightprep.publish.run import Options, publish

    size = parse_size(chunk_size)
    if size % (256 * 1024):
        raise typer.BadParameter(
            f"{chunk_size}: must be a multiple of 256 KiB", param_hint="--chunk-size"
        )
    show = not (quiet or as_json) and sys.stderr.isatty()
    hub_bars(show)
    opts = Options(public, revision, message, create_pr, dry_run, credentials, size)
    result = run_core(lambda: publish(model_dir, dest, opts, make_progress(not show)))
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    if quiet:
        return
    if result.checked_by:
        typer.echo(f"verified {model_dir} against its {result.checked_by}")
    if result.hashed:
        typer.echo(
            f"hashed {len(result.hashed)} file(s) no manifest lists: {', '.join(result.hashed[:5])}"
        )
    for f in result.files:
        if f.status != "up-to-date":
            typer.echo(f"{f.status:13} {f.path}")
    for note in result.notes:
        typer.echo(f"note: {note}")
    from weightprep.io.atomic import human_bytes

    if result.dry_run:
        typer.echo(f"dry run: nothing sent to {result.dest}")
    elif result.up_to_date:
        typer.echo(
            f"up to date: {result.dest} already holds all {len(result.files)} files, verified"
        )
    else:
        typer.echo(
            f"published {model_dir} to {result.dest}: {human_bytes(result.bytes_sent)} sent in "
            f"{result.seconds:.1f} s; all {len(result.files)} files verified at the destination"
        )
