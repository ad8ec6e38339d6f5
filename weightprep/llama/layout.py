"""Find the pieces of Meta's download as it comes.

Meta's LLaMA-1 download is a root with `tokenizer.model` (+ `tokenizer_checklist.chk`) and one
folder per size (`7B/ 13B/ 30B/ 65B/`), each with `params.json` and `consolidated.NN.pth`;
LLaMA-2's uses folders like `llama-2-7b/`. Users also point at a size folder directly, with the
tokenizer beside the weights or one level up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from weightprep.errors import InputError

SHARD_RE = re.compile(r"^consolidated\.(\d{2})\.pth$")


@dataclass(frozen=True)
class MetaCheckpoint:
    size_dir: Path
    params: Path
    shards: tuple[Path, ...]
    tokenizer: Path


def _size_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / "params.json").is_file())


def _matches(folder: Path, size: str) -> bool:
    name, size = folder.name.lower(), size.lower()
    return name == size or name.endswith("-" + size)


def locate(input_path: Path, model_size: str | None = None) -> MetaCheckpoint:
    """Resolve INPUT (a Meta root or a size folder) to its params, shards and tokenizer."""
    if not input_path.is_dir():
        raise InputError(f"{input_path}: not a folder (expected Meta's LLaMA download)")
    if (input_path / "params.json").is_file() or any(input_path.glob("consolidated.*.pth")):
        size_dir = input_path
        if model_size and not _matches(size_dir, model_size):
            raise InputError(f"{input_path}: is a size folder, not {model_size}; drop --model-size")
    else:
        dirs = _size_dirs(input_path)
        if model_size:
            dirs = [d for d in dirs if _matches(d, model_size)]
            if not dirs:
                found = ", ".join(d.name for d in _size_dirs(input_path)) or "none"
                raise InputError(
                    f"{input_path}: no {model_size} folder with a params.json (found: {found})"
                )
        if not dirs:
            raise InputError(
                f"{input_path}: no params.json here or in any subfolder; "
                "point INPUT at Meta's download (the folder holding 7B/ or tokenizer.model)"
            )
        if len(dirs) > 1:
            names = ", ".join(d.name for d in dirs)
            raise InputError(
                f"{input_path}: holds several models ({names}); pick one with --model-size"
            )
        size_dir = dirs[0]
    params = size_dir / "params.json"
    if not params.is_file():
        raise InputError(f"{params}: params.json not found (Meta ships one beside the .pth files)")
    numbered = {}
    for p in size_dir.glob("consolidated.*.pth"):
        m = SHARD_RE.match(p.name)
        if m:
            numbered[int(m.group(1))] = p
    if not numbered:
        raise InputError(f"{size_dir}: no consolidated.NN.pth weight files")
    missing = [f"consolidated.{i:02d}.pth" for i in range(max(numbered) + 1) if i not in numbered]
    if missing:
        raise InputError(f"{size_dir}: shard(s) missing: {', '.join(missing)}")
    candidates = [size_dir / "tokenizer.model", size_dir.parent / "tokenizer.model"]
    tokenizer = next((c for c in candidates if c.is_file()), None)
    if tokenizer is None:
        raise InputError(
            f"{size_dir}: tokenizer.model not found here or in {size_dir.parent} "
            "(Meta's download keeps it beside the size folders)"
        )
    return MetaCheckpoint(size_dir, params, tuple(numbered[i] for i in sorted(numbered)), tokenizer)
