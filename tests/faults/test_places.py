"""Unfriendly places and moments: a full disk (before and during), a read-only output, output
inside the input, odd path names, a symlink loop, Ctrl-C, and two writers at once."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _run(args, fault=None, timeout=300):
    env = {k: v for k, v in os.environ.items() if k != "WEIGHTPREP_FAULT"}
    if fault:
        env["WEIGHTPREP_FAULT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "weightprep", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size, ro=False) -> a fresh tmpfs folder (root only; skipped elsewhere)."""
    mounts = []

    def mount(size: str, ro: bool = False) -> Path:
        point = tmp_path / f"fs{len(mounts)}"
        point.mkdir()
        opts = f"size={size}" + (",ro" if ro else "")
        res = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(point)],
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip() or 'not root'})")
        mounts.append(point)
        return point

    yield mount
    for m in mounts:
        subprocess.run(["umount", "-l", str(m)], capture_output=True)


def _one_line_error(res) -> str:
    # `run` prints each stage's start and end on stderr as it goes (progress, not errors)
    lines = [ln for ln in res.stderr.strip().splitlines() if not re.match(r"\[\d+/\d+\] ", ln)]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    assert "Traceback" not in res.stderr
    return lines[0]


def test_preflight_refuses_a_disk_that_is_visibly_too_small(meta_root, tmpfs):
    fs = tmpfs("64k")
    before = _digest(meta_root / "7B")
    res = _run(["convert-llama", meta_root, fs / "out", "--model-size", "7B"])
    assert res.returncode == 3
    line = _one_line_error(res)
    assert "not enough free disk: need" in line and ", have " in line
    assert not any(fs.iterdir()) and _digest(meta_root / "7B") == before


@pytest.mark.parametrize(
    "command", ["convert-llama", "apply-delta", "apply-delta-meta", "publish", "run"]
)
def test_disk_filling_up_midway(writers, command, meta_root, converted, tmpfs):
    """Another process fills the disk while we write: one line, exit 3, nothing left of ours
    but whole, verified files, and the input untouched."""
    fs = tmpfs("2m")
    filler = fs / "someone-else.bin"
    args, fault = writers[command]
    src = converted("7B", "float16")
    before = (_digest(meta_root), _digest(src))
    res = _run(args(fs / "out"), f"{fault}:fill={filler}")
    assert res.returncode == 3, res.stderr
    assert "disk full" in _one_line_error(res)
    assert not [p for p in fs.rglob("*") if "partial" in p.name or "lock" in p.name]
    if command == "publish":  # files that got their final name are whole and right
        want = _digest(src)
        assert all(
            want.get(str(p.relative_to(fs / "out"))) == h
            for p, h in (
                (q, hashlib.sha256(q.read_bytes()).hexdigest())
                for q in (fs / "out").rglob("*")
                if q.is_file()
            )
        )
    elif command == "run":
        assert not (fs / "out" / "convert").exists()
    else:
        assert not (fs / "out").exists()
    assert (_digest(meta_root), _digest(src)) == before


def test_read_only_output(meta_root, tmpfs):
    fs = tmpfs("64m", ro=True)
    res = _run(["convert-llama", meta_root, fs / "out", "--model-size", "7B"])
    assert res.returncode == 3 and "read-only" in _one_line_error(res)


@pytest.mark.parametrize("where", ["equal", "inside", "parent"])
def test_output_that_is_or_holds_the_input_is_refused(tmp_path, converted, where):
    import shutil

    base = tmp_path / "a" / "base"
    shutil.copytree(converted("7B", "float16"), base)
    before = _digest(base)
    out = {"equal": base, "inside": base / "out", "parent": base.parent}[where]
    res = _run(["apply-delta", base, base, out, "--force"])
    assert res.returncode == 2 and "choose another output" in _one_line_error(res)
    assert _digest(base) == before


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root reads everything: an unreadable file can't be made"
)
def test_unreadable_input(converted, tmp_path):
    import shutil

    src = tmp_path / "m"
    shutil.copytree(converted("7B", "float16"), src)
    (src / "config.json").chmod(0)
    res = _run(["hash", src, "-o", tmp_path / "m.yaml"])
    assert res.returncode == 3 and "permission denied" in _one_line_error(res)


def test_odd_path_names(meta_root, tmp_path):
    bad = tmp_path / os.fsdecode(b"not utf-8 \xff\xfe")
    res = _run(["convert-llama", meta_root, bad, "--model-size", "7B"])
    assert res.returncode == 2 and "not valid UTF-8" in _one_line_error(res)
    assert not list(tmp_path.iterdir())
    out = tmp_path / "out put 'q\" \u2713 $HOME `x`"
    res = _run(["convert-llama", meta_root, out, "--model-size", "7B", "-q"])
    assert res.returncode == 0, res.stderr
    ok = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=out)
    assert ok.returncode == 0
    nl = tmp_path / "new\nline"
    res = _run(["publish", out, nl, "-q"])
    assert res.returncode == 0, res.stderr
    assert _digest(nl) == _digest(out)


def test_symlink_loop_in_a_hashed_folder(converted, tmp_path):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(converted("7B", "float16"), folder)
    (folder / "loop").symlink_to(folder / "loop")
    (folder / "self").symlink_to(folder)
    res = _run(["hash", folder, "-o", tmp_path / "m.yaml", "-q"], timeout=60)
    assert res.returncode == 0, res.stderr  # symlinks are not followed: no hang, no error
    assert "loop" not in (tmp_path / "m.yaml").read_text()


@pytest.fixture(scope="module")
def writers(tmp_path_factory, meta_root, converted):
    """command -> (args for an output path, fault label and point) for the long writers."""
    import yaml

    from weightprep.example import make_delta_example

    root = tmp_path_factory.mktemp("writers")
    base = converted("7B", "float16")
    delta = make_delta_example(base, root / "delta")
    recipe = root / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "name": "w",
                "inputs": {"llama": str(meta_root)},
                "stages": [
                    {
                        "id": "convert",
                        "run": "convert-llama",
                        "with": {"input": "${inputs.llama}", "model_size": "7B"},
                    }
                ],
            }
        )
    )
    return {
        "convert-llama": (
            lambda o: ["convert-llama", meta_root, o, "--model-size", "7B"],
            "write:50000",
        ),
        "apply-delta": (lambda o: ["apply-delta", base, delta, o], "write:50000"),
        "apply-delta-meta": (
            lambda o: ["apply-delta", meta_root, delta, o, "--model-size", "7B"],
            "write:50000",
        ),
        "publish": (lambda o: ["publish", base, o], "publish-copy:1000"),
        "run": (lambda o: ["run", recipe, "--workdir", o], "write:50000"),
        "hash": (lambda o: ["hash", base, "-o", o], "hash:1000"),
    }


@pytest.mark.parametrize(
    "command", ["convert-llama", "apply-delta", "apply-delta-meta", "publish", "run", "hash"]
)
def test_ctrl_c_stops_cleans_and_exits_130(writers, command, tmp_path):
    args, fault = writers[command]
    out = tmp_path / "out"
    t0 = time.monotonic()
    res = _run(args(out), f"{fault}:int")
    assert res.returncode == 130, res.stderr
    assert "interrupted" in _one_line_error(res) and "again" in res.stderr
    assert time.monotonic() - t0 < 60
    left = [p for p in tmp_path.rglob("*") if any(m in p.name for m in ("partial", "lock"))]
    assert not left, left
    if command in ("convert-llama", "apply-delta", "apply-delta-meta", "hash"):
        assert not list(tmp_path.iterdir())  # nothing under the output name either


@pytest.mark.parametrize("command", ["convert-llama", "apply-delta", "publish", "run"])
def test_two_writers_one_refuses_at_once(writers, command, tmp_path):
    args, fault = writers[command]
    out = tmp_path / "out"
    env = {**os.environ, "WEIGHTPREP_FAULT": f"{fault}:stop"}
    cmd = [sys.executable, "-m", "weightprep", *map(str, args(out)), "-q"]
    first = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(1200):  # wait until it is frozen mid-write, holding the lock
            state = Path(f"/proc/{first.pid}/stat").read_text().split()[2]
            if state == "T":
                break
            time.sleep(0.05)
        else:
            pytest.fail("the first writer never reached its stop point")
        t0 = time.monotonic()
        second = _run(args(out) + ([] if command in ("publish", "run") else ["--force"]))
        assert second.returncode == 2 and "another weightprep process" in _one_line_error(second)
        assert time.monotonic() - t0 < 30
        os.kill(first.pid, signal.SIGCONT)
        assert first.wait(timeout=120) == 0, first.stderr.read()
    finally:
        if first.poll() is None:
            os.kill(first.pid, signal.SIGKILL)
    if command == "run":
        out = out / "convert"
    ok = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=out)
    assert ok.returncode == 0
    assert not [p for p in tmp_path.rglob("*") if "lock" in p.name or "partial" in p.name]


def test_debug_shows_the_traceback(tmp_path):
    plain = _run(["hash", tmp_path / "missing", "-o", tmp_path / "x.yaml"])
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    debug = _run(["--debug", "hash", tmp_path / "missing", "-o", tmp_path / "x.yaml"])
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "InputError" in debug.stderr


def _bytes_read(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/PID/io")


@pytest.mark.parametrize("command", ["hash", "verify"])
def test_ctrl_c_inside_one_long_file_stops_within_a_second(command, tmp_path):
    """Ctrl-C a second into hashing one 64 GiB file (sparse: no disk used). Reading and hashing
    it takes well over 10 s anywhere (sha256 runs at under 3 GB/s per core); the command must
    stop within a second of the signal, long before it could have read the file."""
    folder = tmp_path / "model"
    folder.mkdir()
    big = folder / "big.bin"
    size = 64 * 2**30
    with open(big, "wb") as f:
        f.truncate(size)
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"{'0' * 64}  big.bin\n")
    args = {
        "hash": ["hash", folder, "-o", tmp_path / "m.yaml"],
        "verify": ["verify", folder, "--manifest", sums],
    }[command]
    env = {k: v for k, v in os.environ.items() if k != "WEIGHTPREP_FAULT"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "weightprep", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while _bytes_read(proc.pid) < 64 * 2**20:  # hashing is under way
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "hashing never started"
            time.sleep(0.02)
        time.sleep(1)
        read_before = _bytes_read(proc.pid)
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        stopped_after = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert stopped_after < 2, f"{command} took {stopped_after:.1f} s to stop"
    assert read_before < size / 4  # the test itself was not too slow to mean anything
    line = _one_line_error(subprocess.CompletedProcess(args, 130, out, err))
    want = {"hash": "interrupted while hashing", "verify": "interrupted while verifying"}
    assert line.startswith(f"error: {want[command]} {folder}") and "again" in line
    assert out == "" and not (tmp_path / "m.yaml").exists()
