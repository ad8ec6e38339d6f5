"""What each supported model is, where its parts come from, and how it is prompted: data only.

Prompts, templates and generation settings are the ones the models' own documentation uses:
- InstructBLIP (LAVIS README and transformers' InstructBLIP example): the prompt is given to the
  LLM as is; beam search with 5 beams, repetition penalty 1.5, length penalty 1; and a
  nucleus-sampling run (top_p 0.9, temperature 1).
- VipLLaVA-7B (llava-hf/vip-llava-7b-hf card): the "###Human: <image>\\n<prompt>###Assistant:"
  template; greedy decoding.
- mBLIP mT0-XL (Gregor/mblip-mt0-xl card): the plain question, "Describe the image in German.";
  default greedy decoding; bf16 rather than fp16 ("fp16 can cause NaN").
- rinna bilingual GPT-NeoX MiniGPT-4 (rinna/bilingual-gpt-neox-4b-minigpt4 card): "ユーザー: " /
  "システム: " lines joined by newlines, `<ImageHere>` where the image goes, ending "システム: ";
  sampling with temperature 1.0, top_p 0.85.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BEAM = {
    "do_sample": False,
    "num_beams": 5,
    "min_length": 1,
    "repetition_penalty": 1.5,
    "length_penalty": 1.0,
}
NUCLEUS = {"do_sample": True, "top_p": 0.9, "temperature": 1.0}
GREEDY = {"do_sample": False, "num_beams": 1}


@dataclass(frozen=True)
class Run:
    """One prompt and how to decode it; `mode` names the decoding in reports."""

    prompt: str
    mode: str
    generate: dict


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # instructblip | vipllava | blip2 | minigpt4
    weights: str  # Hub id (or folder) of the model's own published weights
    llm: str | None  # the language model the user prepared; None when `weights` holds it
    template: str  # `{prompt}` is replaced by the run's prompt
    runs: tuple[Run, ...]
    cuda_dtype: str
    vision: str | None = None  # a separate vision tower + Q-Former source (MiniGPT-4)
    notes: tuple[str, ...] = field(default_factory=tuple)


def _instructblip(size: str) -> ModelSpec:
    prompts = (
        "Write a short description for the image.",
        "What is unusual about this image?",
        "Write a detailed description.",
    )
    return ModelSpec(
        name=f"instructblip-vicuna{size}",
        family="instructblip",
        weights=f"Salesforce/instructblip-vicuna-{size}",
        llm=None,  # the user's own prepared Vicuna (`--llm`): the point of the test
        template="{prompt}",
        runs=(
            *(Run(p, "beam", BEAM) for p in prompts),
            Run(prompts[0], "nucleus", NUCLEUS),
        ),
        cuda_dtype="float16",
    )


VIP_LLAVA_TEMPLATE = (
    "A chat between a curious human and an artificial intelligence assistant. The assistant gives"
    " helpful, detailed, and polite answers to the human's questions.###Human: <image>\n{prompt}"
    "###Assistant:"
)

RINNA_TEMPLATE = "ユーザー: <ImageHere> {prompt}\nシステム: "
RINNA_SAMPLING = {"do_sample": True, "temperature": 1.0, "top_p": 0.85}

SPECS: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        _instructblip("7b"),
        _instructblip("13b"),
        ModelSpec(
            name="vip-llava-7b",
            family="vipllava",
            weights="llava-hf/vip-llava-7b-hf",
            llm=None,
            template=VIP_LLAVA_TEMPLATE,
            runs=(
                Run("What are these?", "greedy", GREEDY),
                Run("Describe the image in one sentence.", "greedy", GREEDY),
            ),
            cuda_dtype="float16",
        ),
        ModelSpec(
            name="mblip-mt0-xl",
            family="blip2",
            weights="Gregor/mblip-mt0-xl",
            llm=None,
            template="{prompt}",
            runs=(
                Run("Describe the image.", "greedy", GREEDY),
                Run("Describe the image in German.", "greedy", GREEDY),
            ),
            cuda_dtype="bfloat16",
        ),
        ModelSpec(
            name="rinna-minigpt4",
            family="minigpt4",
            weights="rinna/bilingual-gpt-neox-4b-minigpt4",
            llm="rinna/bilingual-gpt-neox-4b",
            vision="Salesforce/blip2-flan-t5-xxl",
            template=RINNA_TEMPLATE,
            runs=(
                Run("What can you see?", "sampling", RINNA_SAMPLING),
                Run("画像について説明してください。", "sampling", RINNA_SAMPLING),
            ),
            cuda_dtype="float16",
        ),
    )
}
