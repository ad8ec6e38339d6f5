"""Read a model folder's tensors one at a time, whatever the container.

safetensors (sharded or not) through `safe_open` (memory-mapped, header-only until a tensor is
asked for); `.bin`/`.pth` (sharded or not) through `torch.load(mmap=True, weights_only=True)`.
When a folder has both, safetensors wins, as in transformers.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch

from weightprep.errors import InputError
from weightprep.io.pth import load_state_dict

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


class CheckpointReader:
    """`reader[name]` -> tensor, reading only that tensor. Use as a context manager."""

    def __init__(self, folder: Path) -> None:
        if not folder.is_dir():
            raise InputError(f"{folder}: not a folder")
        self.folder = folder
        self.files = weight_files(folder)
        if not self.files:
            raise InputError(f"{folder}: no *.safetensors, *.bin or *.pth weight files")
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
            raise InputError(f"{f}: not a readable safetensors file ({exc})") from exc
        self._st[f] = h
        for k in h.keys():
            sl = h.get_slice(k)
            code = sl.get_dtype()
            if code not in SAFETENSORS_DTYPES:
                raise InputError(f"{f}: tensor {k} has unsupported dtype {code}")
            self._add(k, TensorInfo(f, SAFETENSORS_DTYPES[code], tuple(sl.get_shape())))

    def _add(self, name: str, info: TensorInfo) -> None:
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
