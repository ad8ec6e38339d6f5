"""publish hf://: the real huggingface_hub client against the stand-in Hub on 127.0.0.1."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from weightprep.cli.app import app

TOKEN = "hf_weightprepTestToken0123456789abcdef"
REPO = "me/tiny-vicuna"
runner = CliRunner()


@pytest.fixture
def model(converted, tmp_path) -> Path:
    src = tmp_path / "tiny-vicuna"
    shutil.copytree(converted("7B", "float16"), src)
    return src


@pytest.fixture
def hub(hub_stand_in, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return hub_stand_in({}, token=TOKEN, lfs_threshold=1024)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _publish(*args: str):
    return runner.invoke(app, ["publish", *args])


def test_tiny_model_arrives_intact_private_with_card(model, hub):
    res = _publish(str(model), f"hf://{REPO}", "--quiet")
    assert res.exit_code == 0, res.output
    assert hub.is_private(REPO)
    from huggingface_hub import HfApi

    listed = {
        f.path: f for f in HfApi().list_repo_tree(REPO, recursive=True) if hasattr(f, "blob_id")
    }
    for p in model.iterdir():
        f = listed[p.name]
        assert f.size == p.stat().st_size
        if f.lfs:
            assert f.lfs.sha256 == _sha(p)
    assert any(f.lfs for f in listed.values())  # the shard went by LFS
    assert "README.md" in listed  # generated card
    from huggingface_hub import hf_hub_download

    card = Path(hf_hub_download(REPO, "README.md")).read_text()
    assert "license: other" in card and _sha(next(model.glob("*.safetensors"))) in card


def test_rerun_sends_nothing(model, hub):
    assert _publish(str(model), f"hf://{REPO}", "--quiet").exit_code == 0
    before, commits = hub.bytes_received, len([r for r in hub.requests if "/commit/" in r[1]])
    res = _publish(str(model), f"hf://{REPO}")
    assert res.exit_code == 0, res.output
    assert "up to date" in res.stdout
    assert hub.bytes_received == before
    assert len([r for r in hub.requests if "/commit/" in r[1]]) == commits


def test_server_side_corruption_found_by_verify_and_repaired(model, hub):
    assert _publish(str(model), f"hf://{REPO}", "--quiet").exit_code == 0
    shard = next(model.glob("*.safetensors")).name
    sums = str(model / "SHA256SUMS")
    assert runner.invoke(app, ["verify", f"hf://{REPO}", "-m", sums, "-q"]).exit_code == 0
    hub.corrupt(REPO, shard)
    res = runner.invoke(app, ["verify", f"hf://{REPO}", "-m", sums, "-q"])
    assert res.exit_code == 1 and shard in res.stdout
    res = _publish(str(model), f"hf://{REPO}")
    assert res.exit_code == 0 and f"replaced      {shard}" in res.stdout
    assert runner.invoke(app, ["verify", f"hf://{REPO}", "-m", sums, "-q"]).exit_code == 0


def test_injected_503s_are_survived(model, hub):
    hub.fail_next("PUT", "/lfs-upload/", status=503)  # the client retries this one
    hub.fail_next("POST", "/commit/", status=503, times=2)  # weightprep retries this one
    res = _publish(str(model), f"hf://{REPO}", "--quiet")
    assert res.exit_code == 0, res.output
    assert len(hub.injected) == 3
    assert (
        runner.invoke(app, ["verify", f"hf://{REPO}", "-m", str(model / "SHA256SUMS")]).exit_code
        == 0
    )


def test_bad_or_missing_token_exit_2_and_never_shown(model, hub, monkeypatch, tmp_path):
    bad = "hf_thisIsTheWrongTokenXYZ987654321"
    monkeypatch.setenv("HF_TOKEN", bad)
    res = _publish(str(model), f"hf://{REPO}", "--json")
    assert res.exit_code == 2
    assert "rejected the token from the HF_TOKEN environment variable" in res.stderr
    assert bad not in res.output and TOKEN not in res.output
    monkeypatch.delenv("HF_TOKEN")
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(c, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
    res = _publish(str(model), f"hf://{REPO}")
    assert (
        res.exit_code == 2 and "no Hugging Face token" in res.stderr and "looked in" in res.stderr
    )
    for root in (model, Path(c.HF_HOME), tmp_path):
        for p in root.rglob("*"):
            if p.is_file():
                data = p.read_bytes()
                assert bad.encode() not in data and TOKEN.encode() not in data, p
