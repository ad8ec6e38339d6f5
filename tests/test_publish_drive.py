"""publish gdrive://: the real google-api-python-client against the stand-in Drive v3 server."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.driveserver import DriveStandIn
from weightprep.cli.app import app

TOKEN = "ya29.weightprep-test-token-0123456789"
runner = CliRunner()
CHUNK = str(256 * 1024)


@pytest.fixture
def drive(drive_stand_in):
    return drive_stand_in(TOKEN)


def _folder(tmp_path: Path, sizes: dict[str, int]) -> Path:
    src = tmp_path / "model"
    src.mkdir()
    for name, n in sizes.items():
        (src / name).write_bytes(os.urandom(n))
    (src / "SHA256SUMS").write_text(
        "".join(f"{hashlib.sha256((src / n).read_bytes()).hexdigest()}  {n}\n" for n in sizes)
    )
    return src


def _children(drive: DriveStandIn, parent: str) -> dict[str, str]:
    with drive.lock:
        return {
            f["name"]: fid
            for fid, f in drive.files.items()
            if parent in f["parents"] and not f["trashed"]
        }


def _remote(drive: DriveStandIn, parent_path: list[str]) -> dict[str, bytes]:
    parent = "root"
    for name in parent_path:
        parent = _children(drive, parent)[name]
    return {name: drive.content(fid) for name, fid in _children(drive, parent).items()}


def test_upload_verifies_and_rerun_sends_nothing(converted, tmp_path, drive):
    model = tmp_path / "tiny"
    shutil.copytree(converted("7B", "float16"), model)
    dest = "gdrive://root/models/tiny"
    res = runner.invoke(app, ["publish", str(model), dest, "--chunk-size", CHUNK, "--quiet"])
    assert res.exit_code == 0, res.output
    got = _remote(drive, ["models", "tiny"])
    assert got == {p.name: p.read_bytes() for p in model.iterdir()}
    before = drive.bytes_received
    res = runner.invoke(app, ["publish", str(model), dest, "--chunk-size", CHUNK])
    assert res.exit_code == 0 and "up to date" in res.stdout
    assert drive.bytes_received == before
    assert len(drive.find("models")) == 1 and len(drive.find("tiny")) == 1
    res = runner.invoke(app, ["verify", dest, "-m", str(model / "SHA256SUMS"), "-q"])
    assert res.exit_code == 0, res.output


def test_503_and_dropped_connection_are_retried(tmp_path, drive):
    src = _folder(tmp_path, {"w.bin": 2 * 2**20})
    drive.fail_next("chunk", status=503)
    drive.drop_next_chunk(100_000)
    res = runner.invoke(
        app, ["publish", str(src), "gdrive://root/x", "--chunk-size", CHUNK, "--quiet"]
    )
    assert res.exit_code == 0, res.output
    assert _remote(drive, ["x"])["w.bin"] == (src / "w.bin").read_bytes()


def test_killed_mid_file_resumes_in_a_new_process(tmp_path, drive):
    size = 3 * 2**20
    src = _folder(tmp_path, {"big.bin": size})
    cmd = [
        sys.executable,
        "-m",
        "weightprep",
        "publish",
        str(src),
        "gdrive://root/r",
        "--chunk-size",
        CHUNK,
        "--quiet",
    ]
    env = {**os.environ, "WEIGHTPREP_FAULT": f"drive-upload:{2**20}"}
    killed = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    first = drive.received_for("big.bin")
    assert 0 < first < size
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    second = drive.received_for("big.bin") - first
    assert second < size and first + second >= size
    assert _remote(drive, ["r"])["big.bin"] == (src / "big.bin").read_bytes()
    state = tmp_path / "cache" / "weightprep" / "drive-uploads.json"
    assert TOKEN not in state.read_text()


def test_missing_or_refused_credentials_exit_2(tmp_path, drive, monkeypatch):
    src = _folder(tmp_path, {"a.bin": 10})
    monkeypatch.setenv("GOOGLE_OAUTH_ACCESS_TOKEN", "ya29.wrong")
    res = runner.invoke(app, ["publish", str(src), "gdrive://root/a"])
    assert res.exit_code == 2 and "ya29.wrong" not in res.output
    monkeypatch.delenv("GOOGLE_OAUTH_ACCESS_TOKEN")
    res = runner.invoke(app, ["publish", str(src), "gdrive://root/a"])
    assert res.exit_code == 2 and "no Google credentials" in res.stderr


def test_service_account_into_its_own_root_is_refused(tmp_path, drive):
    """gdrive://root with a service account is the account's own Drive: nobody would see the
    files and it has no quota. Refused in one line before anything is sent; a shared folder's
    id is the way (the refusal comes before the key is even used)."""
    src = _folder(tmp_path, {"a.bin": 10})
    sa = tmp_path / "service-account.json"
    sa.write_text(
        '{"type": "service_account", "client_email": "uploader@proj.iam.gserviceaccount.com",'
        ' "private_key": "not-a-key", "token_uri": "https://oauth2.invalid/token"}'
    )
    res = runner.invoke(
        app, ["publish", str(src), "gdrive://root/models/x", "--credentials", str(sa)]
    )
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert "uploader@proj.iam.gserviceaccount.com" in res.stderr and "share a folder" in res.stderr
    assert drive.requests == []  # nothing reached Drive
