"""apply-delta with Meta's download as BASE: one pass, no converted LLaMA written, and exactly
what convert-llama followed by apply-delta writes (and so what FastChat's apply_delta writes on
our float16 conversion), on every layout make-example writes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import SIZES
from weightprep.cli.app import app
from weightprep.delta import apply_delta
from weightprep.example import make_delta_example
from weightprep.manifest import read_manifest

# Files that name the base folder (the manifest's description) and the list of files' digests
# that includes it: everything else must be byte for byte the same.
NAMING = {"manifest.yaml", "SHA256SUMS"}


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def deltas(converted, tmp_path_factory):
    """size -> a tiny delta made from that size's conversion (built once)."""
    root = tmp_path_factory.mktemp("onepass-deltas")
    return {size: make_delta_example(converted(size), root / size) for size in SIZES}


def _same_folders(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for n in names:
        if n not in NAMING:
            assert (a / n).read_bytes() == (b / n).read_bytes(), n
    ma, mb = read_manifest(a / "manifest.yaml"), read_manifest(b / "manifest.yaml")
    assert ma.tensors == mb.tensors and ma.files == mb.files


@pytest.mark.parametrize("size", SIZES)
def test_one_pass_equals_convert_then_apply(meta_root, converted, deltas, size, tmp_path):
    one = apply_delta(meta_root, deltas[size], tmp_path / "one", model_size=size, verify=True)
    two = apply_delta(converted(size), deltas[size], tmp_path / "two", verify=True)
    _same_folders(one.output, two.output)
    assert one.verified.startswith("input: ") and "md5 OK" in one.verified
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]  # no conversion kept


def test_size_folder_as_base_and_the_cli(meta_root, converted, deltas, tmp_path):
    res = invoke("apply-delta", meta_root / "7B", deltas["7B"], tmp_path / "one", "--verify")
    assert res.exit_code == 0, res.output
    assert "language check: base: perplexity" in res.stdout  # the base scored from Meta's files
    two = apply_delta(converted("7B"), deltas["7B"], tmp_path / "two", verify=True)
    _same_folders(tmp_path / "one", two.output)


def test_meta_options_need_a_meta_base(converted, deltas, tmp_path):
    res = invoke("apply-delta", converted("7B"), deltas["7B"], tmp_path / "o", "--model-size", "7B")
    assert res.exit_code == 2 and "apply when BASE is Meta's download" in res.stderr


def test_wrong_delta_refused_before_anything_is_written(meta_root, deltas, tmp_path):
    """A delta for another shape, and a v0-style delta with 32001 rows, name the tensor."""
    res = invoke(
        "apply-delta", meta_root, deltas["llama-2-70b"], tmp_path / "o", "--model-size", "7B"
    )
    assert res.exit_code == 2 and "not the base llama-2-70b was made from" in res.stderr
    res = invoke(
        "apply-delta",
        meta_root,
        deltas["llama-2-70b"],
        tmp_path / "o",
        "--model-size",
        "7B",
        "--allow-base-mismatch",
    )
    assert (
        res.exit_code == 2
        and "down_proj.weight has shape [64, 224], the base [64, 192]" in res.stderr
    )
    v0 = tmp_path / "v0"
    shutil.copytree(deltas["7B"], v0)
    for f in v0.glob("*.bin"):
        sd = torch.load(f, weights_only=True)
        if "model.embed_tokens.weight" in sd:
            t = sd["model.embed_tokens.weight"]
            sd["model.embed_tokens.weight"] = torch.cat([t, t[:1]])
            torch.save(sd, f)
    res = invoke("apply-delta", meta_root, v0, tmp_path / "o", "--model-size", "7B")
    assert res.exit_code == 2
    assert "model.embed_tokens.weight" in res.stderr and "vocabulary mismatch" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v0"]


def test_meta_checklist_checked_in_the_same_read(meta_root, deltas, tmp_path):
    meta = tmp_path / "LLaMA"
    shutil.copytree(meta_root / "7B", meta / "7B")
    for f in ("tokenizer.model", "tokenizer_checklist.chk"):
        shutil.copy(meta_root / f, meta / f)
    chk = meta / "7B" / "checklist.chk"
    chk.write_text(chk.read_text().replace(chk.read_text()[:4], "0000", 1))
    res = invoke("apply-delta", meta, deltas["7B"], tmp_path / "o", "--model-size", "7B")
    assert res.exit_code == 1, res.output
    assert "md5" in res.stderr and not (tmp_path / "o").exists()


def test_verify_base_points_to_verify_input(meta_root, deltas, tmp_path):
    res = invoke(
        "apply-delta",
        meta_root,
        deltas["7B"],
        tmp_path / "o",
        "--model-size",
        "7B",
        "--verify-base",
        "llama-7b",
    )
    assert res.exit_code == 2 and "--verify-input" in res.stderr


def test_hub_delta_fetched_once_verified_and_reused(
    meta_root, converted, deltas, tmp_path, hub_stand_in, monkeypatch
):
    monkeypatch.setenv("WEIGHTPREP_CACHE", str(tmp_path / "cache"))
    server = hub_stand_in({"lmsys/tiny-delta": deltas["7B"]})
    args = ["apply-delta", meta_root, "hf://lmsys/tiny-delta", tmp_path / "a", "--model-size", "7B"]
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    assert "fetched hf://lmsys/tiny-delta" in res.stderr and str(tmp_path / "cache") in res.stderr
    first = len(server.fetched())
    assert first > 0
    res = invoke(*args[:3], tmp_path / "b", *args[4:], "--compare-to", tmp_path / "a")
    assert res.exit_code == 0, res.output
    assert "reused" in res.stderr and len(server.fetched()) == first
    _same_folders(tmp_path / "a", apply_delta(converted("7B"), deltas["7B"], tmp_path / "c").output)
    res = invoke("apply-delta", meta_root, "lmsys/tiny-delta", tmp_path / "d", "--model-size", "7B")
    assert res.exit_code == 2 and "write hf://lmsys/tiny-delta" in res.stderr


def test_compare_to_is_checked_before_the_merge(meta_root, deltas, tmp_path):
    res = invoke(
        "apply-delta",
        meta_root,
        deltas["7B"],
        tmp_path / "o",
        "--model-size",
        "7B",
        "--compare-to",
        deltas["llama-2-70b"],
    )
    assert res.exit_code == 2 and not (tmp_path / "o").exists()
    res = invoke(
        "apply-delta",
        meta_root,
        deltas["7B"],
        tmp_path / "o",
        "--model-size",
        "7B",
        "--compare-to",
        tmp_path / "nowhere",
    )
    assert res.exit_code == 2 and "no such folder" in res.stderr


@pytest.mark.peer
def test_one_pass_equals_fastchat_on_the_float16_conversion(meta_root, converted, deltas, tmp_path):
    from tests.delta_fixtures import read_all
    from tests.test_delta import fastchat_apply

    ours = apply_delta(meta_root, deltas["7B"], tmp_path / "ours", model_size="7B")
    theirs = read_all(fastchat_apply(converted("7B"), deltas["7B"], tmp_path / "fastchat"))
    mine = read_all(ours.output)
    assert mine.keys() == theirs.keys()
    for k in mine:
        assert torch.equal(mine[k].view(torch.int16), theirs[k].view(torch.int16)), k
