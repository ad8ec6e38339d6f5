"""Read a model folder's tensors one at a time, whatever the container.

safetensors (sharded or not) through `safe_open` (memory-mapped, header-only until a tensor is
asked for); `.bin`/`.pth` (sharded or not) through `torch.load(mmap=True, weights_only=True)`.
When a folder has both, safetensors wins, as in transformers.

Folders come from strangers: each weight file must be a regular file in the folder (a symlink
may point into the Hugging Face cache's `blobs/`, as snapshot folders do), an index
(`model.safetensors.index.json`, `pytorch_model.bin.index.json`) may name only such files, and
tensor names must be short printable text, so that every message about them is one line.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch

from weightprep.errors import InputError, one_line
from weightprep.io.pth import check_tensor_name, load_state_dict

MAX_INDEX_BYTES = 64 * 2**20  # a 405B model's index is about 100 KB

SAFETENSORS_DTYPES = {
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float64,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


@dataclass(frozen=True)
class TensorInfo:
    file: Path
    dtype: torch.dtype
    shape: tuple[int, ...]


def weight_files(folder: Path) -> list[Path]:
    """The weight files a loader would read: `*.safetensors` if any, else `*.bin`/`*.pth`."""
    st = sorted(folder.glob("*.safetensors"))
    if st:
        return st
    return sorted([*folder.glob("*.bin"), *folder.glob("*.pth")])


def _resolves_inside(folder: Path, f: Path) -> bool:
    """`f` is, or links to, a file inside `folder`, or inside the HF cache's `blobs/` when
    `folder` is a snapshot (`models--X/snapshots/REV/f -> ../../blobs/SHA`)."""
    root, real = folder.resolve(), f.resolve()
    if root in real.parents:
        return True
    snapshots = next((a for a in root.parents if a.name == "snapshots"), None)
    return snapshots is not None and real.parent == snapshots.parent / "blobs"


def check_weight_file(folder: Path, f: Path) -> None:
    """Refuse a weight file that is not a regular file (a FIFO would hang the read, a device
    never ends) or that resolves outside `folder` (a symlink planted in a download)."""
    if not f.is_file():
        kind = (
            "a folder"
            if f.is_dir()
            else "a broken symlink"
            if not f.exists()
            else "not a regular file (a FIFO or device?)"
        )
        raise InputError(f"{f}: {kind}, not a weight file; refused")
    if not _resolves_inside(folder, f):
        raise InputError(f"{f}: resolves outside {folder} (symlink to {f.resolve()}); refused")


def check_index(folder: Path, files: list[Path]) -> None:
    """Every shard a `*.index.json` beside `files` names must be one of `files`: a plain file
    name in the folder, present. transformers follows the index, so one naming `../x` or a
    missing shard would load something other than what we read."""
    from weightprep.manifest import check_relpath

    suffixes = {f.suffix for f in files}
    names = {f.name for f in files}
    for idx in sorted(folder.glob("*.index.json")):
        if Path(idx.name.removesuffix(".index.json")).suffix not in suffixes:
            continue
        if not idx.is_file() or idx.stat().st_size > MAX_INDEX_BYTES:
            raise InputError(f"{idx}: not a regular file of at most {MAX_INDEX_BYTES} bytes")
        try:
            doc = json.loads(idx.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise InputError(f"{idx}: unreadable index ({one_line(exc)})") from None
        wmap = doc.get("weight_map") if isinstance(doc, dict) else None
        if not isinstance(wmap, dict):
            raise InputError(f"{idx}: no weight_map object (tensor name -> shard file)")
        for tensor, shard in wmap.items():
            where = f"{idx}: weight_map[{str(tensor)[:200]!r}]"
            if not isinstance(shard, str) or len(shard) > 255:
                raise InputError(
                    f"{where}: the shard must be a file name of at most 255 characters"
                )
            check_relpath(shard, where)  # absolute, `..`, control characters: ManifestError
            if shard not in names:
                p = folder / shard
                why = (
                    "missing"
                    if not (p.exists() or p.is_symlink())
                    else "not a weight file in the folder itself"
                )
                raise InputError(f"{where}: shard {shard!r} is {why}")


class CheckpointReader:
    """`reader[name]` -> tensor, reading only that tensor. Use as a context manager."""

    def __init__(self, folder: Path) -> None:
        if not folder.is_dir():
            raise InputError(f"{folder}: not a folder")
        self.folder = folder
        self.files = weight_files(folder)
        if not self.files:
            raise InputError(f"{folder}: no *.safetensors, *.bin or *.pth weight files")
        for f in self.files:
            check_weight_file(folder, f)
        check_index(folder, self.files)
        self._stack = ExitStack()
        self._st: dict[Path, object] = {}
        self._sd: dict[Path, dict[str, torch.Tensor]] = {}
        self.info: dict[str, TensorInfo] = {}
        for f in self.files:
            if f.suffix == ".safetensors":
                self._open_safetensors(f)
            else:
                sd = load_state_dict(f)
                self._sd[f] = sd
                for k, t in sd.items():
                    self._add(k, TensorInfo(f, t.dtype, tuple(t.shape)))

    def _open_safetensors(self, f: Path) -> None:
        from safetensors import safe_open

        try:
            h = self._stack.enter_context(safe_open(str(f), framework="pt"))
        except Exception as exc:  # safetensors raises its own SafetensorError
            raise InputError(f"{f}: not a readable safetensors file ({one_line(exc)})") from exc
        self._st[f] = h
        for k in h.keys():
            sl = h.get_slice(k)
            code = sl.get_dtype()
            if code not in SAFETENSORS_DTYPES:
                check_tensor_name(k, f)
                raise InputError(f"{f}: tensor {k} has unsupported dtype {code}")
            self._add(k, TensorInfo(f, SAFETENSORS_DTYPES[code], tuple(sl.get_shape())))

    def _add(self, name: str, info: TensorInfo) -> None:
        check_tensor_name(name, info.file)
        if name in self.info:
            raise InputError(f"{info.file}: tensor {name} is also in {self.info[name].file}")
        self.info[name] = info

    def __getitem__(self, name: str) -> torch.Tensor:
        f = self.info[name].file
        if f in self._st:
            return self._st[f].get_tensor(name)  # type: ignore[attr-defined]
        return self._sd[f][name]

    def __enter__(self) -> CheckpointReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()
        self._sd.clear()
