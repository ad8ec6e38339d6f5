"""Real LLaMA params.json values -> configs and shapes, checked on the meta device (no memory)."""

import json

import pytest
import torch

from weightprep.errors import InputError
from weightprep.llama.convert import expected_shape
from weightprep.llama.names import rules_for
from weightprep.llama.params import hf_config, parse_params

# Meta's params.json for each size, as shipped (LLaMA-1), and LLaMA-2 70B's.
REAL = {
    "7B": (
        '{"dim": 4096, "multiple_of": 256, "n_heads": 32, "n_layers": 32, "norm_eps": 1e-06, "vocab_size": -1}',
        11008,
        6_738_415_616,
    ),
    "13B": (
        '{"dim": 5120, "multiple_of": 256, "n_heads": 40, "n_layers": 40, "norm_eps": 1e-06, "vocab_size": -1}',
        13824,
        13_015_864_320,
    ),
    "30B": (
        '{"dim": 6656, "multiple_of": 256, "n_heads": 52, "n_layers": 60, "norm_eps": 1e-06, "vocab_size": -1}',
        17920,
        32_528_943_616,
    ),
    "65B": (
        '{"dim": 8192, "multiple_of": 256, "n_heads": 64, "n_layers": 80, "norm_eps": 1e-05, "vocab_size": -1}',
        22016,
        65_285_660_672,
    ),
    "70B": (
        '{"dim": 8192, "multiple_of": 4096, "ffn_dim_multiplier": 1.3, "n_heads": 64, "n_kv_heads": 8, "n_layers": 80, "norm_eps": 1e-05, "vocab_size": -1}',
        28672,
        68_976_648_192,
    ),
}


@pytest.mark.parametrize("size", list(REAL))
def test_real_sizes_on_meta_device(size: str) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    raw, ffn, n_params = REAL[size]
    p = parse_params(json.loads(raw))
    assert p.intermediate_size == ffn
    version = 2 if p.llama2_keys else 1
    cfg = hf_config(p, 32000, version, "float16")
    assert cfg["max_position_embeddings"] == (4096 if size == "70B" else 2048)
    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**cfg))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    rules = rules_for(p.n_layers)
    assert {r.hf for r in rules} == set(shapes)
    for r in rules:
        assert shapes[r.hf] == expected_shape(r, p, 32000), r.hf
    assert sum(v.numel() for v in model.parameters()) == n_params


def test_llama2_keys_detected() -> None:
    assert parse_params(json.loads(REAL["70B"][0])).llama2_keys
    assert not parse_params(json.loads(REAL["7B"][0])).llama2_keys


@pytest.mark.parametrize(
    "raw,match",
    [
        ({"dim": 64, "n_heads": 8, "n_layers": 2}, "missing key"),
        ({"dim": 64, "n_heads": 8, "n_layers": 2, "norm_eps": 1e-6, "moe": 1}, "unknown key"),
        ({"dim": 64, "n_heads": 6, "n_layers": 2, "norm_eps": 1e-6}, "head size"),
        ({"dim": 64, "n_heads": 8, "n_kv_heads": 3, "n_layers": 2, "norm_eps": 1e-6}, "head size"),
        ({"dim": "x", "n_heads": 8, "n_layers": 2, "norm_eps": 1e-6}, "bad value"),
    ],
)
def test_bad_params(raw: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        parse_params(raw)
