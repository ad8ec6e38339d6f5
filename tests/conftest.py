"""Shared fixtures: tiny real-format checkpoints built once per session, isolated HF caches."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from weightprep.example import EXAMPLES, make_example
from weightprep.llama.convert import convert_meta_to_hf

REPO = Path(__file__).resolve().parent.parent
SIZES = [m.folder for m in EXAMPLES]


@pytest.fixture(autouse=True)
def _isolate_hf(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path_factory.getbasetemp() / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads these once, at import: set its constants too, so that no test can
    # reach the network or a real cache however early it was imported
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "HF_HOME", str(home))
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)


@pytest.fixture
def hub_stand_in(monkeypatch: pytest.MonkeyPatch):
    """hub_stand_in({repo_id: folder}) -> a running `HubStandIn` that huggingface_hub (and so
    transformers) talks to instead of the Hub: plain HTTP downloads (no Xet), online mode."""
    import huggingface_hub.constants as hub

    from tests.hubserver import HubStandIn

    servers = []

    def start(repos: dict | None = None, **options) -> HubStandIn:
        server = HubStandIn(repos or {}, **options)
        servers.append(server)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setattr(hub, "ENDPOINT", server.url)
        monkeypatch.setattr(
            hub,
            "HUGGINGFACE_CO_URL_TEMPLATE",
            server.url + "/{repo_id}/resolve/{revision}/{filename}",
        )
        monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(hub, "HF_HUB_DISABLE_XET", True)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def drive_stand_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """drive_stand_in(token) -> a running `DriveStandIn` that weightprep's Drive code talks to
    (WEIGHTPREP_DRIVE_ENDPOINT), with that access token and no other Google credentials around."""
    from tests.driveserver import DriveStandIn

    servers = []

    def start(token: str) -> DriveStandIn:
        server = DriveStandIn(token=token)
        servers.append(server)
        monkeypatch.setenv("WEIGHTPREP_DRIVE_ENDPOINT", server.url)
        monkeypatch.setenv("GOOGLE_OAUTH_ACCESS_TOKEN", token)
        monkeypatch.setenv("NO_GCE_CHECK", "True")  # google.auth.default(): no metadata probe
        monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
        monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture(scope="session")
def meta_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Meta's download layout: tokenizer.model + 7B/ 13B/ 30B/ 65B/ llama-2-70b/."""
    return make_example(tmp_path_factory.mktemp("meta") / "LLaMA", seed=0)


@pytest.fixture(scope="session")
def converted(meta_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """converted(size, dtype) -> output folder, converted once per session."""
    cache: dict[tuple[str, str], Path] = {}
    base = tmp_path_factory.mktemp("converted")

    def get(size: str, dtype: str = "float16") -> Path:
        if (size, dtype) not in cache:
            out = base / f"{size}-{dtype}"
            convert_meta_to_hf(meta_root, out, model_size=size, dtype=dtype)
            cache[(size, dtype)] = out
        return cache[(size, dtype)]

    return get


def peer_python(name: str) -> Path:
    """Python of a peer virtualenv built by `make peers`, or skip saying how to get it."""
    root = Path(os.environ.get("WEIGHTPREP_PEERS", REPO / ".peers"))
    py = root / name / "bin" / "python"
    if not py.exists():
        pytest.skip(f"peer virtualenv {root / name} missing: run `make peers` (make test does)")
    return py


def run_peer(name: str, code: str, *args: str, timeout: int = 600) -> str:
    py = peer_python(name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PYTHONNOUSERSITE"] = "1"
    res = subprocess.run(
        [str(py), "-c", code, *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    if res.returncode != 0:
        raise AssertionError(f"peer {name} failed ({res.returncode}):\n{res.stderr[-4000:]}")
    return res.stdout
