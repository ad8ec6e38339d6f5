"""`--backend lavis`: InstructBLIP through LAVIS itself, when it is installed.

LAVIS reads `llm_model` from its `blip2_instruct_vicuna7b.yaml` (what `patch-lavis-config` set)
and builds the model with `load_model_and_preprocess`; it returns captions, not logits, so this
backend checks the answers and whether a blank image changes them.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

from weightprep.errors import InputError
from weightprep.smoke import checks
from weightprep.smoke.image import blank_like, load_image
from weightprep.smoke.runner import PromptResult, Report
from weightprep.smoke.specs import SPECS

MODEL_TYPES = {"instructblip-vicuna7b": "vicuna7b", "instructblip-vicuna13b": "vicuna13b"}


LAVIS_INSTALL = (
    "LAVIS is not importable: install it from source (its PyPI release has no InstructBLIP): "
    "git clone https://github.com/salesforce/LAVIS && pip install -e LAVIS"
)


def run_lavis(model: str, device: str, image_path: Path | None, prompt: str | None) -> Report:
    if model not in MODEL_TYPES:  # before anything else: installing LAVIS would not help
        raise InputError(
            f"--backend lavis is for InstructBLIP only ({', '.join(MODEL_TYPES)}); "
            f"{model} runs with the default backend (transformers)"
        )
    if importlib.util.find_spec("lavis") is None:
        raise InputError(LAVIS_INSTALL)
    import torch
    from lavis.models import load_model_and_preprocess

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    start = time.perf_counter()
    lavis_model, vis, _ = load_model_and_preprocess(
        name="blip2_vicuna_instruct", model_type=MODEL_TYPES[model], is_eval=True, device=device
    )
    report = Report(
        model=model,
        backend="lavis",
        example=False,
        device=device,
        dtype="LAVIS's",
        dtype_reason="LAVIS chooses",
        quantize="none",
        weights="LAVIS config",
        llm=None,
        load_seconds=time.perf_counter() - start,
    )
    raw = load_image(image_path)
    prompts = [prompt] if prompt else [r.prompt for r in SPECS[model].runs if r.mode == "beam"]

    def caption(img, text: str) -> str:
        tensor = vis["eval"](img).unsqueeze(0).to(device)
        return lavis_model.generate({"image": tensor, "prompt": text})[0]

    for text in prompts:
        t0 = time.perf_counter()
        answer = caption(raw, text)
        secs = time.perf_counter() - t0
        words = answer.split()
        found = [
            checks.non_empty(answer, len(words)),
            checks.not_degenerate([hash(w) for w in words]),
        ]
        report.results.append(PromptResult(text, "beam", answer, len(words), secs, 0.0, found))
    blank = caption(blank_like(raw), prompts[0])
    same = blank.strip() == report.results[0].answer.strip()
    report.checks.append(
        checks.Check(
            "image matters",
            not same,
            "same answer for a blank image" if same else "a blank image changes the answer",
        )
    )
    return report
