"""Meta's `params.json` -> typed params -> a Hugging Face `LlamaConfig` dict."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from weightprep.errors import InputError

# Context length is not in params.json; it is a property of the release.
CONTEXT_LENGTH = {1: 2048, 2: 4096}
# Keys only LLaMA-2's params.json carries (70B: grouped-query attention, wider FFN).
LLAMA2_ONLY_KEYS = frozenset({"n_kv_heads", "ffn_dim_multiplier"})
KNOWN_KEYS = frozenset(
    {"dim", "n_layers", "n_heads", "vocab_size", "multiple_of", "norm_eps"}
    | LLAMA2_ONLY_KEYS
    | {"rope_theta", "max_batch_size", "max_seq_len"}
)
# Ceilings far above any LLaMA (405B: dim 16384, 126 layers, 128 heads, 128256 tokens), so a
# hostile params.json is refused before anything is sized from it (rules_for(n_layers) builds a
# list per layer; a shape check quoting dim 10^9 is harmless, a loop over 10^9 layers is not).
LIMITS = {
    "dim": 2**17,
    "n_layers": 2**12,
    "n_heads": 2**12,
    "n_kv_heads": 2**12,
    "vocab_size": 2**21,
    "multiple_of": 2**17,
}
MAX_PARAMS_BYTES = 2**20  # Meta's are about 100 bytes
# Meta's download: how many model-parallel shards each size ships as.
KNOWN_SHARDS = {"7B": 1, "13B": 2, "30B": 4, "33B": 4, "65B": 8, "70B": 8}


@dataclass(frozen=True)
class LlamaParams:
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int  # -1: take it from the tokenizer
    multiple_of: int
    ffn_dim_multiplier: float | None
    norm_eps: float
    rope_theta: float
    llama2_keys: bool

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def intermediate_size(self) -> int:
        """SwiGLU width as Meta's `FeedForward` computes it (7B: 11008; 70B: 28672)."""
        hidden = int(2 * (4 * self.dim) / 3)
        if self.ffn_dim_multiplier is not None:
            hidden = int(self.ffn_dim_multiplier * hidden)
        return self.multiple_of * ((hidden + self.multiple_of - 1) // self.multiple_of)


def parse_params(raw: dict, source: str = "params.json") -> LlamaParams:
    """Validate a parsed params.json. Example: `parse_params({"dim": 4096, ...})`."""
    missing = [k for k in ("dim", "n_layers", "n_heads", "norm_eps") if k not in raw]
    if missing:
        raise InputError(f"{source}: missing key(s) {', '.join(missing)}")
    unknown = sorted(set(raw) - KNOWN_KEYS)
    if unknown:
        shown = [k if k.isprintable() and len(k) <= 40 else repr(k)[:40] for k in unknown[:5]]
        raise InputError(
            f"{source}: unknown key(s) {', '.join(shown)}{' ...' if len(unknown) > 5 else ''}; "
            "is this a LLaMA 1/2 params.json?"
        )
    try:
        p = LlamaParams(
            dim=int(raw["dim"]),
            n_layers=int(raw["n_layers"]),
            n_heads=int(raw["n_heads"]),
            n_kv_heads=int(raw.get("n_kv_heads") or raw["n_heads"]),
            vocab_size=int(raw.get("vocab_size", -1)),
            multiple_of=int(raw.get("multiple_of", 256)),
            ffn_dim_multiplier=(
                float(raw["ffn_dim_multiplier"])
                if raw.get("ffn_dim_multiplier") is not None
                else None
            ),
            norm_eps=float(raw["norm_eps"]),
            rope_theta=float(raw.get("rope_theta", 10000.0)),
            llama2_keys=bool(LLAMA2_ONLY_KEYS & set(raw)),
        )
    except (TypeError, ValueError, OverflowError) as exc:
        raise InputError(f"{source}: bad value ({exc})") from exc
    if min(p.dim, p.n_layers, p.n_heads, p.n_kv_heads, p.multiple_of) <= 0:
        raise InputError(f"{source}: dim, n_layers, n_heads, n_kv_heads, multiple_of must be > 0")
    for key, limit in LIMITS.items():
        if getattr(p, key) > limit:
            raise InputError(
                f"{source}: {key} {getattr(p, key)} is beyond any LLaMA (at most {limit}); "
                "is this a LLaMA 1/2 params.json?"
            )
    floats = {"norm_eps": p.norm_eps, "rope_theta": p.rope_theta}
    if p.ffn_dim_multiplier is not None:
        floats["ffn_dim_multiplier"] = p.ffn_dim_multiplier
    for key, value in floats.items():
        if not (0 < value < 1e12):  # also refuses NaN and Infinity, which json accepts
            raise InputError(f"{source}: {key} {value} must be a positive finite number")
    if p.intermediate_size > 16 * LIMITS["dim"]:
        raise InputError(
            f"{source}: the FFN width {p.intermediate_size} (from dim, multiple_of and "
            "ffn_dim_multiplier) is beyond any LLaMA"
        )
    if p.dim % p.n_heads or p.head_dim % 2 or p.n_heads % p.n_kv_heads:
        raise InputError(
            f"{source}: dim {p.dim} / n_heads {p.n_heads} / n_kv_heads {p.n_kv_heads} "
            "do not give an even head size shared by whole key/value groups"
        )
    return p


def read_params(path: Path) -> LlamaParams:
    if not path.is_file():
        raise InputError(f"{path}: params.json not found (Meta ships one in each size folder)")
    from weightprep.io.jsonfile import read_object

    return parse_params(read_object(path, MAX_PARAMS_BYTES), str(path))


def hf_config(p: LlamaParams, vocab_size: int, llama_version: int, dtype: str) -> dict:
    """A config.json that transformers 4.28+ and 5.x both read as the same LlamaConfig.

    `torch_dtype` is what 4.x reads; 5.x reads `dtype` and still accepts `torch_dtype`.
    """
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": p.dim,
        "intermediate_size": p.intermediate_size,
        "num_attention_heads": p.n_heads,
        "num_hidden_layers": p.n_layers,
        "num_key_value_heads": p.n_kv_heads,
        "head_dim": p.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": CONTEXT_LENGTH[llama_version],
        "rms_norm_eps": p.norm_eps,
        "rope_theta": p.rope_theta,
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "initializer_range": 0.02,
        "tie_word_embeddings": False,
        "use_cache": True,
        "vocab_size": vocab_size,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": None,
        "torch_dtype": dtype,
    }


def generation_config() -> dict:
    """LLaMA's BOS/EOS and nothing else: no pad id (LLaMA has no pad piece; a pad of 0, <unk>,
    makes `generate()` fill finished rows with <unk>) and no sampling defaults (greedy unless the
    caller asks). docs/convert.md#generation_configjson says why."""
    return {"bos_token_id": 1, "eos_token_id": 2}
