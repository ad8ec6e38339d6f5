"""fetch: hf:// from the stand-in Hub, gdrive:// from the stand-in Drive, verified, resumable."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tests import driveserver
from tests.driveserver import DriveStandIn
from weightprep.checksum import list_files
from weightprep.cli.fetch import fetch_cmd
from weightprep.fetch import fetch

TOKEN = "ya29.weightprep-test-token-0123456789"
CHUNK = 256 * 1024
runner = CliRunner()

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command("fetch")(fetch_cmd)


@app.callback()
def _root() -> None:
    pass  # keeps `fetch` a subcommand, as it will be in the real app


def _fetch(*args: str):
    return runner.invoke(app, ["fetch", *args])


def _tree(folder: Path) -> dict[str, bytes]:
    return {rel: (folder / rel).read_bytes() for rel in list_files(folder)}


def _sums(folder: Path, rels: list[str]) -> Path:
    path = folder / "SHA256SUMS"
    path.write_text(
        "".join(f"{hashlib.sha256((folder / r).read_bytes()).hexdigest()}  {r}\n" for r in rels)
    )
    return path


# --- hf:// -------------------------------------------------------------------------------------


@pytest.fixture
def hub_repo(hub_stand_in, tmp_path):
    """A tiny public folder repo (LFS and plain git files, a subfolder) on the stand-in Hub."""
    src = tmp_path / "src"
    (src / "tok").mkdir(parents=True)
    (src / "config.json").write_text('{"model_type": "llama"}\n')
    (src / "model.safetensors").write_bytes(os.urandom(40_000))  # LFS by .gitattributes
    (src / "tok" / "tokenizer.model").write_bytes(os.urandom(3000))  # LFS
    (src / "README.md").write_text("# tiny\n")
    _sums(src, ["config.json", "model.safetensors", "tok/tokenizer.model"])
    hub = hub_stand_in({"fetch/tiny": src})
    return hub, src


def test_hub_download_equals_source_and_passes_manifest(hub_repo, tmp_path):
    hub, src = hub_repo
    out = tmp_path / "out"
    res = _fetch("hf://fetch/tiny", str(out), "-m", str(src / "SHA256SUMS"), "--json")
    assert res.exit_code == 0, res.output
    assert _tree(out) == _tree(src)  # no .cache/, no marker, byte for byte
    assert not out.with_name("out.partial").exists()
    doc = json.loads(res.stdout)
    assert doc["source"] == "hf://fetch/tiny" and doc["dir"] == str(out.absolute())
    files = {f["path"]: f for f in doc["files"]}
    assert set(files) == set(_tree(src))
    shard = files["model.safetensors"]
    assert shard["size"] == 40_000 and shard["status"] == "downloaded"
    assert shard["sha256"] == hashlib.sha256((src / "model.safetensors").read_bytes()).hexdigest()
    assert doc["bytes_downloaded"] == sum(len(b) for b in _tree(src).values())
    assert len(doc["verified_against"]) == 2 and "SHA256SUMS" in doc["verified_against"][1]
    assert not any(p for m, p in hub.requests if "whoami" in p)  # no token: no whoami


def test_hub_corrupt_file_exits_1_naming_it(hub_repo, tmp_path):
    hub, _ = hub_repo
    hub.corrupt("fetch/tiny", "model.safetensors", keep_listing=True)  # listing: the old sha256
    out = tmp_path / "out"
    res = _fetch("hf://fetch/tiny", str(out), "-q")
    assert res.exit_code == 1, res.output
    assert "model.safetensors" in res.stderr and "sha256" in res.stderr
    assert not out.exists()
    stage = tmp_path / "out.partial"  # the good files stay for a re-run; the bad one is gone
    assert (stage / "config.json").is_file() and not (stage / "model.safetensors").exists()


def test_hub_rerun_continues_in_the_staging_folder(hub_repo, tmp_path):
    hub, src = hub_repo
    out = tmp_path / "out"
    hub.fail_next("GET", "tokenizer.model", status=404)  # the last file fetched
    res = _fetch("hf://fetch/tiny", str(out), "-q")
    assert res.exit_code == 2 and not out.exists()
    stage = tmp_path / "out.partial"
    assert (stage / "model.safetensors").is_file() and not (stage / "tok/tokenizer.model").exists()
    hub.requests.clear()
    result = fetch("hf://fetch/tiny", out)
    assert _tree(out) == _tree(src)
    status = {f.path: f.status for f in result.files}
    assert status.pop("tok/tokenizer.model") == "downloaded"
    assert set(status.values()) == {"kept"}
    assert [p for p in hub.fetched() if "/resolve/" in p] == [
        p for p in hub.fetched() if p.endswith("/tok/tokenizer.model")
    ]
    # a staging folder that is not a fetch of this source is emptied first
    other = tmp_path / "other.partial"
    other.mkdir()
    (other / "stray.bin").write_text("not ours")
    fetch("hf://fetch/tiny", tmp_path / "other")
    assert _tree(tmp_path / "other") == _tree(src)


# --- gdrive:// ---------------------------------------------------------------------------------


@pytest.fixture
def drive(drive_stand_in):
    return drive_stand_in(TOKEN)


def _seed(drive: DriveStandIn, files: dict[str, bytes], top: str = "models") -> dict[str, bytes]:
    folders = {"": drive.add_file(top)}
    for rel in sorted(files):
        parent = ""
        for name in rel.split("/")[:-1]:
            here = f"{parent}/{name}".strip("/")
            if here not in folders:
                folders[here] = drive.add_file(name, parent=folders[parent])
            parent = here
        drive.add_file(rel.rsplit("/", 1)[-1], files[rel], parent=folders[parent])
    return files


def test_drive_download_equals_source(drive, tmp_path):
    want = _seed(
        drive,
        {"w.bin": os.urandom(700_000), "sub/config.json": b"{}\n", "sub/deep/empty": b""},
    )
    out = tmp_path / "out"
    src = tmp_path / "src"
    for rel, data in want.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    sums = _sums(src, sorted(want))
    res = _fetch("gdrive://root/models", str(out), "--manifest", str(sums), "--json")
    assert res.exit_code == 0, res.output
    assert _tree(out) == want
    doc = json.loads(res.stdout)
    assert doc["bytes_downloaded"] == sum(map(len, want.values()))
    assert {f["path"] for f in doc["files"]} == set(want)
    assert drive.bytes_served == sum(map(len, want.values()))


def test_drive_manifest_mismatch_exits_1(drive, tmp_path):
    _seed(drive, {"w.bin": b"weights"})
    bad = tmp_path / "bad.sums"
    bad.write_text(f"{hashlib.sha256(b'other').hexdigest()}  w.bin\n")
    out = tmp_path / "out"
    res = _fetch("gdrive://root/models", str(out), "-m", str(bad), "-q")
    assert res.exit_code == 1 and "w.bin" in res.stderr
    assert not out.exists()


def test_drive_503_and_dropped_connection_are_survived(drive, tmp_path, monkeypatch):
    data = os.urandom(3 * CHUNK + 1000)
    _seed(drive, {"w.bin": data})
    drops = [1]
    plain = driveserver._Handler._download

    def dropping(self, f):
        if drops and f["name"] == "w.bin":
            drops.pop()
            self.send_response(200)
            self.send_header("Content-Length", str(len(f["bytes"])))
            self.end_headers()
            self.wfile.write(f["bytes"][:50_000])
            self.wfile.flush()
            self._drop()  # a TCP reset mid-answer
        return plain(self, f)

    monkeypatch.setattr(driveserver._Handler, "_download", dropping)
    drive.fail_next("download", status=503)
    out = tmp_path / "out"
    result = fetch("gdrive://root/models", out, chunk_size=CHUNK)
    assert (out / "w.bin").read_bytes() == data
    assert not drops and len(drive.requests_of("download")) == 4 + 2
    assert result.files[0].sha256 == hashlib.sha256(data).hexdigest()


def _fetch_killed_after(nbytes: int, source: str, out: Path) -> None:
    """`fetch(source, out)` in a new process, SIGKILLed once `nbytes` were downloaded."""
    code = (
        "import sys; from pathlib import Path; from weightprep.fetch import fetch; "
        f"fetch(sys.argv[1], Path(sys.argv[2]), chunk_size={CHUNK})"
    )
    env = {**os.environ, "WEIGHTPREP_FAULT": f"fetch-download:{nbytes}"}
    killed = subprocess.run(
        [sys.executable, "-c", code, source, str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not out.exists()


def test_drive_killed_mid_file_resumes(drive, tmp_path):
    size = 3 * 2**20
    data = os.urandom(size)
    _seed(drive, {"big.bin": data})
    out = tmp_path / "out"
    _fetch_killed_after(2**20, "gdrive://root/models", out)
    part = tmp_path / "out.partial" / ".big.bin.partial"
    assert 2**20 <= part.stat().st_size < size
    first = drive.bytes_served
    result = fetch("gdrive://root/models", out, chunk_size=CHUNK)
    second = drive.bytes_served - first
    assert second < size and first + second >= size
    assert (out / "big.bin").read_bytes() == data
    assert result.files[0].status == "resumed"
    assert result.bytes_downloaded == second
    assert not (tmp_path / "out.partial").exists()


@pytest.mark.parametrize("layout", ["file", "folder"])
def test_drive_hostile_names_refused(drive, tmp_path, layout):
    top = drive.add_file("models")
    drive.add_file("ok.bin", b"fine", parent=top)
    if layout == "file":
        drive.add_file("../evil", b"owned", parent=top)
    else:
        up = drive.add_file("..", parent=top)
        drive.add_file("evil", b"owned", parent=up)
    work = tmp_path / "work"
    work.mkdir()
    res = _fetch("gdrive://root/models", str(work / "out"))
    assert res.exit_code == 2 and "refused" in res.stderr, res.output
    assert not (work / "evil").exists() and not (tmp_path / "evil").exists()
    assert list(work.iterdir()) == []  # no output, no staging folder
    assert drive.bytes_served == 0  # refused before any download


def test_existing_dir_needs_force(drive, tmp_path):
    _seed(drive, {"w.bin": b"new weights"})
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.bin").write_bytes(b"old")
    res = _fetch("gdrive://root/models", str(out), "-q")
    assert res.exit_code == 2 and "--force" in res.stderr
    assert drive.bytes_served == 0 and (out / "old.bin").exists()
    res = _fetch("gdrive://root/models", str(out), "-q", "--force")
    assert res.exit_code == 0, res.output
    assert _tree(out) == {"w.bin": b"new weights"}


def test_local_folder_source_refused(tmp_path):
    res = _fetch(str(tmp_path), str(tmp_path / "out"))
    assert res.exit_code == 2 and "publish" in res.stderr


def test_hub_killed_mid_file_resumes(hub_stand_in, tmp_path):
    """A download cut off in one process continues from its partial file in the next, with
    Range requests from where it stopped (huggingface_hub's own download starts it again)."""
    src = tmp_path / "src"
    src.mkdir()
    data = os.urandom(3 * 2**20)
    (src / "model.safetensors").write_bytes(data)
    (src / "config.json").write_text('{"model_type": "llama"}\n')
    hub = hub_stand_in({"fetch/big": src})
    out = tmp_path / "out"
    _fetch_killed_after(2**20, "hf://fetch/big", out)
    part = tmp_path / "out.partial" / ".model.safetensors.partial"
    have = part.stat().st_size
    assert 2**20 <= have < len(data)
    hub.ranges.clear()
    result = fetch("hf://fetch/big", out, chunk_size=CHUNK)
    asked = [r for p, r in hub.ranges if p.endswith("model.safetensors")]
    assert asked[0] == f"bytes={have}-{min(have + CHUNK, len(data)) - 1}"  # from where it stopped
    assert (out / "model.safetensors").read_bytes() == data
    status = {f.path: f for f in result.files}
    assert status["model.safetensors"].status == "resumed"
    assert status["model.safetensors"].bytes_downloaded == len(data) - have
    assert not (tmp_path / "out.partial").exists()
