"""Tensor-by-tensor comparison of two model folders, in any container and sharding."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from weightprep.io.reader import CheckpointReader


@dataclass(frozen=True)
class TensorDiff:
    name: str
    status: str  # identical | differ | only-in-a | only-in-b
    detail: str = ""
    max_abs_diff: float | None = None


def compare_folders(a: Path, b: Path) -> list[TensorDiff]:
    """Compare every tensor of `a` and `b`, reading one pair at a time.

    Example: `compare_folders(Path("my-vicuna-7b"), Path("lmsys-vicuna-7b-v1.1"))`.
    """
    out: list[TensorDiff] = []
    with CheckpointReader(a) as ra, CheckpointReader(b) as rb:
        for name in sorted(set(ra.info) | set(rb.info)):
            if name not in rb.info:
                out.append(TensorDiff(name, "only-in-a"))
                continue
            if name not in ra.info:
                out.append(TensorDiff(name, "only-in-b"))
                continue
            ia, ib = ra.info[name], rb.info[name]
            if ia.shape != ib.shape:
                out.append(
                    TensorDiff(name, "differ", f"shape {list(ia.shape)} vs {list(ib.shape)}")
                )
                continue
            ta, tb = ra[name], rb[name]
            if ia.dtype == ib.dtype and torch.equal(ta, tb):
                # torch.equal treats NaN != NaN; compare bytes so identical files compare equal.
                out.append(TensorDiff(name, "identical", str(ia.dtype).removeprefix("torch.")))
                continue
            if (
                ia.dtype == ib.dtype
                and ta.numel()
                and torch.equal(
                    ta.contiguous().view(-1).view(torch.uint8),
                    tb.contiguous().view(-1).view(torch.uint8),
                )
            ):
                out.append(TensorDiff(name, "identical", str(ia.dtype).removeprefix("torch.")))
                continue
            diff = (ta.double() - tb.double()).abs().max().item() if ta.numel() else 0.0
            dt = f"{ia.dtype} vs {ib.dtype}".replace("torch.", "")
            out.append(TensorDiff(name, "differ", dt, diff))
    return out
