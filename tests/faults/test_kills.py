"""SIGKILL at deterministic points of every command that writes; then the guarantees.

A test-only hook (`WEIGHTPREP_FAULT=LABEL:BYTES`, weightprep/io/faults.py) kills the process
when the bytes it counted under LABEL reach BYTES: after N tensor bytes written, N bytes hashed,
copied, downloaded, or N stages finished. For each point:
- nothing is under the final output name unless it is complete and equal to a clean run's;
- the input's sha256 is unchanged;
- a re-run (with --force where the command needs it) gives output bit-identical to a clean run;
- no temporary file (`*.partial`, `.*.weightprep-partial`, `.*.weightprep-lock`) is left after it.
`make test` runs 2 points per command; `make test-faults` (WEIGHTPREP_FAULT_POINTS=20) runs 20.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

POINTS = int(os.environ.get("WEIGHTPREP_FAULT_POINTS", "2"))
TEMP_MARKS = (".partial", ".weightprep-lock")  # io.atomic: the one temporary-name scheme


def _tree(p: Path) -> dict[str, str]:
    if p.is_file():
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()}
    return {
        f.relative_to(p).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(p.rglob("*"))
        if f.is_file()
    }


def _temps(root: Path) -> list[str]:
    return [str(f) for f in root.rglob("*") if any(m in f.name for m in TEMP_MARKS)]


@dataclass
class Scenario:
    name: str
    label: str
    args: Callable[[Path], list[str]]  # the command for an output under this folder
    output: str  # relative to that folder
    inputs: list[Path]
    total: int  # units the label counts in a full run
    force: bool = False  # the re-run needs --force (output exists, possibly unfinished)
    env: dict = field(default_factory=dict)
    points: list[int] | None = None
    compare: tuple[str, ...] = ()  # sub-paths of the output to compare (default: all of it)


def _points(total: int, n: int) -> list[int]:
    return sorted({max(1, total * k // (n + 1)) for k in range(1, n + 1)})


def _run(args: list[str], env: dict, fault: str | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, **env}
    full.pop("WEIGHTPREP_FAULT", None)
    if fault:
        full["WEIGHTPREP_FAULT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "weightprep", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _check(sc: Scenario, tmp: Path, point: int) -> None:
    clean = tmp / "clean"
    clean.mkdir(parents=True)
    res = _run(sc.args(clean), sc.env)
    assert res.returncode == 0, res.stderr

    def view(root: Path) -> dict[str, str]:
        if not sc.compare:
            return _tree(root)
        return {f"{c}/{k}": v for c in sc.compare for k, v in _tree(root / c).items()}

    want = view(clean / sc.output)
    before = {str(p): _tree(p) for p in sc.inputs}
    killed = tmp / "killed"
    killed.mkdir()
    res = _run(sc.args(killed), sc.env, f"{sc.label}:{point}")
    assert res.returncode == -signal.SIGKILL, (sc.name, point, res.returncode, res.stderr[-500:])
    out = killed / sc.output
    if out.exists():  # whatever carries a final name is complete (temporary names aside)
        got = {k: v for k, v in view(out).items() if not any(m in k for m in TEMP_MARKS)}
        assert all(want.get(k) == v for k, v in got.items()), (
            f"{sc.name}@{point}: an unfinished file under its final name"
        )
    assert {str(p): _tree(p) for p in sc.inputs} == before, "the input changed"
    again = _run(sc.args(killed) + (["--force"] if sc.force else []), sc.env)
    assert again.returncode == 0, (sc.name, point, again.stderr[-800:])
    assert view(out) == want, f"{sc.name}@{point}: re-run differs from a clean run"
    assert not _temps(killed), _temps(killed)


@pytest.fixture(scope="module")
def sources(tmp_path_factory, meta_root, converted) -> dict[str, Path]:
    from weightprep.example import make_delta_example

    base = tmp_path_factory.mktemp("k") / "base"
    shutil.copytree(converted("7B", "float16"), base)
    delta = make_delta_example(base, base.parent / "delta")
    vicuna = base.parent / "vicuna"
    from weightprep.delta import apply_delta

    apply_delta(base, delta, vicuna)
    import yaml

    recipe = base.parent / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "name": "sweep",
                "inputs": {"llama": str(meta_root)},
                "stages": [
                    {
                        "id": "convert",
                        "run": "convert-llama",
                        "with": {"input": "${inputs.llama}", "model_size": "7B"},
                    },
                    {"id": "delta", "run": "make-example-delta", "with": {"base": "${convert}"}},
                    {
                        "id": "vicuna",
                        "run": "apply-delta",
                        "with": {"base": "${convert}", "delta": "${delta}"},
                    },
                ],
            }
        )
    )
    return {"meta": meta_root, "base": base, "delta": delta, "vicuna": vicuna, "recipe": recipe}


def _bytes(folder: Path, pattern: str = "*") -> int:
    return sum(f.stat().st_size for f in folder.rglob(pattern) if f.is_file())


def _tensor_bytes(folder: Path) -> int:
    total = 0
    for f in folder.glob("*.safetensors"):
        with open(f, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
        total += f.stat().st_size - 8 - n
    return total


def scenarios(s: dict[str, Path]) -> list[Scenario]:
    meta, base, delta, vicuna = s["meta"], s["base"], s["delta"], s["vicuna"]
    return [
        Scenario(
            "convert-llama",
            "write",
            lambda d: ["convert-llama", str(meta), str(d / "out"), "--model-size", "7B", "-q"],
            "out",
            [meta / "7B", meta / "tokenizer.model"],
            _tensor_bytes(base),
        ),
        Scenario(
            "apply-delta",
            "write",
            lambda d: ["apply-delta", str(base), str(delta), str(d / "out"), "-q"],
            "out",
            [base, delta],
            _tensor_bytes(vicuna),
        ),
        Scenario(  # the one-pass route: Meta's download as BASE
            "apply-delta-meta",
            "write",
            lambda d: [
                "apply-delta",
                str(meta),
                str(delta),
                str(d / "out"),
                "--model-size",
                "7B",
                "--verify",
                "-q",
            ],
            "out",
            [meta / "7B", meta / "tokenizer.model", delta],
            _tensor_bytes(vicuna),
        ),
        Scenario(
            "make-delta",
            "write",
            lambda d: ["make-delta", str(base), str(vicuna), str(d / "out"), "-q"],
            "out",
            [base, vicuna],
            _tensor_bytes(vicuna),
        ),
        Scenario(
            "hash",
            "hash",
            lambda d: ["hash", str(vicuna), "-o", str(d / "out.yaml"), "-q"],
            "out.yaml",
            [vicuna],
            _bytes(vicuna),
            force=False,
        ),
        Scenario(
            "run",
            "write",
            lambda d: ["run", str(s["recipe"]), "--workdir", str(d / "out"), "-q"],
            "out",
            [meta / "7B"],
            2 * _tensor_bytes(base),
            compare=("convert", "delta", "vicuna"),
        ),
        Scenario(
            "publish-folder",
            "publish-copy",
            lambda d: ["publish", str(vicuna), str(d / "out"), "-q"],
            "out",
            [vicuna],
            _bytes(vicuna),
        ),
    ]


@pytest.mark.parametrize(
    "name",
    [
        "convert-llama",
        "apply-delta",
        "apply-delta-meta",
        "make-delta",
        "hash",
        "run",
        "publish-folder",
    ],
)
def test_kill_sweep(name, sources, tmp_path):
    sc = next(x for x in scenarios(sources) if x.name == name)
    pts = _points(sc.total, POINTS)
    assert len(pts) == POINTS
    for i, point in enumerate(pts):
        _check(sc, tmp_path / f"p{i}", point)


def test_kill_sweep_patch_lavis_config(sources, tmp_path):
    """patch-lavis-config writes one small file: killed at each of its 4 steps (before the
    backup, after it, with the new text written but not renamed, after the rename)."""
    from tests.test_lavis import write_config

    for step in (1, 2, 3, 4):
        lavis = tmp_path / f"s{step}" / "LAVIS"
        cfg = write_config(lavis / "lavis")
        original = cfg.read_bytes()
        args = ["patch-lavis-config", str(sources["vicuna"]), "--lavis", str(lavis)]
        res = _run(args, {}, f"lavis:{step}")
        assert res.returncode == -signal.SIGKILL
        now = cfg.read_bytes()
        assert now == original or b"llm_model" in now and now != original  # old or new, whole
        import yaml

        yaml.safe_load(now)  # never a half-written file
        assert _run(args, {}).returncode == 0
        assert str(sources["vicuna"].absolute()) in cfg.read_text()
        backup = cfg.with_name(cfg.name + ".weightprep-backup")
        assert backup.read_bytes() == original
        assert not [p for p in cfg.parent.iterdir() if p.name.endswith(".partial")]


def test_kill_sweep_fetch_drive(sources, tmp_path, monkeypatch):
    from tests.driveserver import DriveStandIn

    token = "ya29.kill-sweep"
    drive = DriveStandIn(token=token)
    try:
        folder = drive.add_file("models")
        vicuna = sources["vicuna"]
        for f in sorted(vicuna.iterdir()):
            drive.add_file(f.name, f.read_bytes(), parent=folder)
        env = {
            "WEIGHTPREP_DRIVE_ENDPOINT": drive.url,
            "GOOGLE_OAUTH_ACCESS_TOKEN": token,
            "NO_GCE_CHECK": "True",
            "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
        }
        env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
        monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
        sc = Scenario(
            "fetch",
            "fetch-download",
            lambda d: [
                "fetch",
                f"gdrive://{folder}",
                str(d / "out"),
                "--chunk-size",
                "16KiB",
                "-q",
            ],
            "out",
            [],
            _bytes(vicuna),
            env=env,
        )
        for i, point in enumerate(_points(sc.total, POINTS)):
            _check(sc, tmp_path / f"p{i}", point)
    finally:
        drive.close()
