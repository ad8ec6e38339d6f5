"""The small files every weight-writing command adds to its staged output folder."""

from __future__ import annotations

import hashlib
from pathlib import Path

from weightprep.manifest import FileEntry, Manifest, TensorEntry, dump_yaml

MANIFEST_NAME = "manifest.yaml"  # files + tensor digests, for `weightprep verify --tensors`
SUMS_NAME = "SHA256SUMS"  # for `sha256sum -c`


def write_files(stage: Path, files: dict[str, str], extra: dict[str, bytes]) -> None:
    """Write `extra` ({name: bytes}) into `stage`, adding each file's sha256 to `files`."""
    for name, data in extra.items():
        (stage / name).write_bytes(data)
        files[name] = hashlib.sha256(data).hexdigest()


def file_entries(stage: Path, files: dict[str, str]) -> dict[str, FileEntry]:
    return {f: FileEntry((stage / f).stat().st_size, h) for f, h in files.items()}


def seal(
    stage: Path,
    files: dict[str, str],
    tensors: dict[str, TensorEntry] | None,
    name: str,
    description: str = "",
) -> None:
    """Write `manifest.yaml` (sizes, file and tensor digests), then `SHA256SUMS` of everything."""
    doc = Manifest(name, file_entries(stage, files), description, tensors=tensors or {})
    write_files(stage, files, {MANIFEST_NAME: dump_yaml(doc).encode()})
    # Two spaces: text mode, the form `sha256sum -c` reads everywhere.
    sums = "".join(f"{h}  {f}\n" for f, h in sorted(files.items())).encode()
    (stage / SUMS_NAME).write_bytes(sums)
