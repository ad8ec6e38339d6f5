"""Bad input: a one-line error naming the file, a non-zero exit, and no output left behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from weightprep.cli.app import app
from weightprep.io.atomic import partial_path


@pytest.fixture
def root(meta_root: Path, tmp_path: Path) -> Path:
    """A private copy of the Meta root with the 7B and 13B folders."""
    r = tmp_path / "LLaMA"
    r.mkdir()
    shutil.copy(meta_root / "tokenizer.model", r)
    for size in ("7B", "13B"):
        shutil.copytree(meta_root / size, r / size)
    return r


class Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/weightprep-pwned",))


def _break(root: Path, how: str) -> tuple[str, str]:
    """Damage `root` one way; return (model size to convert, text the error must contain)."""
    d7, d13 = root / "7B", root / "13B"
    if how == "no-params":
        (d7 / "params.json").unlink()
        return "7B", "no 7B folder with a params.json"
    if how == "bad-params-json":
        (d7 / "params.json").write_text("{not json")
        return "7B", "params.json: not valid JSON"
    if how == "no-tokenizer":
        (root / "tokenizer.model").unlink()
        return "7B", "tokenizer.model not found"
    if how == "bad-tokenizer":
        (root / "tokenizer.model").write_bytes(b"\x00garbage" * 10)
        return "7B", "tokenizer.model"
    if how == "no-shards":
        (d7 / "consolidated.00.pth").unlink()
        return "7B", "no consolidated.NN.pth"
    if how == "missing-shard-13B":
        (d13 / "consolidated.01.pth").unlink()
        return "13B", "ships as 2 consolidated.NN.pth file(s), found 1"
    if how == "gap-in-shards":
        (d13 / "consolidated.01.pth").rename(d13 / "consolidated.02.pth")
        return "13B", "consolidated.01.pth"
    if how == "shapes-vs-params":
        p = json.loads((d7 / "params.json").read_text())
        p["dim"] = 128
        (d7 / "params.json").write_text(json.dumps(p))
        return "7B", "imply"
    if how == "layers-vs-params":
        p = json.loads((d7 / "params.json").read_text())
        p["n_layers"] = 1
        (d7 / "params.json").write_text(json.dumps(p))
        return "7B", "unexpected tensor"
    if how == "truncated":
        f = d7 / "consolidated.00.pth"
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
        return "7B", "consolidated.00.pth: not a complete PyTorch zip checkpoint"
    if how == "empty":
        (d7 / "consolidated.00.pth").write_bytes(b"")
        return "7B", "consolidated.00.pth: file is empty"
    if how == "pickle-with-code":
        torch.save({"norm.weight": torch.ones(2), "x": Evil()}, d7 / "consolidated.00.pth")
        return "7B", "refused to load"
    if how == "not-a-dict":
        torch.save([torch.ones(2)], d7 / "consolidated.00.pth")
        return "7B", "expected a flat dict"
    if how == "replicated-differs":
        f = d13 / "consolidated.01.pth"
        sd = torch.load(f, weights_only=True)
        sd["norm.weight"] = sd["norm.weight"].clone() + 1
        torch.save(sd, f)
        return "13B", "replicated norm.weight differs"
    raise AssertionError(how)


CASES = [
    "no-params",
    "bad-params-json",
    "no-tokenizer",
    "bad-tokenizer",
    "no-shards",
    "missing-shard-13B",
    "gap-in-shards",
    "shapes-vs-params",
    "layers-vs-params",
    "truncated",
    "empty",
    "pickle-with-code",
    "not-a-dict",
    "replicated-differs",
]


@pytest.mark.parametrize("how", CASES)
def test_bad_input_one_line_error_no_output(how: str, root: Path, tmp_path: Path) -> None:
    marker = Path("/tmp/weightprep-pwned")
    marker.unlink(missing_ok=True)
    size, text = _break(root, how)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["convert-llama", str(root), str(out), "--model-size", size])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert text in lines[0], lines[0]
    assert "Traceback" not in res.output
    assert not out.exists() and not partial_path(out).exists()
    assert not marker.exists(), "the pickle's code ran"


def test_several_models_need_model_size(root: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["convert-llama", str(root), str(tmp_path / "o")])
    assert res.exit_code == 2 and "--model-size" in res.output


def test_output_inside_input_refused(root: Path) -> None:
    res = CliRunner().invoke(app, ["convert-llama", str(root / "7B"), str(root / "7B" / "hf")])
    assert res.exit_code == 2 and "inside the input" in res.output


def test_disk_space_preflight(root: Path, tmp_path: Path, monkeypatch) -> None:
    import shutil as sh
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(sh, "disk_usage", lambda p: usage(10**6, 10**6 - 1000, 1000))
    res = CliRunner().invoke(
        app, ["convert-llama", str(root), str(tmp_path / "o"), "--model-size", "7B"]
    )
    assert res.exit_code == 3  # the environment, not the input (docs/reliability.md)
    assert "not enough free disk: need" in res.output and "have 1000 B" in res.output
    assert not (tmp_path / "o").exists() and not partial_path(tmp_path / "o").exists()
