"""`weightprep convert-llama`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from weightprep.cli.common import parse_dtype, parse_size, run_core
from weightprep.cli.progress import make_progress


def convert_llama(
    input: Annotated[
        Path,
        typer.Argument(
            help="Meta's download (the folder with tokenizer.model and 7B/), or a size folder.",
            metavar="INPUT",
        ),
    ],
    output: Annotated[
        Path, typer.Argument(help="New Hugging Face model folder.", metavar="OUTPUT")
    ],
    model_size: Annotated[
        str | None,
        typer.Option(
            help="Which size folder to convert when INPUT holds several (7B, 13B, 30B, 65B, or llama-2-7b …).",
            metavar="TEXT",
        ),
    ] = None,
    llama_version: Annotated[
        int | None,
        typer.Option(
            help="1 (context 2048) or 2 (4096). Default: 2 when params.json has LLaMA-2-only keys, else 1.",
            min=1,
            max=2,
            metavar="N",
        ),
    ] = None,
    dtype: Annotated[
        str,
        typer.Option(
            callback=lambda v: parse_dtype(v),
            help="float16 (fp16: keeps Meta's bits exactly), bfloat16 (bf16) or float32 (fp32).",
            metavar="TEXT",
        ),
    ] = "float16",
    max_shard_size: Annotated[
        str, typer.Option(help="Largest safetensors shard (5GB, 500MB, 2GiB).", metavar="TEXT")
    ] = "5GB",
    force: Annotated[bool, typer.Option(help="Replace OUTPUT if it already exists.")] = False,
    verify_input: Annotated[
        str | None,
        typer.Option(
            help="Also check the input against a manifest: a shipped one's name (llama-7b …) or a file.",
            metavar="TEXT",
        ),
    ] = None,
    checklists: Annotated[
        bool,
        typer.Option(help="Check the input against Meta's checklist.chk files (md5) when present."),
    ] = True,
    tensor_digests: Annotated[
        bool,
        typer.Option(
            help="Record each tensor's sha256 in manifest.yaml while writing (costs CPU: docs/performance.md)."
        ),
    ] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Convert Meta's original LLaMA 1/2 checkpoint to Hugging Face format, exactly and streaming.

    Examples:

      weightprep convert-llama ~/LLaMA llama-7b-hf --model-size 7B

      weightprep convert-llama ~/LLaMA/13B llama-13b-hf --dtype bfloat16
    """
    from weightprep.llama.convert import convert_meta_to_hf

    shard_bytes = parse_size(max_shard_size)
    report = run_core(
        lambda: convert_meta_to_hf(
            input,
            output,
            model_size=model_size,
            llama_version=llama_version,
            dtype=dtype,
            max_shard_bytes=shard_bytes,
            force=force,
            verify_input=verify_input,
            use_checklists=checklists,
            tensor_digests=tensor_digests,
            progress=make_progress(quiet or json_out),
        ),
        interrupted=f"interrupted while converting {input}: its temporary folder was removed "
        f"and {output} is as it was; run the same command again to start over",
    )
    if json_out:
        typer.echo(
            json.dumps(
                {
                    "output": str(report.output),
                    "input": str(report.size_dir),
                    "num_shards": report.num_shards,
                    "llama_version": report.llama_version,
                    "dtype": report.dtype,
                    "n_params": report.n_params,
                    "n_tensors": report.n_tensors,
                    "bytes_written": report.bytes_written,
                    "seconds": round(report.seconds, 3),
                    "files": report.files,
                    "input_checks": list(report.input_checks),
                },
                indent=2,
            )
        )
    elif not quiet:
        checked = (
            f"input verified ({len(report.input_checks)} files); "
            if report.input_checks
            else "input not checked (no checklist.chk); "
        )
        gb = report.bytes_written / 1e9
        typer.echo(
            f"converted {report.size_dir} ({report.num_shards} shard(s), LLaMA-{report.llama_version}, "
            f"{report.n_params:,} parameters) -> {report.output} [{report.dtype}, {gb:.2f} GB, "
            f"{report.seconds:.1f}s]; {checked}check with: cd {report.output} && sha256sum -c SHA256SUMS"
        )
