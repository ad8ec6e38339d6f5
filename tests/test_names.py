import pytest
import torch

from weightprep.llama.names import is_ignored, permute_rotary, rules_for, unpermute_rotary


@pytest.mark.parametrize("n_heads,rows,cols", [(8, 64, 64), (2, 16, 64), (32, 4096, 8)])
def test_unpermute_inverts_permute(n_heads: int, rows: int, cols: int) -> None:
    w = torch.randn(rows, cols)
    assert torch.equal(unpermute_rotary(permute_rotary(w, n_heads), n_heads), w)
    assert not torch.equal(permute_rotary(w, n_heads), w)


def test_permute_moves_interleaved_pairs_to_halves() -> None:
    # One head of size 4: Meta rows (r0, r1, r2, r3) pair (r0, r1), (r2, r3) for rotation; HF
    # pairs row j with row j + 2, so the order becomes (r0, r2, r1, r3).
    w = torch.arange(4.0).reshape(4, 1)
    assert permute_rotary(w, 1).flatten().tolist() == [0.0, 2.0, 1.0, 3.0]


def test_rules_cover_a_layer_once() -> None:
    rules = rules_for(2)
    assert len(rules) == 3 + 2 * 9
    assert len({r.hf for r in rules}) == len(rules)
    assert rules[0].hf == "model.embed_tokens.weight" and rules[-1].hf == "lm_head.weight"
    assert is_ignored("rope.freqs") and is_ignored("layers.0.attention.inner_attention.rope.freqs")
    assert not is_ignored("norm.weight")
