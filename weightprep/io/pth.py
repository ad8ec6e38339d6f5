"""Open PyTorch `.pth`/`.bin` checkpoints safely and lazily.

Checkpoints are untrusted: `weights_only=True` restricts unpickling to tensors and plain
containers, so a malicious pickle is refused rather than executed. `mmap=True` maps the zip
archive's storages instead of reading them, so opening a 13 GB shard costs no memory until a
tensor is touched (and then only page cache, which the kernel can reclaim).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from weightprep.errors import CheckpointError


def load_checkpoint(path: Path) -> object:
    """Map a checkpoint into memory and return what it holds (tensors in plain containers).

    Raises `CheckpointError` naming the file for anything that is not a complete checkpoint of
    tensors, numbers, strings and plain containers.
    """
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: file is empty (interrupted download?)")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path}: not a complete PyTorch zip checkpoint (truncated or corrupt download?); "
            "check it against its checklist.chk with `weightprep verify`"
        )
    try:
        obj = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: refused to load: the pickle holds objects other than tensors ({first}); "
            "it was not executed"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({first})") from exc
    return obj


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Map a checkpoint into memory and return its flat `{name: tensor}` dict.

    Raises `CheckpointError` naming the file for anything that is not a complete, tensors-only
    checkpoint. Example: `load_state_dict(Path("7B/consolidated.00.pth"))["norm.weight"]`.
    """
    obj = load_checkpoint(path)
    if not isinstance(obj, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise CheckpointError(f"{path}: expected a flat dict of name -> tensor")
    return obj
