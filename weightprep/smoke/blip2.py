"""BLIP-2 over an encoder-decoder LLM: mBLIP mT0-XL (`Gregor/mblip-mt0-xl` or a folder).

transformers 5.x puts the Q-Former's outputs where the prompt has `<image>` tokens, which its
processor adds only when it knows `num_query_tokens`, and the model only when its config has an
`image_token_id`. Checkpoints saved before that scheme (mBLIP's among them) have neither, and then
the model silently answers from the text alone. Here both are filled in from the model's own
config (and the token embeddings grown by one row when the tokenizer lacks `<image>`), and
reported.
"""

from __future__ import annotations

from weightprep.smoke.pipeline import ProcessorPipeline, load_whole, resize_vocab
from weightprep.smoke.runtime import Placement
from weightprep.smoke.specs import ModelSpec


def load(
    spec: ModelSpec, weights: str, llm: str | None, placement: Placement, revision: str | None
) -> ProcessorPipeline:
    from transformers import Blip2ForConditionalGeneration, Blip2Processor

    model = load_whole(
        Blip2ForConditionalGeneration, spec, weights, llm, placement, revision, "BLIP-2"
    )
    processor = Blip2Processor.from_pretrained(weights, revision=revision)
    notes = []
    if processor.num_query_tokens is None:
        processor.num_query_tokens = model.config.num_query_tokens
        notes.append(
            f"processor had no num_query_tokens: set to {model.config.num_query_tokens} from the "
            "model config, so the prompt carries the image placeholders"
        )
    tok = processor.tokenizer
    image_id = tok.convert_tokens_to_ids(processor.image_token.content)
    if model.config.image_token_id != image_id:
        notes.append(f"image_token_id set to {image_id} (`<image>` in the tokenizer)")
        model.config.image_token_id = image_id
        if image_id >= model.get_input_embeddings().weight.shape[0]:
            resize_vocab(model.language_model, image_id + 1)
    return ProcessorPipeline(
        model=model,
        processor=processor,
        template=spec.template,
        device=placement.device,
        dtype=placement.torch_dtype,
        image_token_id=image_id,
        notes=notes,
    )
