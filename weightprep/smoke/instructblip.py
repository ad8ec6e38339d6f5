"""InstructBLIP (Vicuna) with the user's own prepared Vicuna as its language model.

The vision tower, Q-Former, query tokens and projection come from the published InstructBLIP
weights (`Salesforce/instructblip-vicuna-7b` or a folder); only the shards holding them are
fetched. The language model is the user's folder, loaded with `from_pretrained`. The tokenizer is
set up as LAVIS's `blip2_vicuna_instruct` sets up Vicuna's, which is how InstructBLIP was trained:
a `[PAD]` token added, and `</s>` as BOS, EOS and UNK. transformers' processor then adds
`<image>`, and the prompt starts with one `<image>` per query token, where the model scatters the
projected Q-Former outputs.
"""

from __future__ import annotations

from weightprep.errors import InputError, one_line
from weightprep.smoke.pipeline import ProcessorPipeline, resize_vocab
from weightprep.smoke.runtime import Placement, llm_load_kwargs, parameters_on_meta, still_on_meta
from weightprep.smoke.sources import load_tensors
from weightprep.smoke.specs import ModelSpec

LM_PREFIX = "language_model."


def load(
    spec: ModelSpec, weights: str, llm: str | None, placement: Placement, revision: str | None
) -> ProcessorPipeline:
    from transformers import (
        AutoConfig,
        AutoImageProcessor,
        AutoModelForCausalLM,
        AutoTokenizer,
        InstructBlipConfig,
        InstructBlipForConditionalGeneration,
        InstructBlipProcessor,
    )

    if llm is None:
        raise InputError(
            f"{spec.name} tests your prepared Vicuna: pass --llm DIR (apply-delta's output)"
        )
    try:
        cfg = InstructBlipConfig.from_pretrained(weights, revision=revision)
    except (OSError, ValueError) as exc:
        raise InputError(
            f"{weights}: cannot load an InstructBLIP config ({one_line(exc)})"
        ) from None
    llm_cfg = AutoConfig.from_pretrained(llm)
    want = cfg.text_config.hidden_size
    if llm_cfg.hidden_size != want:
        raise InputError(
            f"{llm}: hidden size {llm_cfg.hidden_size}, but {weights} projects into {want} "
            f"(a {'13B' if want == 5120 else '7B' if want == 4096 else 'different'} model)"
        )

    tok = lavis_tokenizer(AutoTokenizer.from_pretrained(llm), llm)
    qtok = AutoTokenizer.from_pretrained(weights, subfolder="qformer_tokenizer", revision=revision)
    images = AutoImageProcessor.from_pretrained(weights, revision=revision)
    processor = InstructBlipProcessor(images, tok, qtok, num_query_tokens=cfg.num_query_tokens)
    image_id = tok.convert_tokens_to_ids(processor.image_token.content)

    lm = AutoModelForCausalLM.from_pretrained(llm, **llm_load_kwargs(placement))
    resize_vocab(lm, len(tok))
    cfg.text_config = lm.config
    cfg.image_token_index = image_id

    with parameters_on_meta():
        model = InstructBlipForConditionalGeneration(cfg)
    parts = load_tensors(weights, lambda k: not k.startswith(LM_PREFIX), revision)
    proj = parts.get("language_projection.weight")
    if proj is not None and proj.shape[0] != llm_cfg.hidden_size:
        raise InputError(f"{weights}: language_projection outputs {proj.shape[0]}, not {want}")
    dtype = placement.torch_dtype
    result = model.load_state_dict(
        {k: v.to(dtype) for k, v in parts.items()}, strict=False, assign=True
    )
    missing = [k for k in result.missing_keys if not k.startswith(LM_PREFIX)]
    if missing or result.unexpected_keys:
        raise InputError(
            f"{weights}: not the InstructBLIP layout transformers expects "
            f"(missing {missing[:3]}, unexpected {result.unexpected_keys[:3]})"
        )
    model.language_model = lm
    left = still_on_meta(model)
    if left:
        raise InputError(f"{weights}: no weights for {left[:3]}")
    if placement.quantize == "none":
        model.to(placement.device)
    else:  # the quantized LM is already on the GPU
        for name in ("vision_model", "qformer", "language_projection"):
            getattr(model, name).to(placement.device)
        model.query_tokens.data = model.query_tokens.data.to(placement.device)
    model.eval()
    return ProcessorPipeline(
        model=model,
        processor=processor,
        template=spec.template,
        device=placement.device,
        dtype=dtype,
        image_token_id=image_id,
        notes=[f"vision tower, Q-Former and projection from {weights}; language model from {llm}"],
    )


def lavis_tokenizer(tok, where: str):
    """Vicuna's tokenizer as LAVIS's `blip2_vicuna_instruct` sets it up: `[PAD]` added, `</s>`
    as BOS, EOS and UNK, so every prompt starts with `</s>` (id 2)."""
    tok.add_special_tokens({"pad_token": "[PAD]", "bos_token": "</s>", "unk_token": "</s>"})
    tok.add_bos_token = True
    if hasattr(tok, "update_post_processor"):  # transformers 5.x keeps BOS in a post-processor
        tok.update_post_processor()
    ids = tok("a").input_ids
    if not ids or ids[0] != tok.convert_tokens_to_ids("</s>"):
        raise InputError(f"{where}: its tokenizer does not start prompts with </s> when told to")
    return tok
