"""hash / verify against the real sha256sum and md5sum, tensor digests across containers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from weightprep.checksum import tensor_digests
from weightprep.cli.app import app


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def folder(converted, tmp_path: Path) -> Path:
    d = tmp_path / "model"
    shutil.copytree(converted("13B"), d)
    (d / "sub").mkdir()
    (d / "sub" / "notes.txt").write_text("hello\n")
    return d


def test_hash_then_verify_round_trip(folder: Path, tmp_path: Path) -> None:
    m = tmp_path / "m.yaml"
    assert invoke("hash", folder, "-o", m, "-q").exit_code == 0
    res = invoke("verify", folder, "--manifest", m)
    assert res.exit_code == 0, res.output
    assert "verified" in res.output and "0 MISMATCH" in res.output


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_damage_is_found(damage: str, folder: Path, tmp_path: Path) -> None:
    m = tmp_path / "m.yaml"
    invoke("hash", folder, "-o", m, "-q")
    shard = next(folder.glob("model-*.safetensors"))
    data = bytearray(shard.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 1
        shard.write_bytes(bytes(data))
    elif damage == "truncate":
        shard.write_bytes(bytes(data[:-10]))
    else:
        shard.unlink()
    res = invoke("verify", folder, "--manifest", m, "--json")
    assert res.exit_code == 1
    rep = json.loads(res.stdout)
    status = {f["path"]: f["status"] for f in rep["files"]}
    assert status[shard.name] == ("MISSING" if damage == "delete" else "MISMATCH")
    assert sum(s == "OK" for s in status.values()) == len(status) - 1


def test_extra_file_fails_only_with_strict(folder: Path, tmp_path: Path) -> None:
    m = tmp_path / "m.yaml"
    invoke("hash", folder, "-o", m, "-q")
    (folder / "stray.bin").write_bytes(b"x")
    res = invoke("verify", folder, "--manifest", m)
    assert res.exit_code == 0 and "EXTRA    stray.bin" in res.output
    assert invoke("verify", folder, "--manifest", m, "--strict").exit_code == 1


def test_sha256sum_reads_ours_and_we_read_theirs(folder: Path) -> None:
    ours = folder / "OURS"
    assert invoke("hash", folder, "-o", ours, "--format", "sha256sum", "-q").exit_code == 0
    r = subprocess.run(
        ["sha256sum", "-c", "--strict", "OURS"], cwd=folder, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "OURS" not in (folder / "OURS").read_text()  # the manifest does not list itself
    files = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.name != "OURS"
    )
    for tool, flag in [("sha256sum", "-b"), ("md5sum", "-t")]:
        out = subprocess.run(
            [tool, flag, *files], cwd=folder, capture_output=True, text=True, check=True
        ).stdout
        (folder.parent / tool).write_text(out)
        res = invoke("verify", folder, "--manifest", folder.parent / tool, "--strict")
        assert res.exit_code == 1 and "EXTRA    OURS" in res.output  # only OURS is unlisted
        res = invoke("verify", folder, "--manifest", folder.parent / tool)
        assert res.exit_code == 0, res.output


def test_metas_checklist_chk(meta_root: Path) -> None:
    res = invoke(
        "verify", meta_root / "30B", "--manifest", meta_root / "30B" / "checklist.chk", "--strict"
    )
    assert res.exit_code == 0, res.output
    assert res.output.count("OK ") == 5


def test_tensor_digests_do_not_depend_on_container(converted, tmp_path: Path) -> None:
    src = converted("30B")
    digests = tensor_digests(src)
    tensors = {}
    from safetensors import safe_open

    for f in src.glob("*.safetensors"):
        with safe_open(str(f), framework="pt") as h:
            tensors.update({k: h.get_tensor(k) for k in h.keys()})
    names = sorted(tensors)
    pth = tmp_path / "pth"
    pth.mkdir()
    torch.save({k: tensors[k].clone() for k in reversed(names)}, pth / "model.pth")
    bins = tmp_path / "bins"
    bins.mkdir()
    half = len(names) // 2
    torch.save(
        {k: tensors[k].clone() for k in names[:half]}, bins / "pytorch_model-00001-of-00002.bin"
    )
    torch.save(
        {k: tensors[k].clone() for k in names[half:]}, bins / "pytorch_model-00002-of-00002.bin"
    )
    st = tmp_path / "st"
    st.mkdir()
    for i, chunk in enumerate([names[::3], names[1::3], names[2::3]]):
        save_file({k: tensors[k] for k in chunk}, str(st / f"part{i}.safetensors"))
    for d in (pth, bins, st):
        assert tensor_digests(d) == digests
    m = tmp_path / "m.yaml"
    assert invoke("hash", src, "-o", m, "--tensors", "-q").exit_code == 0
    res = invoke("verify", bins, "--manifest", m, "--tensors", "-q", "--json")
    rep = json.loads(res.stdout)
    assert all(t["status"] == "OK" for t in rep["tensors"]) and len(rep["tensors"]) == len(names)
    assert res.exit_code == 1  # files differ (other container), tensors all match
    changed = {k: v.clone() for k, v in tensors.items()}
    changed["model.norm.weight"][0] += 1
    save_file(changed, str(tmp_path / "one.safetensors"))
    (tmp_path / "one").mkdir()
    shutil.move(tmp_path / "one.safetensors", tmp_path / "one" / "model.safetensors")
    rep = json.loads(
        invoke("verify", tmp_path / "one", "--manifest", m, "--tensors", "--json").stdout
    )
    bad = [t["name"] for t in rep["tensors"] if t["status"] != "OK"]
    assert bad == ["model.norm.weight"]


def test_hostile_paths_refused_before_reading(folder: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret"
    outside.write_text("s")
    os.symlink(outside, folder / "link")
    h = "0" * 64
    for line in [f"{h}  ../secret", f"{h}  /etc/passwd", f"{h}  link"]:
        m = tmp_path / "SUMS"
        m.write_text(line + "\n")
        res = invoke("verify", folder, "--manifest", m)
        assert res.exit_code == 2, (line, res.output)
        assert res.output.startswith("error: ")


def test_shipped_manifest_by_name(meta_root: Path) -> None:
    res = invoke("manifests")
    assert res.exit_code == 0 and "llama-7b" in res.output
    # The tiny example is not LLaMA-7B: sizes differ, so nothing large is hashed, and it fails.
    res = invoke("verify", meta_root, "--manifest", "llama-7b", "--json")
    assert res.exit_code == 1
    status = {f["path"]: f["status"] for f in json.loads(res.stdout)["files"]}
    assert (
        status["7B/consolidated.00.pth"] == "MISMATCH" and status["tokenizer.model"] == "MISMATCH"
    )
    assert invoke("verify", meta_root, "--manifest", "no-such").exit_code == 2


def test_tensors_need_yaml(folder: Path, tmp_path: Path) -> None:
    res = invoke("hash", folder, "-o", tmp_path / "S", "--tensors", "--format", "sha256sum")
    assert res.exit_code == 2 and "--format yaml" in res.output and not (tmp_path / "S").exists()


def test_tensor_digests_prefer_safetensors_like_a_loader(converted, tmp_path: Path) -> None:
    """A Hub-style folder with both model.safetensors and pytorch_model.bin digests once."""
    src = converted("7B")
    both = tmp_path / "both"
    shutil.copytree(src, both)
    from tests.delta_fixtures import read_all

    torch.save(read_all(src), both / "pytorch_model.bin")
    assert tensor_digests(both) == tensor_digests(src)


@pytest.mark.parametrize("flags", [[], ["-o", "-"]])
def test_hash_writes_to_standard_output_by_default(folder: Path, tmp_path: Path, flags) -> None:
    """As sha256sum does: no -o (or -o -) is standard output, and sha256sum -c reads it."""
    res = invoke("hash", folder, "--format", "sha256sum", *flags)
    assert res.exit_code == 0, res.output
    assert not (Path.cwd() / "-").exists() and not (folder / "-").exists()
    sums = tmp_path / "SUMS"
    sums.write_text(res.stdout)
    check = subprocess.run(
        ["sha256sum", "-c", "--quiet", str(sums)], cwd=folder, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert len(res.stdout.splitlines()) == sum(1 for f in folder.rglob("*") if f.is_file())


def test_verify_against_the_folders_own_manifest_lists_no_extra(converted) -> None:
    """weightprep writes manifest.yaml and SHA256SUMS: neither is EXTRA against the other."""
    out = converted("7B")
    for own in ("manifest.yaml", "SHA256SUMS"):
        res = invoke("verify", out, "--manifest", out / own, "--strict")
        assert res.exit_code == 0, res.output
        assert not [line for line in res.stdout.splitlines() if line.startswith("EXTRA")]
        assert "0 EXTRA" in res.stdout


def _sparse(path: Path, size: int = 64 * 2**30) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)  # reads as zeros, takes no disk: far more than a second to hash
    return path


def test_one_failing_file_stops_the_others_at_once(tmp_path: Path) -> None:
    import threading
    import time

    from weightprep.checksum import hash_file, map_stoppable

    big = _sparse(tmp_path / "big.bin")
    seen: list[threading.Event] = []

    def work(p: Path, stop: threading.Event) -> dict[str, str]:
        seen.append(stop)
        if p.name == "gone.bin":
            time.sleep(0.3)
            raise FileNotFoundError(p)
        return hash_file(p, stop=stop)

    t0 = time.monotonic()
    with pytest.raises(FileNotFoundError):
        map_stoppable(work, [big, tmp_path / "gone.bin"])
    assert time.monotonic() - t0 < 5  # hashing 64 GiB would take minutes
    assert all(s.is_set() for s in seen)


def test_ctrl_c_while_waiting_for_the_input_check_stops_it(tmp_path: Path) -> None:
    """convert-llama and apply-delta wait for Meta's md5 check after writing; Ctrl-C there must
    not wait for the check to read the rest of the input."""
    import signal
    import threading
    import time

    from weightprep.llama.input_check import Check, InputVerifier

    big = _sparse(tmp_path / "consolidated.00.pth")
    v = InputVerifier([Check(big, "md5", "0" * 32, None, "checklist.chk")])
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    t0 = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            v.result()
    finally:
        timer.cancel()
        timer.join()
    assert time.monotonic() - t0 < 3
