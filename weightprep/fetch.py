"""`fetch`: download published weights (hf:// or gdrive://) into a folder, every file verified.

The inverse of `publish`. Work happens in `DIR.partial/` beside DIR, which is renamed to DIR only
when every file is present and verified, so an interrupted fetch never looks finished; a re-run
continues in the same staging folder (a marker file, `.weightprep-fetch`, records which source it
holds: a staging folder of another source is emptied first).

- `hf://NAMESPACE/NAME`: the revision is resolved to a commit once, and each file is downloaded
  at that commit in `chunk_size` HTTP Range requests through huggingface_hub's own session and
  URLs (`remote.hub.download`) into `.NAME.partial` beside its final name; a re-run keeps the
  files already complete and continues a cut-off one from its size (huggingface_hub's own
  downloads start it again). Then every file is checked against the Hub's listing at that
  commit: LFS files by sha256, small files by git blob id. A file that fails is removed from the
  staging folder, so that a re-run fetches it again.
- `gdrive://FOLDER_ID[/SUB/PATH]`: the folder is listed with its checksums, and each file is
  downloaded in `chunk_size` HTTP Range requests (`files/{id}?alt=media`, through the Drive
  service's own authorized transport) into `.NAME.partial` beside its final name, hashed as it
  arrives; a re-run resumes it from its size. Each file's
  sha256 is checked against Drive's `sha256Checksum` (md5 where that is all Drive has).
- `manifest`, when given, is checked too, from the same digests (no second read).
- Both backends are `weightprep.remote`'s: one retry loop (5xx, 429, dropped or refused
  connections, unresolvable hosts, timeouts; `WEIGHTPREP_RETRY_BUDGET`), after which a remote
  that keeps failing is a NetworkError (exit 3) before the staging folder is touched, or with
  the staging folder kept for a re-run to continue.

Paths in a remote listing are untrusted: absolute paths, `..`, or anything resolving outside the
staging folder are refused before anything is downloaded.
"""

from __future__ import annotations

import errno
import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from weightprep.checksum import hash_file, list_files, resolve_inside, workers
from weightprep.errors import (
    DiskSpaceError,
    InputError,
    OutputExistsError,
    VerificationError,
)
from weightprep.io.atomic import (
    check_free_space,
    output_lock,
    partial_file,
    partial_path,
    replace_folder,
)
from weightprep.manifest import Manifest, ManifestError, check_relpath, resolve_manifest
from weightprep.progress import NullProgress, Progress
from weightprep.remote.listing import Listed, mismatch
from weightprep.remote.location import Location, is_remote, parse_location

CHUNK = 64 * 2**20
MARKER = ".weightprep-fetch"
HF_BOOKKEEPING = ".cache/huggingface"


@dataclass
class FetchedFile:
    path: str
    size: int
    sha256: str
    status: str  # downloaded | resumed (a partial download continued) | kept (already complete)
    bytes_downloaded: int = 0
    md5: str | None = None  # taken only where Drive or the manifest has nothing better


@dataclass
class FetchResult:
    source: str
    dir: str
    files: list[FetchedFile] = field(default_factory=list)
    seconds: float = 0.0
    verified_against: list[str] = field(default_factory=list)
    revision: str | None = None  # hf://: the commit fetched

    @property
    def bytes_downloaded(self) -> int:
        return sum(f.bytes_downloaded for f in self.files)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["files"] = [
            {"path": f.path, "size": f.size, "sha256": f.sha256, "status": f.status}
            for f in self.files
        ]
        d["bytes_downloaded"] = self.bytes_downloaded
        return d


def fetch(
    source: str,
    out: Path,
    *,
    revision: str | None = None,
    manifest: Manifest | str | None = None,
    credentials: Path | None = None,
    force: bool = False,
    chunk_size: int = CHUNK,
    progress: Progress | None = None,
) -> FetchResult:
    """Download `source` (hf://NAMESPACE/NAME or gdrive://FOLDER_ID[/SUB/PATH]) into `out`.

    Raises OutputExistsError when `out` exists and is not an empty folder (unless `force`: then
    it is replaced, only after the new copy is complete and verified), VerificationError (exit
    1) naming any file that does not match the remote's record or the manifest. Example:
    `fetch("hf://me/vicuna-7b", Path("vicuna-7b"), manifest="vicuna-7b.yaml")`.
    """
    progress = progress or NullProgress()
    dest = _parse_source(source)
    if chunk_size <= 0:
        raise InputError(f"chunk size {chunk_size}: must be positive")
    if dest.kind == "gdrive" and revision:
        raise InputError("--revision applies to hf:// sources only")
    if dest.kind == "hf" and credentials is not None:
        raise InputError(
            "--credentials applies to gdrive:// sources only (the Hub's token: HF_TOKEN)"
        )
    if isinstance(manifest, str):
        manifest = resolve_manifest(manifest)[0]
    final = out.expanduser().absolute()
    with output_lock(final):
        return _fetch_locked(
            dest, final, revision, manifest, credentials, force, chunk_size, progress
        )


def _fetch_locked(dest, final, revision, manifest, credentials, force, chunk_size, progress):
    _check_output(final, force)
    stage = partial_path(final)
    start = time.perf_counter()
    result = FetchResult(source=str(dest), dir=str(final))
    try:
        if dest.kind == "hf":
            _fetch_hub(dest, stage, revision, manifest, chunk_size, result, progress)
        else:
            _fetch_drive(dest, stage, credentials, chunk_size, manifest, result, progress)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DiskSpaceError(f"{stage.parent}: disk full while fetching {final.name}") from exc
        raise
    if manifest is not None:
        _check_manifest(stage, manifest, result)
        result.verified_against.append(f"manifest {manifest.name}")
    if dest.kind == "hf":
        _drop_hf_bookkeeping(stage)
    (stage / MARKER).unlink(missing_ok=True)
    _finish(stage, final)
    result.seconds = time.perf_counter() - start
    return result


# --- source, output and staging folder ---------------------------------------------------------


def _parse_source(text: str) -> Location:
    if not is_remote(text):
        if "://" in text:
            raise InputError(f"{text}: unknown source; use hf://NAMESPACE/NAME or gdrive://ID")
        raise InputError(
            f"{text}: a local folder; fetch downloads hf:// or gdrive:// sources (to copy a "
            f"folder, use `weightprep publish {text} DIR`)"
        )
    return parse_location(text)


def _check_output(final: Path, force: bool) -> None:
    if force or not (final.exists() or final.is_symlink()):
        return
    if final.is_dir() and not final.is_symlink() and not any(final.iterdir()):
        return
    raise OutputExistsError(f"{final}: already exists; pass --force to replace it")


def _prepare_stage(stage: Path, source: str) -> None:
    """Keep a staging folder of the same source (to resume); empty one of anything else."""
    marker = stage / MARKER
    if stage.is_symlink() or (stage.exists() and not stage.is_dir()):
        stage.unlink()
    elif stage.is_dir():
        try:
            same = json.loads(marker.read_text()).get("source") == source
        except (OSError, ValueError, AttributeError):
            same = False
        if not same:
            shutil.rmtree(stage)
    stage.mkdir(parents=True, exist_ok=True)
    if not marker.is_file():
        marker.write_text(json.dumps({"source": source}) + "\n")


def _finish(stage: Path, final: Path) -> None:
    """Move the complete, verified staging folder to `final` (an empty folder there goes)."""
    if final.is_dir() and not final.is_symlink() and not any(final.iterdir()):
        final.rmdir()
    replace_folder(stage, final)


def _safe_rel(rel: str, where: str) -> str:
    """A remote path, refused unless it is a plain relative path (no `..`, `.`, `//`, `\\`)."""
    try:
        plain = check_relpath(rel, where)
    except ManifestError:
        plain = None
    if plain != rel or rel == ".":
        raise InputError(
            f"{where}: the remote lists {rel!r}, which is not a plain relative path (absolute, "
            "'..', or malformed); refused, nothing downloaded"
        )
    return rel


def _check_listing(rels: list[str], stage: Path, where: str, reserved: tuple[str, ...]) -> None:
    """Refuse hostile or conflicting remote paths before anything is written."""
    names = set()
    for rel in rels:
        _safe_rel(rel, where)
        if any(rel == r or rel.startswith(r + "/") for r in reserved):
            raise InputError(f"{where}: {rel!r} clashes with fetch's own bookkeeping; refused")
        try:
            resolve_inside(stage, rel)
        except ManifestError:
            raise InputError(
                f"{where}: {rel!r} would land outside {stage} (a symlink?); refused"
            ) from None
        names.add(rel)
    for rel in rels:
        parts = rel.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in names:
                raise InputError(
                    f"{where}: {'/'.join(parts[:i])!r} is both a file and a folder; refused"
                )


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


def _held(path: Path, size: int) -> int:
    try:
        return min(path.stat().st_size, size) if path.is_file() else 0
    except OSError:
        return 0


# --- digests -----------------------------------------------------------------------------------


def _md5_only(manifest: Manifest | None, rel: str) -> bool:
    e = manifest.files.get(rel) if manifest is not None else None
    return bool(e is not None and not e.sha256 and e.md5)


def _check_manifest(stage: Path, manifest: Manifest, result: FetchResult) -> None:
    """Compare the digests already taken with the manifest: a listed file missing, of another
    size or another hash fails; files the manifest does not list are fine."""
    got = {f.path: f for f in result.files}
    bad = []
    for rel, e in sorted(manifest.files.items()):
        f = got.get(rel)
        if f is None:
            bad.append(f"{rel} (missing from the download)")
        elif e.size is not None and f.size != e.size:
            bad.append(f"{rel} (size {f.size}, expected {e.size})")
        elif e.sha256 and f.sha256 != e.sha256:
            bad.append(f"{rel} (sha256 {f.sha256}, expected {e.sha256})")
        elif not e.sha256 and e.md5:
            md5 = f.md5 or hash_file(stage / rel, ("md5",))["md5"]
            if md5 != e.md5:
                bad.append(f"{rel} (md5 {md5}, expected {e.md5})")
    if bad:
        raise VerificationError(
            f"{result.source}: the download does not match manifest {manifest.name}: "
            + "; ".join(bad[:3])
            + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            + f"; nothing was written to {result.dir}"
        )


# --- Hugging Face Hub --------------------------------------------------------------------------


def _fetch_hub(
    dest: Location,
    stage: Path,
    revision: str | None,
    manifest: Manifest | None,
    chunk_size: int,
    result: FetchResult,
    progress: Progress,
) -> None:
    from weightprep.remote import hub

    where = str(dest)
    api = hub.api(where)  # token and endpoint as huggingface_hub finds them; no whoami
    info = hub.call(f"{where}: repo info", lambda: api.repo_info(dest.target, revision=revision))
    sha = info.sha
    if not sha:
        raise InputError(f"{where}: the Hub did not say which commit {revision or 'main'} is")
    remote = hub.call(f"{where}: list files", lambda: hub.listing(api, dest.target, sha))
    if not remote:
        raise InputError(f"{where}: no files at revision {revision or 'main'}")
    _check_listing(sorted(remote), stage, where, (MARKER, HF_BOOKKEEPING))
    _prepare_stage(stage, where)
    # leftovers of an earlier revision, and files that are no longer what they were
    listed = set(remote)
    keep = listed | {partial_file(Path(r)).as_posix() for r in listed} | {MARKER}
    for rel in list_files(stage):
        if rel not in keep and not rel.startswith(HF_BOOKKEEPING + "/"):
            (stage / rel).unlink()
    before = {rel: _signature(stage / rel) for rel in remote}
    need = sum(
        r.size - _partial_size(stage, rel)
        for rel, r in remote.items()
        if (before[rel] or (-1, 0))[0] != r.size
    )  # a file cut off by an earlier run continues from its partial file
    check_free_space(stage, need)
    status: dict[str, tuple[str, int]] = {}
    progress.start(need, f"download {where}")
    try:
        for rel in sorted(remote):
            r = remote[rel]
            final = resolve_inside(stage, rel)
            part = partial_file(final)
            if before[rel] is not None and before[rel][0] == r.size and not part.exists():
                continue  # complete from an earlier run: verified below with the rest
            final.unlink(missing_ok=True)
            final.parent.mkdir(parents=True, exist_ok=True)
            if part.is_file() and part.stat().st_size > r.size:
                part.unlink()
            offset = part.stat().st_size if part.is_file() else 0
            got = hub.download(
                dest.target,
                rel,
                sha,
                part,
                offset,
                r.size,
                chunk_size,
                f"{where}: {rel}",
                progress,
            )
            part.rename(final)
            status[rel] = ("resumed" if offset else "downloaded", got)
    finally:
        progress.finish()
    result.revision = sha
    rels = sorted(remote)
    missing = [rel for rel in rels if not (stage / rel).is_file()]
    if missing:
        raise VerificationError(
            f"{where}: the download is missing {', '.join(missing[:3])}"
            + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        )
    progress.start(sum(remote[r].size for r in rels), f"verify {stage.name}")

    def check(rel: str) -> tuple[str, dict[str, str]]:
        r = remote[rel]
        algos = ("sha256",) if r.sha256 else ("sha256", "blob")
        if _md5_only(manifest, rel):
            algos += ("md5",)
        return rel, hash_file(stage / rel, algos, progress)

    bad = []
    try:
        with ThreadPoolExecutor(workers()) as pool:
            digests = dict(pool.map(check, rels))
    finally:
        progress.finish()
    for rel in rels:
        r, d = remote[rel], digests[rel]
        size = (stage / rel).stat().st_size
        why = mismatch(r, Listed(size, d["sha256"], None, d.get("blob")))
        if why is not None:
            bad.append((rel, why))
        how, got = status.get(rel, ("kept", 0))
        result.files.append(FetchedFile(rel, size, d["sha256"], how, got, d.get("md5")))
    if bad:
        for rel, _ in bad:  # so that a re-run downloads them again instead of keeping them
            (stage / rel).unlink(missing_ok=True)
        raise VerificationError(
            f"{where}: downloaded file(s) do not match the Hub's listing at {sha[:12]}: "
            + "; ".join(f"{rel} ({why})" for rel, why in bad[:3])
            + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            + "; nothing was written to "
            + result.dir
        )
    result.verified_against.append(f"{where} listing at {sha} (LFS sha256, git blob ids)")


def _partial_size(stage: Path, rel: str) -> int:
    part = partial_file(stage / rel)
    return part.stat().st_size if part.is_file() else 0


def _drop_hf_bookkeeping(stage: Path) -> None:
    """snapshot_download's `.cache/huggingface/` (download records, locks, the tree listing)."""
    shutil.rmtree(stage / HF_BOOKKEEPING, ignore_errors=True)
    try:
        (stage / ".cache").rmdir()  # only when the repo has nothing of its own in .cache/
    except OSError:
        pass


# --- Google Drive ------------------------------------------------------------------------------


def _fetch_drive(
    dest: Location,
    stage: Path,
    credentials: Path | None,
    chunk_size: int,
    manifest: Manifest | None,
    result: FetchResult,
    progress: Progress,
) -> None:
    from weightprep.remote import drive

    where = str(dest)
    svc = drive.service(credentials)
    root = drive.resolve_root(svc, dest, create=False)
    remote = {} if root is None else drive.walk(svc, root)
    if not remote:
        raise InputError(f"{where}: no such folder, or no files in it")
    rels = sorted(remote)
    _check_listing(rels, stage, where, (MARKER,))
    clash = [rel for rel in rels if _part(rel) in remote]
    if clash:
        raise InputError(f"{where}: {clash[0]!r} and {_part(clash[0])!r} both exist; refused")
    unsure = [rel for rel in rels if not (remote[rel].sha256 or remote[rel].md5)]
    if unsure:
        raise InputError(
            f"{where}: Drive has no checksum for {', '.join(unsure[:3])} (a Google Docs file, "
            "or no binary content?): fetch copies only files it can verify"
        )
    _prepare_stage(stage, where)
    listed = set(rels) | {_part(rel) for rel in rels} | {MARKER}
    for rel in list_files(stage):
        if rel not in listed:
            (stage / rel).unlink()
    held = {
        rel: max(_held(stage / rel, r.size), _held(stage / _part(rel), r.size))
        for rel, r in remote.items()
    }
    check_free_space(stage, sum(r.size for r in remote.values()) - sum(held.values()))
    progress.start(sum(r.size - held[rel] for rel, r in remote.items()), f"fetch {where}")
    try:
        for rel in rels:
            r = remote[rel]
            algos = ("sha256", "md5") if not r.sha256 or _md5_only(manifest, rel) else ("sha256",)
            f = _drive_file(drive, svc, where, rel, r, stage, chunk_size, algos, progress)
            result.files.append(f)
    finally:
        progress.finish()
    result.verified_against.append(f"{where} checksums (sha256Checksum, else md5Checksum)")


def _part(rel: str) -> str:
    """Where the Drive file `rel` is downloaded to in the staging folder (the package's one
    temporary-name scheme, `io.atomic.partial_file`)."""
    return partial_file(Path(rel)).as_posix()


def _drive_file(
    drive, svc, where: str, rel: str, r: Listed, stage: Path, chunk: int, algos, progress
) -> FetchedFile:
    """Download one Drive file into the staging folder (resuming its partial file), verified."""
    final = resolve_inside(stage, rel)
    part = partial_file(final)
    if final.is_file() and not part.exists():
        if final.stat().st_size == r.size:
            d = hash_file(final, algos)
            if _drive_mismatch(r, d) is None:
                return FetchedFile(rel, r.size, d["sha256"], "kept", 0, d.get("md5"))
        final.unlink()
    final.parent.mkdir(parents=True, exist_ok=True)
    spent = 0
    for attempt in (0, 1):
        if part.is_file() and part.stat().st_size > r.size:
            part.unlink()
        offset = part.stat().st_size if part.is_file() else 0
        got, d = drive.download(svc, rel, r, part, offset, chunk, algos, progress)
        spent += got
        why = _drive_mismatch(r, d)
        if why is None:
            part.rename(final)
            status = "resumed" if offset else "downloaded"
            return FetchedFile(rel, r.size, d["sha256"], status, spent, d.get("md5"))
        part.unlink()
        if offset == 0 or attempt == 1:
            raise VerificationError(
                f"{where}/{rel}: the download does not match Drive's record ({why}); removed "
                "from the staging folder, nothing was written to the output"
            )
        # the partial file of an earlier run came from other content: fetch it whole, once
    raise AssertionError


def _drive_mismatch(r: Listed, d: dict[str, str]) -> str | None:
    return mismatch(r, Listed(r.size, d["sha256"], d.get("md5")))
