"""`weightprep hash`, `weightprep verify`, `weightprep manifests`."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from weightprep.cli.common import run_core
from weightprep.cli.progress import make_progress


class HashFormat(StrEnum):
    yaml = "yaml"
    sha256sum = "sha256sum"


def hash_cmd(
    folder: Annotated[Path, typer.Argument(help="Folder to describe.", metavar="FOLDER")],
    output: Annotated[
        str,
        typer.Option(
            "-o",
            "--output",
            help="Manifest file to write; - (the default) is standard output.",
            metavar="TEXT",
        ),
    ] = "-",
    tensors: Annotated[
        bool, typer.Option(help="Also record every tensor's dtype, shape and sha256.")
    ] = False,
    format: Annotated[
        HashFormat, typer.Option(help="yaml (ours) or sha256sum (`sha256sum -c` reads it).")
    ] = HashFormat.yaml,
    name: Annotated[
        str | None, typer.Option(help="Manifest name (default: the folder's name).", metavar="TEXT")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Hash every file under FOLDER (in parallel) and write a manifest, to standard output
    unless -o names a file.

    Examples:

      weightprep hash llama-7b-hf -o llama-7b-hf.yaml --tensors

      weightprep hash ~/LLaMA/7B --format sha256sum > SHA256SUMS
    """
    from weightprep.checksum import hash_tree, tensor_digests
    from weightprep.io.atomic import write_atomic
    from weightprep.manifest import Manifest, dump_sums, dump_yaml

    def go() -> Manifest:
        if format is HashFormat.sha256sum and tensors:
            from weightprep.errors import InputError

            raise InputError("--tensors needs --format yaml (sha256sum lists files only)")
        progress = make_progress(quiet)
        files = hash_tree(folder, progress)
        rel_out = _inside(folder, Path(output)) if not to_stdout else None
        if rel_out:
            files.pop(rel_out, None)
        m = Manifest(
            name or folder.resolve().name,
            files,
            tensors=tensor_digests(folder) if tensors else {},
        )
        text = dump_sums(m) if format is HashFormat.sha256sum else dump_yaml(m)
        if not to_stdout:
            write_atomic(Path(output), text.encode())
        return m, text

    to_stdout = output == "-"
    m, text = run_core(
        go,
        interrupted=f"interrupted while hashing {folder}: no manifest was written"
        + ("" if to_stdout else f" ({output} is as it was)")
        + "; run the same command again",
    )
    extra = f", {len(m.tensors)} tensors" if m.tensors else ""
    if to_stdout:
        typer.echo(text, nl=False)
    elif not quiet:
        typer.echo(f"wrote {output}: {len(m.files)} files{extra}")


def _inside(folder: Path, path: Path) -> str | None:
    """`path` relative to `folder` when it lies inside it, else None."""
    from weightprep.io.atomic import is_inside

    if not is_inside(path, folder):
        return None
    return path.resolve().relative_to(folder.resolve()).as_posix()


def verify_cmd(
    folder: Annotated[
        str,
        typer.Argument(
            help="Folder to check, or a published copy: hf://NAMESPACE/NAME or gdrive://FOLDER_ID[/PATH] (checked from the remote's listing, weights not downloaded).",
            metavar="FOLDER",
        ),
    ],
    manifest: Annotated[
        str,
        typer.Option(
            "--manifest",
            "-m",
            help="A shipped manifest's name (see `weightprep manifests`), or a file: our YAML, a SHA256SUMS, or a checklist.chk.",
            metavar="TEXT",
        ),
    ],
    tensors: Annotated[
        bool, typer.Option(help="Check tensor digests (container- and sharding-independent).")
    ] = False,
    strict: Annotated[
        bool, typer.Option(help="Files not in the manifest fail the check too.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only problems.")] = False,
    revision: Annotated[
        str | None, typer.Option(help="hf://: the branch or commit.", metavar="TEXT")
    ] = None,
    credentials: Annotated[
        Path | None,
        typer.Option(help="gdrive://: service-account or authorized-user JSON.", metavar="PATH"),
    ] = None,
) -> None:
    """Check FOLDER against a manifest. Exit 0 all listed files match, 1 mismatch/missing, 2 bad input.

    Examples:

      weightprep verify ~/LLaMA --manifest llama-7b

      weightprep verify ~/LLaMA/7B --manifest ~/LLaMA/7B/checklist.chk

      weightprep verify vicuna-7b --manifest vicuna.yaml --tensors
    """
    from weightprep.checksum import verify_files, verify_tensors
    from weightprep.io.outputs import MANIFEST_NAME, SUMS_NAME
    from weightprep.manifest import resolve_manifest
    from weightprep.remote.location import is_remote

    remote = is_remote(folder)

    def go():
        m, path = resolve_manifest(manifest)
        if remote:
            from weightprep.verify_remote import verify_remote

            if tensors:
                from weightprep.errors import InputError

                raise InputError("--tensors needs the weights: download them (`weightprep fetch`)")
            ignore = frozenset({path.name} if path else ())
            report = verify_remote(
                folder, m, strict=strict, ignore=ignore, revision=revision, credentials=credentials
            )
            return m, report, ()
        rel = _inside(Path(folder), path) if path else None
        # A folder's own manifest.yaml and SHA256SUMS describe it and cannot list themselves:
        # never EXTRA (when the manifest lists them, they are still checked).
        own = {MANIFEST_NAME, SUMS_NAME}
        report = verify_files(
            Path(folder),
            m,
            strict=strict,
            ignore=frozenset(own | ({rel} if rel else set())),
            progress=make_progress(quiet or json_out),
        )
        tens = verify_tensors(Path(folder), m) if tensors else ()
        return m, report, tens

    m, report, tens = run_core(
        go,
        interrupted=f"interrupted while verifying {folder}: nothing was reported or written; "
        "run the same command again to check it",
    )
    tensors_ok = all(r.status == "OK" or (r.status == "EXTRA" and not strict) for r in tens)
    ok = report.ok and tensors_ok
    if json_out:
        typer.echo(
            json.dumps(
                {
                    "folder": str(folder),
                    "manifest": m.name,
                    "ok": ok,
                    "files": [
                        {"path": r.path, "status": r.status, "detail": r.detail}
                        for r in report.results
                    ],
                    "tensors": [
                        {"name": r.path, "status": r.status, "detail": r.detail} for r in tens
                    ],
                },
                indent=2,
            )
        )
    else:
        for r in (*report.results, *tens):
            if quiet and r.status == "OK":
                continue
            if r.status == "EXTRA" and quiet and not strict:
                continue
            typer.echo(
                f"{r.status:8} {r.path}"
                + (f"  ({r.detail})" if r.detail and r.status != "OK" else "")
            )
        if not quiet:
            counts = ", ".join(
                f"{report.count(s)} {s}" for s in ("OK", "MISMATCH", "MISSING", "EXTRA")
            )
            tline = (
                f"; tensors: {sum(r.status == 'OK' for r in tens)}/{len(m.tensors)} OK"
                if tens
                else ""
            )
            typer.echo(
                f"{'verified' if ok else 'FAILED'}: {folder} against {m.name}: {counts}{tline}"
            )
    raise typer.Exit(0 if ok else 1)


def manifests_cmd() -> None:
    """List the manifests shipped with weightprep.

    Example:

      weightprep manifests
    """
    from weightprep.manifest import shipped

    for name, m in shipped().items():
        typer.echo(f"{name:12} {len(m.files):3} files  {first_sentence(m.description)}")


def first_sentence(text: str) -> str:
    """The description's first sentence, whole, on one line (YAML folds it over several)."""
    flat = " ".join(text.split())
    depth, end = 0, len(flat)
    for i, c in enumerate(flat):  # a full stop inside parentheses does not end it
        depth += (c == "(") - (c == ")")
        if c == "." and depth == 0 and (i + 1 == len(flat) or flat[i + 1] == " "):
            end = i + 1
            break
    return flat[:end]
