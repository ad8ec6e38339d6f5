"""rinna's bilingual GPT-NeoX MiniGPT-4, composed here without a MiniGPT-4 checkout.

MiniGPT-4 (the version rinna's card pins) encodes an image with BLIP-2's EVA ViT, `ln_vision`
and Q-Former (32 query tokens, no text), projects the Q-Former outputs with one linear layer
`llama_proj` into the LLM's embedding space, and puts them where the prompt says `<ImageHere>`;
every text segment is tokenized without special tokens. In transformers' BLIP-2 the same parts
are `vision_model` (whose `post_layernorm` is `ln_vision`), `qformer` and `query_tokens`, read
here from `Salesforce/blip2-flan-t5-xxl` (or a folder): only the shards holding them. rinna's
`checkpoint.pth` holds `llama_proj` under `ckpt["model"]` and is loaded with
`weights_only=True`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from weightprep.errors import CheckpointError, InputError
from weightprep.io.pth import load_checkpoint
from weightprep.smoke.pipeline import strip_special
from weightprep.smoke.runtime import Placement, llm_load_kwargs, parameters_on_meta, still_on_meta
from weightprep.smoke.sources import file_path, load_tensors
from weightprep.smoke.specs import ModelSpec

PLACEHOLDER = "<ImageHere>"
CHECKPOINT = "checkpoint.pth"
VISION_PREFIXES = ("vision_model.", "qformer.", "query_tokens")


class ImageEncoder(nn.Module):
    """BLIP-2 vision tower + Q-Former + `llama_proj`: image -> LLM input embeddings."""

    def __init__(self, blip2_config: Any, llm_hidden: int) -> None:
        from transformers import Blip2QFormerModel, Blip2VisionModel

        super().__init__()
        self.vision_model = Blip2VisionModel(blip2_config.vision_config)
        self.qformer = Blip2QFormerModel(blip2_config.qformer_config)
        self.query_tokens = nn.Parameter(
            torch.zeros(1, blip2_config.num_query_tokens, blip2_config.qformer_config.hidden_size)
        )
        self.llama_proj = nn.Linear(blip2_config.qformer_config.hidden_size, llm_hidden)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        image_embeds = self.vision_model(pixel_values=pixel_values).last_hidden_state
        mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        queries = self.query_tokens.expand(image_embeds.shape[0], -1, -1)
        out = self.qformer(
            query_embeds=queries, encoder_hidden_states=image_embeds, encoder_attention_mask=mask
        ).last_hidden_state[:, : queries.shape[1]]
        return self.llama_proj(out)


def read_projection(path: Any, qformer_hidden: int, llm_hidden: int) -> dict[str, torch.Tensor]:
    """`llama_proj.weight`/`.bias` from a MiniGPT-4 training checkpoint, shapes checked."""
    ckpt = load_checkpoint(path)
    state = ckpt.get("model") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: no 'model' state dict (not a MiniGPT-4 checkpoint)")
    want = {"llama_proj.weight": (llm_hidden, qformer_hidden), "llama_proj.bias": (llm_hidden,)}
    out = {}
    for key, shape in want.items():
        t = state.get(key)
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"{path}: ckpt['model'] has no tensor {key}")
        if tuple(t.shape) != shape:
            raise CheckpointError(
                f"{path}: {key} has shape {tuple(t.shape)}, expected {shape} "
                f"(Q-Former hidden {qformer_hidden} -> LLM hidden {llm_hidden})"
            )
        out[key.removeprefix("llama_proj.")] = t
    return out


@dataclass
class MiniGPT4Pipeline:
    encoder: ImageEncoder
    lm: Any
    tokenizer: Any
    image_processor: Any
    template: str
    device: str
    dtype: torch.dtype
    notes: list[str] = field(default_factory=list)

    def _embed_text(self, text: str) -> torch.Tensor:
        ids = self.tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
        return self.lm.get_input_embeddings()(ids.to(self.device))

    @torch.no_grad()
    def encode(self, image: Any, prompt: str, *, image_tokens: bool = True) -> dict:
        text = self.template.format(prompt=prompt)
        before, sep, after = text.partition(PLACEHOLDER)
        if not image_tokens:
            before, sep = before + after, ""
        pieces = [self._embed_text(before)]
        if sep:
            pixels = self.image_processor(image, return_tensors="pt")["pixel_values"]
            pieces.append(self.encoder(pixels.to(self.device, self.dtype)).to(pieces[0].dtype))
            pieces.append(self._embed_text(after))
        embeds = torch.cat([p for p in pieces if p.shape[1]], dim=1)
        mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=self.device)
        return {"inputs_embeds": embeds, "attention_mask": mask}

    @torch.no_grad()
    def next_logits(self, inputs: dict) -> torch.Tensor:
        return self.lm(**inputs).logits[0, -1].float().cpu()

    @torch.no_grad()
    def generate(self, inputs: dict, settings: dict, max_new_tokens: int) -> list[int]:
        tok = self.tokenizer
        out = self.lm.generate(
            **inputs,
            **settings,
            max_new_tokens=max_new_tokens,
            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
        )[0].tolist()
        stop = {i for i in (tok.eos_token_id, tok.pad_token_id) if i is not None}
        return strip_special(out, stop)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def text_model(self) -> tuple[Any, Any, Any]:
        return self.lm, self.tokenizer, self.lm.config


def load(
    spec: ModelSpec,
    weights: str,
    llm: str | None,
    placement: Placement,
    revision: str | None,
    vision: str | None = None,
) -> MiniGPT4Pipeline:
    from transformers import AutoImageProcessor, AutoModelForCausalLM, AutoTokenizer, Blip2Config

    llm = llm or spec.llm
    vision = vision or spec.vision
    assert llm is not None and vision is not None
    try:
        blip2 = Blip2Config.from_pretrained(vision)
    except (OSError, ValueError) as exc:
        raise InputError(f"{vision}: not BLIP-2 weights ({exc})") from None
    tokenizer = AutoTokenizer.from_pretrained(llm, use_fast=False)
    lm = AutoModelForCausalLM.from_pretrained(llm, **llm_load_kwargs(placement))
    hidden = lm.config.hidden_size
    proj = read_projection(
        file_path(weights, CHECKPOINT, revision), blip2.qformer_config.hidden_size, hidden
    )
    with parameters_on_meta():
        encoder = ImageEncoder(blip2, hidden)
    parts = load_tensors(vision, lambda k: k.startswith(VISION_PREFIXES))
    parts.update({f"llama_proj.{k}": v for k, v in proj.items()})
    dtype = placement.torch_dtype
    result = encoder.load_state_dict(
        {k: v.to(dtype) for k, v in parts.items()}, strict=False, assign=True
    )
    left = still_on_meta(encoder)
    if left or result.unexpected_keys:
        raise InputError(
            f"{vision}: not the BLIP-2 layout transformers expects "
            f"(missing {left[:3]}, unexpected {result.unexpected_keys[:3]})"
        )
    encoder.to(placement.device).eval()
    if placement.quantize == "none":
        lm.to(placement.device)
    lm.eval()
    return MiniGPT4Pipeline(
        encoder=encoder,
        lm=lm,
        tokenizer=tokenizer,
        image_processor=AutoImageProcessor.from_pretrained(vision),
        template=spec.template,
        device=placement.device,
        dtype=dtype,
        notes=[f"ViT + Q-Former from {vision}; llama_proj from {weights}; LLM from {llm}"],
    )
