"""Model parts from a local folder or a Hub id, through huggingface_hub's own download path.

A smoke test often needs only part of a published checkpoint: InstructBLIP's vision tower,
Q-Former and projection (about 1 GB) but not the 13 GB Vicuna inside the same repo, which the
user's own prepared LLM replaces. `load_tensors` reads the shard index and fetches only the
shards that hold wanted tensors (`hf_hub_download`, cached and resumable as usual); a local
folder is read in place. Tensors are read one at a time (`safe_open`; `.bin` through
`torch.load(weights_only=True)`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from weightprep.errors import InputError
from weightprep.io.pth import load_state_dict

INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
SINGLES = ("model.safetensors", "pytorch_model.bin")


def is_local(ref: str) -> bool:
    return Path(ref).exists()


def file_path(ref: str, filename: str, revision: str | None = None, *, required: bool = True):
    """Path of `filename` in a folder or a Hub repo (downloaded to the HF cache); None when the
    file does not exist and `required` is False."""
    if is_local(ref):
        p = Path(ref) / filename
        if p.is_file():
            return p
        if required:
            raise InputError(f"{p}: missing")
        return None
    from huggingface_hub import hf_hub_download

    # EntryNotFoundError: the remote one in huggingface_hub 0.x, the base of both in 1.x+
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(ref, filename, revision=revision))
    except LocalEntryNotFoundError:
        # offline (HF_HUB_OFFLINE=1 or no network) and not in the cache
        if not required:
            return None
        raise InputError(
            f"{ref}: cannot get {filename} (offline or unreachable, and not in the HF cache); "
            "pass a local folder instead"
        ) from None
    except EntryNotFoundError:
        if required:
            raise InputError(f"{ref}: the Hub repo has no {filename}") from None
        return None
    except Exception as exc:  # RepositoryNotFoundError, HTTP errors, gated repos...
        raise InputError(f"{ref}: cannot get {filename}: {type(exc).__name__}: {exc}") from None


def _index(ref: str, revision: str | None) -> tuple[dict[str, str], str]:
    """(tensor name -> file name, how found)."""
    for name in INDEXES:
        p = file_path(ref, name, revision, required=False)
        if p is not None:
            try:
                weight_map = json.loads(Path(p).read_text())["weight_map"]
            except (ValueError, KeyError, TypeError) as exc:
                raise InputError(f"{ref}/{name}: not a shard index ({exc})") from None
            return dict(weight_map), name
    for name in SINGLES:
        p = file_path(ref, name, revision, required=False)
        if p is not None:
            return {"*": name}, name
    where = "" if is_local(ref) else " (on the Hub or in the HF cache)"
    raise InputError(f"{ref}: none of {', '.join(INDEXES + SINGLES)}{where}")


def _read(path: Path, want: Callable[[str], bool]) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                return {k: f.get_tensor(k) for k in f.keys() if want(k)}
        except Exception as exc:
            raise InputError(f"{path}: not a readable safetensors file ({exc})") from None
    return {k: v for k, v in load_state_dict(path).items() if want(k)}


def load_tensors(
    ref: str, want: Callable[[str], bool], revision: str | None = None
) -> dict[str, torch.Tensor]:
    """Every tensor of `ref`'s weights whose name passes `want`, fetching only needed shards."""
    weight_map, _ = _index(ref, revision)
    if "*" in weight_map:
        files = [weight_map["*"]]
    else:
        files = sorted({f for k, f in weight_map.items() if want(k)})
    out: dict[str, torch.Tensor] = {}
    for name in files:
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise InputError(f"{ref}: shard index names {name!r}, outside the repo")
        out.update(_read(file_path(ref, name, revision), want))
    return out


def _digests(folder: Path) -> list[dict]:
    """Every file under `folder` (symlinks followed, as the HF cache's snapshots are; hidden and
    half-written files left out) with its size and sha256, hashed in parallel."""
    from weightprep.checksum import hash_files
    from weightprep.io.atomic import is_partial

    rels = []
    for f in sorted(folder.rglob("*")):
        rel = f.relative_to(folder)
        if any(p.startswith(".") or is_partial(p) for p in rel.parts) or not f.is_file():
            continue
        rels.append(rel.as_posix())
    return [
        {"path": r, "bytes": e.size, "sha256": e.sha256}
        for r, e in hash_files(folder, rels).items()
    ]


def describe(flag: str, ref: str, revision: str | None = None) -> dict:
    """What `flag` loaded and from where, with the sha256 of each file there: a local folder's
    files, or a Hub repo's files as they are in the HF cache (the commit the revision resolves
    to there; only the files that were downloaded, e.g. InstructBLIP's non-LLM shards).

    Example: `describe("--llm", "vicuna-7b")["files"][0]["sha256"]`
    """
    if is_local(ref):
        folder = Path(ref).expanduser().resolve()
        return {"flag": flag, "ref": ref, "where": f"folder {folder}", "files": _digests(folder)}
    from huggingface_hub import constants

    repo = Path(constants.HF_HUB_CACHE) / ("models--" + ref.replace("/", "--"))
    rev = revision or "main"
    ref_file = repo / "refs" / rev
    commit = ref_file.read_text().strip() if ref_file.is_file() else rev
    snapshot = repo / "snapshots" / commit
    if not snapshot.is_dir():
        return {
            "flag": flag,
            "ref": ref,
            "where": f"Hub {ref}@{rev} (not in the HF cache)",
            "files": [],
        }
    return {
        "flag": flag,
        "ref": ref,
        "where": f"Hub {ref} at commit {commit} (HF cache {snapshot})",
        "files": _digests(snapshot),
    }
