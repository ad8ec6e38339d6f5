"""Hostile input, through the real CLI: one line `error: FILE: what is wrong`, exit 2 (1 only for
a verification failure), no traceback, nothing left behind, nothing executed, no hang, and no
large allocation.

Every file is built here, in its real format, small. Cases where a fresh process matters
(memory, a hang, code execution) run `python -m weightprep` in a child under a time and address
space cap, and read the child's own peak RSS from `os.wait4`.
"""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from tests.delta_fixtures import copy_side_files, read_all, save_bin_shards
from weightprep.cli.app import app

REPO = Path(__file__).resolve().parents[2]
HEX64 = "ab" * 32
MAX_RSS = 1.5e9  # bytes: a fresh `python -m weightprep` with torch imported is ~0.3-0.5 GB
CAP_AS = 8 * 2**30  # address-space cap on children, so a regression fails instead of swapping


# ---------------------------------------------------------------------------------------------
# running and judging


def cli(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_error_line(code: int, exit_code: int, stdout: str, stderr: str, *names: str) -> str:
    """Assert the refusal's shape; return its one line."""
    shown = f"exit {exit_code}\nstdout: {stdout[-2000:]}\nstderr: {stderr[-4000:]}"
    assert "Traceback" not in stdout + stderr, shown
    assert exit_code == code, shown
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, shown
    print(lines[0])  # what the user sees: shown by `pytest -rP`
    assert lines[0].startswith("error: "), shown
    assert len(lines[0]) < 1000, shown
    assert stdout.strip() == "", shown
    for n in names:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def refused(res, code: int, *names: str) -> str:
    """CliRunner result: also no exception escaped (CliRunner swallows tracebacks)."""
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    return one_error_line(code, res.exit_code, res.stdout, res.stderr, *names)


def no_leftovers(tmp_path: Path, *outputs: Path) -> None:
    for out in outputs:
        assert not out.exists(), out
    left = [p for p in tmp_path.rglob("*") if ".partial" in p.name]
    assert not left, left


@dataclass
class Child:
    rc: int
    stdout: str
    stderr: str
    maxrss: int  # bytes
    seconds: float
    timed_out: bool


def run_fresh(tmp_path: Path, *args: object, timeout: float = 60) -> Child:
    """`python -m weightprep ARGS` in a fresh process; its own peak RSS via wait4."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("WEIGHTPREP_DEBUG", None)
    out, err = tmp_path / "child.stdout", tmp_path / "child.stderr"

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (CAP_AS, CAP_AS))

    t0 = time.monotonic()
    with open(out, "wb") as o, open(err, "wb") as e:
        p = subprocess.Popen(
            [sys.executable, "-m", "weightprep", *map(str, args)],
            stdout=o,
            stderr=e,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=tmp_path,
            preexec_fn=cap,
        )
        timed_out = False
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - t0 > timeout:
                p.kill()
                pid, status, usage = os.wait4(p.pid, 0)
                timed_out = True
                break
            time.sleep(0.05)
        p.returncode = os.waitstatus_to_exitcode(status)
    return Child(
        p.returncode,
        out.read_text(errors="replace"),
        err.read_text(errors="replace"),
        usage.ru_maxrss * 1024,
        time.monotonic() - t0,
        timed_out,
    )


def refused_fresh(child: Child, code: int, *names: str) -> str:
    assert not child.timed_out, f"hung: killed after {child.seconds:.0f}s\n{child.stderr[-2000:]}"
    line = one_error_line(code, child.rc, child.stdout, child.stderr, *names)
    print(f"peak RSS {child.maxrss / 1e6:.0f} MB, {child.seconds:.1f} s")
    assert child.maxrss < MAX_RSS, f"peak RSS {child.maxrss / 1e9:.2f} GB"
    return line


# ---------------------------------------------------------------------------------------------
# inputs


class Evil:
    """Unpickling this runs `touch CANARY`, unless the unpickler refuses os.system."""

    canary = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.canary}",))


class Custom:
    """A class a weights-only unpickler does not know."""


@pytest.fixture
def root(meta_root: Path, tmp_path: Path) -> Path:
    """A private copy of the Meta download's tokenizer.model and 7B/."""
    r = tmp_path / "LLaMA"
    r.mkdir()
    shutil.copy(meta_root / "tokenizer.model", r)
    shutil.copytree(meta_root / "7B", r / "7B")
    return r


def convert_args(root: Path, tmp_path: Path) -> list[object]:
    return ["convert-llama", root, tmp_path / "out", "--model-size", "7B"]


@pytest.fixture(scope="session")
def delta_tensors(converted) -> dict[str, torch.Tensor]:
    """A delta for the converted 7B example: zeros of every base tensor, float16."""
    return {
        k: torch.zeros_like(v, dtype=torch.float16) for k, v in read_all(converted("7B")).items()
    }


def st_delta(base: Path, tensors: dict[str, torch.Tensor], folder: Path, shards: int = 1) -> Path:
    """A delta as the Hub holds one in safetensors: `model.safetensors`, or N shards + index."""
    folder.mkdir(parents=True)
    names = list(tensors)
    if shards == 1:
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    else:
        per = -(-len(names) // shards)
        weight_map = {}
        for i in range(shards):
            fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            part = {n: tensors[n].contiguous() for n in names[i * per : (i + 1) * per]}
            save_file(part, str(folder / fname), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(part, fname))
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    copy_side_files(base, folder)
    return folder


def raw_safetensors(path: Path, header: dict | bytes, data: bytes, length: int | None = None):
    """A safetensors file byte by byte: u64 header length, JSON header, data."""
    h = json.dumps(header).encode() if isinstance(header, dict) else header
    path.write_bytes(struct.pack("<Q", len(h) if length is None else length) + h + data)


def delta_args(base: Path, delta: Path, tmp_path: Path) -> list[object]:
    return ["apply-delta", base, delta, tmp_path / "out"]


BILLION_LAUGHS = (
    "["
    + ", ".join(
        ['&a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
        + [
            f"&{c} [{', '.join([f'*{p}'] * 9)}]"
            for p, c in zip("abcdefgh", "bcdefghi", strict=True)
        ]
    )
    + "]"
)  # nine levels of nine: 387 million "lol"s once expanded


# ---------------------------------------------------------------------------------------------
# 1-6 and more: PyTorch checkpoints (.pth via convert-llama, .bin via apply-delta)


def test_01_pickle_that_runs_code_is_refused_not_run(root: Path, tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    Evil.canary = str(canary)
    pth = root / "7B" / "consolidated.00.pth"
    sd = torch.load(pth, weights_only=True)
    torch.save({**sd, "x": Evil()}, pth)
    line = refused(cli(*convert_args(root, tmp_path)), 2, "consolidated.00.pth")
    assert "refused to load" in line and "it was not executed" in line, line
    assert "weights_only" not in line, line  # torch's advice to turn the check off: not ours
    assert not canary.exists(), "the pickle's code ran"
    no_leftovers(tmp_path, tmp_path / "out")


def test_01b_raw_pickle_not_zip_is_refused_not_run(root: Path, tmp_path: Path) -> None:
    """The same payload as a bare (pre-1.6, non-zip) pickle: never reaches an unpickler."""
    import pickle

    canary = tmp_path / "pwned"
    Evil.canary = str(canary)
    (root / "7B" / "consolidated.00.pth").write_bytes(pickle.dumps({"x": Evil()}))
    line = refused(cli(*convert_args(root, tmp_path)), 2, "consolidated.00.pth")
    assert "not a complete PyTorch zip checkpoint" in line
    assert not canary.exists()
    no_leftovers(tmp_path, tmp_path / "out")


@pytest.mark.parametrize(
    ("what", "says"),
    [
        ("custom-class", "objects other than tensors"),
        ("set", "'x' holds a set"),
        ("list", "got a list"),
    ],
)
def test_02_pickle_holding_non_tensors(what: str, says: str, root: Path, tmp_path: Path) -> None:
    pth = root / "7B" / "consolidated.00.pth"
    sd = torch.load(pth, weights_only=True)
    obj = {"custom-class": {**sd, "x": Custom()}, "set": {**sd, "x": {1, 2}}, "list": [sd]}[what]
    torch.save(obj, pth)
    line = refused(cli(*convert_args(root, tmp_path)), 2, "consolidated.00.pth")
    assert says in line, line
    no_leftovers(tmp_path, tmp_path / "out")


def test_03_truncated_pth(root: Path, tmp_path: Path) -> None:
    pth = root / "7B" / "consolidated.00.pth"
    pth.write_bytes(pth.read_bytes()[: pth.stat().st_size * 2 // 3])
    line = refused(cli(*convert_args(root, tmp_path)), 2, "consolidated.00.pth")
    assert "not a complete PyTorch zip checkpoint" in line
    no_leftovers(tmp_path, tmp_path / "out")


def test_04_empty_pth(root: Path, tmp_path: Path) -> None:
    (root / "7B" / "consolidated.00.pth").write_bytes(b"")
    line = refused(cli(*convert_args(root, tmp_path)), 2, "consolidated.00.pth")
    assert "file is empty" in line
    no_leftovers(tmp_path, tmp_path / "out")


def test_05_truncated_bin_in_delta(converted, delta_tensors, tmp_path: Path) -> None:
    base = converted("7B")
    delta = tmp_path / "delta"
    save_bin_shards(delta_tensors, delta, 2)
    copy_side_files(base, delta)
    shard = delta / "pytorch_model-00002-of-00002.bin"
    shard.write_bytes(shard.read_bytes()[:-300])
    line = refused(cli(*delta_args(base, delta, tmp_path)), 2, shard.name)
    assert "not a complete PyTorch zip checkpoint" in line
    no_leftovers(tmp_path, tmp_path / "out")


def test_06_pth_that_is_a_folder(root: Path, tmp_path: Path) -> None:
    pth = root / "7B" / "consolidated.00.pth"
    pth.unlink()
    pth.mkdir()
    (pth / "data.pkl").write_bytes(b"x")
    line = refused(cli(*convert_args(root, tmp_path)), 2, "consolidated.00.pth")
    assert "is a folder, not a checkpoint file" in line
    no_leftovers(tmp_path, tmp_path / "out")


def _rezip(pth: Path, change: Callable[[str, bytes], bytes]) -> None:
    with zipfile.ZipFile(pth) as z:
        members = [(n, z.read(n)) for n in z.namelist()]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for n, data in members:
            z.writestr(n, change(n, data))
    pth.write_bytes(buf.getvalue())


def test_06b_storage_shorter_than_its_tensors(root: Path, tmp_path: Path) -> None:
    """A well-formed zip whose storage record holds 16 bytes: torch must not read past it."""
    pth = root / "7B" / "consolidated.00.pth"
    _rezip(pth, lambda n, d: d[:16] if "/data/" in n and not n.endswith(".pkl") else d)
    line = refused(cli(*convert_args(root, tmp_path)), 2, "consolidated.00.pth")
    assert "truncated or corrupt checkpoint" in line
    no_leftovers(tmp_path, tmp_path / "out")


def test_06c_zip_that_is_not_a_checkpoint(root: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(root / "7B" / "consolidated.00.pth", "w") as z:
        z.writestr("readme.txt", "hello")
    line = refused(cli(*convert_args(root, tmp_path)), 2, "consolidated.00.pth")
    assert "truncated or corrupt checkpoint" in line
    no_leftovers(tmp_path, tmp_path / "out")


def test_06d_tensor_name_with_control_characters(root: Path, tmp_path: Path) -> None:
    """A name that would print a second `error:` line and a terminal escape."""
    pth = root / "7B" / "consolidated.00.pth"
    sd = torch.load(pth, weights_only=True)
    torch.save({**sd, "norm.weight\nerror: all good\x1b[2K": torch.ones(2)}, pth)
    line = refused(cli(*convert_args(root, tmp_path)), 2, "consolidated.00.pth")
    assert "not printable text" in line and "\x1b" not in line
    no_leftovers(tmp_path, tmp_path / "out")


def test_06e_delta_bin_tensor_name_with_newline(converted, delta_tensors, tmp_path: Path) -> None:
    """Preflight lists tensors only in the delta: a newline there would make two lines."""
    base = converted("7B")
    delta = tmp_path / "delta"
    save_bin_shards({**delta_tensors, "x\nerror: fine": torch.zeros(1)}, delta, 1)
    copy_side_files(base, delta)
    line = refused(cli(*delta_args(base, delta, tmp_path)), 2, "pytorch_model.bin")
    assert "not printable text" in line
    no_leftovers(tmp_path, tmp_path / "out")


# ---------------------------------------------------------------------------------------------
# 7-11 and more: safetensors headers (apply-delta's delta)

ONE = {"a": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}}


@pytest.mark.parametrize(
    ("case", "header", "data", "length", "says"),
    [
        ("07-header-length-2^40", ONE, b"\0" * 4, 2**40, "header too large"),
        (
            "08-overlapping-offsets",
            {
                "a": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]},
                "b": {"dtype": "F16", "shape": [2], "data_offsets": [2, 6]},
            },
            b"\0" * 6,
            None,
            "invalid offset",
        ),
        (
            "09-offsets-past-the-end",
            {"a": {"dtype": "F16", "shape": [1024], "data_offsets": [0, 2048]}},
            b"\0" * 4,
            None,
            "not fully covered",
        ),
        (
            "10-unknown-dtype-Q7",
            {"a": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 4]}},
            b"\0" * 4,
            None,
            "Q7",
        ),
        ("11-header-not-json", b"{this is not json]", b"", None, "invalid JSON"),
        (
            "shape-overflows-u64",
            {"a": {"dtype": "F32", "shape": [2**62, 2**62], "data_offsets": [0, 4]}},
            b"\0" * 4,
            None,
            "overflow",
        ),
        (
            "header-length-past-eof",
            ONE,
            b"\0" * 4,
            50_000_000,
            "not a readable safetensors file",
        ),
        (
            "negative-dimension",
            {"a": {"dtype": "F16", "shape": [-2], "data_offsets": [0, 4]}},
            b"\0" * 4,
            None,
            "not a readable safetensors file",
        ),
    ],
)
def test_07_11_hostile_safetensors(
    case, header, data, length, says, converted, tmp_path: Path
) -> None:
    base = converted("7B")
    delta = tmp_path / "delta"
    delta.mkdir()
    copy_side_files(base, delta)
    raw_safetensors(delta / "model.safetensors", header, data, length)
    line = refused(cli(*delta_args(base, delta, tmp_path)), 2, "model.safetensors")
    assert says in line, line
    no_leftovers(tmp_path, tmp_path / "out")


@pytest.mark.parametrize(
    ("case", "header", "says"),
    [
        (
            "dtype-safetensors-knows-we-do-not",
            {"a": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}},
            "unsupported dtype F8_E4M3",
        ),
        (
            "tensor-name-with-newline",
            {"a\nerror: fine": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}},
            "not printable text",
        ),
    ],
)
def test_safetensors_valid_but_not_ours(case, header, says, converted, tmp_path: Path) -> None:
    base = converted("7B")
    delta = tmp_path / "delta"
    delta.mkdir()
    copy_side_files(base, delta)
    raw_safetensors(delta / "model.safetensors", header, b"\0" * 4)
    line = refused(cli(*delta_args(base, delta, tmp_path)), 2, "model.safetensors")
    assert says in line, line
    no_leftovers(tmp_path, tmp_path / "out")


def test_safetensors_symlink_to_a_device(converted, tmp_path: Path) -> None:
    base = converted("7B")
    delta = tmp_path / "delta"
    delta.mkdir()
    copy_side_files(base, delta)
    os.symlink("/dev/zero", delta / "model.safetensors")
    line = refused(cli(*delta_args(base, delta, tmp_path)), 2, "model.safetensors")
    assert "not a regular file" in line
    no_leftovers(tmp_path, tmp_path / "out")


def test_safetensors_fifo_does_not_hang(converted, tmp_path: Path) -> None:
    """Opening a FIFO for reading blocks until a writer comes: it must be refused unopened."""
    base = converted("7B")
    delta = tmp_path / "delta"
    delta.mkdir()
    copy_side_files(base, delta)
    os.mkfifo(delta / "model.safetensors")
    child = run_fresh(tmp_path, *delta_args(base, delta, tmp_path), timeout=60)
    line = refused_fresh(child, 2, "model.safetensors")
    assert "not a regular file" in line
    no_leftovers(tmp_path, tmp_path / "out")


# ---------------------------------------------------------------------------------------------
# 12-15 and more: shard indexes


@pytest.fixture
def sharded_delta(converted, delta_tensors, tmp_path: Path) -> tuple[Path, Path, dict]:
    """(base, delta with 2 safetensors shards + index, the index as a dict)."""
    base = converted("7B")
    delta = st_delta(base, delta_tensors, tmp_path / "delta", shards=2)
    return base, delta, json.loads((delta / "model.safetensors.index.json").read_text())


def _last_tensor(index: dict) -> str:
    return [k for k, v in index["weight_map"].items() if v.startswith("model-00002")][-1]


def test_12_index_names_parent_path(sharded_delta, tmp_path: Path) -> None:
    base, delta, index = sharded_delta
    shutil.copy(delta / "model-00002-of-00002.safetensors", tmp_path / "outside.safetensors")
    index["weight_map"][_last_tensor(index)] = "../outside.safetensors"
    (delta / "model.safetensors.index.json").write_text(json.dumps(index))
    line = refused(cli(*delta_args(base, delta, tmp_path)), 2, "model.safetensors.index.json")
    assert "../outside.safetensors" in line and "leaves the folder" in line, line
    no_leftovers(tmp_path, tmp_path / "out")


def test_13_index_names_absolute_path(sharded_delta, tmp_path: Path) -> None:
    base, delta, index = sharded_delta
    outside = tmp_path / "outside.safetensors"
    shutil.copy(delta / "model-00002-of-00002.safetensors", outside)
    index["weight_map"][_last_tensor(index)] = str(outside)
    (delta / "model.safetensors.index.json").write_text(json.dumps(index))
    line = refused(cli(*delta_args(base, delta, tmp_path)), 2, "model.safetensors.index.json")
    assert "absolute path" in line, line
    no_leftovers(tmp_path, tmp_path / "out")


def test_14_index_names_symlink_leading_outside(sharded_delta, tmp_path: Path) -> None:
    """The second shard lives outside; a symlink in the folder, named by the index, leads there."""
    base, delta, _ = sharded_delta
    shard = delta / "model-00002-of-00002.safetensors"
    shutil.move(shard, tmp_path / "elsewhere.safetensors")
    os.symlink(tmp_path / "elsewhere.safetensors", shard)
    line = refused(cli(*delta_args(base, delta, tmp_path)), 2, shard.name)
    assert "resolves outside" in line, line
    no_leftovers(tmp_path, tmp_path / "out")


def test_hf_cache_snapshot_symlinks_are_still_read(sharded_delta, tmp_path: Path) -> None:
    """Not hostile: a Hugging Face cache snapshot, whose files are symlinks to ../../blobs/."""
    _, delta, _ = sharded_delta
    repo = tmp_path / "hub" / "models--lmsys--delta"
    snap = repo / "snapshots" / ("0" * 40)
    (repo / "blobs").mkdir(parents=True)
    snap.mkdir(parents=True)
    for i, f in enumerate(sorted(delta.iterdir())):
        shutil.copy(f, repo / "blobs" / f"{i:064x}")
        os.symlink(f"../../blobs/{i:064x}", snap / f.name)
    res = cli("compare", snap, delta, "-q")
    assert res.exit_code == 0 and "identical" in res.stdout, res.output


def test_15_index_names_missing_shard(sharded_delta, tmp_path: Path) -> None:
    base, delta, _ = sharded_delta
    (delta / "model-00002-of-00002.safetensors").unlink()
    line = refused(
        cli(*delta_args(base, delta, tmp_path)),
        2,
        "model.safetensors.index.json",
        "model-00002-of-00002.safetensors",
    )
    assert "is missing" in line, line
    no_leftovers(tmp_path, tmp_path / "out")


def test_15b_index_not_json(sharded_delta, tmp_path: Path) -> None:
    base, delta, _ = sharded_delta
    (delta / "model.safetensors.index.json").write_text("[" * 100_000)
    line = refused(cli(*delta_args(base, delta, tmp_path)), 2, "model.safetensors.index.json")
    assert "unreadable index" in line, line
    no_leftovers(tmp_path, tmp_path / "out")


def test_15c_bin_index_names_parent_path(converted, delta_tensors, tmp_path: Path) -> None:
    """lmsys's deltas are .bin shards with pytorch_model.bin.index.json: the same rule."""
    base = converted("7B")
    delta = tmp_path / "delta"
    save_bin_shards(delta_tensors, delta, 2)
    copy_side_files(base, delta)
    index = json.loads((delta / "pytorch_model.bin.index.json").read_text())
    index["weight_map"]["model.norm.weight"] = "../../pytorch_model.bin"
    (delta / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    line = refused(cli(*delta_args(base, delta, tmp_path)), 2, "pytorch_model.bin.index.json")
    assert "model.norm.weight" in line and "leaves the folder" in line, line
    no_leftovers(tmp_path, tmp_path / "out")


# ---------------------------------------------------------------------------------------------
# 16-20 and more: params.json (convert-llama)


def _params(root: Path, **change) -> None:
    p = root / "7B" / "params.json"
    raw = json.loads(p.read_text())
    raw.update(change)
    for k in [k for k, v in change.items() if v is None]:
        del raw[k]
    p.write_text(json.dumps(raw))


@pytest.mark.parametrize(
    ("key", "value"),
    [("dim", 10**9), ("n_layers", 10**9)],
    ids=["16-dim-10^9", "n_layers-10^9"],
)
def test_16_huge_params_refused_before_allocating(key, value, root: Path, tmp_path: Path) -> None:
    """Fresh process, its own peak RSS: a 10^9-wide tensor would be 2 GB per row of anything,
    and 10^9 layers a list of 9*10^9 names."""
    _params(root, **{key: value})
    child = run_fresh(tmp_path, *convert_args(root, tmp_path), timeout=60)
    line = refused_fresh(child, 2, "params.json")
    assert f"{key} {value} is beyond any LLaMA" in line, line
    no_leftovers(tmp_path, tmp_path / "out")


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"n_heads": 7}, "do not give an even head size"),  # 17
        ({"n_layers": -2}, "must be > 0"),  # 18
        ({"n_heads": None}, "missing key(s) n_heads"),  # 20
        ({"ffn_dim_multiplier": float("inf")}, "ffn_dim_multiplier inf must be a positive"),
        ({"norm_eps": float("nan")}, "norm_eps nan must be a positive"),
        ({"dim": 1e400}, "bad value"),  # json reads 1e400 as inf; int(inf) overflows
        ({"dim": "sixty-four"}, "bad value"),
        ({"x\nerror: fine": 1}, "unknown key(s)"),
    ],
    ids=[
        "17-heads-not-dividing-dim",
        "18-negative-n_layers",
        "20-missing-key",
        "ffn-multiplier-infinity",
        "norm-eps-nan",
        "dim-overflows",
        "dim-not-a-number",
        "key-with-newline",
    ],
)
def test_17_20_bad_params(change: dict, says: str, root: Path, tmp_path: Path) -> None:
    if change == {"dim": 1e400}:
        p = root / "7B" / "params.json"
        p.write_text(p.read_text().replace('"dim": 64', '"dim": 1e400'))
    else:
        _params(root, **change)
    line = refused(cli(*convert_args(root, tmp_path)), 2, "params.json")
    assert says in line, line
    no_leftovers(tmp_path, tmp_path / "out")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"\xff\xfe{\x00d\x00", "not valid JSON"),
        (b"{dim: 64, n_layers: 2}", "not valid JSON"),
        (b"[" * 100_000, "not valid JSON"),
        (b"[64, 2, 8]", "expected a JSON object"),
    ],
    ids=["19-not-utf8", "19-not-json", "19-nested-too-deep", "19-a-list"],
)
def test_19_params_not_json(content: bytes, says: str, root: Path, tmp_path: Path) -> None:
    (root / "7B" / "params.json").write_bytes(content)
    line = refused(cli(*convert_args(root, tmp_path)), 2, "params.json")
    assert says in line, line
    no_leftovers(tmp_path, tmp_path / "out")


# ---------------------------------------------------------------------------------------------
# 21-26 and more: manifests (`weightprep verify DIR --manifest FILE`)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text("{}\n")
    return d


def _yaml_manifest(files: str) -> str:
    return f"version: 1\nname: hostile\nfiles:\n{files}"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (_yaml_manifest(f"  ../secret: {{sha256: {HEX64}}}\n"), "leaves the folder"),  # 21
        (_yaml_manifest(f"  /etc/passwd: {{sha256: {HEX64}}}\n"), "absolute path"),  # 22
        (_yaml_manifest("  config.json: {size: abc, sha256: " + HEX64 + "}\n"), "size must be"),
        (_yaml_manifest("  config.json: {sha256: not-hex-at-all}\n"), "64 hex digits"),
        (_yaml_manifest(f"  config.json: {{sha256: {'z' * 1_000_000}}}\n"), "64 hex digits"),
        (_yaml_manifest("  config.json: {sha256: " + "[" * 5000 + "\n"), "not valid YAML"),
    ],
    ids=[
        "21-parent-traversal",
        "22-absolute-path",
        "25-size-not-int",
        "25-sha256-not-hex",
        "sha256-one-megabyte",
        "nested-too-deep",
    ],
)
def test_21_25_hostile_yaml_manifest(text: str, says: str, folder: Path, tmp_path: Path) -> None:
    m = tmp_path / "hostile.yaml"
    m.write_text(text)
    line = refused(cli("verify", folder, "--manifest", m), 2, "hostile.yaml")
    assert says in line, line
    no_leftovers(tmp_path)


def test_23_manifest_not_utf8(folder: Path, tmp_path: Path) -> None:
    m = tmp_path / "hostile.yaml"
    m.write_bytes(b"version: 1\nname: \xff\xfe\xfd\nfiles: {}\n")
    line = refused(cli("verify", folder, "--manifest", m), 2, "hostile.yaml")
    assert "not UTF-8" in line
    no_leftovers(tmp_path)


@pytest.mark.parametrize(
    "text",
    [
        f"version: {BILLION_LAUGHS}\nname: x\nfiles: {{}}\n",
        _yaml_manifest(f"  config.json: {{sha256: {BILLION_LAUGHS}}}\n"),
        f"version: 1\nname: x\ndescription: {BILLION_LAUGHS}\nfiles: {{}}\n",
    ],
    ids=["24-bomb-in-version", "24-bomb-in-sha256", "24-bomb-in-description"],
)
def test_24_yaml_alias_bomb_manifest(text: str, folder: Path, tmp_path: Path) -> None:
    m = tmp_path / "bomb.yaml"
    m.write_text(text)
    child = run_fresh(tmp_path, "verify", folder, "--manifest", m, timeout=30)
    line = refused_fresh(child, 2, "bomb.yaml")
    assert "aliases" in line and child.seconds < 20, (line, child.seconds)


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("SHA256SUMS", f"{HEX64}  config.json\n{HEX64}  ../../etc/passwd\n", "leaves the folder"),
        ("SHA256SUMS", f"{HEX64} */etc/shadow\n", "absolute path"),
        ("checklist.chk", f"{'0' * 32}  config.json\n{'0' * 32}  a/../../x\n", "leaves the"),
        ("checklist.chk", f"{'0' * 32}  con\x1bfig.json\n", "not a plain relative path"),
    ],
    ids=[
        "26-sha256sums-traversal",
        "sha256sums-absolute",
        "checklist-traversal",
        "checklist-control-char",
    ],
)
def test_26_hostile_sums(name: str, text: str, says: str, folder: Path, tmp_path: Path) -> None:
    m = tmp_path / name
    m.write_text(text)
    line = refused(cli("verify", folder, "--manifest", m), 2, name)
    assert says in line, line
    assert "\x1b" not in line
    no_leftovers(tmp_path)


def test_manifest_over_the_size_limit(folder: Path, tmp_path: Path) -> None:
    from weightprep.manifest import MAX_MANIFEST_BYTES

    m = tmp_path / "huge.yaml"
    with open(m, "wb") as f:
        f.truncate(MAX_MANIFEST_BYTES + 1)  # sparse: no disk, nothing to read
    line = refused(cli("verify", folder, "--manifest", m), 2, "huge.yaml")
    assert "too large for a manifest" in line
    no_leftovers(tmp_path)


def test_manifest_names_symlink_leading_outside(folder: Path, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s")
    os.symlink(tmp_path / "secret", folder / "link")
    m = tmp_path / "SHA256SUMS"
    m.write_text(f"{HEX64}  link\n")
    line = refused(cli("verify", folder, "--manifest", m), 2, "link")
    assert "resolves outside" in line
    no_leftovers(tmp_path)


def test_meta_checklist_with_traversal_fails_verification(root: Path, tmp_path: Path) -> None:
    """convert-llama reads Meta's checklist.chk on its own: an unreadable one is a verification
    failure (exit 1: the input cannot be checked), named, before any output."""
    chk = root / "7B" / "checklist.chk"
    chk.write_text(chk.read_text() + f"{'0' * 32}  ../tokenizer.model\n")
    line = refused(cli(*convert_args(root, tmp_path)), 1, "checklist.chk")
    assert "leaves the folder" in line
    no_leftovers(tmp_path, tmp_path / "out")


# ---------------------------------------------------------------------------------------------
# 27-30 and more: tokenizer and delta consistency


TIKTOKEN = "".join(f"{t} {i}\n" for i, t in enumerate(["IQ==", "Ig==", "Iw==", "JA==", "JQ=="]))


def test_27_tokenizer_not_sentencepiece(root: Path, tmp_path: Path) -> None:
    """LLaMA-3's tokenizer.model is tiktoken's text format (base64 token, rank), not protobuf."""
    (root / "tokenizer.model").write_text(TIKTOKEN)
    line = refused(cli(*convert_args(root, tmp_path)), 2, "tokenizer.model")
    assert "not a SentencePiece model" in line or "SentencePiece cannot load" in line, line
    no_leftovers(tmp_path, tmp_path / "out")


def test_27b_delta_tokenizer_not_sentencepiece(converted, delta_tensors, tmp_path: Path) -> None:
    base = converted("7B")
    delta = st_delta(base, delta_tensors, tmp_path / "delta")
    (delta / "tokenizer.model").write_text(TIKTOKEN)
    line = refused(cli(*delta_args(base, delta, tmp_path)), 2, "tokenizer.model")
    assert "SentencePiece" in line, line
    no_leftovers(tmp_path, tmp_path / "out")


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        ("vocab", "a vocabulary mismatch"),  # 28
        ("shape", "has shape"),  # 29
        ("missing", "1 tensor(s) only in the base"),  # 30
        ("int", "not floating point"),
    ],
    ids=["28-vocab", "29-shape", "30-missing-tensor", "integer-tensor"],
)
def test_28_30_delta_does_not_match_base(
    damage: str, says: str, converted, delta_tensors, tmp_path: Path
) -> None:
    base = converted("7B")
    t = dict(delta_tensors)
    if damage == "vocab":
        rows, dim = t["model.embed_tokens.weight"].shape
        t["model.embed_tokens.weight"] = torch.zeros(rows + 1, dim, dtype=torch.float16)
    elif damage == "shape":
        t["model.layers.1.mlp.down_proj.weight"] = t["model.layers.1.mlp.down_proj.weight"].T
    elif damage == "missing":
        del t["model.layers.1.self_attn.v_proj.weight"]
    else:
        t["model.norm.weight"] = torch.zeros_like(t["model.norm.weight"], dtype=torch.int16)
    delta = st_delta(base, {k: v.contiguous() for k, v in t.items()}, tmp_path / "delta")
    line = refused(cli(*delta_args(base, delta, tmp_path)), 2, str(delta))
    assert says in line, line
    no_leftovers(tmp_path, tmp_path / "out")


@pytest.mark.parametrize(
    ("where", "name", "content", "says"),
    [
        ("base", "config.json", "[" * 100_000, "config.json: not valid JSON"),
        ("base", "config.json", "[4096]", "config.json: expected a JSON object"),
    ],
    ids=["config-nested-too-deep", "config-a-list"],
)
def test_delta_side_files(
    where, name, content, says, converted, delta_tensors, tmp_path: Path
) -> None:
    base0 = converted("7B")
    base = tmp_path / "base"
    shutil.copytree(base0, base)
    delta = st_delta(base0, delta_tensors, tmp_path / "delta")
    (base if where == "base" else delta).joinpath(name).write_text(content)
    line = refused(cli(*delta_args(base, delta, tmp_path)), 2, name)
    assert says in line, line
    no_leftovers(tmp_path, tmp_path / "out")


def test_delta_tokenizer_config_a_list_is_ignored(converted, delta_tensors, tmp_path) -> None:
    """The delta's tokenizer_config.json only hints model_max_length: a list there is no crash."""
    base = converted("7B")
    delta = st_delta(base, delta_tensors, tmp_path / "delta")
    (delta / "tokenizer_config.json").write_text("[1, 2]")
    res = cli(*delta_args(base, delta, tmp_path), "-q")
    assert res.exit_code == 0 and res.exception is None, (res.output, res.exception)


# ---------------------------------------------------------------------------------------------
# 31: smoke-test --image


def _png(width: int, height: int) -> bytes:
    """A PNG header declaring width x height, with one tiny (wrong-sized) IDAT."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


def _smoke(image: Path, tmp_path: Path):
    weights = tmp_path / "weights"
    weights.mkdir(exist_ok=True)
    return cli(
        "smoke-test", "--model", "vip-llava-7b", "--weights", weights, "--image", image, "-q"
    )


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("photo.png", b"this is a text file, not a picture\n"),
        ("photo.jpg", b"\xff\xd8\xff\xe0" + b"\0" * 20),  # a JPEG's first bytes, then nothing
        ("photo.png", None),  # a PNG whose pixels were cut off
    ],
    ids=["31-text", "31-truncated-jpeg", "31-truncated-png"],
)
def test_31_smoke_image_not_an_image(name, content, tmp_path: Path) -> None:
    image = tmp_path / name
    image.write_bytes(content if content is not None else _png(64, 64))
    line = refused(_smoke(image, tmp_path), 2, name)
    assert "not an image" in line, line
    no_leftovers(tmp_path)


def test_31b_smoke_image_decompression_bomb(tmp_path: Path) -> None:
    """A 100-byte PNG that declares 40000 x 40000 pixels: PIL refuses it with its own error."""
    image = tmp_path / "bomb.png"
    image.write_bytes(_png(40_000, 40_000))
    line = refused(_smoke(image, tmp_path), 2, "bomb.png")
    assert "not an image" in line or "pixels" in line, line


# ---------------------------------------------------------------------------------------------
# 32: recipes


def test_32_recipe_yaml_alias_bomb(tmp_path: Path) -> None:
    """In `description` (str() of it) or `version` (repr of it): either expands the aliases."""
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text(
        f"version: 1\nname: bomb\ndescription: {BILLION_LAUGHS}\n"
        "stages:\n  - {id: ex, run: make-example}\n"
    )
    wd = tmp_path / "wd"
    child = run_fresh(tmp_path, "run", recipe, "--workdir", wd, "--plan", timeout=10)
    refused_fresh(child, 2, "bomb.yaml")
    assert not wd.exists()
