"""A remote that cannot be reached: every command says so in one line, exits 3, leaves nothing
half-written, and gives up within the retry budget (WEIGHTPREP_RETRY_BUDGET).

Two ways to fail, as a user meets them: a stand-in Hub / Drive that refuses connections (its
port closed), and a host name that does not resolve (`.invalid`, reserved for that). The real
clients run in a subprocess, as a user runs them; nothing is mocked.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

BUDGET = 2.0
# a subprocess imports torch/transformers/huggingface_hub (seconds on a busy CI machine)
STARTUP = 40.0
TOKEN = "hf_weightprepTestToken0123456789abcdef"


def _closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connections are refused
    return f"http://127.0.0.1:{port}"


@pytest.fixture(params=["refused", "unresolvable"])
def dead(request, tmp_path) -> dict[str, str]:
    """The environment of a weightprep subprocess whose Hub and Drive cannot be reached."""
    url = _closed_port_url() if request.param == "refused" else "http://remote.weightprep.invalid"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "GOOGLE_"))}
    env.update(
        HF_ENDPOINT=url,
        HF_HOME=str(tmp_path / "hf_home"),
        HF_HUB_OFFLINE="0",
        HF_HUB_DISABLE_XET="1",
        HF_TOKEN=TOKEN,
        WEIGHTPREP_DRIVE_ENDPOINT=url,
        GOOGLE_OAUTH_ACCESS_TOKEN="ya29.test-token",
        NO_GCE_CHECK="True",
        CLOUDSDK_CONFIG=str(tmp_path / "gcloud"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        WEIGHTPREP_CACHE=str(tmp_path / "wcache"),
        WEIGHTPREP_RETRY_BUDGET=str(BUDGET),
        NO_PROXY="*",
    )
    for v in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy"):
        env.pop(v, None)
    return env


def _weightprep(
    env: dict[str, str], *args: str, cwd: Path
) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "weightprep", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return res, time.monotonic() - start


def _one_line_exit_3(res: subprocess.CompletedProcess, seconds: float, place: str) -> str:
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 3, res.stderr[-3000:]
    assert len(lines) == 1, res.stderr[-3000:]
    line = lines[0]
    # Drive's messages name the folder id being listed (gdrive://root), the Hub's the repo
    where = "gdrive://root" if place.startswith("gdrive://") else place
    assert line.startswith("error: ") and where in line, line
    assert "gave up after" in line, line
    assert seconds < BUDGET + STARTUP, f"{seconds:.1f} s: {line}"
    return line


def _half_written(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith((".partial", ".weightprep-lock"))]


@pytest.fixture
def model(tmp_path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    data = b"tiny weights\n" * 1000
    (folder / "model.safetensors").write_bytes(data)
    (folder / "SHA256SUMS").write_text(f"{hashlib.sha256(data).hexdigest()}  model.safetensors\n")
    return folder


@pytest.mark.parametrize("dest", ["hf://me/tiny", "gdrive://root/models/tiny"])
def test_publish(dead, model, tmp_path, dest):
    res, s = _weightprep(dead, "publish", str(model), dest, "--quiet", cwd=tmp_path)
    _one_line_exit_3(res, s, dest)
    assert _half_written(tmp_path) == []


@pytest.mark.parametrize("source", ["hf://me/tiny", "gdrive://root/models/tiny"])
def test_fetch(dead, tmp_path, source):
    res, s = _weightprep(dead, "fetch", source, str(tmp_path / "out"), cwd=tmp_path)
    _one_line_exit_3(res, s, source)
    assert not (tmp_path / "out").exists() and _half_written(tmp_path) == []


@pytest.mark.parametrize("where", ["hf://me/tiny", "gdrive://root/models/tiny"])
def test_verify(dead, model, tmp_path, where):
    sums = str(model / "SHA256SUMS")
    res, s = _weightprep(dead, "verify", where, "--manifest", sums, cwd=tmp_path)
    _one_line_exit_3(res, s, where)


def test_smoke_test_with_a_hub_id(dead, tmp_path):
    res, s = _weightprep(
        dead,
        "smoke-test",
        "--model",
        "vip-llava-7b",
        "--weights",
        "me/vip-llava",
        "-q",
        cwd=tmp_path,
    )
    line = _one_line_exit_3(res, s, "me/vip-llava")
    assert "cannot reach the Hub" in line


def test_run_with_an_hf_input(dead, tmp_path, model):
    doc = {
        "version": 1,
        "name": "remote-input",
        "inputs": {"base": str(model), "delta": "hf://me/delta"},
        "stages": [
            {
                "id": "vicuna",
                "run": "apply-delta",
                "with": {"base": "${inputs.base}", "delta": "${inputs.delta}"},
            }
        ],
    }
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(doc))
    wd = tmp_path / "wd"
    res, s = _weightprep(dead, "run", str(recipe), "--workdir", str(wd), "-q", cwd=tmp_path)
    _one_line_exit_3(res, s, "hf://me/delta")
    assert _half_written(tmp_path) == []


def test_smoke_test_says_no_such_folder_before_the_hub(dead, tmp_path):
    """A missing --llm is named at once, without a Hub lookup, in one line, exit 2."""
    for llm in ("nope", "vicuna-7b"):
        res, s = _weightprep(dead, "smoke-test", "--llm", llm, "-q", cwd=tmp_path)
        assert res.returncode == 2, res.stderr[-3000:]
        assert (
            res.stderr.strip()
            == f"error: --llm {llm}: no such folder (a Hub id is written NAMESPACE/NAME)"
        )
