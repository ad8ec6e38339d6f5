"""apply-delta / make-delta / compare: FastChat's exact result, streamed, with clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import peer_python, run_peer
from tests.delta_fixtures import (
    copy_side_files,
    make_lmsys_delta,
    make_tuned,
    read_all,
    save_bin_shards,
)
from weightprep.cli.app import app
from weightprep.delta import apply_delta, make_delta
from weightprep.io.atomic import partial_path


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="session")
def trio(converted, tmp_path_factory):
    """(base, tuned, delta): our converted 7B example, a nudged copy, and lmsys-style delta."""
    root = tmp_path_factory.mktemp("delta")
    base = converted("7B")
    tuned = make_tuned(base, root / "tuned")
    delta = make_lmsys_delta(base, tuned, root / "delta", shards=2)
    return base, tuned, delta


def base_variant(base: Path, kind: str, root: Path) -> Path:
    """The same base weights as one .bin, sharded .bin, or sharded safetensors."""
    out = root / f"base-{kind}"
    if out.exists():
        return out
    tensors = read_all(base)
    if kind == "bin":
        save_bin_shards(tensors, out, 1)
    elif kind == "bin-sharded":
        save_bin_shards(tensors, out, 3)
    elif kind == "safetensors-sharded":
        from weightprep.io.safetensors_writer import TensorSpec, plan_shards, write_sharded
        from weightprep.llama.convert import convert_meta_to_hf  # noqa: F401  (same writer)

        out.mkdir()
        specs = [TensorSpec(k, t.dtype, tuple(t.shape)) for k, t in tensors.items()]
        write_sharded(out, plan_shards(specs, 40_000), tensors.items())
    else:
        return base
    copy_side_files(base, out)
    return out


def fastchat_apply(base: Path, delta: Path, out: Path, *extra: str) -> Path:
    code = (
        "import sys, runpy\n"
        "sys.argv = ['apply_delta'] + sys.argv[1:]\n"
        "runpy.run_module('fastchat.model.apply_delta', run_name='__main__')\n"
    )
    run_peer(
        "fastchat-0.2.36",
        code,
        "--base-model-path",
        str(base),
        "--target-model-path",
        str(out),
        "--delta-path",
        str(delta),
        *extra,
    )
    return out


@pytest.mark.peer
@pytest.mark.parametrize("kind", ["safetensors", "safetensors-sharded", "bin", "bin-sharded"])
def test_bit_identical_to_fastchat(kind: str, trio, tmp_path: Path) -> None:
    base, _, delta = trio
    b = base_variant(base, kind, tmp_path)
    ours = apply_delta(b, delta, tmp_path / "ours")
    theirs = read_all(fastchat_apply(b, delta, tmp_path / "fastchat"))
    mine = read_all(ours.output)
    assert mine.keys() == theirs.keys() and len(mine) == 21
    for k in mine:
        assert mine[k].dtype == theirs[k].dtype == torch.float16
        assert torch.equal(mine[k].view(torch.int16), theirs[k].view(torch.int16)), k
    a = json.loads((ours.output / "config.json").read_text())
    f = json.loads((tmp_path / "fastchat" / "config.json").read_text())
    model_keys = [
        "hidden_size",
        "intermediate_size",
        "num_attention_heads",
        "num_hidden_layers",
        "num_key_value_heads",
        "rms_norm_eps",
        "vocab_size",
        "max_position_embeddings",
        "rope_theta",
        "bos_token_id",
        "eos_token_id",
        "tie_word_embeddings",
        "torch_dtype",
    ]
    assert {k: a[k] for k in model_keys} == {k: f[k] for k in model_keys}


def test_round_trip_exact_where_float16_allows(trio, tmp_path: Path) -> None:
    """apply(base, make(base, tuned)) == tuned wherever t - b is exact (Sterbenz: b/2 <= t <= 2b);
    elsewhere float16 rounding of t - b can move the result by at most one unit in the last
    place of max(|b|, |t|)."""
    base, tuned, _ = trio
    d = make_delta(base, tuned, tmp_path / "delta")
    out = apply_delta(base, d.output, tmp_path / "again")
    b, t, r = read_all(base), read_all(tuned), read_all(out.output)
    exact_total = 0
    for k in t:
        bf, tf, rf = b[k].float(), t[k].float(), r[k].float()
        sterbenz = (bf * tf > 0) & (tf.abs() >= bf.abs() / 2) & (tf.abs() <= bf.abs() * 2)
        assert torch.equal(rf[sterbenz], tf[sterbenz]), k
        exact_total += int(sterbenz.sum())
        big = torch.maximum(bf.abs(), tf.abs())
        ulp = torch.pow(2.0, torch.floor(torch.log2(big.clamp(min=2.0**-14))) - 10)
        assert ((rf - tf).abs() <= ulp).all(), k
    assert exact_total > 1000


def test_output_loads_and_tokenizer_matches_sentencepiece(trio, tmp_path: Path) -> None:
    import sentencepiece as spm
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    from tests.strings import STRINGS

    base, _, delta = trio
    out = apply_delta(base, delta, tmp_path / "v").output
    model = LlamaForCausalLM.from_pretrained(out)
    assert model.dtype == torch.float16
    sp = spm.SentencePieceProcessor(model_file=str(delta / "tokenizer.model"))
    fast = PreTrainedTokenizerFast.from_pretrained(out)
    assert [fast(s)["input_ids"] for s in STRINGS] == [[1, *sp.encode(s)] for s in STRINGS]
    ids = fast("The image shows", return_tensors="pt").input_ids
    assert (
        model.generate(ids, max_new_tokens=3, min_new_tokens=3, do_sample=False).shape[1]
        == ids.shape[1] + 3
    )


@pytest.mark.parametrize(
    "damage,match",
    [
        ("missing", "only in the base"),
        ("extra", "only in the delta"),
        ("shape", "has shape"),
        ("vocab", "Vicuna v0"),
    ],
)
def test_preflight_refuses_mismatched_delta_fast(
    damage: str, match: str, trio, tmp_path: Path, monkeypatch
) -> None:
    base, _, delta = trio
    t = read_all(delta)
    if damage == "missing":
        del t["model.layers.1.mlp.up_proj.weight"]
    elif damage == "extra":
        t["model.layers.9.mlp.up_proj.weight"] = torch.zeros(2, dtype=torch.float16)
    elif damage == "shape":
        t["model.norm.weight"] = torch.zeros(65, dtype=torch.float16)
    else:
        t["model.embed_tokens.weight"] = torch.zeros(513, 64, dtype=torch.float16)
    bad = tmp_path / "bad"
    save_bin_shards(t, bad, 2)
    copy_side_files(delta, bad)

    # Preflight reads headers only: it must fail before any output is staged.
    def no_writing(*a, **k):
        raise AssertionError("output writing started before preflight failed")

    monkeypatch.setattr("weightprep.delta.staged_folder", no_writing)
    res = invoke("apply-delta", base, bad, tmp_path / "out")
    assert res.exit_code == 2 and match in res.output, res.output
    assert not (tmp_path / "out").exists() and not partial_path(tmp_path / "out").exists()


def test_rotary_inv_freq_buffers_are_ignored(trio, tmp_path: Path) -> None:
    base, _, delta = trio
    t = read_all(delta)
    t["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(4)
    d = tmp_path / "old-delta"
    save_bin_shards(t, d, 1)
    copy_side_files(delta, d)
    assert apply_delta(base, d, tmp_path / "o").n_tensors == 21


def test_verify_with_and_without_manifest(trio, tmp_path: Path) -> None:
    base, _, delta = trio
    res = invoke("apply-delta", base, delta, tmp_path / "a", "--verify", "--json")
    assert res.exit_code == 0
    assert "nothing compared: no --manifest given" in json.loads(res.stdout)["verified"]
    m = tmp_path / "a" / "manifest.yaml"
    res = invoke("apply-delta", base, delta, tmp_path / "b", "--verify", "--manifest", m)
    assert res.exit_code == 0 and "tensor digests" in res.output, res.output
    # A different delta gives different tensors: exit 1, names given, nothing kept.
    other = make_lmsys_delta(base, make_tuned(base, tmp_path / "t2", seed=7), tmp_path / "d2")
    res = invoke("apply-delta", base, other, tmp_path / "c", "--verify", "--manifest", m)
    assert res.exit_code == 1 and "differs" in res.output and "model." in res.output
    assert not (tmp_path / "c").exists() and not partial_path(tmp_path / "c").exists()


def test_verify_base_catches_wrong_base(trio, converted, tmp_path: Path) -> None:
    base, _, delta = trio
    m = tmp_path / "base.yaml"
    assert invoke("hash", base, "-o", m, "--tensors", "-q").exit_code == 0
    assert (
        invoke("apply-delta", base, delta, tmp_path / "ok", "--verify-base", m, "-q").exit_code == 0
    )
    wrong = converted("7B", "bfloat16")
    res = invoke("apply-delta", wrong, delta, tmp_path / "no", "--verify-base", m)
    assert res.exit_code == 1 and "does not match" in res.output
    assert not (tmp_path / "no").exists()


def test_compare(trio, tmp_path: Path) -> None:
    base, tuned, delta = trio
    out = apply_delta(base, delta, tmp_path / "x").output
    bins = tmp_path / "bins"
    save_bin_shards(read_all(out), bins, 2)
    res = invoke("compare", out, bins)
    assert res.exit_code == 0 and "identical: 21/21" in res.output
    res = invoke("compare", out, tuned, "--json")
    rep = json.loads(res.stdout)
    assert res.exit_code == 1 and not rep["identical"]
    assert all(t["max_abs_diff"] is None or t["max_abs_diff"] < 0.01 for t in rep["tensors"])
    res = invoke("apply-delta", base, delta, tmp_path / "y", "--compare-to", bins, "-q")
    assert res.exit_code == 0 and "identical: 21/21" in res.output


def test_refuses_overwrite(trio, tmp_path: Path) -> None:
    base, _, delta = trio
    (tmp_path / "o").mkdir()
    with pytest.raises(Exception, match="already exists"):
        apply_delta(base, delta, tmp_path / "o")


@pytest.mark.peer
def test_fastchat_low_cpu_mem_empty_output_is_an_error(trio, tmp_path: Path, monkeypatch) -> None:
    """FastChat's --low-cpu-mem on a safetensors base exits 0 with an empty weight_map."""
    base, _, delta = trio
    raw = fastchat_apply(base, delta, tmp_path / "raw", "--low-cpu-mem")
    idx = json.loads((raw / "pytorch_model.bin.index.json").read_text())
    assert idx["weight_map"] == {}  # FastChat's silent failure, reproduced
    monkeypatch.setenv("WEIGHTPREP_FASTCHAT_PYTHON", str(peer_python("fastchat-0.2.36")))
    res = invoke(
        "apply-delta", base, delta, tmp_path / "out", "--backend", "fastchat", "--low-cpu-mem"
    )
    assert res.exit_code == 1 and "empty model" in res.output, res.output
    assert not (tmp_path / "out").exists() and not partial_path(tmp_path / "out").exists()
    res = invoke("apply-delta", base, delta, tmp_path / "ok", "--backend", "fastchat")
    assert res.exit_code == 0, res.output
    a, b = read_all(tmp_path / "ok"), read_all(apply_delta(base, delta, tmp_path / "s").output)
    assert all(torch.equal(a[k], b[k]) for k in b)


@pytest.mark.peer
def test_fastchat_bf16_drift_is_an_error(trio, converted, tmp_path: Path, monkeypatch) -> None:
    """--low-cpu-mem adds in the base's dtype: a bf16 .bin-sharded base gives bf16 output."""
    _, _, delta = trio
    bf = base_variant(converted("7B", "bfloat16"), "bin-sharded", tmp_path)
    # FastChat's low-cpu-mem globs pytorch_model-*.bin: sharded names it can see.
    monkeypatch.setenv("WEIGHTPREP_FASTCHAT_PYTHON", str(peer_python("fastchat-0.2.36")))
    res = invoke(
        "apply-delta", bf, delta, tmp_path / "out", "--backend", "fastchat", "--low-cpu-mem"
    )
    assert res.exit_code == 1 and "bfloat16 instead of float16" in res.output, res.output


def test_fastchat_backend_missing_says_how_to_install(trio, tmp_path: Path, monkeypatch) -> None:
    base, _, delta = trio
    monkeypatch.setenv("WEIGHTPREP_FASTCHAT_PYTHON", os.sys.executable)
    res = invoke("apply-delta", base, delta, tmp_path / "o", "--backend", "fastchat")
    if res.exit_code == 0:
        pytest.skip("fastchat is importable in this interpreter")
    assert res.exit_code == 2 and "pip install --no-deps fschat==0.2.36" in res.output


@pytest.mark.peer
def test_output_loads_in_lavis_transformers(trio, tmp_path: Path) -> None:
    base, _, delta = trio
    out = apply_delta(base, delta, tmp_path / "v").output
    code = (
        "import sys, torch\n"
        "from transformers import LlamaForCausalLM, LlamaTokenizer\n"
        "tok = LlamaTokenizer.from_pretrained(sys.argv[1], use_fast=False)\n"
        "m = LlamaForCausalLM.from_pretrained(sys.argv[1], torch_dtype='auto')\n"
        "ids = tok(' Write a short description for the image.', return_tensors='pt').input_ids\n"
        "print(m.dtype, ids.tolist()[0], m.generate(ids, max_new_tokens=2, min_new_tokens=2).shape[1])\n"
    )
    import sentencepiece as spm

    line = run_peer("transformers-4.33.2", code, str(out)).strip().splitlines()[-1]
    sp = spm.SentencePieceProcessor(model_file=str(delta / "tokenizer.model"))
    want = [1, *sp.encode(" Write a short description for the image.")]
    assert line.startswith("torch.float16 ") and str(want).replace(" ", "") in line.replace(" ", "")


def test_make_delta_cli(trio, tmp_path: Path) -> None:
    base, tuned, _ = trio
    res = invoke("make-delta", base, tuned, tmp_path / "d", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["n_tensors"] == 21
    assert invoke("apply-delta", base, tmp_path / "d", tmp_path / "again", "-q").exit_code == 0


def test_tensor_digests_only_when_verifying(trio, tmp_path: Path) -> None:
    from weightprep.manifest import read_manifest

    base, _, delta = trio
    plain = apply_delta(base, delta, tmp_path / "plain").output
    assert read_manifest(plain / "manifest.yaml").tensors == {}
    checked = apply_delta(base, delta, tmp_path / "checked", verify=True).output
    assert len(read_manifest(checked / "manifest.yaml").tensors) == 21
