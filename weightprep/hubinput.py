"""Inputs given as a folder or as `hf://NAMESPACE/NAME[@REV]`, the latter fetched once into a cache.

Why: a delta or base model usually lives on the Hugging Face Hub; asking the user to `fetch` it
by hand before every command is a step that can be skipped safely, as long as what is read is
exactly what the Hub lists. So `hf://...` is downloaded with `weightprep.fetch.fetch` (staged,
every file checked against the Hub's listing at one commit, renamed into place only when
complete) into `cache_root()/hub/NAMESPACE--NAME@REV/`, and a record of that fetch is written
beside it, `NAMESPACE--NAME@REV.weightprep-fetched.json`, only afterwards. A folder with its
record is reused without asking the Hub anything; a folder without one (a fetch killed between
the rename and the record) is fetched again.

The record lives beside the folder, not in it, so the folder holds the repo's files and nothing
else: `weightprep verify --strict` sees no extra file, `publish` uploads no bookkeeping, and the
digest `weightprep run` takes of an input folder is the repo's.

A branch (`main`, the default) is resolved to a commit once, at the first fetch; later calls reuse
that commit's files even if the branch moved. Delete the folder to fetch again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from weightprep.errors import InputError
from weightprep.fetch import fetch
from weightprep.io.atomic import output_lock, write_atomic
from weightprep.progress import Progress
from weightprep.remote.location import looks_like_hub_id

RECORD_SUFFIX = ".weightprep-fetched.json"
SAFE_REV = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class ResolvedInput:
    path: Path  # a local folder to read
    note: str | None  # None for a local folder; else one line saying fetched or reused, and where


def cache_root() -> Path:
    """Where fetched inputs are kept: $WEIGHTPREP_CACHE, else $XDG_CACHE_HOME/weightprep, else
    ~/.cache/weightprep (an empty variable counts as unset)."""
    own = os.environ.get("WEIGHTPREP_CACHE")
    if own:
        return Path(own).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "weightprep"
    return Path.home() / ".cache" / "weightprep"


def resolve_input(
    spec: str | Path,
    *,
    what: str = "input",
    cache: Path | None = None,
    progress: Progress | None = None,
) -> ResolvedInput:
    """A local folder to read for `spec`: an existing folder as given, or `hf://NS/NAME[@REV]`
    fetched (verified) into the cache, or reused from it.

    `what` names the argument in error messages (e.g. "DELTA"); `cache` overrides
    `cache_root()`. Raises InputError for a missing folder (with a hint when `spec` looks like
    a Hub id), a gdrive:// source, or a malformed hf:// id; fetch's own errors (NetworkError,
    VerificationError, ...) pass through unchanged. Example:
    `resolve_input("hf://lmsys/vicuna-7b-delta-v1.1", what="DELTA").path`
    -> ~/.cache/weightprep/hub/lmsys--vicuna-7b-delta-v1.1@main
    """
    if isinstance(spec, str) and spec.startswith("hf://"):
        return _resolve_hub(spec, what, cache if cache is not None else cache_root(), progress)
    text = str(spec)
    if isinstance(spec, str) and spec.startswith("gdrive://"):
        raise InputError(
            f"{what} {spec}: inputs are read from a folder or hf://; download it first with "
            f"`weightprep fetch {spec} DIR` and give DIR"
        )
    if isinstance(spec, str) and "://" in spec:
        raise InputError(f"{what} {spec}: unknown source; give a folder or hf://NAMESPACE/NAME")
    path = Path(spec).expanduser()
    if path.is_dir():
        return ResolvedInput(path, None)
    if path.exists():
        raise InputError(f"{what} {text}: not a folder")
    if isinstance(spec, str) and looks_like_hub_id(spec):
        raise InputError(
            f"{what} {spec}: no such folder; to download it from the Hugging Face Hub write "
            f"hf://{spec}"
        )
    raise InputError(f"{what} {text}: no such folder")


def _resolve_hub(spec: str, what: str, root: Path, progress: Progress | None) -> ResolvedInput:
    repo, at, rev = spec.removeprefix("hf://").partition("@")
    if at and not rev.strip():
        raise InputError(f"{what} {spec}: nothing after '@'; write hf://NAMESPACE/NAME@REVISION")
    if any(not c.isprintable() or c.isspace() for c in rev):
        raise InputError(f"{what} {spec}: the revision holds spaces or control characters")
    if not looks_like_hub_id(repo):
        raise InputError(
            f"{what} {spec}: expected hf://NAMESPACE/NAME[@REVISION] with a Hub repo id (letters, "
            "digits, '-', '_', '.'; no '--' or '..')"
        )
    source = f"hf://{repo}"
    asked = rev or "main"
    folder = (root / "hub" / f"{repo.replace('/', '--')}@{_rev_component(asked)}").absolute()
    record_path = folder.with_name(folder.name + RECORD_SUFFIX)
    record = _read_record(record_path, folder, source, asked)
    if record is not None:
        return ResolvedInput(folder, _reused_note(folder, record))
    with output_lock(record_path):  # one resolver per cache entry: check, fetch and record
        record = _read_record(record_path, folder, source, asked)
        if record is not None:
            return ResolvedInput(folder, _reused_note(folder, record))
        record_path.unlink(missing_ok=True)  # a record whose folder went away
        result = fetch(source, folder, revision=rev or None, force=True, progress=progress)
        record = {
            "source": source,
            "revision": asked,
            "commit": result.revision,
            "verified_against": result.verified_against,
            "files": len(result.files),
            "bytes": result.total_bytes,
            "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        write_atomic(record_path, (json.dumps(record, indent=2) + "\n").encode())
    against = "; ".join(result.verified_against)
    return ResolvedInput(
        folder,
        f"fetched {spec} at {result.revision} into {folder}, verified against {against}",
    )


def _rev_component(rev: str) -> str:
    """The revision as one safe file-name part; a revision that had to be changed (a branch
    like refs/pr/1) gets a short hash of the original so that two never share a folder."""
    if SAFE_REV.match(rev) and ".." not in rev:
        return rev
    plain = re.sub(r"[^A-Za-z0-9._-]+", "_", rev).strip("._-")[:60] or "rev"
    return f"{plain}-{hashlib.sha256(rev.encode()).hexdigest()[:10]}"


def _read_record(path: Path, folder: Path, source: str, asked: str) -> dict | None:
    """The record of a finished fetch of `source` at `asked` into `folder`, or None."""
    if not folder.is_dir() or folder.is_symlink():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    if record.get("source") != source or record.get("revision") != asked:
        return None
    if not isinstance(record.get("commit"), str):
        return None
    return record


def _reused_note(folder: Path, record: dict) -> str:
    when = record.get("fetched_at") or "an earlier run"
    return (
        f"reused {folder} (fetched and verified earlier at {record['commit']}, {when}; "
        "delete the folder to fetch again)"
    )
