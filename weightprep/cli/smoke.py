"""`weightprep smoke-test` and `weightprep make-example-vlm`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from weightprep.cli.common import parse_dtype, quiet_libraries, run_core

MODELS = (
    "instructblip-vicuna7b",
    "instructblip-vicuna13b",
    "vip-llava-7b",
    "mblip-mt0-xl",
    "rinna-minigpt4",
)


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def _print(report) -> None:
    echo = typer.echo
    what = "the built-in tiny example" if report.example else report.weights
    echo(f"smoke-test {report.model} ({report.backend}) on {what}")
    if report.example:
        echo(
            "  this is the built-in example: tiny models with random vision weights; it proves "
            "the path runs and the checks work, not that real weights do"
        )
    echo(
        f"  device {report.device}, dtype {report.dtype} ({report.dtype_reason})"
        + (f", {report.quantize}" if report.quantize != "none" else "")
    )
    kind, peak = report.peak_memory
    echo(f"  load {report.load_seconds:.1f} s, peak memory {_gib(peak)} ({kind})")
    for note in report.notes:
        echo(f"  note: {note}")
    first = [c for c in report.checks if c.name == "language check"]
    for c in first:
        echo(f"{'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}")
    shown = None
    for r in report.results:
        if r.image != shown and len(report.images) > 1:
            echo(f"image {r.image}")
        shown = r.image
        echo(f"[{r.mode}] {r.prompt}")
        echo(f"  -> {r.answer!r}")
        echo(f"  {r.tokens} tokens in {r.seconds:.2f} s ({r.tokens_per_second:.1f} tok/s)")
        for c in r.checks:
            echo(f"  {'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}")
    for c in report.checks:
        if c not in first:
            echo(f"{'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}")
    echo("PASS" if report.ok else f"FAIL: {len(report.failures)} check(s) failed")


def smoke_test_cmd(
    model: Annotated[
        str, typer.Option(help="One of: " + ", ".join(MODELS) + ".", metavar="TEXT")
    ] = MODELS[0],
    llm: Annotated[
        str | None,
        typer.Option(
            help="Language model folder or Hub id: your prepared Vicuna for InstructBLIP.",
            metavar="TEXT",
        ),
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option(
            help="The model's published weights (folder or Hub id); default: the card's.",
            metavar="TEXT",
        ),
    ] = None,
    vision: Annotated[
        str | None,
        typer.Option(
            help="rinna-minigpt4 only: the BLIP-2 ViT + Q-Former (folder or Hub id).",
            metavar="TEXT",
        ),
    ] = None,
    image: Annotated[
        list[Path] | None,
        typer.Option(
            help="Image file, or folder of images, to caption (repeatable); default: a drawn one.",
            metavar="PATH",
        ),
    ] = None,
    prompt: Annotated[
        list[str] | None,
        typer.Option(
            help="A prompt instead of the model's set (repeatable); every image gets every one.",
            metavar="TEXT",
        ),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Also write the report as one self-contained HTML page (images embedded).",
            metavar="FILE.html",
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.", metavar="TEXT")] = "auto",
    dtype: Annotated[
        str,
        typer.Option(
            callback=lambda v: parse_dtype(v, auto=True),
            help="auto, float16 (fp16), bfloat16 (bf16) or float32 (fp32).",
            metavar="TEXT",
        ),
    ] = "auto",
    quantize: Annotated[
        str, typer.Option(help="none, 8bit or 4bit (CUDA + bitsandbytes).", metavar="TEXT")
    ] = "none",
    backend: Annotated[
        str, typer.Option(help="transformers, or lavis (InstructBLIP).", metavar="TEXT")
    ] = "transformers",
    max_new_tokens: Annotated[int, typer.Option(help="Answer length limit.", metavar="N")] = 64,
    expect: Annotated[
        list[str] | None,
        typer.Option(help="A word some answer must contain (repeatable).", metavar="TEXT"),
    ] = None,
    revision: Annotated[
        str | None, typer.Option(help="Hub revision of --weights.", metavar="TEXT")
    ] = None,
    example: Annotated[
        bool, typer.Option(help="Say that these are the built-in tiny example's weights.")
    ] = False,
    reference_text: Annotated[
        Path | None,
        typer.Option(
            help="Score the language check on this UTF-8 passage instead of the built-in one.",
            metavar="PATH",
        ),
    ] = None,
    max_perplexity: Annotated[
        float | None,
        typer.Option(
            help="The language check's bound (default: the model family's).", metavar="NUMBER"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bars; the report still prints.")
    ] = False,
) -> None:
    """Check the language model's perplexity on a built-in passage, then caption an image and
    check the answers: finite logits, non-empty, not degenerate, and the image must matter.
    Exit 1 when a check fails.

    Examples:

      weightprep smoke-test --model instructblip-vicuna7b --llm vicuna-7b

      weightprep smoke-test --llm vicuna-7b --image cartoons/ --prompt "Why is this funny?" --report report.html
    """

    choices = {
        "--model": (model, MODELS),
        "--device": (device, ("auto", "cpu", "cuda")),
        "--quantize": (quantize, ("none", "8bit", "4bit")),
        "--backend": (backend, ("transformers", "lavis")),
    }
    for flag, (value, allowed) in choices.items():
        if value not in allowed:
            raise typer.BadParameter(f"{value!r}: one of {', '.join(allowed)}", param_hint=flag)
    if report is not None and not report.expanduser().parent.is_dir():
        raise typer.BadParameter(f"{report}: its folder does not exist", param_hint="--report")
    quiet_libraries(progress=not (quiet or as_json) and sys.stderr.isatty())

    if backend == "lavis":
        from weightprep.smoke.lavis_backend import run_lavis

        if len(image or []) > 1 or len(prompt or []) > 1 or report is not None:
            raise typer.BadParameter(
                "--backend lavis takes one --image and one --prompt, and no --report",
                param_hint="--backend",
            )
        one_image = image[0] if image else None
        one_prompt = prompt[0] if prompt else None
        result = run_core(lambda: run_lavis(model, device, one_image, one_prompt))
    else:
        from weightprep.smoke.runner import Options, run_smoke

        opts = Options(
            model=model,
            weights=weights,
            llm=llm,
            vision=vision,
            images=tuple(image or ()),
            prompts=tuple(prompt or ()),
            device=device,
            dtype=dtype,
            quantize=quantize,
            max_new_tokens=max_new_tokens,
            expect=tuple(expect or ()),
            revision=revision,
            example=example,
            reference_text=reference_text,
            max_perplexity=max_perplexity,
            sources=report is not None or as_json,
        )
        result = run_core(lambda: run_smoke(opts))
    doc = result.to_dict()
    if report is not None:
        from weightprep.smoke.report import write_report

        run_core(lambda: write_report(doc, report.expanduser()))
        doc["report"] = str(report)
    if as_json:
        typer.echo(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        _print(result)
        if report is not None:
            typer.echo(f"report: {report}")
    if not result.ok:
        raise typer.Exit(1)


def make_example_vlm_cmd(
    folder: Annotated[
        Path, typer.Argument(help="Where to write the tiny model's folders.", metavar="FOLDER")
    ],
    model: Annotated[
        str, typer.Option(help="One of: " + ", ".join(MODELS) + ".", metavar="TEXT")
    ] = MODELS[0],
    llm: Annotated[
        Path | None,
        typer.Option(
            help="InstructBLIP / VipLLaVA: a converted tiny LLaMA folder.", metavar="PATH"
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Write a tiny random vision-language model in the real format, for `smoke-test`.

    Example:

      weightprep make-example-vlm tiny-iblip --llm tiny-vicuna && weightprep smoke-test --example --llm tiny-vicuna --weights tiny-iblip
    """
    from weightprep.errors import OutputExistsError

    quiet_libraries(progress=False)

    def go() -> dict:
        from weightprep.smoke.example import build

        if folder.exists() and any(folder.iterdir()):
            raise OutputExistsError(f"{folder}: exists and is not empty; choose a new folder")
        return build(model, folder, llm)

    args = run_core(go)
    if not quiet:
        flags = " ".join(f"--{k} {v}" for k, v in args.items())
        typer.echo(
            f"wrote {folder}; smoke-test it with: weightprep smoke-test --model {model} "
            f"--example {flags}"
        )
