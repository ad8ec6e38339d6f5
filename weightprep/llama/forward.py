"""LLaMA's forward pass in plain torch, one decoder layer at a time.

Written from the architecture (RMSNorm, rotary embeddings in Hugging Face's half-split layout,
grouped-query attention, SwiGLU), not from any model code, so that a weight folder can be
scored without loading the model: each layer's weights are fetched through `weight(name)`, used
and dropped, while the passage's hidden states are carried from layer to layer. The same
functions train the tiny example (with autograd) and score a 7B folder (streamed, float32).
`tests/test_language.py` proves the result equals transformers' `LlamaForCausalLM`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from weightprep.errors import InputError

Weight = Callable[[str], torch.Tensor]

LAYER = "model.layers.{i}."


@dataclass(frozen=True)
class LlamaShape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    eps: float
    rope_theta: float
    rope_factor: float  # linear position scaling (1.0: none)
    tied: bool
    context: int

    @classmethod
    def from_config(cls, cfg: dict, where: str = "config.json") -> LlamaShape:
        try:
            hidden = int(cfg["hidden_size"])
            heads = int(cfg["num_attention_heads"])
            scaling = cfg.get("rope_scaling")
            factor = 1.0
            if scaling:
                kind = scaling.get("rope_type", scaling.get("type"))
                if kind != "linear":
                    raise InputError(
                        f"{where}: rope_scaling {kind!r} is not supported by the language check "
                        "(LLaMA-1/2 and Vicuna use none; linear is supported)"
                    )
                factor = float(scaling["factor"])
            return cls(
                hidden=hidden,
                layers=int(cfg["num_hidden_layers"]),
                heads=heads,
                kv_heads=int(cfg.get("num_key_value_heads") or heads),
                head_dim=int(cfg.get("head_dim") or hidden // heads),
                vocab=int(cfg["vocab_size"]),
                eps=float(cfg.get("rms_norm_eps", 1e-6)),
                rope_theta=float(cfg.get("rope_theta") or 10000.0),
                rope_factor=factor,
                tied=bool(cfg.get("tie_word_embeddings", False)),
                context=int(
                    cfg.get("max_position_embeddings") or cfg.get("max_sequence_length") or 2048
                ),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"{where}: not a LLaMA config ({type(exc).__name__}: {exc})") from None

    @classmethod
    def read(cls, folder: Path) -> LlamaShape:
        return cls.from_config(read_config(folder), str(folder / "config.json"))


def read_config(folder: Path) -> dict:
    """A model folder's config.json as a dict; InputError naming the file when it is not one."""
    p = folder / "config.json"
    from weightprep.io.jsonfile import read_object

    if not p.is_file():
        raise InputError(f"{p}: missing (the model's shape is read there)")
    return read_object(p)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotary_tables(shape: LlamaShape, n: int, dtype=torch.float32) -> tuple[torch.Tensor, ...]:
    """cos and sin for positions 0..n-1, each (n, head_dim), half-split layout."""
    hd = shape.head_dim
    inv = 1.0 / (shape.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    pos = torch.arange(n, dtype=torch.float32) / shape.rope_factor
    ang = torch.outer(pos, inv)
    ang = torch.cat([ang, ang], dim=-1)
    return ang.cos().to(dtype), ang.sin().to(dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def decoder_layer(
    h: torch.Tensor, weight: Weight, i: int, shape: LlamaShape, cos: torch.Tensor, sin: torch.Tensor
) -> torch.Tensor:
    """One decoder layer on hidden states `h` (batch, tokens, hidden), causal."""
    p = LAYER.format(i=i)
    b, n, _ = h.shape
    x = rms_norm(h, weight(p + "input_layernorm.weight"), shape.eps)
    q = (x @ weight(p + "self_attn.q_proj.weight").T).view(b, n, shape.heads, shape.head_dim)
    k = (x @ weight(p + "self_attn.k_proj.weight").T).view(b, n, shape.kv_heads, shape.head_dim)
    v = (x @ weight(p + "self_attn.v_proj.weight").T).view(b, n, shape.kv_heads, shape.head_dim)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
    if shape.kv_heads != shape.heads:
        rep = shape.heads // shape.kv_heads
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    a = a.transpose(1, 2).reshape(b, n, shape.heads * shape.head_dim)
    h = h + a @ weight(p + "self_attn.o_proj.weight").T
    x = rms_norm(h, weight(p + "post_attention_layernorm.weight"), shape.eps)
    gate = F.silu(x @ weight(p + "mlp.gate_proj.weight").T)
    up = x @ weight(p + "mlp.up_proj.weight").T
    return h + (gate * up) @ weight(p + "mlp.down_proj.weight").T


def head_name(shape: LlamaShape) -> str:
    return "model.embed_tokens.weight" if shape.tied else "lm_head.weight"


def hidden_states(ids: torch.Tensor, weight: Weight, shape: LlamaShape) -> torch.Tensor:
    """Final-normed hidden states for token ids (batch, tokens)."""
    h = F.embedding(ids, weight("model.embed_tokens.weight"))
    cos, sin = rotary_tables(shape, ids.shape[1], h.dtype)
    for i in range(shape.layers):
        h = decoder_layer(h, weight, i, shape, cos, sin)
    return rms_norm(h, weight("model.norm.weight"), shape.eps)


def logits(ids: torch.Tensor, weight: Weight, shape: LlamaShape) -> torch.Tensor:
    """Full logits (batch, tokens, vocab): for training and tests; scoring uses `token_nll`."""
    return hidden_states(ids, weight, shape) @ weight(head_name(shape)).T


def token_nll(
    h: torch.Tensor, head: torch.Tensor, targets: torch.Tensor, rows: int = 8192
) -> torch.Tensor:
    """Negative log-likelihood of `targets` (tokens,) given hidden states `h` (tokens, hidden),
    computing the LM head `rows` vocabulary rows at a time (a float32 copy of LLaMA's whole
    head would take 0.5 GB): a running log-sum-exp over the chunks, and the target logits."""
    n = h.shape[0]
    lse = torch.full((n,), float("-inf"))
    target_logit = torch.empty(n)
    for start in range(0, head.shape[0], rows):
        chunk = h @ head[start : start + rows].float().T
        lse = torch.logaddexp(lse, torch.logsumexp(chunk, dim=-1))
        inside = (targets >= start) & (targets < start + chunk.shape[1])
        idx = inside.nonzero(as_tuple=True)[0]
        target_logit[idx] = chunk[idx, targets[idx] - start]
    return lse - target_logit
