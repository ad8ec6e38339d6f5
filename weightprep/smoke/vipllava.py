"""VipLLaVA (`llava-hf/vip-llava-7b-hf` or a folder): the whole model and its processor with
`from_pretrained`, prompted with the card's template."""

from __future__ import annotations

from weightprep.smoke.pipeline import ProcessorPipeline, load_whole
from weightprep.smoke.runtime import Placement
from weightprep.smoke.specs import ModelSpec


def load(
    spec: ModelSpec, weights: str, llm: str | None, placement: Placement, revision: str | None
) -> ProcessorPipeline:
    from transformers import AutoProcessor, VipLlavaForConditionalGeneration

    model = load_whole(
        VipLlavaForConditionalGeneration, spec, weights, llm, placement, revision, "VipLLaVA"
    )
    return ProcessorPipeline(
        model=model,
        processor=AutoProcessor.from_pretrained(weights, revision=revision),
        template=spec.template,
        device=placement.device,
        dtype=placement.torch_dtype,
        image_token_id=model.config.image_token_id,
    )
