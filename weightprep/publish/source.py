"""What is about to be published: every file of MODEL_DIR with its size and sha256, verified.

The folder's own `SHA256SUMS` (or `manifest.yaml`), as `convert-llama` / `apply-delta` write
them, is checked first; a folder that fails is refused (exit 1). Files it does not list (a
README the user added) and folders with no manifest at all are hashed, and the result says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from weightprep.checksum import hash_files, list_files, verify_files
from weightprep.errors import InputError, VerificationError
from weightprep.io.atomic import is_partial
from weightprep.io.outputs import MANIFEST_NAME, SUMS_NAME
from weightprep.manifest import FileEntry, read_manifest
from weightprep.progress import Progress


@dataclass(frozen=True)
class LocalFile:
    rel: str
    path: Path
    size: int
    sha256: str


@dataclass(frozen=True)
class Source:
    folder: Path
    files: tuple[LocalFile, ...]
    checked_by: str  # "SHA256SUMS", "manifest.yaml" or "" (no manifest: hashed)
    hashed: tuple[str, ...]  # files no manifest vouched for, hashed here

    @property
    def total(self) -> int:
        return sum(f.size for f in self.files)

    def by_rel(self) -> dict[str, LocalFile]:
        return {f.rel: f for f in self.files}


def manifest_file(folder: Path) -> Path | None:
    for name in (SUMS_NAME, MANIFEST_NAME):
        if (folder / name).is_file():
            return folder / name
    return None


def prepare(folder: Path, progress: Progress | None = None, *, verify: bool = True) -> Source:
    """Every file under `folder`, with sha256, after checking the folder against its manifest.

    `verify=False` trusts the manifest's digests without reading the files (the folder
    destination checks them while copying, in the same pass)."""
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    rels = [r for r in list_files(folder) if not is_partial(r)]
    if not rels:
        raise InputError(f"{folder}: no files to publish")
    mpath = manifest_file(folder)
    known: dict[str, FileEntry] = {}
    if mpath is not None:
        m = read_manifest(mpath)
        if verify:
            report = verify_files(folder, m, ignore=frozenset({mpath.name}), progress=progress)
            if not report.ok:
                bad = [
                    f"{r.path} ({r.status.lower()}{': ' + r.detail if r.detail else ''})"
                    for r in report.results
                    if r.status in ("MISMATCH", "MISSING")
                ]
                raise VerificationError(
                    f"{folder}: does not match its {mpath.name}: {'; '.join(bad[:3])}"
                    + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
                    + "; refusing to publish it"
                )
        known = {r: e for r, e in m.files.items() if e.sha256}
    rest = [r for r in rels if r not in known]
    hashed = hash_files(folder, rest) if rest else {}
    files = []
    for r in rels:
        e = known.get(r) or hashed[r]
        size = (folder / r).stat().st_size
        files.append(LocalFile(r, folder / r, size, e.sha256))
    own = {mpath.name} if mpath else set()  # the manifest does not list itself
    return Source(folder, tuple(files), mpath.name if mpath else "", tuple(sorted(set(rest) - own)))
