"""Meta -> Hugging Face tensor names, as data.

Each entry: Meta key -> (HF key, how model-parallel shards are merged, rotary permutation).
The merge dimension follows fairscale's layers in Meta's `llama/model.py`:
ColumnParallelLinear (wq, wk, wv, w1, w3, output) splits the output rows -> dim 0;
RowParallelLinear (wo, w2) splits the input columns -> dim 1; ParallelEmbedding splits the
embedding dimension -> dim 1; RMSNorm weights are replicated on every shard -> None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

Rotary = Literal["q", "k"] | None


@dataclass(frozen=True)
class NameRule:
    meta: str
    hf: str
    concat_dim: int | None
    rotary: Rotary = None


GLOBAL_RULES: tuple[NameRule, ...] = (
    NameRule("tok_embeddings.weight", "model.embed_tokens.weight", 1),
    NameRule("norm.weight", "model.norm.weight", None),
    NameRule("output.weight", "lm_head.weight", 0),
)

LAYER_RULES: tuple[NameRule, ...] = (
    NameRule("layers.{i}.attention.wq.weight", "model.layers.{i}.self_attn.q_proj.weight", 0, "q"),
    NameRule("layers.{i}.attention.wk.weight", "model.layers.{i}.self_attn.k_proj.weight", 0, "k"),
    NameRule("layers.{i}.attention.wv.weight", "model.layers.{i}.self_attn.v_proj.weight", 0),
    NameRule("layers.{i}.attention.wo.weight", "model.layers.{i}.self_attn.o_proj.weight", 1),
    NameRule("layers.{i}.feed_forward.w1.weight", "model.layers.{i}.mlp.gate_proj.weight", 0),
    NameRule("layers.{i}.feed_forward.w2.weight", "model.layers.{i}.mlp.down_proj.weight", 1),
    NameRule("layers.{i}.feed_forward.w3.weight", "model.layers.{i}.mlp.up_proj.weight", 0),
    NameRule("layers.{i}.attention_norm.weight", "model.layers.{i}.input_layernorm.weight", None),
    NameRule(
        "layers.{i}.ffn_norm.weight", "model.layers.{i}.post_attention_layernorm.weight", None
    ),
)

# Buffers Meta saved that HF recomputes from the config (the rotary frequency table).
IGNORED_SUFFIXES: tuple[str, ...] = ("rope.freqs",)


def rules_for(n_layers: int) -> list[NameRule]:
    """All rules for a model, in the order HF models list their parameters."""
    rules = [GLOBAL_RULES[0]]
    for i in range(n_layers):
        rules += [
            NameRule(r.meta.format(i=i), r.hf.format(i=i), r.concat_dim, r.rotary)
            for r in LAYER_RULES
        ]
    rules += GLOBAL_RULES[1:]
    return rules


def is_ignored(meta_key: str) -> bool:
    return meta_key.endswith(IGNORED_SUFFIXES)


def permute_rotary(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Meta's interleaved rotary layout -> HF's half-split layout, for a q or k weight.

    Meta rotates pairs (x0, x1), (x2, x3) ... of each head; HF's `rotate_half` pairs
    x_j with x_{j + head_dim/2}. Reordering each head's rows makes the two equal.
    """
    rows, cols = w.shape
    return w.reshape(n_heads, rows // n_heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def unpermute_rotary(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Inverse of `permute_rotary`: HF's half-split layout -> Meta's interleaved layout."""
    rows, cols = w.shape
    return w.reshape(n_heads, 2, rows // n_heads // 2, cols).transpose(1, 2).reshape(rows, cols)
