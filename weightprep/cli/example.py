"""`weightprep make-example`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from weightprep.cli.common import run_core


def make_example(
    folder: Annotated[
        Path, typer.Argument(help="Where to write the tiny Meta-layout download.", metavar="FOLDER")
    ],
    seed: Annotated[
        int, typer.Option(help="Seed for the tokenizer corpus and weights.", metavar="N")
    ] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Write a tiny, real-format Meta LLaMA download (tokenizer, 1/2/4/8-shard LLaMA-1, GQA LLaMA-2).

    The 7B folder is trained for a few seconds on the reference passage, so that it passes the
    language check for a real reason; the other sizes are random (for the converter's tests).

    Example:

      weightprep make-example /tmp/llama && weightprep convert-llama /tmp/llama out --model-size 7B
    """
    from weightprep.errors import OutputExistsError
    from weightprep.example import EXAMPLES
    from weightprep.example import make_example as build

    def go() -> Path:
        if folder.exists() and any(folder.iterdir()):
            raise OutputExistsError(f"{folder}: exists and is not empty; choose a new folder")
        return build(folder, seed=seed)

    root = run_core(go)
    if not quiet:
        sizes = ", ".join(
            f"{m.folder} ({m.shards} shard{'s' if m.shards > 1 else ''})" for m in EXAMPLES
        )
        typer.echo(f"wrote {root}: tokenizer.model + {sizes}")


def make_example_delta(
    base: Annotated[
        Path,
        typer.Argument(
            help="A converted example (convert-llama output), or the example Meta download itself (with --model-size).",
            metavar="BASE",
        ),
    ],
    output: Annotated[Path, typer.Argument(help="Where to write the delta.", metavar="OUTPUT")],
    steps: Annotated[
        int,
        typer.Option(
            help="Fine-tuning steps (Adam, on the reference passage as a chat answer).", metavar="N"
        ),
    ] = 10,
    model_size: Annotated[
        str | None,
        typer.Option(help="BASE is the Meta download's root: which size folder.", metavar="TEXT"),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Write a tiny lmsys-style delta (a short fine-tune of BASE minus BASE), with expected.yaml to verify against.

    Example:

      weightprep make-example-delta llama-7b-hf tiny-delta && weightprep apply-delta llama-7b-hf tiny-delta out --verify --manifest tiny-delta/expected.yaml
    """
    from weightprep.errors import InputError, OutputExistsError
    from weightprep.example import make_delta_example

    def go() -> Path:
        if output.exists():
            raise OutputExistsError(f"{output}: already exists; choose a new folder")
        try:
            return make_delta_example(base, output, steps=steps, model_size=model_size)
        except FileNotFoundError as exc:
            raise InputError(str(exc)) from exc

    out = run_core(go)
    if not quiet:
        typer.echo(f"wrote {out}: 2 fp16 .bin shards + tokenizer, and expected.yaml")
