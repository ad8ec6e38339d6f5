"""Tiny fine-tunes and deltas in the formats the Hub holds them (lmsys: fp16 .bin shards)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from weightprep.io.reader import CheckpointReader

TOKENIZER_FILES = (
    "tokenizer.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def read_all(folder: Path) -> dict[str, torch.Tensor]:
    with CheckpointReader(folder) as r:
        return {k: r[k].clone() for k in r.info}


def save_bin_shards(tensors: dict[str, torch.Tensor], folder: Path, shards: int) -> None:
    """`pytorch_model-0000N-of-0000M.bin` + index, as transformers 4.28 saved lmsys's deltas."""
    folder.mkdir(parents=True)
    names = list(tensors)
    per = -(-len(names) // shards)
    weight_map = {}
    for i in range(shards):
        fname = (
            f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin" if shards > 1 else "pytorch_model.bin"
        )
        part = {n: tensors[n].contiguous().clone() for n in names[i * per : (i + 1) * per]}
        torch.save(part, folder / fname)
        weight_map.update(dict.fromkeys(part, fname))
    if shards > 1:
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        (folder / "pytorch_model.bin.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
        )


def copy_side_files(src: Path, dst: Path) -> None:
    for name in ("config.json", "generation_config.json", *TOKENIZER_FILES):
        if (src / name).exists():
            shutil.copy(src / name, dst / name)


def make_tuned(base: Path, folder: Path, seed: int = 1, scale: float = 0.01) -> Path:
    """A 'fine-tune' of `base`: every tensor nudged by seeded noise, saved as safetensors."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    tensors = {
        k: (t.float() + scale * torch.randn(t.shape, generator=g)).half()
        for k, t in read_all(base).items()
    }
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    copy_side_files(base, folder)
    return folder


def make_lmsys_delta(base: Path, tuned: Path, folder: Path, shards: int = 2) -> Path:
    """tuned - base in float16 (FastChat's make_delta arithmetic), saved as lmsys's are."""
    b, t = read_all(base), read_all(tuned)
    save_bin_shards({k: t[k] - b[k] for k in b}, folder, shards)
    copy_side_files(tuned, folder)
    return folder
