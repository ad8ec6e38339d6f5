"""Hash folders and verify them against manifests, in parallel, with sizes checked first.

Files are hashed on a thread pool: hashlib releases the GIL while it digests large buffers, and
reads release it too, so N files hash on N cores. Ctrl-C (or one file failing) stops every worker
at its next 8 MiB chunk, not at the end of its file. Tensor digests (sha256 of each tensor's raw
little-endian bytes, with its dtype and shape) do not depend on the container or the sharding.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from weightprep.errors import InputError
from weightprep.io import faults
from weightprep.manifest import FileEntry, Manifest, ManifestError, TensorEntry, check_relpath
from weightprep.progress import NullProgress, Progress

CHUNK = 8 * 2**20

T = TypeVar("T")
R = TypeVar("R")


def hashers(algos: tuple[str, ...], size: int) -> list:
    """One hashlib object per name; "blob" is git's blob id (sha1 of "blob SIZE\0" + content),
    what the Hub lists for files it does not keep in LFS."""
    out = []
    for a in algos:
        if a == "blob":
            h = hashlib.sha1()
            h.update(f"blob {size}\0".encode())
            out.append(h)
        else:
            out.append(hashlib.new(a))
    return out


def hash_file(
    path: Path,
    algos: tuple[str, ...] = ("sha256",),
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> dict[str, str]:
    """Digest a file in 8 MiB chunks into one reused buffer. Example: `hash_file(p)["sha256"]`.

    `stop`, when set by another thread, ends the work early (the result is then meaningless).
    """
    progress = progress or NullProgress()
    hs = hashers(algos, path.stat().st_size)
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            if stop is not None and stop.is_set():
                break
            for h in hs:
                h.update(view[:n])
            progress.advance(n)
            faults.reached("hash", n)
    return {a: h.hexdigest() for a, h in zip(algos, hs, strict=True)}


def list_files(folder: Path) -> list[str]:
    """Every regular file under `folder`, as sorted POSIX relative paths (symlinks not followed)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for fn in filenames:
            p = Path(dirpath) / fn
            if p.is_file() and not p.is_symlink():
                out.append(p.relative_to(folder).as_posix())
    return sorted(out)


def workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def map_stoppable(fn: Callable[[T, threading.Event], R], items: Sequence[T]) -> list[R]:
    """`[fn(x, stop) for x in items]` on `workers()` threads, in order; `fn` checks `stop` often.

    A thread pool that is left by an exception (Ctrl-C in the main thread, an error in one
    file) still waits for every running task, and the interpreter joins them at exit too: a
    40 GiB file would be hashed to its end first. Here the first error or interrupt sets `stop`,
    unstarted tasks are cancelled, and the pool is left once the running ones have seen it.
    Example: `map_stoppable(lambda p, stop: hash_file(p, stop=stop), paths)`.
    """
    stop = threading.Event()
    pool = ThreadPoolExecutor(workers())
    try:
        futures = [pool.submit(fn, x, stop) for x in items]
        pending = set(futures)
        while pending:  # short waits: the main thread stays responsive to signals
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
            for f in done:
                f.result()  # the first failure, raised here
        return [f.result() for f in futures]
    except BaseException:
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def hash_tree(
    folder: Path, progress: Progress | None = None, algos: tuple[str, ...] = ("sha256",)
) -> dict[str, FileEntry]:
    """Size and digest of every file under `folder`, hashed in parallel."""
    progress = progress or NullProgress()
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    return hash_files(folder, list_files(folder), progress, algos)


def hash_files(
    folder: Path,
    rels: list[str],
    progress: Progress | None = None,
    algos: tuple[str, ...] = ("sha256",),
) -> dict[str, FileEntry]:
    """Size and digest of `folder/rel` for each of `rels`, hashed in parallel."""
    progress = progress or NullProgress()
    sizes = {r: (folder / r).stat().st_size for r in rels}
    progress.start(sum(sizes.values()), f"hash {folder.name}")
    try:
        digests = map_stoppable(lambda r, stop: hash_file(folder / r, algos, progress, stop), rels)
    finally:
        progress.finish()
    return {r: FileEntry(size=sizes[r], **d) for r, d in zip(rels, digests, strict=True)}


def resolve_inside(folder: Path, rel: str) -> Path:
    """`folder/rel`, refusing anything (such as a symlink) that resolves outside `folder`."""
    from weightprep.io.atomic import is_inside

    check_relpath(rel, str(folder))
    if not is_inside(folder / rel, folder):
        raise ManifestError(f"{folder / rel}: resolves outside {folder} (symlink?); refused")
    return folder / rel


@dataclass(frozen=True)
class Result:
    path: str
    status: str  # OK | MISMATCH | MISSING | EXTRA
    detail: str = ""


@dataclass(frozen=True)
class VerifyReport:
    folder: Path
    manifest: str
    results: tuple[Result, ...]
    strict: bool

    @property
    def ok(self) -> bool:
        bad = {"MISMATCH", "MISSING"} | ({"EXTRA"} if self.strict else set())
        return not any(r.status in bad for r in self.results)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)


def verify_files(
    folder: Path,
    manifest: Manifest,
    *,
    strict: bool = False,
    ignore: frozenset[str] = frozenset(),
    progress: Progress | None = None,
) -> VerifyReport:
    """Compare `folder` with `manifest`: sizes first (cheap), then hashes of same-size files.

    `ignore`: relative paths never reported EXTRA (the manifest file itself, when it lives in
    the folder it describes). Example: `verify_files(Path("out"), read_manifest(Path("out/SHA256SUMS")))`.
    """
    progress = progress or NullProgress()
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    paths = {rel: resolve_inside(folder, rel) for rel in manifest.files}  # all refused up front
    results: dict[str, Result] = {}
    todo: list[str] = []
    for rel, e in manifest.files.items():
        p = paths[rel]
        if not p.is_file():
            results[rel] = Result(rel, "MISSING")
            continue
        size = p.stat().st_size
        if e.size is not None and size != e.size:
            results[rel] = Result(rel, "MISMATCH", f"size {size}, expected {e.size}")
        else:
            todo.append(rel)
    progress.start(sum(paths[r].stat().st_size for r in todo), f"verify {folder.name}")

    def check(rel: str, stop: threading.Event) -> Result:
        e = manifest.files[rel]
        algo = "sha256" if e.sha256 else "md5"
        got = hash_file(paths[rel], (algo,), progress, stop)[algo]
        want = e.sha256 or e.md5
        return (
            Result(rel, "OK", algo)
            if got == want
            else Result(rel, "MISMATCH", f"{algo} {got}, expected {want}")
        )

    try:
        for r in map_stoppable(check, todo):
            results[r.path] = r
    finally:
        progress.finish()
    listed = set(manifest.files)
    for rel in list_files(folder):
        if rel not in listed and rel not in ignore:
            results[rel] = Result(rel, "EXTRA")
    order = sorted(results)
    return VerifyReport(folder, manifest.name, tuple(results[r] for r in order), strict)


def tensor_digest(t) -> TensorEntry:
    from weightprep.io.safetensors_writer import tensor_bytes

    return TensorEntry(
        str(t.dtype).removeprefix("torch."),
        tuple(t.shape),
        hashlib.sha256(tensor_bytes(t)).hexdigest(),
    )


def tensor_digests(folder: Path, progress: Progress | None = None) -> dict[str, TensorEntry]:
    """Digest of every tensor in the folder's weight files, read one at a time.

    The weight files are those a loader reads (`io.reader.weight_files`: safetensors when present,
    else `.bin`/`.pth`, top level); the same tensor name in two files is an error.
    """
    from weightprep.io.reader import CheckpointReader

    progress = progress or NullProgress()
    out: dict[str, TensorEntry] = {}
    with CheckpointReader(folder) as r:
        for name in r.info:
            t = r[name]
            out[name] = tensor_digest(t)
            progress.advance(t.numel() * t.element_size(), name)
    return out


def verify_tensors(
    folder: Path, manifest: Manifest, progress: Progress | None = None
) -> tuple[Result, ...]:
    if not manifest.tensors:
        raise ManifestError(f"{manifest.name}: has no tensors: section to check against")
    got = tensor_digests(folder, progress)
    res = []
    for name, want in sorted(manifest.tensors.items()):
        g = got.get(name)
        if g is None:
            res.append(Result(name, "MISSING"))
        elif g != want:
            res.append(
                Result(
                    name,
                    "MISMATCH",
                    f"{g.dtype}{list(g.shape)}, expected {want.dtype}{list(want.shape)}"
                    if (g.dtype, g.shape) != (want.dtype, want.shape)
                    else "content differs",
                )
            )
        else:
            res.append(Result(name, "OK"))
    res += [Result(n, "EXTRA") for n in sorted(set(got) - set(manifest.tensors))]
    return tuple(res)
