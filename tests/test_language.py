"""The language check: the streamed forward equals transformers', and trained, fine-tuned, wrong
and untrained tiny models land on the right side of the bound (models trained here, seeded)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from weightprep.cli.app import app
from weightprep.errors import InputError
from weightprep.example import BASE_PARAMS, ExampleModel, make_delta_example, make_example, train
from weightprep.io.reader import CheckpointReader
from weightprep.language import _tokenize, check_folder, streamed_nll
from weightprep.llama import forward as fw
from weightprep.llama.convert import convert_meta_to_hf
from weightprep.reference_texts import TEXTS


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def _replace_weights(src: Path, dst: Path, tensors: dict[str, torch.Tensor]) -> Path:
    """A copy of the HF folder `src` holding `tensors` (same names, fp16) instead."""
    shutil.copytree(src, dst)
    for name in ("manifest.yaml", "SHA256SUMS"):
        (dst / name).unlink(missing_ok=True)
    (shard,) = dst.glob("*.safetensors")
    save_file({n: t.half().contiguous() for n, t in tensors.items()}, str(shard), {"format": "pt"})
    return dst


@pytest.fixture(scope="module")
def models(converted, tmp_path_factory) -> dict[str, Path]:
    """base: the example 7B (trained on the reference passage); tuned: base + its example delta;
    delta: that delta; other: the same shape trained on a different text (German);
    untrained: the same example written without training."""
    root = tmp_path_factory.mktemp("language")
    base = converted("7B")
    delta = make_delta_example(base, root / "delta")
    res = invoke("apply-delta", base, delta, root / "tuned", "-q")
    assert res.exit_code == 0, res.output
    w = _weights(base)
    other_ids = torch.tensor(
        [
            1,
            *__import__("sentencepiece")
            .SentencePieceProcessor(model_file=str(base / "tokenizer.model"))
            .encode(TEXTS["de"].text),
        ]
    )
    other = train(
        {n: torch.randn_like(t.float()) * t.float().std() for n, t in w.items()},
        fw.LlamaShape.read(base),
        other_ids,
    )
    # the "LLaMA-2 under a LLaMA-1 delta" case: as good a model of the passage as the base, but
    # other weights (another seed), so the delta's changes are meaningless on it
    g = torch.Generator().manual_seed(11)
    sibling = train(
        {n: torch.randn(t.shape, generator=g) * t.float().std() for n, t in w.items()},
        fw.LlamaShape.read(base),
        __import__("weightprep.example", fromlist=["reference_ids"]).reference_ids(
            (base / "tokenizer.model").read_bytes()
        ),
    )
    meta = make_example(
        root / "meta-untrained", models=(ExampleModel("7B", 1, BASE_PARAMS, trained=False),)
    )
    untrained = root / "untrained"
    convert_meta_to_hf(meta, untrained, model_size="7B")
    return {
        "base": base,
        "tuned": root / "tuned",
        "delta": delta,
        "other": _replace_weights(base, root / "other", other),
        "sibling": _replace_weights(base, root / "sibling", sibling),
        "untrained": untrained,
    }


@pytest.mark.parametrize("size", ["7B", "llama-2-70b"])
def test_streamed_forward_equals_transformers(converted, size):
    """Logits of our layer-by-layer forward equal LlamaForCausalLM's (float32), on a plain and a
    grouped-query model; the streamed NLL equals transformers' cross-entropy."""
    from transformers import LlamaForCausalLM

    folder = converted(size)
    shape = fw.LlamaShape.read(folder)
    ids = _tokenize(folder / "tokenizer.model", TEXTS["en"].text, shape.context, shape.vocab)
    w = {n: t.float() for n, t in _weights(folder).items()}
    ours = fw.logits(ids[None], w.__getitem__, shape)[0]
    model = LlamaForCausalLM.from_pretrained(folder, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        theirs = model(input_ids=ids[None]).logits[0]
    torch.testing.assert_close(ours, theirs, atol=2e-4, rtol=1e-4)
    with CheckpointReader(folder) as reader:
        nll, n = streamed_nll(reader, shape, ids)
    ref = torch.nn.functional.cross_entropy(theirs[:-1], ids[1:], reduction="sum")
    assert n == len(ids) - 1
    assert nll == pytest.approx(float(ref), rel=1e-5)


def test_lm_head_in_chunks_equals_whole():
    g = torch.Generator().manual_seed(1)
    h, head = torch.randn(7, 16, generator=g), torch.randn(50, 16, generator=g)
    targets = torch.tensor([0, 49, 13, 14, 26, 25, 3])
    whole = torch.nn.functional.cross_entropy(h @ head.T, targets, reduction="none")
    torch.testing.assert_close(fw.token_nll(h, head, targets, rows=13), whole)


def test_trained_fine_tuned_delta_wrong_and_untrained(models):
    got = {k: check_folder(v) for k, v in models.items()}
    assert got["base"].ok and got["tuned"].ok
    for bad in ("delta", "other", "untrained"):
        assert not got[bad].ok, got[bad].detail
        assert got[bad].perplexity > 4 * got["base"].bound
    # a fine-tune moves the figure a little; a delta scores about uniform over the vocabulary
    assert got["tuned"].perplexity < 2 * got["base"].perplexity
    assert got["delta"].perplexity == pytest.approx(512, rel=0.2)


def test_apply_delta_verify_passes_on_the_right_base(models, tmp_path):
    res = invoke(
        "apply-delta",
        models["base"],
        models["delta"],
        tmp_path / "v",
        "--verify",
        "--manifest",
        models["delta"] / "expected.yaml",
        "--json",
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [c["ok"] for c in doc["language_check"]] == [True, True]
    assert "language check: base: perplexity" in doc["verified"]
    assert "tensor digests" in doc["verified"]


def test_apply_delta_verify_fails_on_the_wrong_base(models, tmp_path):
    out = tmp_path / "v"
    res = invoke("apply-delta", models["other"], models["delta"], out, "--verify")
    assert res.exit_code == 1
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1
    assert "output: perplexity" in err and "base: perplexity" in err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_a_small_delta_on_a_working_sibling_needs_the_family_guard(models, tmp_path):
    """The language check's limit, shown: a base as good at the passage as the right one (same
    passage, another seed) plus a small fine-tune's delta still predicts the passage, so the
    check passes. What refuses a LLaMA-2 base under a LLaMA-1 delta is the config guard."""
    res = invoke("apply-delta", models["sibling"], models["delta"], tmp_path / "v", "--verify")
    assert res.exit_code == 0 and "output: perplexity" in res.stdout
    llama2 = tmp_path / "llama-2-like"
    shutil.copytree(models["sibling"], llama2)
    cfg = json.loads((llama2 / "config.json").read_text())
    cfg.update(max_position_embeddings=4096, rms_norm_eps=1e-5)
    (llama2 / "config.json").write_text(json.dumps(cfg))
    res = invoke("apply-delta", llama2, models["delta"], tmp_path / "w", "--verify")
    assert res.exit_code == 2 and "--allow-base-mismatch" in res.stderr
    assert "4096" in res.stderr and not (tmp_path / "w").exists()
    res = invoke(
        "apply-delta", llama2, models["delta"], tmp_path / "w", "--verify", "--allow-base-mismatch"
    )
    assert res.exit_code == 0, res.output


def test_apply_delta_refuses_a_delta_as_base(models, tmp_path):
    res = invoke("apply-delta", models["delta"], models["delta"], tmp_path / "v")
    assert res.exit_code == 2
    assert "is a delta" in res.stderr
    assert not list(tmp_path.iterdir())


def test_reference_text_and_bound_options(models, tmp_path):
    ref = tmp_path / "ref.txt"
    ref.write_text(TEXTS["de"].text, encoding="utf-8")
    on_german = check_folder(models["base"], reference=ref)
    assert not on_german.ok and "ref.txt" in on_german.detail  # trained on English only
    assert check_folder(models["other"], reference=ref).ok  # trained on that text
    strict = check_folder(models["base"], max_perplexity=1.01)
    assert not strict.ok
    res = invoke(
        "apply-delta",
        models["base"],
        models["delta"],
        tmp_path / "v",
        "--verify",
        "--max-perplexity",
        "1.01",
    )
    assert res.exit_code == 1 and "> 1.01" in res.stderr
    res = invoke(
        "apply-delta", models["base"], models["delta"], tmp_path / "w", "--max-perplexity", "9"
    )
    assert res.exit_code == 2 and "go with --verify" in res.stderr
    with pytest.raises(InputError, match="not UTF-8"):
        (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00")
        check_folder(models["base"], reference=tmp_path / "bin.txt")


def test_loaded_model_scores_as_streamed(models):
    """The smoke test's check on a loaded model gives the streamed figure."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    from weightprep.language import check_loaded

    folder = models["tuned"]
    model = LlamaForCausalLM.from_pretrained(folder, torch_dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    loaded = check_loaded(model, tok, model.config)
    streamed = check_folder(folder)
    assert loaded.tokens == streamed.tokens
    assert loaded.perplexity == pytest.approx(streamed.perplexity, rel=1e-4)


def test_inspect_perplexity(models):
    res = invoke("inspect", models["untrained"], "--perplexity")
    assert res.exit_code == 1 and "> 50 on" in res.stdout
    res = invoke("inspect", models["base"], "--perplexity", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["kind"] == "model" and doc["language"]["ok"] is True
    assert doc["language"]["perplexity"] < 50
    res = invoke("inspect", models["delta"], "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["kind"] == "delta"
