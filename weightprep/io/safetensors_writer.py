"""A streaming, size-capped, sharded safetensors writer that hashes while it writes.

`safetensors.torch.save_file` needs a whole shard in memory; this writes the documented file
format (https://github.com/huggingface/safetensors#format: u64 little-endian header length,
JSON header with dtype/shape/data_offsets, then the raw little-endian tensor bytes) one tensor at
a time, because every header can be planned from shapes alone before any data is read.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from math import prod
from pathlib import Path

import torch

from weightprep.io import faults
from weightprep.manifest import TensorEntry
from weightprep.progress import NullProgress, Progress

DTYPE_CODES = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32"}
INDEX_NAME = "model.safetensors.index.json"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return prod(self.shape) * self.dtype.itemsize


def dtype_name(dtype: torch.dtype) -> str:
    """'float16' for torch.float16: the dtype spelling manifests use."""
    return str(dtype).removeprefix("torch.")


def plan_shards(specs: list[TensorSpec], max_shard_bytes: int) -> list[list[TensorSpec]]:
    """Group tensors, in order, into shards of at most `max_shard_bytes` (one tensor may exceed it)."""
    shards: list[list[TensorSpec]] = [[]]
    size = 0
    for s in specs:
        if shards[-1] and size + s.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(s)
        size += s.nbytes
    return shards


def shard_filename(i: int, n: int) -> str:
    return f"model-{i + 1:05d}-of-{n:05d}.safetensors"


def _header(specs: list[TensorSpec]) -> bytes:
    meta: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for s in specs:
        meta[s.name] = {
            "dtype": DTYPE_CODES[s.dtype],
            "shape": list(s.shape),
            "data_offsets": [offset, offset + s.nbytes],
        }
        offset += s.nbytes
    raw = json.dumps(meta, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # keep the data 8-byte aligned, as safetensors itself does
    return struct.pack("<Q", len(raw)) + raw


def tensor_bytes(t: torch.Tensor) -> memoryview:
    """The raw bytes of `t` in C order (a view when already contiguous; no copy of mmapped data)."""
    return memoryview(t.contiguous().reshape(-1).view(torch.uint8).numpy())


def write_sharded(
    folder: Path,
    plan: list[list[TensorSpec]],
    tensors: Iterable[tuple[str, torch.Tensor]],
    progress: Progress | None = None,
    tensor_digests: dict[str, TensorEntry] | None = None,
) -> dict[str, str]:
    """Write `tensors` (in plan order) as shards + index under `folder`; return {file: sha256}.

    Each tensor is checked against its planned name, dtype and shape before it is written. When
    `tensor_digests` is given, it is filled with each tensor's digest (dtype, shape, sha256 of
    its bytes), computed from the same buffer as it is written: no second read.
    """
    progress = progress or NullProgress()
    it: Iterator[tuple[str, torch.Tensor]] = iter(tensors)
    digests: dict[str, str] = {}
    weight_map: dict[str, str] = {}
    # Hashing and writing both release the GIL: hash each buffer on a second thread while the
    # main thread writes it, so hashing costs no extra wall time on two cores.
    workers = 2 if tensor_digests is not None else 1
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sha256") as hasher:
        for i, shard in enumerate(plan):
            fname = shard_filename(i, len(plan))
            h = hashlib.sha256()
            with open(folder / fname, "wb") as f:
                head = _header(shard)
                f.write(head)
                h.update(head)
                for spec in shard:
                    name, t = next(it)
                    if name != spec.name or t.dtype != spec.dtype or tuple(t.shape) != spec.shape:
                        raise AssertionError(
                            f"writer got {name} {t.dtype} {tuple(t.shape)}, planned "
                            f"{spec.name} {spec.dtype} {spec.shape}"
                        )
                    buf = tensor_bytes(t)
                    hashed = hasher.submit(h.update, buf)
                    if tensor_digests is not None:
                        own = hasher.submit(lambda b: hashlib.sha256(b).hexdigest(), buf)
                    f.write(buf)
                    hashed.result()
                    if tensor_digests is not None:
                        tensor_digests[name] = TensorEntry(
                            dtype_name(t.dtype), spec.shape, own.result()
                        )
                    weight_map[name] = fname
                    progress.advance(spec.nbytes, name)
                    faults.reached("write", spec.nbytes)
                f.flush()
                os.fsync(f.fileno())  # durable before the folder is renamed into place
            digests[fname] = h.hexdigest()
    if next(it, None) is not None:
        raise AssertionError("writer got more tensors than planned")
    total = sum(s.nbytes for shard in plan for s in shard)
    index = (
        json.dumps(
            {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))},
            indent=2,
        ).encode()
        + b"\n"
    )
    (folder / INDEX_NAME).write_bytes(index)
    digests[INDEX_NAME] = hashlib.sha256(index).hexdigest()
    return digests


def check_written(folder: Path, plan: list[list[TensorSpec]]) -> None:
    """Re-open what was written (headers only) and compare names, dtypes, shapes, sizes."""
    from safetensors import safe_open

    from weightprep.errors import VerificationError

    for i, shard in enumerate(plan):
        path = folder / shard_filename(i, len(plan))
        expected_size = len(_header(shard)) + sum(s.nbytes for s in shard)
        if path.stat().st_size != expected_size:
            raise VerificationError(f"{path}: size {path.stat().st_size}, expected {expected_size}")
        with safe_open(str(path), framework="pt") as f:
            if list(f.keys()) != [s.name for s in shard] and set(f.keys()) != {
                s.name for s in shard
            }:
                raise VerificationError(f"{path}: tensor names differ from the plan")
            for s in shard:
                sl = f.get_slice(s.name)
                if tuple(sl.get_shape()) != s.shape or sl.get_dtype() != DTYPE_CODES[s.dtype]:
                    raise VerificationError(f"{path}: {s.name} has the wrong shape or dtype")
