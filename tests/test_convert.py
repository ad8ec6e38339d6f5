"""convert_meta_to_hf: exact bits, an independent forward pass, safe outputs, clear errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from tests.conftest import SIZES
from weightprep.errors import OutputExistsError
from weightprep.io.atomic import partial_path
from weightprep.llama.convert import convert_meta_to_hf
from weightprep.llama.names import rules_for, unpermute_rotary
from weightprep.llama.params import read_params


def load_hf(folder: Path) -> dict[str, torch.Tensor]:
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    out = {}
    for name, fname in index["weight_map"].items():
        with safe_open(str(folder / fname), framework="pt") as f:
            out[name] = f.get_tensor(name)
    return out


def load_meta_full(size_dir: Path) -> dict[str, torch.Tensor]:
    """Merge Meta's shards with plain torch.load, independently of the converter's code paths."""
    parts = [torch.load(p, weights_only=True) for p in sorted(size_dir.glob("consolidated.*.pth"))]
    row = ("wq", "wk", "wv", "w1", "w3", "output")
    col = ("wo", "w2", "tok_embeddings")
    full = {}
    for k in parts[0]:
        kind = k.split(".")[-2]
        if kind in row:
            full[k] = torch.cat([p[k] for p in parts], 0)
        elif kind in col:
            full[k] = torch.cat([p[k] for p in parts], 1)
        else:
            full[k] = parts[0][k]
    return full


@pytest.mark.parametrize("size", SIZES)
def test_float16_keeps_meta_bits(size: str, meta_root: Path, converted) -> None:
    out = converted(size)
    p = read_params(meta_root / size / "params.json")
    meta = load_meta_full(meta_root / size)
    hf = load_hf(out)
    assert len(hf) == len(rules_for(p.n_layers))
    for r in rules_for(p.n_layers):
        t = hf[r.hf]
        assert t.dtype == torch.float16
        if r.rotary:
            t = unpermute_rotary(t, p.n_heads if r.rotary == "q" else p.n_kv_heads)
        assert torch.equal(t.view(torch.int16), meta[r.meta].view(torch.int16)), r.hf


def meta_forward(w: dict[str, torch.Tensor], p, ids: torch.Tensor) -> torch.Tensor:
    """LLaMA as Meta's model.py computes it: RMSNorm, complex rotary on interleaved pairs, SwiGLU."""
    w = {k: v.float() for k, v in w.items()}
    hd, n = p.head_dim, ids.shape[0]

    def rms(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + p.norm_eps) * g

    freqs = 1.0 / (p.rope_theta ** (torch.arange(0, hd, 2).float() / hd))
    cis = torch.polar(torch.ones(n, hd // 2), torch.outer(torch.arange(n).float(), freqs))

    def rope(x: torch.Tensor) -> torch.Tensor:  # x: (n, heads, hd)
        xc = torch.view_as_complex(x.reshape(n, x.shape[1], hd // 2, 2))
        return torch.view_as_real(xc * cis[:, None, :]).reshape(x.shape)

    x = w["tok_embeddings.weight"][ids]
    mask = torch.full((n, n), float("-inf")).triu(1)
    for i in range(p.n_layers):
        L = f"layers.{i}."
        h = rms(x, w[L + "attention_norm.weight"])
        q = rope((h @ w[L + "attention.wq.weight"].T).view(n, p.n_heads, hd))
        k = rope((h @ w[L + "attention.wk.weight"].T).view(n, p.n_kv_heads, hd))
        v = (h @ w[L + "attention.wv.weight"].T).view(n, p.n_kv_heads, hd)
        rep = p.n_heads // p.n_kv_heads
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        att = torch.einsum("qhd,khd->hqk", q, k) / hd**0.5 + mask
        o = torch.einsum("hqk,khd->qhd", att.softmax(-1), v).reshape(n, -1)
        x = x + o @ w[L + "attention.wo.weight"].T
        h = rms(x, w[L + "ffn_norm.weight"])
        ff = torch.nn.functional.silu(h @ w[L + "feed_forward.w1.weight"].T) * (
            h @ w[L + "feed_forward.w3.weight"].T
        )
        x = x + ff @ w[L + "feed_forward.w2.weight"].T
    return rms(x, w["norm.weight"]) @ w["output.weight"].T


@pytest.mark.parametrize("size", ["7B", "30B", "llama-2-70b"])
def test_logits_match_independent_meta_forward(size: str, meta_root: Path, converted) -> None:
    from transformers import LlamaForCausalLM

    out = converted(size)
    p = read_params(meta_root / size / "params.json")
    ids = torch.tensor([1, 5, 300, 42, 77, 12, 400, 3, 9, 250])
    want = meta_forward(load_meta_full(meta_root / size), p, ids)
    model = LlamaForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    with torch.no_grad():
        got = model(ids[None]).logits[0]
    torch.testing.assert_close(got, want, atol=2e-4, rtol=1e-4)
    assert (got.argmax(-1) == want.argmax(-1)).all()


def test_generates_in_current_transformers(converted) -> None:
    from transformers import AutoTokenizer, LlamaForCausalLM

    out = converted("llama-2-70b")
    tok = AutoTokenizer.from_pretrained(out)
    model = LlamaForCausalLM.from_pretrained(out)
    assert model.dtype == torch.float16
    ids = tok("The image shows", return_tensors="pt").input_ids
    gen = model.generate(ids, max_new_tokens=5, do_sample=False, min_new_tokens=5)
    assert gen.shape[1] == ids.shape[1] + 5


def test_config_and_files(converted) -> None:
    out = converted("llama-2-70b")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["num_key_value_heads"] == 8 and cfg["num_attention_heads"] == 16  # GQA
    assert cfg["max_position_embeddings"] == 4096
    assert cfg["torch_dtype"] == "float16" and cfg["vocab_size"] == 512
    assert cfg["intermediate_size"] == 224
    one = json.loads((converted("7B") / "config.json").read_text())
    assert one["max_position_embeddings"] == 2048 and one["num_key_value_heads"] == 8
    names = sorted(x.name for x in out.iterdir())
    assert names == sorted(
        [
            "SHA256SUMS",
            "config.json",
            "generation_config.json",
            "manifest.yaml",
            "model-00001-of-00001.safetensors",
            "model.safetensors.index.json",
            "special_tokens_map.json",
            "tokenizer.json",
            "tokenizer.model",
            "tokenizer_config.json",
        ]
    )


def test_sha256sums_accepted_by_sha256sum(converted) -> None:
    out = converted("13B")
    res = subprocess.run(
        ["sha256sum", "-c", "--strict", "SHA256SUMS"], cwd=out, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr
    listed = {line.split("  ", 1)[1] for line in (out / "SHA256SUMS").read_text().splitlines()}
    assert listed == {x.name for x in out.iterdir()} - {"SHA256SUMS"}


def test_small_max_shard_size_gives_many_shards(meta_root: Path, converted, tmp_path: Path) -> None:
    out = tmp_path / "sharded"
    r = convert_meta_to_hf(meta_root, out, model_size="30B", max_shard_bytes=60_000)
    shards = sorted(out.glob("model-*.safetensors"))
    assert len(shards) > 3 and shards[0].name.endswith(f"-of-{len(shards):05d}.safetensors")
    assert all(s.stat().st_size < 60_000 + 70_000 for s in shards)  # one tensor may exceed the cap
    a, b = load_hf(out), load_hf(converted("30B"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert r.files.keys() >= {s.name for s in shards}
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=out).returncode == 0


def test_size_folder_with_tokenizer_one_level_up(
    meta_root: Path, converted, tmp_path: Path
) -> None:
    out = tmp_path / "direct"
    convert_meta_to_hf(meta_root / "13B", out)
    a, b = load_hf(out), load_hf(converted("13B"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_refuses_to_overwrite_then_force_replaces(meta_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(OutputExistsError):
        convert_meta_to_hf(meta_root, out, model_size="7B")
    assert (out / "mine.txt").read_text() == "keep"
    convert_meta_to_hf(meta_root, out, model_size="7B", force=True)
    assert not (out / "mine.txt").exists() and (out / "config.json").exists()
    assert not partial_path(out).exists()


def test_interrupted_write_leaves_nothing(meta_root: Path, tmp_path: Path, monkeypatch) -> None:
    import weightprep.io.safetensors_writer as w

    real, calls = w.tensor_bytes, []

    def failing(t):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return real(t)

    monkeypatch.setattr(w, "tensor_bytes", failing)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        convert_meta_to_hf(meta_root, out, model_size="13B")
    assert not out.exists() and not partial_path(out).exists()


def test_stale_partial_from_a_killed_run_is_replaced(meta_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    stale = partial_path(out)
    stale.mkdir()
    (stale / "model-00001-of-00001.safetensors").write_bytes(b"half")
    convert_meta_to_hf(meta_root, out, model_size="7B")
    assert not stale.exists()
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=out).returncode == 0


def test_input_checksums_unchanged(meta_root: Path, converted) -> None:
    converted("65B")
    for chk in [meta_root / "65B" / "checklist.chk", meta_root / "tokenizer_checklist.chk"]:
        assert subprocess.run(["md5sum", "-c", "--quiet", chk.name], cwd=chk.parent).returncode == 0


def test_output_manifest_has_file_and_tensor_digests(converted, tmp_path: Path) -> None:
    """manifest.yaml is written while writing; it must equal a fresh, independent hash."""
    from weightprep.checksum import hash_tree, tensor_digests
    from weightprep.manifest import read_manifest

    out = converted("30B")
    m = read_manifest(out / "manifest.yaml")
    fresh = hash_tree(out)
    assert m.files == {k: v for k, v in fresh.items() if k not in ("manifest.yaml", "SHA256SUMS")}
    assert m.tensors == tensor_digests(out)
    assert len(m.tensors) == len(rules_for(2))


def test_input_checked_against_metas_checklists(meta_root: Path, tmp_path: Path) -> None:
    r = convert_meta_to_hf(meta_root, tmp_path / "ok", model_size="13B")
    assert sorted(c.split(":")[0] for c in r.input_checks) == [
        "consolidated.00.pth",
        "consolidated.01.pth",
        "params.json",
        "tokenizer.model",
    ]


def test_corrupt_input_byte_found_by_checklist(meta_root: Path, tmp_path: Path) -> None:
    import shutil

    from weightprep.errors import VerificationError

    root = tmp_path / "LLaMA"
    root.mkdir()
    shutil.copy(meta_root / "tokenizer.model", root)
    shutil.copy(meta_root / "tokenizer_checklist.chk", root)
    shutil.copytree(meta_root / "7B", root / "7B")
    # Flip one byte inside the weights' data: the zip stays valid, only the md5 can tell.
    f = root / "7B" / "consolidated.00.pth"
    data = bytearray(f.read_bytes())
    data[len(data) // 3] ^= 0x01
    f.write_bytes(bytes(data))
    out = tmp_path / "out"
    with pytest.raises(VerificationError, match="consolidated.00.pth: md5"):
        convert_meta_to_hf(root, out)
    assert not out.exists() and not partial_path(out).exists()
    # Without the checklist check, the same input converts (what the user asked for).
    convert_meta_to_hf(root, out, use_checklists=False)
    assert out.exists()


def test_verify_input_with_a_manifest(meta_root: Path, tmp_path: Path) -> None:
    from weightprep.checksum import hash_tree
    from weightprep.errors import VerificationError
    from weightprep.manifest import Manifest, dump_yaml

    files = {
        k: v for k, v in hash_tree(meta_root).items() if k.startswith(("7B/", "tokenizer.model"))
    }
    good = tmp_path / "good.yaml"
    good.write_text(dump_yaml(Manifest("tiny-7b", files)))
    r = convert_meta_to_hf(
        meta_root, tmp_path / "a", model_size="7B", verify_input=str(good), use_checklists=False
    )
    assert any("manifest tiny-7b" in c for c in r.input_checks)
    # The shipped llama-7b manifest does not describe the tiny example: refused on size, at once.
    with pytest.raises(VerificationError, match="size"):
        convert_meta_to_hf(meta_root, tmp_path / "b", model_size="7B", verify_input="llama-7b")
    assert not (tmp_path / "b").exists()


def test_no_tensor_digests(meta_root: Path, tmp_path: Path) -> None:
    from weightprep.manifest import read_manifest

    convert_meta_to_hf(meta_root, tmp_path / "o", model_size="7B", tensor_digests=False)
    m = read_manifest(tmp_path / "o" / "manifest.yaml")
    assert m.tensors == {} and "model-00001-of-00001.safetensors" in m.files


@pytest.mark.parametrize("size,folder", [("70B", "llama-2-70b"), ("7b", "7B")])
def test_size_names_and_meta_folder_names_agree(meta_root, converted, tmp_path, size, folder):
    """`--model-size 70B` takes the example's llama-2-70b folder (8 shards, as Meta ships it),
    exactly as `--model-size llama-2-70b` does."""
    out = tmp_path / "out"
    convert_meta_to_hf(meta_root, out, model_size=size)
    same = converted(folder)
    for f in sorted(p.name for p in same.iterdir() if p.suffix in (".safetensors", ".json")):
        assert (out / f).read_bytes() == (same / f).read_bytes(), f
