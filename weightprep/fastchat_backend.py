"""`apply-delta --backend fastchat`: run FastChat's own apply_delta, then check what it wrote.

FastChat (fschat 0.2.36) fails silently in ways this catches: with `--low-cpu-mem` it reads only
`pytorch_model-*.bin` base files, so a safetensors or single-file base gives an output whose
index has an empty `weight_map` and exit 0; and it adds in the base's dtype, so a bfloat16 base
gives bfloat16 weights where the normal path gives float16.

FastChat runs in a separate Python: `$WEIGHTPREP_FASTCHAT_PYTHON`, else this one. Only what
`fastchat.model.apply_delta` imports is needed: `pip install --no-deps fschat==0.2.36 requests`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from math import prod
from pathlib import Path

import torch

from weightprep.checksum import hash_tree
from weightprep.delta import DeltaReport, weight_names
from weightprep.errors import InputError, VerificationError
from weightprep.io.atomic import staged_folder
from weightprep.io.reader import CheckpointReader


def fastchat_python() -> str:
    py = os.environ.get("WEIGHTPREP_FASTCHAT_PYTHON", sys.executable)
    probe = subprocess.run(
        [py, "-c", "import fastchat.model.apply_delta"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        raise InputError(
            f"{py}: cannot import fastchat.model.apply_delta; install it with "
            "`pip install --no-deps fschat==0.2.36 requests` (or set WEIGHTPREP_FASTCHAT_PYTHON)"
        )
    return py


def check_fastchat_output(out: Path, base: Path) -> None:
    """Turn FastChat's silent failures into errors naming what is wrong."""
    for index_name in ("pytorch_model.bin.index.json", "model.safetensors.index.json"):
        idx = out / index_name
        if idx.is_file() and not json.loads(idx.read_text()).get("weight_map"):
            raise VerificationError(
                f"{idx}: FastChat wrote an empty model (weight_map is {{}}) and exited 0: its "
                "--low-cpu-mem path reads only pytorch_model-*.bin base shards; "
                "use --backend stream (the default)"
            )
    with CheckpointReader(base) as rb, CheckpointReader(out) as ro:
        missing = sorted(weight_names(rb) - weight_names(ro))
        if missing:
            raise VerificationError(
                f"{out}: FastChat's output lacks {len(missing)} tensor(s) of the base ({', '.join(missing[:3])})"
            )
        drift = sorted(n for n in weight_names(ro) if ro.info[n].dtype != torch.float16)
        if drift:
            d = ro.info[drift[0]].dtype
            raise VerificationError(
                f"{out}: FastChat wrote {len(drift)} tensor(s) as {d} instead of float16 "
                f"(e.g. {drift[0]}): --low-cpu-mem adds in the base's dtype; use --backend stream"
            )


def apply_delta_fastchat(
    base: Path, delta: Path, output: Path, *, low_cpu_mem: bool = False, force: bool = False
) -> DeltaReport:
    t0 = time.monotonic()
    py = fastchat_python()
    for p in (base, delta):
        if not p.is_dir():
            raise InputError(f"{p}: not a folder")
    with staged_folder(output, force=force) as stage:
        cmd = [
            py,
            "-m",
            "fastchat.model.apply_delta",
            "--base-model-path",
            str(base.absolute()),
            "--target-model-path",
            str(stage),
            "--delta-path",
            str(delta.absolute()),
        ]
        if low_cpu_mem:
            cmd.append("--low-cpu-mem")
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            last = (res.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise VerificationError(
                f"FastChat's apply_delta failed (exit {res.returncode}): {last}"
            )
        check_fastchat_output(stage, base)
        files = {k: v.sha256 or "" for k, v in hash_tree(stage).items()}
        with CheckpointReader(stage) as r:
            n = len(weight_names(r))
            total = sum(r.info[k].dtype.itemsize * prod(r.info[k].shape) for k in r.info)
    return DeltaReport(
        output.absolute(), n, total, files, "nothing (FastChat backend)", time.monotonic() - t0
    )
