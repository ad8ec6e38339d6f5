"""VipLLaVA (`llava-hf/vip-llava-7b-hf` or a folder): the whole model and its processor with
`from_pretrained`, prompted with the card's template."""

from __future__ import annotations

from weightprep.errors import InputError
from weightprep.smoke.pipeline import ProcessorPipeline
from weightprep.smoke.runtime import Placement, llm_load_kwargs
from weightprep.smoke.specs import ModelSpec


def load(
    spec: ModelSpec, weights: str, llm: str | None, placement: Placement, revision: str | None
) -> ProcessorPipeline:
    from transformers import AutoProcessor, VipLlavaForConditionalGeneration

    if llm is not None:
        raise InputError(f"{spec.name}: --llm does not apply; the language model is in --weights")
    try:
        model = VipLlavaForConditionalGeneration.from_pretrained(
            weights, revision=revision, **llm_load_kwargs(placement)
        )
    except (OSError, ValueError) as exc:
        raise InputError(f"{weights}: cannot load VipLLaVA weights ({exc})") from None
    processor = AutoProcessor.from_pretrained(weights, revision=revision)
    if placement.quantize == "none":
        model.to(placement.device)
    model.eval()
    return ProcessorPipeline(
        model=model,
        processor=processor,
        template=spec.template,
        device=placement.device,
        dtype=placement.torch_dtype,
        image_token_id=model.config.image_token_id,
    )
