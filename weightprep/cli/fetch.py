"""`weightprep fetch`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from weightprep.cli.common import hub_bars, parse_size, run_core
from weightprep.cli.progress import make_progress


def fetch_cmd(
    source: Annotated[
        str,
        typer.Argument(
            metavar="SOURCE",
            help="hf://NAMESPACE/NAME or gdrive://FOLDER_ID[/SUB/PATH] (gdrive://root is My Drive).",
        ),
    ],
    out_dir: Annotated[
        Path, typer.Argument(metavar="DIR", help="The folder to create (must not exist).")
    ],
    revision: Annotated[
        str | None,
        typer.Option(help="hf://: the branch, tag or commit (default main).", metavar="TEXT"),
    ] = None,
    manifest: Annotated[
        str | None,
        typer.Option(
            "--manifest",
            "-m",
            help="Also check against this: a shipped manifest's name (see `weightprep manifests`), or a file: our YAML, a SHA256SUMS, or a checklist.chk.",
            metavar="TEXT",
        ),
    ] = None,
    credentials: Annotated[
        Path | None,
        typer.Option(
            help="gdrive://: a service-account or authorized-user JSON (default: Application Default Credentials, then GOOGLE_OAUTH_ACCESS_TOKEN).",
            metavar="PATH",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(help="Replace DIR if it exists (only once the new copy is verified)."),
    ] = False,
    chunk_size: Annotated[
        str, typer.Option(help="gdrive://: bytes per Range request (e.g. 64MiB).", metavar="TEXT")
    ] = "64MiB",
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Download published weights into DIR and verify every file against the remote's own
    record of it (and --manifest). An interrupted fetch leaves only DIR.partial, which a
    re-run continues. Exit 0 fetched and verified, 1 a file did not match, 2 bad input, 3
    the remote kept failing.

    Examples:

      weightprep fetch hf://me/vicuna-7b vicuna-7b

      weightprep fetch gdrive://root/models/vicuna-7b vicuna-7b -m vicuna-7b.yaml
    """
    from weightprep.fetch import fetch

    show = not (quiet or as_json) and sys.stderr.isatty()
    if source.startswith("hf://"):
        hub_bars(show)
    result = run_core(
        lambda: fetch(
            source,
            out_dir,
            revision=revision,
            manifest=manifest,
            credentials=credentials,
            force=force,
            chunk_size=parse_size(chunk_size),
            progress=make_progress(not show),
        ),
        interrupted=f"interrupted while downloading {source}: nothing is under {out_dir}; the "
        f"files already downloaded are kept in {out_dir}.partial, and the same command "
        "continues from them",
    )
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    if quiet:
        return
    from weightprep.io.atomic import human_bytes

    for f in result.files:
        if f.status != "downloaded":
            typer.echo(f"{f.status:10} {f.path}")
    typer.echo(
        f"fetched {result.source} to {result.dir}: {len(result.files)} files, "
        f"{human_bytes(result.total_bytes)} ({human_bytes(result.bytes_downloaded)} downloaded) "
        f"in {result.seconds:.1f} s; verified against {' and '.join(result.verified_against)}"
    )
