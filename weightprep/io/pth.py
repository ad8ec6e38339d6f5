"""Open PyTorch `.pth`/`.bin` checkpoints safely and lazily.

Checkpoints are untrusted: `weights_only=True` restricts unpickling to tensors and plain
containers, so a malicious pickle is refused rather than executed. `mmap=True` maps the zip
archive's storages instead of reading them, so opening a 13 GB shard costs no memory until a
tensor is touched (and then only page cache, which the kernel can reclaim).
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import torch

from weightprep.errors import CheckpointError, one_line  # noqa: F401 (re-exported)

MAX_NAME = 1000


def check_tensor_name(name: object, path: Path) -> None:
    """Tensor names are short printable text; refuse others, which no real checkpoint has and
    which would break (or forge) the one-line messages that quote them."""
    if not isinstance(name, str) or len(name) > MAX_NAME or not name.isprintable():
        shown = repr(name)[:100]
        raise CheckpointError(
            f"{path}: tensor name {shown} is not printable text of at most {MAX_NAME} characters"
        )


def _refused_global(exc: Exception) -> str:
    """What a weights-only unpickler refused, from torch's long message (which advises
    `weights_only=False`, i.e. running the pickle: not advice to pass on)."""
    m = re.search(r"GLOBAL ([\w.]+)", str(exc))
    return f"it imports {m.group(1)}" if m else type(exc).__name__


def load_checkpoint(path: Path) -> object:
    """Map a checkpoint into memory and return what it holds (tensors in plain containers).

    Raises `CheckpointError` naming the file for anything that is not a complete checkpoint of
    tensors, numbers, strings and plain containers.
    """
    if not path.is_file():
        if path.is_dir():
            raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
        if path.exists():
            raise CheckpointError(f"{path}: not a regular file (a FIFO or device?)")
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
        raise CheckpointError(
            f"{path}: refused to load: the pickle holds objects other than tensors "
            f"({_refused_global(exc)}); it was not executed"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({one_line(exc)})") from exc
    return obj


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Map a checkpoint into memory and return its flat `{name: tensor}` dict.

    Raises `CheckpointError` naming the file for anything that is not a complete, tensors-only
    checkpoint. Example: `load_state_dict(Path("7B/consolidated.00.pth"))["norm.weight"]`.
    """
    obj = load_checkpoint(path)
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{path}: expected a flat dict of name -> tensor, got a {type(obj).__name__}"
        )
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(
                f"{path}: expected a flat dict of name -> tensor; {repr(k)[:100]} holds a "
                f"{type(v).__name__}"
            )
        check_tensor_name(k, path)
    return obj
