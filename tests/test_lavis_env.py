"""weightprep at home in LAVIS's environment, and a core that needs no transformers.

The peer virtualenv `lavis-env` (`make peers`) holds LAVIS's pin, transformers==4.33.2, what pip
resolved beside it (huggingface_hub < 1.0, tokenizers 0.13) and weightprep's own runtime
dependencies. weightprep goes in from a wheel built here from the checkout, not editable, so the
wheel always matches the code under test; that virtualenv is also the "fresh virtualenv" in which
the wheel must carry the shipped manifests and recipes.

What that environment cannot run, said plainly: the native smoke test and the tiny example
InstructBLIP it runs on (`make-example-vlm`) need the `smoke` extra's newer transformers, so
there the example recipe plans those two stages as off, naming the reason; everything else of
the example runs. `smoke-test --backend lavis` needs LAVIS, which is not installed there.

The last test needs no peer: in this virtualenv, with `import transformers` made to fail, the
core commands run end to end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, peer_python

ENV = "lavis-env"
TOKEN = "hf_weightprepTestToken0123456789abcdef"


def _clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "VIRTUAL_ENV", "HF_", "HUGGING_FACE"))
    }
    env.update({"PYTHONNOUSERSITE": "1", "HF_HOME": str(home), "HF_HUB_OFFLINE": "1", **extra})
    return env


@pytest.fixture(scope="session")
def lavis_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The peer virtualenv's bin/ folder, with weightprep installed from a wheel built now."""
    py = peer_python(ENV)
    src = tmp_path_factory.mktemp("wheel-src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in ("weightprep", "manifests", "recipes"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path_factory.mktemp("wheel")
    pip = [str(py), "-m", "pip", "--disable-pip-version-check", "-q"]
    env = _clean_env(tmp_path_factory.mktemp("hf"))
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)]
    res = subprocess.run(build, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    (wheel,) = wheels.glob("weightprep-*.whl")
    install = [*pip, "install", "--no-deps", "--force-reinstall", str(wheel)]
    res = subprocess.run(install, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return py.parent


def run_in(
    bindir: Path, args: list[str], cwd: Path, timeout: int = 1200, **env: str
) -> subprocess.CompletedProcess:
    home = cwd / "hf-home"
    return subprocess.run(
        [str(bindir / args[0]), *map(str, args[1:])],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_clean_env(home, **env),
        timeout=timeout,
    )


@pytest.mark.peer
def test_installs_beside_transformers_4_33_2_from_the_wheel(lavis_env: Path, tmp_path: Path):
    code = (
        "import json, weightprep; from importlib.metadata import version as v; print(json.dumps("
        "{'file': weightprep.__file__, **{p: v(p) for p in ('transformers', 'huggingface_hub',"
        " 'tokenizers', 'safetensors', 'torch', 'weightprep')}}))"
    )
    res = run_in(lavis_env, ["python", "-c", code], tmp_path)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    print("lavis-env versions:", got)
    assert got["transformers"] == "4.33.2"
    assert got["huggingface_hub"].startswith("0.")
    assert got["tokenizers"].startswith("0.13.")
    # installed from the wheel into site-packages, not an editable link to this checkout
    site = lavis_env.parent / "lib"
    assert got["file"].startswith(str(site)) and "site-packages" in got["file"], got["file"]
    check = run_in(lavis_env, ["python", "-m", "pip", "check"], tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr  # every requirement met, ours too


@pytest.mark.peer
def test_wheel_carries_the_shipped_manifests_and_recipes(lavis_env: Path, tmp_path: Path):
    res = run_in(lavis_env, ["weightprep", "manifests"], tmp_path)
    assert res.returncode == 0, res.stderr
    listed = {line.split()[0] for line in res.stdout.splitlines() if line.strip()}
    assert listed == {p.stem for p in (REPO / "manifests").glob("*.yaml")}
    res = run_in(lavis_env, ["weightprep", "recipes"], tmp_path)
    assert res.returncode == 0, res.stderr
    listed = {line.split()[0] for line in res.stdout.splitlines() if line.strip()}
    assert listed == {p.stem for p in (REPO / "recipes").glob("*.yaml")}


@pytest.fixture(scope="module")
def example_run(lavis_env: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`weightprep run example` in LAVIS's environment; its workdir."""
    base = tmp_path_factory.mktemp("lavis-example")
    work = base / "example"
    res = run_in(lavis_env, ["weightprep", "run", "example", "--workdir", work, "--json"], base)
    assert res.returncode == 0, res.stderr[-4000:]
    return work


@pytest.mark.peer
@pytest.mark.slow
def test_example_recipe_runs_with_smoke_stages_off_saying_why(
    lavis_env: Path, example_run: Path, tmp_path: Path
):
    work = example_run
    doc = json.loads((work / "run.json").read_text())
    status = {s["id"]: s for s in doc["stages"]}
    assert doc["ok"] and doc["versions"]["transformers"] == "4.33.2"
    assert {k for k, s in status.items() if s["status"] == "ran"} == {"llama", "delta", "vicuna"}
    # the merged Vicuna was checked: tensor digests against the delta's manifest, language check
    assert all(c["ok"] for c in status["vicuna"]["result"]["language_check"])
    for sid in ("instructblip", "smoke"):  # said plainly, in the record and in RUN.md
        assert status[sid]["status"] == "off"
        assert "transformers 4.33.2" in status[sid]["reason"]
        assert "weightprep[smoke]" in status[sid]["reason"]
    assert "--backend lavis" in (work / "RUN.md").read_text()
    # what it wrote loads in LAVIS's own transformers, as LAVIS loads Vicuna
    load = (
        "import sys, torch; from transformers import LlamaForCausalLM, LlamaTokenizer;"
        "d = sys.argv[1]; t = LlamaTokenizer.from_pretrained(d, use_fast=False);"
        "m = LlamaForCausalLM.from_pretrained(d, torch_dtype=torch.float32);"
        "ids = t('the', return_tensors='pt').input_ids; assert ids[0, 0].item() == 1, ids;"
        "print(m(ids).logits.shape[-1])"
    )
    res = run_in(lavis_env, ["python", "-c", load, work / "vicuna"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (
        int(res.stdout.split()[-1])
        == json.loads((work / "vicuna/config.json").read_text())["vocab_size"]
    )


@pytest.mark.peer
@pytest.mark.slow
def test_what_it_wrote_loads_in_current_transformers(example_run: Path):
    """The two-environment way: prepared in LAVIS's environment, smoke-tested with the smoke
    extra's transformers; the tokenizer must give SentencePiece's ids there too."""
    import sentencepiece as spm
    from transformers import AutoTokenizer

    folder = example_run / "vicuna"
    sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    tok = AutoTokenizer.from_pretrained(folder)
    for line in ("the quick brown fox", "  two leading spaces", "tab\there", "12345 ünïcode"):
        assert tok(line).input_ids == [1, *sp.encode(line)], line


@pytest.mark.peer
def test_native_smoke_test_names_the_extra(lavis_env: Path, tmp_path: Path, converted):
    res = run_in(
        lavis_env,
        ["weightprep", "make-example-vlm", tmp_path / "vlm", "--llm", converted("7B")],
        tmp_path,
    )
    assert res.returncode == 3, res.stderr[-3000:]
    line = res.stderr.strip()
    assert "\n" not in line and "transformers 4.33.2" in line and "weightprep[smoke]" in line
    assert not (tmp_path / "vlm").exists()
    llm = converted("7B")
    res = run_in(
        lavis_env,
        ["weightprep", "smoke-test", "--model", "instructblip-vicuna7b", "--llm", llm],
        tmp_path,
    )
    assert res.returncode == 3, res.stderr[-3000:]
    line = res.stderr.strip()
    assert "\n" not in line and "--backend lavis" in line and "weightprep[smoke]" in line


@pytest.mark.peer
def test_smoke_test_backend_lavis_says_lavis_is_missing(lavis_env: Path, tmp_path: Path):
    res = run_in(
        lavis_env,
        ["weightprep", "smoke-test", "--backend", "lavis", "--model", "instructblip-vicuna7b"],
        tmp_path,
    )
    assert res.returncode == 2, res.stderr[-3000:]
    line = res.stderr.strip()
    assert "\n" not in line and "LAVIS is not importable" in line and "pip install -e" in line


@pytest.mark.peer
def test_publish_and_fetch_through_the_stand_in_hub(lavis_env: Path, tmp_path: Path, converted):
    """huggingface_hub 0.x (requests, LFS upload with Xet off) against the stand-in Hub."""
    from tests.hubserver import HubStandIn

    model = tmp_path / "tiny-vicuna"
    shutil.copytree(converted("7B"), model)
    hub = HubStandIn({}, token=TOKEN, lfs_threshold=1024)
    online = dict(HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", HF_HUB_DISABLE_XET="1", HF_TOKEN=TOKEN)
    try:
        res = run_in(
            lavis_env,
            ["weightprep", "publish", model, "hf://me/tiny", "--json"],
            tmp_path,
            **online,
        )
        assert res.returncode == 0, res.stderr[-3000:]
        assert hub.is_private("me/tiny")
        out = json.loads(res.stdout)
        assert {f["path"]: f["status"] for f in out["files"]} == {
            p.name: "sent" for p in model.iterdir()
        }
        assert out["bytes_sent"] == sum(p.stat().st_size for p in model.iterdir())
        res = run_in(
            lavis_env,
            ["weightprep", "fetch", "hf://me/tiny", tmp_path / "got", "-q"],
            tmp_path,
            **online,
        )
        assert res.returncode == 0, res.stderr[-3000:]
        assert hub.ranges  # downloaded through huggingface_hub 0.x's requests session, by Range
        # verify hf:// reads the Hub's listing (and small files) through the 0.x client too
        verify = ["weightprep", "verify", "hf://me/tiny", "-m", model / "SHA256SUMS", "-q"]
        res = run_in(lavis_env, verify, tmp_path, **online)
        assert res.returncode == 0, res.stdout + res.stderr[-3000:]
        shard = next(model.glob("*.safetensors")).name
        hub.corrupt("me/tiny", shard)
        res = run_in(lavis_env, verify, tmp_path, **online)
        assert res.returncode == 1 and shard in res.stdout, res.stdout + res.stderr[-3000:]
    finally:
        hub.close()
    for p in model.iterdir():
        assert (tmp_path / "got" / p.name).read_bytes() == p.read_bytes(), p.name
    assert (tmp_path / "got" / "README.md").is_file()  # the generated model card came back too


# --- the core without transformers, in the main virtualenv ---------------------------------------


@pytest.fixture(scope="module")
def no_transformers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment in which `import transformers` fails as if it were not installed."""
    shadow = tmp_path_factory.mktemp("shadow")
    (shadow / "transformers").mkdir()
    (shadow / "transformers" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'transformers'\", name='transformers')\n"
    )
    env = _clean_env(tmp_path_factory.mktemp("hf"), PYTHONPATH=str(shadow))
    res = subprocess.run(
        [sys.executable, "-c", "import transformers"], capture_output=True, text=True, env=env
    )
    assert res.returncode != 0 and "No module named 'transformers'" in res.stderr
    return env


def wp(env: dict[str, str], *args, code: int = 0) -> subprocess.CompletedProcess:
    res = subprocess.run(
        [sys.executable, "-m", "weightprep", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert res.returncode == code, f"{args[0]}: {res.returncode}\n{res.stderr[-3000:]}"
    return res


@pytest.mark.slow
def test_core_runs_with_transformers_unimportable(no_transformers, tmp_path: Path):
    from tests.test_lavis import write_config

    env = no_transformers
    meta = tmp_path / "LLaMA"
    wp(env, "make-example", meta, "--quiet")
    wp(env, "convert-llama", meta, tmp_path / "hf", "--model-size", "7B", "--quiet")
    wp(env, "make-example-delta", tmp_path / "hf", tmp_path / "delta", "--quiet")
    expected = tmp_path / "delta" / "expected.yaml"
    check = ("--verify", "--manifest", expected, "--quiet")
    wp(env, "apply-delta", tmp_path / "hf", tmp_path / "delta", tmp_path / "v1", *check)
    # the one-pass route, straight from Meta's download
    wp(env, "apply-delta", meta, tmp_path / "delta", tmp_path / "v2", "--model-size", "7B", *check)
    wp(env, "hash", tmp_path / "v1", "-o", tmp_path / "sums.yaml", "--quiet")
    wp(env, "verify", tmp_path / "v1", "--manifest", tmp_path / "sums.yaml", "--quiet")
    # the two routes write the same files but for their own records (which name the route)
    res = wp(env, "verify", tmp_path / "v2", "--manifest", tmp_path / "sums.yaml", code=1)
    bad = {line.split()[1] for line in res.stdout.splitlines() if line.startswith("MISMATCH")}
    assert bad == {"manifest.yaml", "SHA256SUMS"}, res.stdout
    # inspect with all its checks, the language check (perplexity) included: no smoke extra
    res = wp(env, "inspect", tmp_path / "v1", "--verify", "--perplexity", "--json")
    doc = json.loads(res.stdout)
    assert doc["ok"] and doc["language"]["ok"], doc
    cfg = write_config(tmp_path / "lavis")
    wp(env, "patch-lavis-config", tmp_path / "v1", "--lavis", cfg)
    assert str((tmp_path / "v1").absolute()) in cfg.read_text()
    # the example recipe plans the stages that need the smoke extra as off, saying why
    res = wp(env, "run", "example", "--workdir", tmp_path / "ex", "--plan")
    off = [line for line in res.stdout.splitlines() if line.split()[:1] == ["off"]]
    assert sum("transformers is not installed" in line for line in off) == 2, res.stdout
    # and the one thing that needs it says so in one line (exit 3: the environment)
    res = wp(env, "make-example-vlm", tmp_path / "vlm", "--llm", tmp_path / "v1", code=3)
    assert "transformers is not installed" in res.stderr and "weightprep[smoke]" in res.stderr
