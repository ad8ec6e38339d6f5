"""publish to a folder: verified copy, idempotent, refuses a bad source, survives SIGKILL."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from weightprep.cli.app import app
from weightprep.errors import InputError, VerificationError
from weightprep.publish.run import Options, publish

runner = CliRunner()


def _tree(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def model(converted, tmp_path) -> Path:
    src = tmp_path / "model"
    shutil.copytree(converted("7B", "float16"), src)
    return src


def test_copy_verifies_and_rerun_sends_nothing(model, tmp_path):
    dest = tmp_path / "drive" / "vicuna"
    first = publish(model, str(dest), Options())
    assert _tree(dest) == _tree(model)
    assert {f.status for f in first.files} == {"sent"} and first.bytes_sent == sum(
        p.stat().st_size for p in model.iterdir()
    )
    assert first.checked_by == "SHA256SUMS" and first.hashed == []
    again = publish(model, str(dest), Options())
    assert again.up_to_date and again.bytes_sent == 0
    assert (
        subprocess.run(
            ["sha256sum", "-c", "--strict", "--quiet", "SHA256SUMS"], cwd=dest
        ).returncode
        == 0
    )


def test_changed_destination_file_is_replaced(model, tmp_path):
    dest = tmp_path / "copy"
    publish(model, str(dest), Options())
    shard = next(dest.glob("*.safetensors"))
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF
    shard.write_bytes(bytes(data))
    res = publish(model, str(dest), Options())
    assert [f.path for f in res.files if f.status == "replaced"] == [shard.name]
    assert _tree(dest) == _tree(model)


def test_corrupt_source_is_refused_and_nothing_lands(model, tmp_path):
    shard = next(model.glob("*.safetensors"))
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0x01
    shard.write_bytes(bytes(data))
    dest = tmp_path / "copy"
    with pytest.raises(VerificationError, match=shard.name):
        publish(model, str(dest), Options())
    assert not (dest / shard.name).exists()
    assert not [p for p in dest.rglob("*") if "partial" in p.name]
    res = runner.invoke(app, ["publish", str(model), str(tmp_path / "copy2")])
    assert res.exit_code == 1 and shard.name in res.stderr


def test_folder_without_manifest_is_hashed_and_said(tmp_path):
    src = tmp_path / "plain"
    src.mkdir()
    (src / "a.txt").write_text("hello")
    (src / "sub").mkdir()
    (src / "sub" / "b.bin").write_bytes(os.urandom(1000))
    res = runner.invoke(app, ["publish", str(src), str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "hashed 2 file(s)" in res.stdout
    assert _tree(tmp_path / "out") == _tree(src)


def test_dry_run_sends_nothing(model, tmp_path):
    res = runner.invoke(app, ["publish", str(model), str(tmp_path / "x"), "--dry-run", "--json"])
    assert res.exit_code == 0
    doc = json.loads(res.stdout)
    assert doc["dry_run"] and {f["status"] for f in doc["files"]} == {"would-send"}
    assert not (tmp_path / "x").exists()


def test_destination_inside_source_refused(model):
    with pytest.raises(InputError, match="inside"):
        publish(model, str(model / "copy"), Options())


def test_sigkill_during_copy_then_rerun(tmp_path):
    src = tmp_path / "big"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(3 * 2**20))
    (src / "b.bin").write_bytes(os.urandom(24 * 2**20))
    (src / "c.json").write_text("{}")
    sums = "".join(
        f"{hashlib.sha256((src / n).read_bytes()).hexdigest()}  {n}\n"
        for n in ("a.bin", "b.bin", "c.json")
    )
    (src / "SHA256SUMS").write_text(sums)
    dest = tmp_path / "dest"
    # files go in sorted order (SHA256SUMS, a.bin, b.bin, ...): die halfway through b.bin
    at = (src / "SHA256SUMS").stat().st_size + 3 * 2**20 + 12 * 2**20
    env = {**os.environ, "WEIGHTPREP_FAULT": f"publish-copy:{at}"}
    cmd = [sys.executable, "-m", "weightprep", "publish", str(src), str(dest), "--quiet"]
    killed = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL
    # what is under a final name is complete and right; b.bin is only a temporary name
    want = _tree(src)
    landed = {k: v for k, v in _tree(dest).items() if not k.startswith(".")}
    assert landed == {k: want[k] for k in ("SHA256SUMS", "a.bin")}
    assert not (dest / "b.bin").exists() and (dest / ".b.bin.partial").exists()
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert _tree(dest) == _tree(src)
