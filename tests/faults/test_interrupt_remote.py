"""Ctrl-C while downloading from or uploading to Drive (the stand-in on 127.0.0.1): the command
stops within a second, says so in one line, exits 130, and leaves nothing under the output's
final name (a fetch keeps its staging folder, `DIR.partial`, for the re-run to continue)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

TOKEN = "ya29.interrupt-test-token"
SIZE = 8 * 2**20


def _run(args, fault: str):
    env = {**os.environ, "WEIGHTPREP_FAULT": fault}
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "weightprep", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate(timeout=300)
    return proc.returncode, err, time.monotonic() - start


def _interrupted(code: int, err: str) -> None:
    lines = err.strip().splitlines()
    assert code == 130, err[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: interrupted"), err[-3000:]


@pytest.fixture
def drive(drive_stand_in):
    return drive_stand_in(TOKEN)


def test_ctrl_c_while_downloading(drive, tmp_path):
    top = drive.add_file("models")
    drive.add_file("w.bin", os.urandom(SIZE), parent=top)
    out = tmp_path / "out"
    code, err, _ = _run(
        ["fetch", "gdrive://root/models", out, "--chunk-size", "1MiB", "-q"],
        f"fetch-download:{2**20}:int",
    )
    _interrupted(code, err)
    assert not out.exists()
    assert not list(tmp_path.rglob("*weightprep-lock"))


def test_ctrl_c_while_uploading(drive, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    data = os.urandom(SIZE)
    (model / "w.bin").write_bytes(data)
    (model / "SHA256SUMS").write_text(f"{hashlib.sha256(data).hexdigest()}  w.bin\n")
    code, err, _ = _run(
        ["publish", model, "gdrive://root/models", "--chunk-size", "1MiB", "-q"],
        f"drive-upload:{2**20}:int",
    )
    _interrupted(code, err)
    assert (model / "w.bin").read_bytes() == data
    assert not any(p.is_file() for p in Path(tmp_path).rglob("*weightprep-lock"))
