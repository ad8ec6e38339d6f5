"""What the runner needs from a loaded model, and the version of it that fits transformers'
processor-based vision-language models (InstructBLIP, BLIP-2, VipLLaVA)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch


class Pipeline(Protocol):
    device: str
    notes: list[str]

    def encode(self, image: Any, prompt: str, *, image_tokens: bool = True) -> dict: ...

    def next_logits(self, inputs: dict) -> torch.Tensor: ...

    def generate(self, inputs: dict, settings: dict, max_new_tokens: int) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def text_model(self) -> tuple[Any, Any, Any]: ...


def strip_special(ids: list[int], stop: set[int]) -> list[int]:
    """The answer's tokens: up to the first end/pad token."""
    out = []
    for i in ids:
        if i in stop:
            break
        out.append(i)
    return out


def resize_vocab(model: Any, size: int) -> None:
    """Grow a model's token embeddings (and untied output head) to `size` rows. The new rows (for
    tokens a processor adds: `<image>`, `[PAD]`) are set to the mean of the old ones, so they are
    deterministic and never stand out in the logits."""
    emb = model.get_input_embeddings()
    old = emb.weight.shape[0]
    if size <= old:
        return
    model.resize_token_embeddings(size, mean_resizing=False)
    with torch.no_grad():
        for layer in {
            id(m): m
            for m in (model.get_input_embeddings(), model.get_output_embeddings())
            if m is not None
        }.values():
            w = layer.weight
            w[old:] = w[:old].float().mean(0).to(w.dtype)
            bias = getattr(layer, "bias", None)
            if bias is not None and bias.shape[0] == size:
                bias[old:] = bias[:old].float().mean().to(bias.dtype)


def load_whole(model_cls, spec, weights: str, llm, placement, revision, what: str):
    """A model whose published weights hold its language model too (VipLLaVA, mBLIP), loaded
    with `from_pretrained` and placed; `--llm` does not apply to it."""
    from weightprep.errors import InputError
    from weightprep.smoke.runtime import llm_load_kwargs

    if llm is not None:
        raise InputError(f"{spec.name}: --llm does not apply; the language model is in --weights")
    try:
        model = model_cls.from_pretrained(weights, revision=revision, **llm_load_kwargs(placement))
    except (OSError, ValueError) as exc:
        raise InputError(f"{weights}: cannot load {what} weights ({exc})") from None
    if placement.quantize == "none":
        model.to(placement.device)
    return model.eval()


@dataclass
class ProcessorPipeline:
    """A transformers vision-language model driven through its processor."""

    model: Any
    processor: Any
    template: str
    device: str
    dtype: torch.dtype
    image_token_id: int
    notes: list[str] = field(default_factory=list)

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    def encode(self, image: Any, prompt: str, *, image_tokens: bool = True) -> dict:
        text = self.template.format(prompt=prompt)
        enc = self.processor(images=image, text=text, return_tensors="pt")
        if not image_tokens:  # what a prompt without placeholders gives (tests use this)
            keep = enc["input_ids"][0] != self.image_token_id
            for k in ("input_ids", "attention_mask"):
                enc[k] = enc[k][:, keep]
        out = {}
        for k, v in enc.items():
            v = v.to(self.device)
            out[k] = v.to(self.dtype) if v.is_floating_point() else v
        return out

    def _is_encoder_decoder(self) -> bool:
        return bool(self.model.config.get_text_config().is_encoder_decoder)

    @torch.no_grad()
    def next_logits(self, inputs: dict) -> torch.Tensor:
        extra = {}
        if self._is_encoder_decoder():
            start = self.model.config.get_text_config().decoder_start_token_id
            extra["decoder_input_ids"] = torch.tensor([[start]], device=self.device)
        return self.model(**inputs, **extra).logits[0, -1].float().cpu()

    @torch.no_grad()
    def generate(self, inputs: dict, settings: dict, max_new_tokens: int) -> list[int]:
        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        out = self.model.generate(
            **inputs, **settings, max_new_tokens=max_new_tokens, pad_token_id=pad
        )[0].tolist()
        prompt = inputs["input_ids"][0].tolist()
        if out[: len(prompt)] == prompt:  # decoder-only models return the prompt too
            out = out[len(prompt) :]
        elif self._is_encoder_decoder() and out:
            out = out[1:]  # the decoder start token
        stop = {i for i in (tok.eos_token_id, tok.pad_token_id) if i is not None}
        return strip_special(out, stop)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def text_model(self) -> tuple[Any, Any, Any]:
        """(model that maps input_ids to text logits, its tokenizer, its config), for the
        language check: BLIP-2 and InstructBLIP hold a whole LM with its head; the LLaVA
        family's whole model takes input_ids alone."""
        lm = getattr(self.model, "language_model", None)
        if lm is None or lm.get_output_embeddings() is None:
            lm = self.model
        return lm, self.tokenizer, self.model.config.get_text_config()
