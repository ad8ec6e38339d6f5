"""`weightprep apply-delta`, `weightprep make-delta`, `weightprep compare`."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from weightprep.cli.common import hub_bars, run_core
from weightprep.cli.progress import make_progress


class Backend(StrEnum):
    stream = "stream"
    fastchat = "fastchat"


def _report(report, json_out: bool, quiet: bool, verb: str) -> None:
    if json_out:
        typer.echo(
            json.dumps(
                {
                    "output": str(report.output),
                    "n_tensors": report.n_tensors,
                    "bytes_written": report.bytes_written,
                    "verified": report.verified,
                    "language_check": [c.to_dict() for c in report.language],
                    "seconds": round(report.seconds, 3),
                    "files": report.files,
                },
                indent=2,
            )
        )
    elif not quiet:
        typer.echo(
            f"{verb} -> {report.output} ({report.n_tensors} tensors, "
            f"{report.bytes_written / 1e9:.2f} GB float16, {report.seconds:.1f}s); "
            f"compared with: {report.verified}"
        )


def apply_delta_cmd(
    base: Annotated[
        Path,
        typer.Argument(
            help="The base model: an HF folder (e.g. from convert-llama), or Meta's LLaMA download itself (its root with --model-size, or a size folder): then it is converted in the same pass and no converted copy is written.",
            metavar="BASE",
        ),
    ],
    delta: Annotated[
        str,
        typer.Argument(
            help="The delta weights: a folder, or hf://NAMESPACE/NAME[@REV] (e.g. hf://lmsys/vicuna-7b-delta-v1.1), fetched, verified and kept in weightprep's cache for re-runs.",
            metavar="DELTA",
        ),
    ],
    output: Annotated[
        Path, typer.Argument(help="New folder for the merged model.", metavar="OUTPUT")
    ],
    backend: Annotated[
        Backend,
        typer.Option(
            help="stream: ours, constant memory. fastchat: run FastChat's own apply_delta, then check its output."
        ),
    ] = Backend.stream,
    low_cpu_mem: Annotated[
        bool, typer.Option(help="With --backend fastchat: pass --low-cpu-mem to FastChat.")
    ] = False,
    verify: Annotated[
        bool,
        typer.Option(help="Compare the output's digests (computed while writing) with --manifest."),
    ] = False,
    manifest: Annotated[
        str | None,
        typer.Option(
            help="Manifest to compare with: a shipped name or a file (ours, with tensors).",
            metavar="TEXT",
        ),
    ] = None,
    verify_base: Annotated[
        str | None,
        typer.Option(help="Check an HF base against a manifest before starting.", metavar="TEXT"),
    ] = None,
    model_size: Annotated[
        str | None,
        typer.Option(
            help="BASE is Meta's download root: which size folder (7B, 13B, llama-2-7b ...).",
            metavar="TEXT",
        ),
    ] = None,
    verify_input: Annotated[
        str | None,
        typer.Option(
            help="BASE is Meta's download: also check it against this manifest (a shipped name such as llama-7b, or a file), in the same read; its checklist.chk files are always checked.",
            metavar="TEXT",
        ),
    ] = None,
    compare_to: Annotated[
        str | None,
        typer.Option(
            help="Compare the output tensor by tensor with this folder or hf://NAMESPACE/NAME[@REV] (e.g. lmsys' merged vicuna-7b-v1.1): fetched and checked before the merge, compared after it.",
            metavar="TEXT",
        ),
    ] = None,
    reference_text: Annotated[
        Path | None,
        typer.Option(
            help="--verify: score the language check on this UTF-8 passage instead of the built-in one.",
            metavar="PATH",
        ),
    ] = None,
    max_perplexity: Annotated[
        float | None,
        typer.Option(
            help="--verify: the language check's bound (default: the family's, 50 for LLaMA).",
            metavar="NUMBER",
        ),
    ] = None,
    allow_base_mismatch: Annotated[
        bool,
        typer.Option(
            help="Merge even when BASE's config says another LLaMA version than the delta's (context, rms_norm_eps)."
        ),
    ] = False,
    force: Annotated[bool, typer.Option(help="Replace OUTPUT if it exists.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Apply delta weights (Vicuna v1.1) to a base model: FastChat's result, in constant memory.

    --verify runs the language check on the base and on the output (their perplexity on a
    built-in passage) and, with --manifest, compares every tensor digest. Exit 1 and nothing
    kept when any of it fails.

    Examples:

      weightprep apply-delta llama-7b-hf vicuna-7b-delta-v1.1 vicuna-7b --verify

      weightprep apply-delta ~/LLaMA vicuna-7b-delta-v1.1 vicuna-7b --model-size 7B --verify

      weightprep apply-delta llama-7b-hf vicuna-7b-delta-v1.1 vicuna-7b --backend fastchat
    """
    from weightprep.errors import InputError

    resolved: dict[str, Path] = {}

    def inputs() -> None:
        """DELTA and --compare-to as local folders (hf:// fetched into the cache), and
        --compare-to checked against the delta's tensors, before anything heavy."""
        from weightprep.hubinput import resolve_input

        show = not (quiet or json_out)
        hub_bars(show and sys.stderr.isatty())
        for key, spec, what in (("delta", delta, "DELTA"), ("compare", compare_to, "--compare-to")):
            if spec is None:
                continue
            r = resolve_input(spec, what=what, progress=make_progress(quiet or json_out))
            if r.note and show:
                typer.echo(f"{what}: {r.note}", err=True)
            resolved[key] = r.path
        if "compare" in resolved:
            from weightprep.delta import preflight
            from weightprep.io.reader import CheckpointReader

            with (
                CheckpointReader(resolved["compare"]) as ref,
                CheckpointReader(resolved["delta"]) as d,
            ):
                preflight(ref, d, "delta")

    def go():
        inputs()
        delta_dir = resolved["delta"]
        if low_cpu_mem and backend is not Backend.fastchat:
            raise InputError("--low-cpu-mem is FastChat's option: use it with --backend fastchat")
        if backend is Backend.fastchat:
            from weightprep.fastchat_backend import apply_delta_fastchat
            from weightprep.llama.convert import is_meta_download

            if is_meta_download(base):
                raise InputError(
                    f"{base}: FastChat reads Hugging Face folders only; convert it first "
                    "(weightprep convert-llama), or use the default backend, which reads it as is"
                )

            return apply_delta_fastchat(
                base, delta_dir, output, low_cpu_mem=low_cpu_mem, force=force
            )
        from weightprep.delta import LanguageOptions, apply_delta

        if not verify and (reference_text or max_perplexity):
            raise InputError("--reference-text and --max-perplexity go with --verify")
        return apply_delta(
            base,
            delta_dir,
            output,
            force=force,
            verify=verify,
            manifest=manifest,
            verify_base=verify_base,
            progress=make_progress(quiet or json_out),
            language=LanguageOptions(reference_text, max_perplexity) if verify else None,
            allow_base_mismatch=allow_base_mismatch,
            model_size=model_size,
            verify_input=verify_input,
        )

    report = run_core(
        go,
        interrupted=f"interrupted while merging {delta} into {base}: its temporary folder was "
        f"removed and {output} is as it was; run the same command again to start over",
    )
    _report(report, json_out, quiet, f"applied {resolved['delta'].name} to {base.name}")
    if compare_to is not None:
        _compare_and_exit(report.output, resolved["compare"], json_out=False, quiet=quiet)


def make_delta_cmd(
    base: Annotated[Path, typer.Argument(help="The base model in HF format.", metavar="BASE")],
    target: Annotated[Path, typer.Argument(help="The fine-tuned model.", metavar="TARGET")],
    output: Annotated[Path, typer.Argument(help="New folder for the delta.", metavar="OUTPUT")],
    force: Annotated[bool, typer.Option(help="Replace OUTPUT if it exists.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Make delta weights (target − base, float16), as FastChat's make_delta does.

    Example:

      weightprep make-delta llama-7b-hf my-finetune my-finetune-delta
    """
    from weightprep.delta import make_delta

    report = run_core(
        lambda: make_delta(
            base, target, output, force=force, progress=make_progress(quiet or json_out)
        ),
        interrupted=f"interrupted while making the delta {target} - {base}: its temporary "
        f"folder was removed and {output} is as it was; run the same command again to start over",
    )
    _report(report, json_out, quiet, f"made the delta {target.name} - {base.name}")


def _compare_and_exit(a: Path, b: Path, json_out: bool, quiet: bool) -> None:
    from weightprep.compare import compare_folders

    diffs = run_core(lambda: compare_folders(a, b))
    same = all(d.status == "identical" for d in diffs)
    if json_out:
        typer.echo(
            json.dumps({"identical": same, "tensors": [d.__dict__ for d in diffs]}, indent=2)
        )
    else:
        for d in diffs:
            if d.status != "identical" or not quiet:
                extra = f" max|a-b|={d.max_abs_diff:.3g}" if d.max_abs_diff is not None else ""
                typer.echo(f"{d.status:10} {d.name} {d.detail}{extra}".rstrip())
        n = sum(d.status == "identical" for d in diffs)
        typer.echo(
            f"{'identical' if same else 'DIFFERENT'}: {n}/{len(diffs)} tensors identical ({a} vs {b})"
        )
    raise typer.Exit(0 if same else 1)


def compare_cmd(
    a: Annotated[
        Path,
        typer.Argument(
            help="A model folder (.safetensors, .bin or .pth; sharded or not).", metavar="A"
        ),
    ],
    b: Annotated[Path, typer.Argument(help="Another one.", metavar="B")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only differences.")] = False,
) -> None:
    """Compare two model folders tensor by tensor. Exit 0 all identical, 1 any difference.

    Example:

      weightprep compare my-vicuna-7b lmsys-vicuna-7b-v1.1
    """
    _compare_and_exit(a, b, json_out, quiet)
