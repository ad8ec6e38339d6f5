"""Publish to a filesystem path: a mounted Drive in Colab, a network share, a USB disk.

Each file is copied under a temporary name beside its final one (`.NAME.partial`, the package's
one scheme: `io.atomic.partial_file`),
hashed while it is read (so the source is checked against its manifest in the same pass),
flushed with `fsync`, dropped from the page cache and read back, and renamed only when the
read-back hash equals the source's. On a network mount the read-back is the only proof that the
bytes arrived; a killed run leaves only a temporary name, which the next run replaces. A file
already there with the same size and sha256 is left alone.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from weightprep.checksum import hash_file
from weightprep.errors import DiskSpaceError, InputError, VerificationError
from weightprep.io import faults
from weightprep.io.atomic import (
    check_free_space,
    fsync_dir,
    is_inside,
    output_lock,
    partial_file,
)
from weightprep.progress import NullProgress, Progress
from weightprep.publish.outcome import FileOutcome
from weightprep.publish.source import LocalFile, Source
from weightprep.remote.listing import Listed, mismatch

CHUNK = 8 * 2**20


def _drop_cache(fd: int) -> None:
    if hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass


def copy_verified(f: LocalFile, final: Path, progress: Progress) -> int:
    """Copy, check the source hash, fsync, read back, rename. Returns bytes written."""
    tmp = partial_file(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    written = 0
    try:
        with open(f.path, "rb", buffering=0) as src, open(tmp, "wb", buffering=0) as dst:
            buf = bytearray(CHUNK)
            view = memoryview(buf)
            # hash on a second thread while the next chunk is read and written
            pending: threading.Thread | None = None
            spare = bytearray(CHUNK)
            while n := src.readinto(buf):
                dst.write(view[:n])
                if pending is not None:
                    pending.join()
                spare, buf = buf, spare
                view = memoryview(buf)
                chunk = memoryview(spare)[:n]
                pending = threading.Thread(target=h.update, args=(chunk,))
                pending.start()
                written += n
                progress.advance(n, f.rel)
                faults.reached("publish-copy", n)
            if pending is not None:
                pending.join()
            os.fsync(dst.fileno())
            _drop_cache(dst.fileno())
        if h.hexdigest() != f.sha256:
            raise VerificationError(
                f"{f.path}: sha256 {h.hexdigest()} while copying, but its manifest says "
                f"{f.sha256}; the source changed or is corrupt: nothing was published for it"
            )
        back = hash_file(tmp)["sha256"]
        if back != f.sha256:
            raise VerificationError(
                f"{final}: the copy reads back as sha256 {back}, not {f.sha256}: the destination "
                "did not store the bytes intact"
            )
        os.replace(tmp, final)
        fsync_dir(final.parent)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno == 28:  # ENOSPC
            raise DiskSpaceError(f"{final.parent}: disk full while copying {f.rel}") from None
        raise
    return written


def publish_folder(
    source: Source, dest: Path, *, dry_run: bool = False, progress: Progress | None = None
) -> list[FileOutcome]:
    progress = progress or NullProgress()
    if is_inside(dest, source.folder):
        raise InputError(f"{dest}: is inside the model folder {source.folder}")
    if dest.exists() and not dest.is_dir():
        raise InputError(f"{dest}: exists and is not a folder")
    plan: list[tuple[LocalFile, Path, str]] = []
    for f in source.files:
        final = dest / f.rel
        if final.is_file() and final.stat().st_size == f.size:
            there = Listed(f.size, hash_file(final)["sha256"])
            status = (
                "up-to-date" if mismatch(Listed(f.size, f.sha256), there) is None else "replace"
            )
        else:
            status = "replace" if final.exists() else "send"
        plan.append((f, final, status))
    need = sum(f.size for f, _, s in plan if s != "up-to-date")
    if dry_run:
        return [
            FileOutcome(f.rel, f.sha256, f.size, s if s == "up-to-date" else f"would-{s}")
            for f, _, s in plan
        ]
    if need:
        check_free_space(dest, need)
    progress.start(need, f"copy to {dest}")
    out = []
    with output_lock(dest.absolute()), _finishing(progress):
        for f, final, status in plan:
            if status == "up-to-date":
                out.append(FileOutcome(f.rel, f.sha256, f.size, status))
                continue
            sent = copy_verified(f, final, progress)
            out.append(
                FileOutcome(
                    f.rel, f.sha256, f.size, "sent" if status == "send" else "replaced", sent
                )
            )
    return out


@contextmanager
def _finishing(progress: Progress) -> Iterator[None]:
    try:
        yield
    finally:
        progress.finish()
