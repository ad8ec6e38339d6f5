"""Check Meta's download against its own `checklist.chk` files (md5) or a named manifest.

Sizes are compared up front (a truncated shard fails before anything is written); the hashes
run on a background thread while the conversion reads the same files, so the page cache serves
both and the check costs CPU, not a second pass over the disk.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from weightprep.checksum import hash_file, resolve_inside
from weightprep.errors import VerificationError
from weightprep.llama.layout import MetaCheckpoint
from weightprep.manifest import FileEntry, Manifest, ManifestError, read_manifest


@dataclass(frozen=True)
class Check:
    path: Path
    algo: str
    expected: str
    size: int | None
    source: str  # the checklist or manifest it comes from


def _checklist(folder: Path, name: str) -> Manifest | None:
    chk = folder / name
    if not chk.is_file():
        return None
    try:
        return read_manifest(chk)
    except ManifestError as exc:
        raise VerificationError(f"{chk}: unreadable checklist ({exc})") from exc


def _entry_check(path: Path, e: FileEntry, source: str) -> Check:
    algo = "sha256" if e.sha256 else "md5"
    return Check(path, algo, e.sha256 or e.md5 or "", e.size, source)


def plan_checks(
    ckpt: MetaCheckpoint, manifest: Manifest | None, use_checklists: bool
) -> list[Check]:
    """What to check: each file the conversion reads that a checklist or the manifest lists."""
    checks: list[Check] = []
    if use_checklists:
        used = {ckpt.size_dir: [*ckpt.shards, ckpt.params], ckpt.tokenizer.parent: [ckpt.tokenizer]}
        names = {ckpt.size_dir: "checklist.chk", ckpt.tokenizer.parent: "tokenizer_checklist.chk"}
        for folder, files in used.items():
            m = _checklist(folder, names[folder])
            if m is None:
                continue
            for f in files:
                if f.name in m.files:
                    checks.append(_entry_check(f, m.files[f.name], str(folder / names[folder])))
    if manifest is not None:
        root = (
            ckpt.tokenizer.parent
            if ckpt.tokenizer.parent != ckpt.size_dir
            else ckpt.size_dir.parent
        )
        for rel, e in manifest.files.items():
            checks.append(_entry_check(resolve_inside(root, rel), e, f"manifest {manifest.name}"))
    return checks


class InputVerifier:
    """Sizes now; hashes in the background; `result()` raises on any mismatch."""

    def __init__(self, checks: list[Check]) -> None:
        self.checks = checks
        bad = []
        for c in checks:
            if not c.path.is_file():
                bad.append(f"{c.path}: missing (listed in {c.source})")
            elif c.size is not None and c.path.stat().st_size != c.size:
                bad.append(f"{c.path}: size {c.path.stat().st_size}, {c.source} says {c.size}")
        if bad:
            raise VerificationError("input does not match its checksums: " + "; ".join(bad))
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify-input")
        self._future: Future[list[str]] = self._pool.submit(self._run)

    def _run(self) -> list[str]:
        bad = []
        for c in self.checks:
            got = hash_file(c.path, (c.algo,), stop=self._stop)[c.algo]
            if got != c.expected:
                bad.append(f"{c.path}: {c.algo} {got}, {c.source} says {c.expected}")
        return bad

    def result(self) -> list[str]:
        """Wait for the hashes; return what was verified, or raise VerificationError."""
        try:
            bad = self._future.result()
        except BaseException:  # Ctrl-C while waiting: stop the hashing, or shutdown waits for it
            self._stop.set()
            raise
        finally:
            self._pool.shutdown()
        if bad:
            raise VerificationError("input does not match its checksums: " + "; ".join(bad))
        return [f"{c.path.name}: {c.algo} OK ({c.source})" for c in self.checks]

    def cancel(self) -> None:
        """Stop hashing (the conversion failed or was interrupted)."""
        self._stop.set()
        self._pool.shutdown(wait=True)
