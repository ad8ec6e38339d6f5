"""resolve_input: a folder as is, hf:// fetched once (verified) into the cache and then reused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi

from tests.hubserver import COMMIT
from weightprep.checksum import list_files
from weightprep.errors import InputError, VerificationError
from weightprep.hubinput import RECORD_SUFFIX, ResolvedInput, cache_root, resolve_input
from weightprep.io.reader import CheckpointReader

REPO = "lmsys/tiny-delta"


def _tree(folder: Path) -> dict[str, bytes]:
    return {rel: (folder / rel).read_bytes() for rel in list_files(folder)}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("WEIGHTPREP_CACHE", str(root))
    return root


@pytest.fixture
def hub_repo(hub_stand_in, tmp_path: Path):
    """A tiny delta-shaped repo (config, a torch.save shard, a README) on the stand-in Hub."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text('{"model_type": "llama"}\n')
    g = torch.Generator().manual_seed(0)
    sd = {"model.norm.weight": torch.randn(16, generator=g, dtype=torch.float32)}
    torch.save(sd, src / "pytorch_model.bin")
    (src / "README.md").write_text("# tiny delta\n")
    return hub_stand_in({REPO: src}), src


def _downloads(hub) -> list[str]:
    return [p for p in hub.fetched() if "/resolve/" in p]


def test_cache_root_order(monkeypatch, tmp_path):
    monkeypatch.setenv("WEIGHTPREP_CACHE", str(tmp_path / "own"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "own"
    monkeypatch.setenv("WEIGHTPREP_CACHE", "")
    assert cache_root() == tmp_path / "xdg" / "weightprep"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "weightprep"


def test_hf_fetched_once_then_reused_without_asking(hub_repo, cache):
    hub, src = hub_repo
    first = resolve_input(f"hf://{REPO}", what="DELTA")
    folder = cache / "hub" / "lmsys--tiny-delta@main"
    assert first.path == folder.absolute()
    assert _tree(first.path) == _tree(src)  # the repo's files and nothing else
    with CheckpointReader(first.path) as r:
        assert set(r.info) == {"model.norm.weight"}
    assert first.note.startswith(f"fetched hf://{REPO} at {COMMIT} into {folder}")
    assert "verified against" in first.note and "listing" in first.note
    assert "\n" not in first.note
    assert sorted(p.rsplit("/", 1)[-1] for p in _downloads(hub)) == sorted(_tree(src))
    record = json.loads(folder.with_name(folder.name + RECORD_SUFFIX).read_text())
    assert record["source"] == f"hf://{REPO}" and record["revision"] == "main"
    assert record["commit"] == COMMIT and record["verified_against"]

    hub.requests.clear()
    again = resolve_input(f"hf://{REPO}", what="DELTA")
    assert hub.requests == []  # no listing, no download: nothing asked of the Hub
    assert again.path == first.path
    assert again.note.startswith(f"reused {folder} (fetched and verified earlier at {COMMIT}")
    assert "\n" not in again.note

    # the folder gone (its record left behind): fetched again, not "reused"
    for rel in list_files(folder):
        (folder / rel).unlink()
    folder.rmdir()
    third = resolve_input(f"hf://{REPO}")
    assert third.note.startswith("fetched ") and _tree(third.path) == _tree(src)
    assert hub.requests


def test_revision_selects_commit_and_folder(hub_repo, cache):
    hub, src = hub_repo
    HfApi(token="anything").upload_file(
        path_or_fileobj=b'{"model_type": "llama", "v": 2}\n',
        path_in_repo="config.json",
        repo_id=REPO,
    )
    head = hub.head(REPO)
    assert head != COMMIT

    old = resolve_input(f"hf://{REPO}@{COMMIT}")
    new = resolve_input(f"hf://{REPO}")
    assert old.path == (cache / "hub" / f"lmsys--tiny-delta@{COMMIT}").absolute()
    assert new.path == (cache / "hub" / "lmsys--tiny-delta@main").absolute()
    assert _tree(old.path) == _tree(src)
    assert (new.path / "config.json").read_bytes() == b'{"model_type": "llama", "v": 2}\n'
    assert f"at {COMMIT} " in old.note and f"at {head} " in new.note

    # a branch name with a slash becomes one safe path component, distinct from a look-alike
    hub._repos[REPO].branches["refs/pr/1"] = COMMIT  # the stand-in has no branch-creation route
    pr = resolve_input(f"hf://{REPO}@refs/pr/1")
    assert pr.path.parent == (cache / "hub").absolute()
    assert pr.path.name.startswith("lmsys--tiny-delta@refs_pr_1-")
    assert _tree(pr.path) == _tree(src)
    assert sorted(p.name for p in (cache / "hub").iterdir() if p.is_dir()) == sorted(
        [old.path.name, new.path.name, pr.path.name]
    )


def test_bare_hub_id_gets_one_line_hint(cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.iterdir())
    with pytest.raises(InputError) as e:
        resolve_input("lmsys/vicuna-7b-delta-v1.1", what="DELTA")
    assert str(e.value) == (
        "DELTA lmsys/vicuna-7b-delta-v1.1: no such folder; to download it from the Hugging "
        "Face Hub write hf://lmsys/vicuna-7b-delta-v1.1"
    )
    assert sorted(tmp_path.iterdir()) == before and not cache.exists()


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("no/such/folder", "DELTA no/such/folder: no such folder"),
        ("./missing", "DELTA ./missing: no such folder"),
        ("gdrive://abc/models", "weightprep fetch gdrive://abc/models DIR"),
        ("hf://lmsys/tiny@", "nothing after '@'"),
        ("hf://a--b/c", "expected hf://NAMESPACE/NAME"),
        ("s3://bucket/x", "unknown source"),
    ],
)
def test_other_inputs_refused_in_one_line(cache, tmp_path, monkeypatch, spec, needle):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as e:
        resolve_input(spec, what="DELTA")
    assert needle in str(e.value) and "\n" not in str(e.value)
    if "no such folder" in needle:  # three parts, or a relative path: no Hub hint
        assert str(e.value) == needle
    assert not cache.exists()


def test_local_folder_returned_as_is(cache, tmp_path, monkeypatch):
    folder = tmp_path / "lmsys" / "vicuna"
    folder.mkdir(parents=True)
    assert resolve_input(folder) == ResolvedInput(folder, None)
    monkeypatch.chdir(tmp_path)
    assert resolve_input("lmsys/vicuna") == ResolvedInput(Path("lmsys/vicuna"), None)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_input("~/lmsys/vicuna").path == folder
    assert not cache.exists()


def test_corrupt_download_leaves_nothing_finished_then_refetches(hub_repo, cache):
    hub, src = hub_repo
    hub.corrupt(REPO, "pytorch_model.bin", keep_listing=True)  # bytes differ, listing does not
    folder = cache / "hub" / "lmsys--tiny-delta@main"
    record = folder.with_name(folder.name + RECORD_SUFFIX)
    with pytest.raises(VerificationError) as e:
        resolve_input(f"hf://{REPO}")
    assert "pytorch_model.bin" in str(e.value) and e.value.exit_code == 1
    assert not folder.exists() and not record.exists()

    hub.corrupt(REPO, "pytorch_model.bin", keep_listing=True)  # the same byte flipped back
    hub.requests.clear()
    res = resolve_input(f"hf://{REPO}")
    assert res.note.startswith("fetched ") and _tree(res.path) == _tree(src)
    assert record.is_file()
    assert [p.rsplit("/", 1)[-1] for p in _downloads(hub)] == ["pytorch_model.bin"]
