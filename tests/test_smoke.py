"""smoke-test: each model's whole path on tiny real-format models, and each check shown to fire."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from tests.conftest import run_peer
from weightprep.cli.app import app
from weightprep.errors import CheckpointError, InputError
from weightprep.smoke import checks, runtime
from weightprep.smoke.example import build
from weightprep.smoke.minigpt4 import read_projection
from weightprep.smoke.runner import Options, run_smoke
from weightprep.smoke.specs import SPECS

MODELS = ["instructblip-vicuna7b", "vip-llava-7b", "mblip-mt0-xl", "rinna-minigpt4"]


@pytest.fixture(scope="module")
def examples(converted, tmp_path_factory):
    """model -> smoke-test arguments of its tiny stand-in (built once)."""
    llm = converted("7B", "float16")
    root = tmp_path_factory.mktemp("vlm")
    return {m: build(m, root / m, llm) for m in MODELS}


# The tiny stand-ins' language models are random except InstructBLIP's (the trained example
# LLaMA): the language check rightly fails them before captioning, so the caption checks are
# tested on them with it off, and it is shown failing them in test_language_check_*.
TRAINED = {"instructblip-vicuna7b"}


def _run(examples, model, **kw) -> object:
    kw.setdefault("language_check", model in TRAINED)
    return run_smoke(Options(model=model, max_new_tokens=8, example=True, **examples[model], **kw))


@pytest.mark.parametrize("model", MODELS)
def test_whole_path_passes(examples, model):
    report = _run(examples, model)
    assert report.ok, [c for c in report.failures]
    assert [r.prompt for r in report.results] == [r.prompt for r in SPECS[model].runs]
    assert all(r.answer and r.tokens > 0 for r in report.results)
    names = ["language check"] if model in TRAINED else []
    assert [c.name for c in report.checks] == names  # once per model
    for r in report.results:  # the rest per answer
        assert [c.name for c in r.checks] == [
            "finite logits",
            "non-empty answer",
            "not repetitive",
            "image matters",
        ]
    assert report.device == "cpu" and report.peak_memory[1] > 0


@pytest.mark.parametrize("model", ["instructblip-vicuna7b", "mblip-mt0-xl", "rinna-minigpt4"])
def test_prompt_without_image_tokens_is_caught(examples, model):
    """transformers 5.x answers from text alone when the prompt has no `<image>` tokens."""
    report = _run(examples, model, image_placeholders=False)
    failed = [c for c in report.failures]
    assert [c.name for c in failed] == ["image matters"] * len(report.results)
    assert all("image ignored" in c.detail for c in failed)


def _llm_copy(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    (shard,) = dst.glob("*.safetensors")
    tensors = load_file(shard)
    edit(tensors)
    save_file(tensors, shard, metadata={"format": "pt"})
    return dst


def test_nan_weights_fail(examples, converted, tmp_path):
    def poison(t):
        t["model.layers.0.self_attn.o_proj.weight"][0, 0] = float("nan")

    llm = _llm_copy(converted("7B", "float16"), tmp_path / "nan", poison)
    args = {**examples["instructblip-vicuna7b"], "llm": str(llm)}
    report = run_smoke(Options(model="instructblip-vicuna7b", max_new_tokens=8, **args))
    assert [c.name for c in report.failures] == ["language check"]
    assert "perplexity nan" in report.failures[0].detail
    assert report.results == []  # captioning skipped
    opts = Options(model="instructblip-vicuna7b", max_new_tokens=8, language_check=False, **args)
    report = run_smoke(opts)
    assert not report.ok and report.results
    assert all(r.checks[0].name == "finite logits" and not r.checks[0].ok for r in report.results)
    assert all(r.tokens == 0 for r in report.results)  # no generation from NaN


def test_degenerate_model_fails(examples, tmp_path):
    """A GPT-NeoX whose final LayerNorm outputs one constant vector pointing at one token's
    output row: the same token every step, whatever the sampling."""
    args = dict(examples["rinna-minigpt4"])

    def stuck(t):
        head = t["embed_out.weight"]
        t["gpt_neox.final_layer_norm.weight"].zero_()
        t["gpt_neox.final_layer_norm.bias"].copy_(100 * head[7])

    args["llm"] = str(_llm_copy(Path(args["llm"]), tmp_path / "stuck", stuck))
    report = run_smoke(
        Options(model="rinna-minigpt4", max_new_tokens=12, language_check=False, **args)
    )
    failed = [c for c in report.failures if c.name == "not repetitive"]
    assert len(failed) == len(report.results)
    assert "repeated 12 times" in failed[0].detail


def test_hub_ids_go_through_huggingface_hub(examples, converted, tmp_path, hub_stand_in):
    """Hub ids are fetched by the real huggingface_hub client (from a stand-in Hub on
    127.0.0.1), and of InstructBLIP's shards only those holding non-LLM tensors are downloaded."""
    from transformers import InstructBlipForConditionalGeneration

    sharded = tmp_path / "instructblip-sharded"
    model = InstructBlipForConditionalGeneration.from_pretrained(
        examples["instructblip-vicuna7b"]["weights"]
    )
    model.save_pretrained(sharded, max_shard_size="60KB")
    for f in Path(examples["instructblip-vicuna7b"]["weights"]).rglob("*"):
        if f.is_file() and "safetensors" not in f.name and f.name != "config.json":
            dest = sharded / f.relative_to(examples["instructblip-vicuna7b"]["weights"])
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, dest)
    weight_map = json.loads((sharded / "model.safetensors.index.json").read_text())["weight_map"]
    lm_only = {f for f in weight_map.values()} - {
        f for k, f in weight_map.items() if not k.startswith("language_model.")
    }
    assert lm_only, "the test needs shards holding only language-model tensors"
    rinna = examples["rinna-minigpt4"]
    server = hub_stand_in(
        {
            "Salesforce/instructblip-vicuna-7b": sharded,
            "rinna/bilingual-gpt-neox-4b-minigpt4": rinna["weights"],
            "rinna/bilingual-gpt-neox-4b": rinna["llm"],
            "Salesforce/blip2-flan-t5-xxl": rinna["vision"],
        }
    )
    llm = examples["instructblip-vicuna7b"]["llm"]
    report = run_smoke(Options(model="instructblip-vicuna7b", llm=llm, max_new_tokens=4))
    assert report.weights == "Salesforce/instructblip-vicuna-7b" and report.ok
    got = {p.rsplit("/", 1)[-1] for p in server.fetched()}
    assert got & set(weight_map.values()) and not got & lm_only

    report = run_smoke(Options(model="rinna-minigpt4", max_new_tokens=4, language_check=False))
    assert (report.weights, report.llm) == (
        "rinna/bilingual-gpt-neox-4b-minigpt4",
        "rinna/bilingual-gpt-neox-4b",
    )
    assert report.ok
    assert any(p.endswith("/checkpoint.pth") for p in server.fetched())


@pytest.mark.parametrize("online", [True, False], ids=["stand-in-hub", "offline"])
def test_unknown_hub_repo_is_one_clear_error(examples, hub_stand_in, online):
    if online:
        hub_stand_in({})
    with pytest.raises(InputError, match="nobody/not-a-repo"):
        run_smoke(
            Options(
                model="instructblip-vicuna7b",
                weights="nobody/not-a-repo",
                llm=examples["instructblip-vicuna7b"]["llm"],
            )
        )


def test_instructblip_needs_the_users_llm(examples):
    args = {k: v for k, v in examples["instructblip-vicuna7b"].items() if k != "llm"}
    with pytest.raises(InputError, match="--llm"):
        run_smoke(Options(model="instructblip-vicuna7b", **args))


def test_minigpt4_checkpoint_is_checked(tmp_path):
    path = tmp_path / "checkpoint.pth"
    good = {"llama_proj.weight": torch.zeros(8, 4), "llama_proj.bias": torch.zeros(8)}
    torch.save({"model": good, "epoch": 1}, path)
    assert set(read_projection(path, 4, 8)) == {"weight", "bias"}
    with pytest.raises(CheckpointError, match="shape"):
        read_projection(path, 4, 16)
    torch.save({"model": {"llama_proj.weight": torch.zeros(8, 4)}}, path)
    with pytest.raises(CheckpointError, match="llama_proj.bias"):
        read_projection(path, 4, 8)
    torch.save(good, path)
    with pytest.raises(CheckpointError, match="'model'"):
        read_projection(path, 4, 8)


class _Runs:
    def __reduce__(self):
        import os

        return (os.system, ("touch should-not-exist",))


def test_minigpt4_checkpoint_pickle_never_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"model": {"x": _Runs()}}, tmp_path / "checkpoint.pth")
    with pytest.raises(CheckpointError, match="not executed"):
        read_projection(tmp_path / "checkpoint.pth", 4, 8)
    assert not (tmp_path / "should-not-exist").exists()


def test_lavis_tokenizer_matches_lavis_under_old_transformers(converted):
    """Our InstructBLIP prompt ids equal LAVIS's: LlamaTokenizer(use_fast=False) in transformers
    4.33.2 with LAVIS's added `[PAD]` and `</s>` as BOS/EOS/UNK."""
    from transformers import AutoTokenizer

    from weightprep.smoke.instructblip import lavis_tokenizer

    llm = converted("7B", "float16")
    prompts = [r.prompt for r in SPECS["instructblip-vicuna7b"].runs]
    ours = lavis_tokenizer(AutoTokenizer.from_pretrained(llm), "llm")
    code = (
        "import json, sys\n"
        "from transformers import LlamaTokenizer\n"
        "t = LlamaTokenizer.from_pretrained(sys.argv[1], use_fast=False, truncation_side='left')\n"
        "t.add_special_tokens({'pad_token': '[PAD]'})\n"
        "t.add_special_tokens({'bos_token': '</s>'})\n"
        "t.add_special_tokens({'eos_token': '</s>'})\n"
        "t.add_special_tokens({'unk_token': '</s>'})\n"
        "print(json.dumps([len(t)] + [t(p).input_ids for p in json.loads(sys.argv[2])]))\n"
    )
    theirs = json.loads(run_peer("transformers-4.33.2", code, str(llm), json.dumps(prompts)))
    assert theirs == [len(ours)] + [ours(p).input_ids for p in prompts]
    assert theirs[1][0] == 2


# --- the checks themselves ---------------------------------------------------------------------


def test_repetition_check():
    assert checks.not_degenerate([5] * 10).ok is False
    assert checks.not_degenerate([1, 2, 3] + [7, 8] * 6).ok is False
    assert checks.not_degenerate(list(range(30))).ok is True
    assert checks.not_degenerate([4, 4, 4, 5, 6, 7, 8, 9, 10, 11, 12]).ok is True  # short run
    assert checks.longest_repeat([1, 2, 1, 2, 1, 2, 9]) == (6, 2, 3)


def test_image_and_finite_checks():
    a = torch.tensor([1.0, 2.0, 3.0])
    assert not checks.image_matters(a, a.clone()).ok
    assert checks.image_matters(a, a + 0.5).ok
    assert not checks.image_matters(a, torch.full_like(a, float("nan"))).ok
    assert not checks.finite_logits(torch.tensor([1.0, float("inf")])).ok
    assert checks.expected_words(["A red Car."], ["car", "red"]).ok
    assert not checks.expected_words(["a dog"], ["car"]).ok


# --- where it runs -----------------------------------------------------------------------------


def test_cpu_dtype_follows_the_cpu(tmp_path, monkeypatch):
    flags = tmp_path / "cpuinfo"
    flags.write_text("flags : fpu avx2 avx512f avx512_bf16\n")
    assert runtime.cpu_has_native_bf16(flags)
    flags.write_text("flags : fpu avx2\n")
    assert not runtime.cpu_has_native_bf16(flags) or runtime.platform.machine() == "arm64"
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    p = runtime.choose("auto", "auto", "none", "float16")
    assert (p.device, p.dtype) == ("cpu", "float32") and "no native bfloat16" in p.reason
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    assert runtime.choose("cpu", "auto", "none", "float16").dtype == "bfloat16"
    assert runtime.choose("cpu", "float16", "none", "float16").reason == "as asked"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU errors")
def test_gpu_only_options_refused_on_cpu():
    with pytest.raises(InputError, match="CUDA"):
        runtime.choose("cpu", "auto", "8bit", "float16")
    with pytest.raises(InputError, match="no CUDA device"):
        runtime.choose("cuda", "auto", "none", "float16")


# --- CLI ---------------------------------------------------------------------------------------


def test_cli_json_and_exit_codes(examples, converted, tmp_path):
    runner = CliRunner()
    args = examples["rinna-minigpt4"]
    flags = [f"--{k}={v}" for k, v in args.items()]
    # the tiny rinna's GPT-NeoX is random: the language check fails it, before any caption
    res = runner.invoke(app, ["smoke-test", "--model", "rinna-minigpt4", *flags])
    assert res.exit_code == 1
    assert "FAIL language check: perplexity" in res.stdout and "captioning skipped" in res.stdout
    assert "羅生門" in res.stdout  # rinna's passage is Japanese
    flags += ["--max-perplexity", "1e12"]  # lifted, so that the caption checks are shown
    res = runner.invoke(
        app, ["smoke-test", "--model", "rinna-minigpt4", *flags, "--max-new-tokens", "4", "--json"]
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["ok"] is True and report["model"] == "rinna-minigpt4"
    assert {"device", "dtype", "load_seconds", "peak_memory", "results"} <= set(report)

    res = runner.invoke(
        app,
        [
            "smoke-test",
            *flags,
            "--model",
            "rinna-minigpt4",
            "--expect",
            "zebra",
            "--max-new-tokens",
            "4",
        ],
    )
    assert res.exit_code == 1 and "FAIL expected words" in res.stdout

    res = runner.invoke(
        app, ["smoke-test", "--model", "vip-llava-7b", "--quantize", "8bit", "--device", "cpu"]
    )
    assert res.exit_code == 2 and "needs a CUDA GPU" in res.stderr


def test_cli_lavis_backend_says_how_to_install():
    res = CliRunner().invoke(app, ["smoke-test", "--backend", "lavis"])
    assert res.exit_code == 2
    assert "pip install -e LAVIS" in res.stderr and res.stderr.count("\n") == 1


@pytest.mark.parametrize("model", ["vip-llava-7b", "mblip-mt0-xl", "rinna-minigpt4"])
def test_language_check_fails_random_language_models(examples, model):
    """Every family's tiny stand-in has a random LM: the check fails it and no caption is made."""
    report = _run(examples, model, language_check=True)
    assert [c.name for c in report.failures] == ["language check"]
    assert report.results == [] and report.language["perplexity"] > report.language["bound"]


def test_language_check_fails_an_untrained_vicuna(examples, converted, tmp_path):
    """The example Vicuna's weights re-drawn at random (same shapes, same tokenizer): refused."""
    g = torch.Generator().manual_seed(3)

    def scramble(t):
        for k, v in t.items():
            t[k] = (torch.randn(v.shape, generator=g) * v.float().std()).to(v.dtype)

    llm = _llm_copy(converted("7B", "float16"), tmp_path / "random", scramble)
    args = {**examples["instructblip-vicuna7b"], "llm": str(llm)}
    report = run_smoke(Options(model="instructblip-vicuna7b", max_new_tokens=8, **args))
    assert [c.name for c in report.failures] == ["language check"]
    assert "Gettysburg" in report.failures[0].detail and report.results == []


def test_make_example_vlm_llm_messages(tmp_path):
    """--llm given but wrong says what is wrong with it, not that it is missing."""
    runner = CliRunner()
    res = runner.invoke(
        app, ["make-example-vlm", str(tmp_path / "a"), "--llm", str(tmp_path / "x")]
    )
    assert res.exit_code == 2 and "--llm" in res.stderr and "no such folder" in res.stderr
    res = runner.invoke(app, ["make-example-vlm", str(tmp_path / "b"), "--llm", str(tmp_path)])
    assert res.exit_code == 2 and "no config.json" in res.stderr and "needs --llm" not in res.stderr
    res = runner.invoke(app, ["make-example-vlm", str(tmp_path / "d")])
    assert res.exit_code == 2 and "needs --llm" in res.stderr
    assert not list(tmp_path.iterdir())  # nothing written


def test_cli_lavis_backend_is_for_instructblip_only():
    res = CliRunner().invoke(app, ["smoke-test", "--model", "vip-llava-7b", "--backend", "lavis"])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert "InstructBLIP only" in res.stderr and "pip install" not in res.stderr
