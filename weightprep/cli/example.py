"""`weightprep make-example`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from weightprep.cli.common import run_core


def make_example(
    folder: Annotated[Path, typer.Argument(help="Where to write the tiny Meta-layout download.")],
    seed: Annotated[int, typer.Option(help="Seed for the tokenizer corpus and weights.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Write a tiny, real-format Meta LLaMA download (tokenizer, 1/2/4/8-shard LLaMA-1, GQA LLaMA-2).

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
