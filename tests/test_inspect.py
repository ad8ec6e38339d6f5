"""inspect: what a folder is, from cheap evidence, on tiny real-format folders; and the guards
built on it (patch-lavis-config, smoke-test --llm)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from tests.test_lavis import write_config
from weightprep.cli.app import app
from weightprep.example import make_delta_example
from weightprep.inspect import (
    base_delta_mismatch,
    config_family,
    config_size,
    delta_evidence,
    inspect_folder,
    llama_size,
    weight_file_status,
)
from weightprep.lavis import BACKUP_SUFFIX

HTML = b"\n  <!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>Log in</body></html>\n"
LFS = (
    b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"ab" * 32 + b"\nsize 9976576152\n"
)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def inspect_json(folder: Path, *flags) -> tuple[int, dict]:
    res = invoke("inspect", folder, "--json", *flags)
    return res.exit_code, json.loads(res.stdout)


@pytest.fixture(scope="module")
def delta(converted, tmp_path_factory) -> Path:
    return make_delta_example(converted("7B"), tmp_path_factory.mktemp("delta") / "vicuna-delta")


def copy(src: Path, dst: Path, **config) -> Path:
    """A copy of `src` with config.json's keys set as given."""
    shutil.copytree(src, dst)
    if config:
        cfg = json.loads((dst / "config.json").read_text())
        cfg.update(config)
        (dst / "config.json").write_text(json.dumps(cfg, indent=2))
    return dst


def neox(folder: Path, weights: bool = True) -> Path:
    """A tiny GPT-NeoX folder: a real config and LayerNorm weights at 1, as initialised."""
    folder.mkdir(parents=True)
    cfg = {
        "architectures": ["GPTNeoXForCausalLM"],
        "model_type": "gpt_neox",
        "hidden_size": 16,
        "num_hidden_layers": 1,
        "bos_token_id": 0,
        "eos_token_id": 0,
    }
    (folder / "config.json").write_text(json.dumps(cfg))
    if weights:
        save_file(
            {
                "gpt_neox.embed_in.weight": torch.randn(32, 16),
                "gpt_neox.layers.0.input_layernorm.weight": torch.ones(16),
                "gpt_neox.layers.0.input_layernorm.bias": torch.zeros(16),
                "gpt_neox.final_layer_norm.weight": torch.ones(16),
            },
            folder / "model.safetensors",
        )
    return folder


def vlm(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": "instructblip",
                "architectures": ["InstructBlipForConditionalGeneration"],
            }
        )
    )
    return folder


# --- kinds --------------------------------------------------------------------------------------


def test_kinds_and_exit_codes(meta_root, converted, delta, tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    cases = {
        meta_root: ("meta", 0),
        meta_root / "7B": ("meta", 0),
        converted("7B"): ("model", 0),
        delta: ("delta", 0),
        vlm(tmp_path / "iblip"): ("vlm", 0),
        tmp_path / "empty": ("unknown", 1),
    }
    for folder, (kind, code) in cases.items():
        rc, doc = inspect_json(folder)
        assert (doc["kind"], rc) == (kind, code), (folder, doc)
        assert doc["evidence"]["kind"] and all(isinstance(e, str) for e in doc["evidence"]["kind"])
    res = invoke("inspect", tmp_path / "empty")
    assert res.exit_code == 1
    assert [ln for ln in res.stdout.splitlines() if ln.startswith("problem:")] == [
        "problem: could not tell what this folder is: no config.json, params.json or weight files"
    ]


def test_unreadable_config_is_a_problem(converted, tmp_path) -> None:
    folder = copy(converted("7B"), tmp_path / "m")
    (folder / "config.json").write_text('{"model_type": "llama",')
    res = invoke("inspect", folder)
    assert res.exit_code == 1
    problems = [ln for ln in res.stdout.splitlines() if ln.startswith("problem:")]
    assert problems[0] == "problem: could not tell what this folder is: config.json is unreadable"
    assert problems[1].startswith("problem: config.json: not valid JSON")


def test_not_a_folder_exits_2(tmp_path, converted) -> None:
    for bad in (tmp_path / "missing", converted("7B") / "config.json"):
        res = invoke("inspect", bad)
        assert res.exit_code == 2 and res.stderr.count("\n") == 1 and "not a folder" in res.stderr


def test_json_shape(converted) -> None:
    rc, doc = inspect_json(converted("7B"))
    assert rc == 0 and doc["ok"] is True and doc["problems"] == []
    assert set(doc) == {
        "folder",
        "kind",
        "family",
        "size",
        "evidence",
        "parameters",
        "delta",
        "special_tokens",
        "weights",
        "manifests",
        "language",
        "problems",
        "notes",
        "ok",
    }
    assert set(doc["evidence"]) == {"kind", "family", "size"}
    assert doc["delta"]["is_delta"] is False and doc["delta"]["confidence"] == "certain"
    assert 0.5 < doc["delta"]["median"] < 2 and doc["delta"]["tensors"] == 5
    assert doc["weights"] == [
        {
            "path": "model-00001-of-00001.safetensors",
            "bytes": (converted("7B") / "model-00001-of-00001.safetensors").stat().st_size,
            "status": "ok",
            "detail": "",
        }
    ]
    assert doc["special_tokens"]["agree"] is True
    assert doc["special_tokens"]["sources"]["tokenizer.model"] == {
        "bos": 1,
        "eos": 2,
        "unk": 0,
        "pad": None,
    }
    assert doc["special_tokens"]["tokens"] == {"bos": "<s>", "eos": "</s>", "unk": "<unk>"}
    assert doc["language"] is None and doc["parameters"] > 0
    assert {m["path"]: m["status"] for m in doc["manifests"]} == {
        "manifest.yaml": "present",
        "SHA256SUMS": "present",
    }


def test_human_summary_fits_a_screen(converted) -> None:
    res = invoke("inspect", converted("7B"))
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].endswith(": model, llama-1, size not told") and len(lines) < 25
    assert any(ln.startswith("  tokens   bos 1 <s>, eos 2 </s>") for ln in lines)
    assert "manifest.yaml: present, not checked (pass --verify)" in res.stdout


# --- delta or model: by the weights, not the name ------------------------------------------------


def test_delta_told_by_weights_not_by_name(converted, delta, tmp_path) -> None:
    named_delta = copy(converted("7B"), tmp_path / "vicuna-7b-delta-v1.1")
    named_model = copy(delta, tmp_path / "vicuna-7b")
    rc, doc = inspect_json(named_delta)
    assert rc == 0 and doc["kind"] == "model"
    rc, doc = inspect_json(named_model)
    assert rc == 0 and doc["kind"] == "delta"
    assert doc["delta"]["confidence"] == "certain" and doc["delta"]["high"] < 0.05
    assert (
        "norm tensors" in doc["delta"]["evidence"]
        and "delta weights, certain" in (doc["delta"]["evidence"])
    )


def test_delta_evidence(converted, delta, tmp_path) -> None:
    is_delta, words = delta_evidence(delta)
    assert is_delta is True and "5 norm tensors" in words
    assert delta_evidence(converted("7B"))[0] is False
    (tmp_path / "empty").mkdir()
    assert delta_evidence(tmp_path / "empty") is None
    assert delta_evidence(tmp_path / "missing") is None
    no_norms = tmp_path / "no-norms"
    no_norms.mkdir()
    save_file({"lm_head.weight": torch.zeros(4, 4)}, no_norms / "model.safetensors")
    assert delta_evidence(no_norms) is None
    broken = copy(delta, tmp_path / "broken")
    (broken / "pytorch_model-00001-of-00002.bin").write_bytes(HTML)
    assert delta_evidence(broken) is None


def test_likely_when_norms_disagree(tmp_path) -> None:
    """A model with one norm near zero (gpt-neox's final norm zeroed) is still a model, but only
    'likely'; the figure says why."""
    folder = neox(tmp_path / "m")
    tensors = {
        "gpt_neox.layers.0.input_layernorm.weight": torch.ones(16),
        "gpt_neox.layers.0.post_attention_layernorm.weight": torch.ones(16),
        "gpt_neox.final_layer_norm.weight": torch.zeros(16),
    }
    save_file(tensors, folder / "model.safetensors")
    doc = inspect_folder(folder)
    assert doc.kind == "model" and doc.delta.confidence == "likely"
    assert "from 0 to 1" in doc.delta.evidence


# --- family and size ----------------------------------------------------------------------------


def test_family_llama1_vs_llama2(meta_root, converted) -> None:
    for folder, family in (
        (converted("7B"), "llama-1"),
        (converted("65B"), "llama-1"),
        (converted("llama-2-70b"), "llama-2"),
        (meta_root / "7B", "llama-1"),
        (meta_root / "65B", "llama-1"),
        (meta_root / "llama-2-70b", "llama-2"),
    ):
        rc, doc = inspect_json(folder)
        assert rc == 0 and doc["family"] == family, (folder, doc["evidence"])
        assert doc["evidence"]["family"]
    rc, doc = inspect_json(meta_root)
    assert doc["family"] == "llama-1, llama-2"
    assert doc["size"] is None and "not a released LLaMA size" in doc["evidence"]["size"][0]


def test_family_of_other_models(tmp_path) -> None:
    rc, doc = inspect_json(neox(tmp_path / "neox"))
    assert rc == 0 and (doc["kind"], doc["family"]) == ("model", "gpt-neox")
    assert config_family({"model_type": "mt5"}) == ("mt5", "config.json: model_type mt5")
    assert config_family({"model_type": "t5"})[0] == "t5"
    # a config alone cannot tell a model from a delta
    rc, doc = inspect_json(neox(tmp_path / "config-only", weights=False))
    assert rc == 1 and doc["kind"] == "unknown" and doc["family"] == "gpt-neox"
    assert "no weight files" in doc["problems"][0]


@pytest.mark.parametrize(
    "hidden,layers,kv,size",
    [
        (4096, 32, 32, "7B"),
        (5120, 40, 40, "13B"),
        (6656, 60, 52, "30B"),
        (8192, 80, 64, "65B"),
        (8192, 80, 8, "70B"),
        (64, 2, 8, None),
    ],
)
def test_sizes_from_real_shapes(hidden, layers, kv, size) -> None:
    cfg = {"hidden_size": hidden, "num_hidden_layers": layers, "num_key_value_heads": kv}
    assert config_size(cfg)[0] == size
    assert llama_size(hidden, layers, kv, "params.json", ("dim", "layers"))[0] == size


def test_family_from_real_configs() -> None:
    vicuna_v11_delta = {
        "model_type": "llama",
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-6,
    }
    llama2_7b_hf = {"model_type": "llama", "max_position_embeddings": 4096, "rms_norm_eps": 1e-5}
    decapoda = {
        "architectures": ["LLaMAForCausalLM"],
        "model_type": "llama",
        "max_sequence_length": 2048,
    }
    assert config_family(vicuna_v11_delta)[0] == "llama-1"
    assert config_family(llama2_7b_hf)[0] == "llama-2"
    assert config_family(decapoda)[0] == "llama-1"
    assert config_family({"model_type": "llama", "rms_norm_eps": 1e-6})[0] == "llama-1"
    assert config_family({"model_type": "llama", "rms_norm_eps": 1e-5})[0] == "llama"


def test_base_delta_mismatch(converted, delta, tmp_path) -> None:
    line = base_delta_mismatch(converted("llama-2-70b"), delta)
    assert line is not None and "\n" not in line
    assert "is LLaMA-2" in line and "made from LLaMA-1" in line and "4096" in line
    assert base_delta_mismatch(converted("7B"), delta) is None
    base, d = tmp_path / "Llama-2-7b-hf", tmp_path / "vicuna-7b-delta-v1.1"
    base.mkdir()
    d.mkdir()
    (base / "config.json").write_text(
        json.dumps({"model_type": "llama", "max_position_embeddings": 4096, "rms_norm_eps": 1e-5})
    )
    (d / "config.json").write_text(
        json.dumps({"model_type": "llama", "max_position_embeddings": 2048, "rms_norm_eps": 1e-6})
    )
    assert "LLaMA-2" in base_delta_mismatch(base, d) and "LLaMA-1" in base_delta_mismatch(d, base)
    assert base_delta_mismatch(base, tmp_path / "nothing") is None


# --- special tokens -----------------------------------------------------------------------------


def test_decapoda_style_special_tokens_disagree(converted, tmp_path) -> None:
    folder = copy(converted("7B"), tmp_path / "decapoda", bos_token_id=0, eos_token_id=1)
    res = invoke("inspect", folder)
    assert res.exit_code == 1
    problems = [ln for ln in res.stdout.splitlines() if ln.startswith("problem:")]
    assert len(problems) == 2
    assert problems[0].startswith("problem: special tokens disagree: bos id 0 in config.json; 1 in")
    assert problems[1].startswith("problem: special tokens disagree: eos id 1 in config.json; 2 in")
    assert all("#22642" in p for p in problems)
    assert "tokens   disagree:" in res.stdout
    rc, doc = inspect_json(folder)
    assert rc == 1 and doc["special_tokens"]["agree"] is False
    assert doc["special_tokens"]["sources"]["config.json"]["bos"] == 0


def test_tokenizer_files_are_compared_too(converted, tmp_path) -> None:
    folder = copy(converted("7B"), tmp_path / "swapped")
    tc = json.loads((folder / "special_tokens_map.json").read_text())
    tc["eos_token"] = "<unk>"
    (folder / "special_tokens_map.json").write_text(json.dumps(tc))
    rc, doc = inspect_json(folder)
    assert rc == 1 and doc["special_tokens"]["sources"]["special_tokens_map.json"]["eos"] == 0
    assert any("eos id" in p and "special_tokens_map.json" in p for p in doc["problems"])


# --- weight files that are not weights ----------------------------------------------------------


def _lfs(folder: Path) -> str:
    shard = next(folder.glob("*.safetensors"))
    shard.write_bytes(LFS)
    return (
        f"problem: {shard.name}: a Git LFS pointer ({len(LFS)} bytes) standing for a 10.0 GB file"
    )


def _html(folder: Path) -> str:
    shard = next(folder.glob("*.safetensors"))
    shard.write_bytes(HTML)
    return f"problem: {shard.name}: an HTML page ({len(HTML)} bytes), not weights"


def _truncated_safetensors(folder: Path) -> str:
    shard = next(folder.glob("*.safetensors"))
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    return f"problem: {shard.name}: truncated: {len(data) // 2} bytes, its header says {len(data)}"


def _short_header(folder: Path) -> str:
    shard = next(folder.glob("*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:100])
    return f"problem: {shard.name}: truncated: its header says"


def _index_share(folder: Path) -> str:
    idx = folder / "model.safetensors.index.json"
    doc = json.loads(idx.read_text())
    doc["metadata"]["total_size"] *= 10
    idx.write_text(json.dumps(doc))
    return "problem: model.safetensors.index.json: says the tensors take"


def _missing_shard(folder: Path) -> str:
    next(folder.glob("*.safetensors")).rename(folder / "other.safetensors")
    return (
        "problem: model-00001-of-00001.safetensors: missing (model.safetensors.index.json names it)"
    )


@pytest.mark.parametrize(
    "damage", [_lfs, _html, _truncated_safetensors, _short_header, _index_share, _missing_shard]
)
def test_weight_files_that_are_not_weights(damage, converted, tmp_path) -> None:
    folder = copy(converted("7B"), tmp_path / "m")
    expected = damage(folder)
    res = invoke("inspect", folder)
    assert res.exit_code == 1, res.output
    problems = [ln for ln in res.stdout.splitlines() if ln.startswith("problem:")]
    assert len(problems) == 1 and problems[0].startswith(expected), problems
    rc, doc = inspect_json(folder)
    assert rc == 1 and doc["kind"] == "model" and doc["delta"] is None


def test_damaged_bin_shards(delta, tmp_path) -> None:
    folder = copy(delta, tmp_path / "d")
    first, second = sorted(folder.glob("*.bin"))
    first.write_bytes(HTML)
    data = second.read_bytes()
    second.write_bytes(data[: len(data) - 200])
    (folder / "tokenizer.model").write_bytes(LFS)
    res = invoke("inspect", folder)
    assert res.exit_code == 1
    problems = [ln for ln in res.stdout.splitlines() if ln.startswith("problem:")]
    assert problems == [
        f"problem: {first.name}: an HTML page ({len(HTML)} bytes), not weights: a login or error "
        "page was saved under this name; download it again",
        f"problem: {second.name}: truncated or corrupt: its zip directory is unreadable "
        "(File is not a zip file); re-download it",
        f"problem: tokenizer.model: a Git LFS pointer ({len(LFS)} bytes) standing for a 10.0 GB "
        "file, not the file itself: run `git lfs pull` in the clone, or download it with "
        "huggingface-cli",
    ]


def test_meta_shards_are_checked(meta_root, tmp_path) -> None:
    root = tmp_path / "LLaMA"
    shutil.copytree(meta_root / "13B", root / "13B")
    shutil.copy(meta_root / "tokenizer.model", root)
    (root / "13B" / "consolidated.01.pth").write_bytes(HTML)
    res = invoke("inspect", root)
    assert res.exit_code == 1
    problems = [ln for ln in res.stdout.splitlines() if ln.startswith("problem:")]
    assert len(problems) == 1 and problems[0].startswith(
        "problem: 13B/consolidated.01.pth: an HTML"
    )


def test_first_bytes_checked_before_any_parser(tmp_path, monkeypatch) -> None:
    """An HTML page named .bin never reaches torch.load."""
    p = tmp_path / "pytorch_model.bin"
    p.write_bytes(HTML)

    def boom(*a, **k):
        raise AssertionError("torch.load called")

    monkeypatch.setattr(torch, "load", boom)
    assert weight_file_status(tmp_path, p).status == "html"
    assert inspect_folder(tmp_path).problems[1].startswith("pytorch_model.bin: an HTML page")


# --- VLM bundles --------------------------------------------------------------------------------


def test_minigpt4_checkpoint_is_vlm(tmp_path) -> None:
    folder = tmp_path / "minigpt4"
    folder.mkdir()
    torch.save(
        {"model": {"llama_proj.weight": torch.zeros(4, 2), "llama_proj.bias": torch.zeros(4)}},
        folder / "checkpoint.pth",
    )
    rc, doc = inspect_json(folder)
    assert rc == 0 and doc["kind"] == "vlm"
    assert "MiniGPT-4" in doc["evidence"]["kind"][0]


def test_vlm_family_from_text_config(tmp_path) -> None:
    folder = tmp_path / "llava"
    folder.mkdir()
    text = {"model_type": "llama", "max_position_embeddings": 4096, "hidden_size": 4096}
    text["num_hidden_layers"] = 32
    (folder / "config.json").write_text(json.dumps({"model_type": "vipllava", "text_config": text}))
    rc, doc = inspect_json(folder)
    assert rc == 0 and (doc["kind"], doc["family"], doc["size"]) == ("vlm", "llama-2", "7B")


# --- manifests ----------------------------------------------------------------------------------


def test_verify_manifest(converted, tmp_path) -> None:
    folder = copy(converted("7B"), tmp_path / "m")
    rc, doc = inspect_json(folder, "--verify")
    assert rc == 0, doc["problems"]
    assert {m["path"]: m["status"] for m in doc["manifests"]} == {
        "manifest.yaml": "verified",
        "SHA256SUMS": "verified",
    }
    (folder / "tokenizer_config.json").write_text("{}")
    assert inspect_json(folder)[0] == 0  # not hashed without --verify
    res = invoke("inspect", folder, "--verify")
    assert res.exit_code == 1
    problems = [ln for ln in res.stdout.splitlines() if ln.startswith("problem:")]
    assert problems == [
        "problem: manifest.yaml: does not hold: tokenizer_config.json MISMATCH",
        "problem: SHA256SUMS: does not hold: tokenizer_config.json MISMATCH",
    ]


def test_verify_meta_checklists(meta_root) -> None:
    rc, doc = inspect_json(meta_root / "7B", "--verify")
    assert rc == 0 and doc["manifests"] == [
        {"path": "checklist.chk", "status": "verified", "detail": "2 files match"}
    ]


# --- the language check's options ---------------------------------------------------------------


def test_works_without_the_language_module(converted, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "weightprep.language", None)  # import fails
    rc, doc = inspect_json(converted("7B"))
    assert rc == 0 and doc["language"] is None


def test_perplexity_options_need_perplexity(converted, tmp_path) -> None:
    res = invoke("inspect", converted("7B"), "--max-perplexity", "20")
    assert res.exit_code == 2 and "--perplexity" in res.output
    res = invoke("inspect", converted("7B"), "--reference-text", tmp_path / "t.txt")
    assert res.exit_code == 2


# --- guards: patch-lavis-config -----------------------------------------------------------------


def _guarded(folder: Path, tmp_path: Path, size: str = "vicuna7b") -> tuple[object, bool]:
    cfg = write_config(tmp_path / "L", size)
    before = cfg.read_bytes()
    res = invoke("patch-lavis-config", folder, "--lavis", cfg, "--model-type", size)
    untouched = (
        cfg.read_bytes() == before and not (cfg.parent / (cfg.name + BACKUP_SUFFIX)).exists()
    )
    return res, untouched


def test_lavis_refuses_a_delta(delta, tmp_path) -> None:
    res, untouched = _guarded(delta, tmp_path)
    assert res.exit_code == 1 and untouched
    assert res.stderr.count("\n") == 1 and "delta weights, not a model" in res.stderr
    assert "norm tensors" in res.stderr


def test_lavis_refuses_a_vlm_bundle(tmp_path) -> None:
    res, untouched = _guarded(vlm(tmp_path / "iblip"), tmp_path)
    assert res.exit_code == 1 and untouched and "vision-language bundle" in res.stderr


def test_lavis_refuses_non_llama(tmp_path) -> None:
    res, untouched = _guarded(neox(tmp_path / "neox"), tmp_path)
    assert res.exit_code == 1 and untouched and "not a LLaMA model" in res.stderr


@pytest.mark.parametrize(
    "shape,yaml,size",
    [
        ((5120, 40), "vicuna7b", "13B"),
        ((4096, 32), "vicuna13b", "7B"),
        ((6656, 60), "vicuna7b", "30B"),
    ],
)
def test_lavis_refuses_the_wrong_size(shape, yaml, size, converted, tmp_path) -> None:
    folder = copy(converted("7B"), tmp_path / "m", hidden_size=shape[0], num_hidden_layers=shape[1])
    res, untouched = _guarded(folder, tmp_path, yaml)
    assert res.exit_code == 1 and untouched, res.output
    assert f"a {size} model" in res.stderr and res.stderr.count("\n") == 1


def test_lavis_right_or_unknown_size_passes(converted, tmp_path) -> None:
    res, _ = _guarded(converted("7B"), tmp_path)
    assert res.exit_code == 0, res.output
    assert "size: not told" in res.stdout and "a model, not a delta" in res.stdout
    folder = copy(converted("7B"), tmp_path / "m", hidden_size=4096, num_hidden_layers=32)
    res, _ = _guarded(folder, tmp_path / "second")
    assert res.exit_code == 0 and "size: 7B, as vicuna7b wants" in res.stdout


# --- guards: smoke-test --llm -------------------------------------------------------------------


def test_smoke_test_refuses_a_delta_before_loading(delta, monkeypatch) -> None:
    def never(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("weightprep.smoke.runner.load_pipeline", never)
    res = invoke("smoke-test", "--llm", delta, "--device", "cpu")
    assert res.exit_code == 1, res.output
    assert res.stderr.count("\n") == 1 and "delta weights, not a model" in res.stderr
    assert "apply-delta" in res.stderr


# --- special tokens in every folder weightprep writes --------------------------------------------

LLAMA_IDS = {"bos": 1, "eos": 2, "unk": 0, "pad": None}


def _writers(meta_root, converted, delta, tmp: Path) -> dict[str, Path]:
    from weightprep.delta import apply_delta, make_delta

    merged = apply_delta(converted("7B"), delta, tmp / "merged").output
    return {
        "convert-llama": converted("7B"),
        "make-example-delta": delta,
        "apply-delta": merged,
        "apply-delta (one pass from Meta's download)": apply_delta(
            meta_root, delta, tmp / "one-pass", model_size="7B"
        ).output,
        "make-delta": make_delta(converted("7B"), merged, tmp / "made-delta").output,
    }


def test_every_writer_states_llamas_special_tokens(meta_root, converted, delta, tmp_path) -> None:
    """config.json, generation_config.json, tokenizer_config.json, special_tokens_map.json,
    tokenizer.json and tokenizer.model all say bos 1, eos 2, unk 0 (the configs state no unk, as
    transformers' own do) and no pad; and inspect
    reports them as agreeing, with nothing noted."""
    from weightprep.tokenizer import TOKENIZER_CLASS, tokenizer_files

    files = (
        "config.json",
        "generation_config.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer.model",
    )
    for writer, folder in _writers(meta_root, converted, delta, tmp_path).items():
        r = inspect_folder(folder)
        assert r.special_tokens.agree, writer
        assert set(files) <= set(r.special_tokens.sources), writer
        for name in files:
            want = (
                dict(LLAMA_IDS, unk=None)
                if name.endswith("n_config.json") or name == "config.json"
                else LLAMA_IDS
            )
            assert r.special_tokens.sources[name] == want, (writer, name)
        assert not [n for n in r.notes if "special tokens" in n], writer
        tc = json.loads((folder / "tokenizer_config.json").read_text())
        assert tc["tokenizer_class"] == TOKENIZER_CLASS, writer
        # the files tests/test_tokenizer.py runs through every loader, old and new
        fresh = tokenizer_files(folder / "tokenizer.model", tc["model_max_length"])
        for name, data in fresh.items():
            assert (folder / name).read_bytes() == data, (writer, name)
        gen = json.loads((folder / "generation_config.json").read_text())
        assert gen == {"bos_token_id": 1, "eos_token_id": 2}, writer


@pytest.mark.parametrize(
    ("file", "key", "value", "role"),
    [
        ("generation_config.json", "eos_token_id", 0, "eos"),  # MiniGPT-4 #339
        ("config.json", "bos_token_id", 2, "bos"),
        ("tokenizer_config.json", "unk_token", "</s>", "unk"),
    ],
)
def test_one_disagreeing_file_is_a_problem(converted, tmp_path, file, key, value, role) -> None:
    folder = copy(converted("7B"), tmp_path / "bad")
    doc = json.loads((folder / file).read_text())
    doc[key] = value
    (folder / file).write_text(json.dumps(doc))
    res = invoke("inspect", folder)
    assert res.exit_code == 1
    problems = [ln for ln in res.stdout.splitlines() if ln.startswith("problem:")]
    assert len(problems) == 1, problems
    bad_id = value if isinstance(value, int) else 2
    assert problems[0].startswith(f"problem: special tokens disagree: {role} id ")
    assert f"{bad_id} in {file}" in problems[0]


def test_pad_id_the_tokenizer_lacks_is_noted(converted, tmp_path) -> None:
    """LAVIS #483/#509, FastChat #408: pad_token_id 0 (<unk>) in the configs, no pad token in the
    tokenizer files. Noted (generation fills finished rows with it), not a failure."""
    folder = copy(converted("7B"), tmp_path / "pad0", pad_token_id=0)
    gen = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**gen, "pad_token_id": 0}))
    res = invoke("inspect", folder)
    assert res.exit_code == 0, res.stdout
    notes = [ln for ln in res.stdout.splitlines() if "pad id" in ln]
    assert notes == [
        "  note     special tokens: pad id 0 (<unk>) in config.json, generation_config.json, "
        "but no tokenizer file names a pad token: generate() fills finished rows with it"
    ]
    assert "pad id" not in invoke("inspect", converted("7B")).stdout


def test_fast_only_class_without_tokenizer_json_is_a_problem(converted, tmp_path) -> None:
    """Our tokenizer_config.json names PreTrainedTokenizerFast; a copy that leaves tokenizer.json
    behind cannot be loaded by transformers 4.x's AutoTokenizer."""
    folder = copy(converted("7B"), tmp_path / "no-tokenizer-json")
    (folder / "tokenizer.json").unlink()
    res = invoke("inspect", folder)
    assert res.exit_code == 1
    problems = [ln for ln in res.stdout.splitlines() if ln.startswith("problem:")]
    assert problems == [
        "problem: tokenizer.json: missing, and tokenizer_config.json names "
        "PreTrainedTokenizerFast, which transformers 4.x builds from tokenizer.json alone "
        "(AutoTokenizer fails): copy tokenizer.json with the other tokenizer files"
    ]
    # lmsys's deltas carry no tokenizer.json, but name LlamaTokenizer: nothing to report
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(
        json.dumps({**cfg, "tokenizer_class": "LlamaTokenizer"})
    )
    assert invoke("inspect", folder).exit_code == 0
