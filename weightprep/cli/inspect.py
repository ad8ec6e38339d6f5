"""`weightprep inspect`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from weightprep.cli.common import run_core
from weightprep.cli.progress import make_progress


def _ids(value: object) -> str:
    if value is None:
        return "-"
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def _tokens(r) -> list[str]:
    st = r.special_tokens
    if not st.sources:
        return ["tokens   none stated (no config or tokenizer files)"]
    files = list(st.sources)
    if st.agree:
        roles = []
        for role in ("bos", "eos", "unk", "pad"):
            said = [row[role] for row in st.sources.values() if row.get(role) is not None]
            if said:
                text = st.tokens.get(role)
                roles.append(f"{role} {_ids(said[0])}" + (f" {text}" if text else ""))
        where = f"{', '.join(files)} agree" if len(files) > 1 else f"from {files[0]}"
        return [f"tokens   {', '.join(roles) or 'none'}: {where}"]
    width = max(len(f) for f in files)
    out = ["tokens   disagree:", f"           {'':{width}}   bos   eos   unk   pad"]
    for name, row in st.sources.items():
        cells = "".join(f"{_ids(row.get(role)):>6}" for role in ("bos", "eos", "unk", "pad"))
        out.append(f"           {name:{width}} {cells}")
    return out


def _evidence(label: str, value: str, items: tuple[str, ...]) -> list[str]:
    """One line when there is one piece of evidence; else one line for each, indented."""
    if len(items) <= 1:
        return [f"  {label:8} {value}" + (f": {items[0]}" if items else "")]
    return [f"  {label:8} {value}:"] + [f"             {item}" for item in items]


def _print(r) -> None:
    from weightprep.io.atomic import human_bytes

    echo = typer.echo
    family = r.family or "family not told"
    size = r.size or "size not told"
    echo(f"{r.folder}: {r.kind}, {family}, {size}")
    for label, value, items in (
        ("kind", r.kind, r.kind_evidence),
        ("family", r.family or "not told", r.family_evidence),
        ("size", r.size or "not told", r.size_evidence),
    ):
        if items:
            for line in _evidence(label, value, items):
                echo(line)
    if r.weights:
        bad = sum(w.status != "ok" for w in r.weights)
        total = sum(w.bytes for w in r.weights)
        verdict = f"{bad} not weights (below)" if bad else "all look like weights"
        echo(f"  weights  {len(r.weights)} file(s), {human_bytes(total)}: {verdict}")
    for line in _tokens(r):
        echo(f"  {line}")
    for m in r.manifests:
        echo(f"  sums     {m.path}: {m.status}, {m.detail}")
    if r.language is not None:
        echo(f"  language {'ok' if r.language.ok else 'FAILED'}: {r.language.detail}")
    for note in r.notes:
        echo(f"  note     {note}")
    for p in r.problems:
        echo(f"problem: {p}")


def inspect_cmd(
    folder: Annotated[
        Path,
        typer.Argument(
            help="The folder: Meta's download, a model or delta in HF format, or a VLM bundle.",
            metavar="FOLDER",
        ),
    ],
    verify: Annotated[
        bool,
        typer.Option(
            help="Hash the folder against its manifest.yaml / SHA256SUMS (Meta's checklist.chk)."
        ),
    ] = False,
    perplexity: Annotated[
        bool,
        typer.Option(
            help="Run the language check too: the model's perplexity on a reference passage (reads the whole model, one layer at a time)."
        ),
    ] = False,
    reference_text: Annotated[
        Path | None,
        typer.Option(
            help="With --perplexity: score this UTF-8 text file instead of the built-in passage.",
            metavar="PATH",
        ),
    ] = None,
    max_perplexity: Annotated[
        float | None,
        typer.Option(
            help="With --perplexity: the highest perplexity that passes (default: the family's bound).",
            metavar="NUMBER",
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
) -> None:
    """Say what FOLDER is from cheap evidence (configs, tokenizer files, file headers, the small
    norm tensors): meta, model, delta, vlm or unknown; its family and size; its special-token
    ids and whether they agree; weight files that are not weights (Git LFS pointers, HTML pages,
    truncated shards); its manifest.

    Exit 0 told what it is and found nothing wrong; 1 a problem found or a requested check
    failed (--verify, --perplexity); 2 FOLDER is not a readable folder.

    Examples:

      weightprep inspect ~/Downloads/vicuna-7b-delta-v1.1

      weightprep inspect vicuna-7b --verify --json
    """
    from weightprep.inspect import inspect_folder

    for flag, value in (("--reference-text", reference_text), ("--max-perplexity", max_perplexity)):
        if value is not None and not perplexity:
            raise typer.BadParameter("applies only with --perplexity", param_hint=flag)

    r = run_core(
        lambda: inspect_folder(
            folder,
            verify=verify,
            perplexity=perplexity,
            reference=reference_text,
            max_perplexity=max_perplexity,
            progress=make_progress(json_out),
        )
    )
    if json_out:
        typer.echo(json.dumps(r.to_dict(), indent=2, ensure_ascii=False))
    else:
        _print(r)
    raise typer.Exit(0 if r.ok else 1)
