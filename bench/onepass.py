"""Benchmark the one-pass route, `weightprep apply-delta META DELTA OUT --model-size 7B` on Meta's
own download, against the two steps it replaces (`convert-llama`, then `apply-delta` on the
converted copy), at the real LLaMA-7B shape.

Builds once (cached in the work folder, default bench/out/onepass, which git ignores):

  LLaMA-7B/   Meta's layout at the 7B shape (dim 4096, 32 layers, 32 heads, FFN 11008, a real
              32000-piece SentencePiece tokenizer, random fp16 weights, 13.48 GB):
              `tokenizer.model`, `tokenizer_checklist.chk`, `7B/params.json` (Meta's 7B one),
              `7B/consolidated.00.pth`, `7B/checklist.chk` (md5s, as Meta ships them). The
              weights are what bench/convert.py's builder (`weightprep.example.meta_tensors`)
              would make from the same seed, but written one tensor at a time: torch.save lays
              out the archive under `torch.serialization.skip_data()` from untouched
              `torch.empty` placeholders, then each tensor is made, written into its record and
              its CRC-32 patched into the zip headers, so building takes a few hundred MiB, not
              13 GB (a small self-check against `meta_tensors` + torch's loader runs first).
  delta-7B/   an lmsys-style LLaMA-1 delta (as Vicuna v1.1's is published): fp16
              `pytorch_model-0000N-of-0000M.bin` shards of at most 10 GB + index, config.json
              (max_position_embeddings 2048, rms_norm_eps 1e-06), generation_config.json,
              tokenizer.model + tokenizer.json + tokenizer_config.json +
              special_tokens_map.json; every tensor 0.001*randn (seeded), written the same way.

Then runs, each in a fresh process with the page cache dropped first (`sync; echo 3 >
/proc/sys/vm/drop_caches`, when writable), `--repeat` times (default 1: each run is minutes):

  floor       `cat DELTA_SHARDS > /dev/null; dd if=consolidated.00.pth of=WORK/floor.bin bs=16M`,
              then `sync`: read both inputs, write one output's worth of bytes: the I/O floor
  one-pass    `weightprep apply-delta LLaMA-7B delta-7B OUT --model-size 7B --quiet`
  convert     `weightprep convert-llama LLaMA-7B CONV --model-size 7B --quiet`      } two-step:
  apply       `weightprep apply-delta CONV delta-7B OUT2 --quiet`                   } the sum
  one-pass@1G the one-pass run inside a 1 GiB memory cgroup (v2, else v1; swap capped), stopped
              by `timeout` after --limit-timeout seconds

Measurement is bench/convert.py's (`measure`: wall, wall + the `sync` after it, peak RSS as
polled VmHWM over the process tree, peak anonymous RSS, cgroups, OOM detection), plus the 1-minute
load average before each run (other jobs share the machine), the run's CPU seconds (GNU time,
when installed) and the DISK PEAK: the most bytes
allocated under the work folder while the run went on (polled every 0.25 s, TMPDIR pointed
inside it) above what was there before it started (the inputs). The two-step's disk peak spans
both steps, with CONV kept between them. Every output's files are hashed (sha256) and the
one-pass output's `model-*.safetensors` compared byte for byte with the two-step's; outputs
are deleted after each run.

Targets: one-pass wall + sync ≤ 0.6× convert + apply in the same round; ≤ 1.3× its I/O floor;
completes inside 1 GiB; writes nothing but the output (disk peak ≈ output size).

Needs about 55 GB free (27 GB of inputs, then CONV + OUT2 at once); 28 GB once the inputs are
cached. Run it as root (drop_caches, cgroups; skipped otherwise, saying so) with the venv's
python:

    .venv/bin/python bench/onepass.py            # or `make bench-onepass`; 10-25 minutes
    .venv/bin/python bench/onepass.py --repeat 3

It prints a Markdown report and writes it to WORK/onepass.md, raw numbers to WORK/onepass.json
and each run's output to WORK/logs/. The built inputs stay in WORK (delete the folder to reclaim
27 GB).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict
from math import prod
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import convert as cb  # noqa: E402  (bench/convert.py: the shared measuring harness)
import delta as db  # noqa: E402  (bench/delta.py: hf_order)

REPO = cb.REPO
log = cb.log
folder_bytes = db.folder_bytes
result_word = db.result_word
load1 = cb.load1
GB = 10**9

# Meta's 7B/params.json, as downloaded.
PARAMS_7B = {
    "dim": 4096,
    "multiple_of": 256,
    "n_heads": 32,
    "n_layers": 32,
    "norm_eps": 1e-06,
    "vocab_size": -1,
}
N_PIECES = cb.N_PIECES
SEED = cb.SEED
DELTA_SEED = 1
DELTA_SCALE = 0.001
DELTA_SHARD_BYTES = 10 * GB  # transformers' "10GB" of the time: lmsys' 7B delta has 2 shards
# tokenizer.json too: tokenizer_config.json names PreTrainedTokenizerFast, which needs it
DELTA_TOKENIZER = (
    "tokenizer.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
BUILD_VERSION = 1  # bump when the built inputs change, to invalidate the cache
DISK_POLL_S = 0.25
TIMED_OUT = db.TIMED_OUT
CPU_TAG = "WPBENCH-CPU"  # GNU time's line in each run's log: user and system CPU seconds

Spec = tuple[str, tuple[int, ...], Any]  # (name, shape, torch dtype)


# --------------------------------------------------------------------------- writing .pth files


def _central_directory(f: Any) -> int:
    """Offset of a zip file's central directory (zip64 aware)."""
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(max(0, size - (1 << 16) - 22))
    tail = f.read()
    i = tail.rfind(b"PK\x05\x06")
    if i < 0:
        raise SystemExit(f"{f.name}: no zip end-of-central-directory record")
    (offset,) = struct.unpack_from("<L", tail, i + 16)
    if offset == 0xFFFFFFFF:
        if tail[i - 20 : i - 16] != b"PK\x06\x07":
            raise SystemExit(f"{f.name}: no zip64 locator")
        (z64,) = struct.unpack_from("<Q", tail, i - 20 + 8)
        f.seek(z64)
        rec = f.read(56)
        (offset,) = struct.unpack_from("<Q", rec, 48)
    return offset


def save_streamed(path: Path, specs: Sequence[Spec], make: Callable[[str], Any]) -> None:
    """torch.save({name: make(name)}) for `specs` in order, one tensor in memory at a time.

    torch.save writes the archive under `skip_data()` from `torch.empty` placeholders (never
    touched, so never resident): every record is laid out, its bytes left as a hole. Each
    tensor is then made, written at its record's offset, and its CRC-32 (which torch left as 0)
    patched into the record's data descriptor and its central-directory entry, so that zip
    readers that check CRCs accept the file as they accept torch.save's own.
    """
    import torch

    tmp = path.with_name(path.name + ".tmp")
    placeholders = {name: torch.empty(shape, dtype=dtype) for name, shape, dtype in specs}
    with torch.serialization.skip_data():
        torch.save(placeholders, tmp)
    del placeholders
    with zipfile.ZipFile(tmp) as z:
        infos = {i.filename: i for i in z.infolist()}
    # torch names each storage's record after its order of first appearance in the pickle,
    # which is the dict's order: tensor k (each its own storage) is `<archive>/data/k`.
    prefix = next(n for n in infos if n.endswith("/data.pkl")).removesuffix("data.pkl")
    with open(tmp, "r+b") as f:
        cd = _central_directory(f)
        f.seek(cd)
        central = f.read()
        where: dict[str, int] = {}  # record name -> offset of its central-directory entry
        pos = 0
        while central[pos : pos + 4] == b"PK\x01\x02":
            n, m, k = struct.unpack_from("<HHH", central, pos + 28)
            where[central[pos + 46 : pos + 46 + n].decode()] = cd + pos
            pos += 46 + n + m + k
        for idx, (name, shape, dtype) in enumerate(specs):
            info = infos[f"{prefix}data/{idx}"]
            t = make(name)
            if tuple(t.shape) != tuple(shape) or t.dtype != dtype:
                raise SystemExit(f"{name}: made {t.dtype} {list(t.shape)}, planned {shape}")
            buf = memoryview(t.contiguous().view(torch.uint8).numpy())
            if buf.nbytes != info.file_size:
                raise SystemExit(f"{name}: {buf.nbytes} bytes for a {info.file_size}-byte record")
            f.seek(info.header_offset)
            head = f.read(30)
            n, m = struct.unpack_from("<HH", head, 26)
            data = info.header_offset + 30 + n + m
            f.seek(data)
            f.write(buf)
            crc = struct.pack("<L", zlib.crc32(buf))
            f.seek(data + info.file_size)
            if info.flag_bits & 0x08 and f.read(4) == b"PK\x07\x08":
                f.write(crc)  # the data descriptor after the record's bytes
            else:
                f.seek(info.header_offset + 14)  # no data descriptor: the local header
                f.write(crc)
            f.seek(where[info.filename] + 16)
            f.write(crc)
            del t, buf
    tmp.rename(path)


def self_check() -> None:
    """save_streamed at a tiny shape equals torch.save of `meta_tensors` (the builder
    bench/convert.py uses), loads with and without mmap, and passes zipfile's CRC check."""
    import torch

    from weightprep.example import meta_tensors
    from weightprep.io.pth import load_state_dict
    from weightprep.llama.params import parse_params

    tiny = {**PARAMS_7B, "dim": 64, "n_heads": 4, "n_layers": 2, "multiple_of": 32}
    p = parse_params(tiny)
    with tempfile.TemporaryDirectory() as d:
        want = meta_tensors(p, 100, torch.Generator().manual_seed(SEED))
        path = Path(d) / "consolidated.00.pth"
        save_streamed(path, meta_specs(p, 100), meta_maker(p, 100))
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
        got = load_state_dict(path)
        plain = torch.load(path, map_location="cpu", weights_only=True)
        ok = (
            bad is None
            and list(got) == list(want)
            and all(torch.equal(got[k], want[k]) and torch.equal(plain[k], want[k]) for k in want)
        )
    if not ok:
        raise SystemExit(f"the streamed .pth writer fails its self-check (bad CRC in: {bad})")


# --------------------------------------------------------------------------- the inputs


def meta_specs(p: Any, vocab: int) -> list[Spec]:
    """Meta's tensors in `weightprep.example.meta_tensors`' order, names, shapes, dtypes."""
    import torch

    kv = p.n_kv_heads * p.head_dim
    ffn = p.intermediate_size
    layer = {
        "attention.wq.weight": (p.dim, p.dim),
        "attention.wk.weight": (kv, p.dim),
        "attention.wv.weight": (kv, p.dim),
        "attention.wo.weight": (p.dim, p.dim),
        "feed_forward.w1.weight": (ffn, p.dim),
        "feed_forward.w2.weight": (p.dim, ffn),
        "feed_forward.w3.weight": (ffn, p.dim),
        "attention_norm.weight": (p.dim,),
        "ffn_norm.weight": (p.dim,),
    }
    h = torch.float16
    specs: list[Spec] = [("tok_embeddings.weight", (vocab, p.dim), h)]
    for i in range(p.n_layers):
        specs += [(f"layers.{i}.{k}", s, h) for k, s in layer.items()]
    specs += [
        ("norm.weight", (p.dim,), h),
        ("output.weight", (vocab, p.dim), h),
        ("rope.freqs", (p.head_dim // 2,), torch.float32),
    ]
    return specs


def meta_maker(p: Any, vocab: int) -> Callable[[str], Any]:
    """make(name) for `meta_specs`, called in their order: the values `meta_tensors` gives for
    the same seed (the same draws from one generator, in the same order)."""
    import torch

    gen = torch.Generator().manual_seed(SEED)
    shapes = {name: shape for name, shape, _ in meta_specs(p, vocab)}

    def make(name: str) -> Any:
        if name == "rope.freqs":
            hd = p.head_dim
            return 1.0 / (10000.0 ** (torch.arange(0, hd, 2).float() / hd))
        shape = shapes[name]
        if len(shape) == 1:
            return (1.0 + 0.1 * torch.randn(shape, generator=gen)).half()
        return (torch.randn(shape, generator=gen) * (1.0 / shape[1] ** 0.5)).half()

    return make


def md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(16 << 20):
            h.update(chunk)
    return h.hexdigest()


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(16 << 20):
            h.update(chunk)
    return h.hexdigest()


def stamps() -> tuple[dict[str, Any], dict[str, Any]]:
    llama = {"version": BUILD_VERSION, "params": PARAMS_7B, "pieces": N_PIECES, "seed": SEED}
    delta = {
        "llama": llama,
        "seed": DELTA_SEED,
        "scale": DELTA_SCALE,
        "shard_bytes": DELTA_SHARD_BYTES,
    }
    return llama, delta


def built(work: Path) -> dict[str, Any]:
    marker = work / "BUILT.json"
    return json.loads(marker.read_text()) if marker.is_file() else {}


def inputs_cached(work: Path) -> tuple[bool, bool]:
    """(Meta checkpoint cached, delta cached) per WORK/BUILT.json and the files it names."""
    have = built(work)
    llama, delta = stamps()
    meta_ok = have.get("llama") == llama and (work / "LLaMA-7B/7B/consolidated.00.pth").is_file()
    delta_ok = (
        meta_ok
        and have.get("delta") == delta
        and (work / "delta-7B/pytorch_model.bin.index.json").is_file()
    )
    return meta_ok, delta_ok


def mark(work: Path, key: str, stamp: dict[str, Any]) -> None:
    have = built(work)
    have[key] = stamp
    (work / "BUILT.json").write_text(json.dumps(have, indent=2) + "\n")


def build_meta(root: Path) -> None:
    """Meta's download at the 7B shape under `root` (one shard, checklists)."""
    from weightprep.llama.params import parse_params

    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    size_dir = partial / "7B"
    size_dir.mkdir(parents=True)
    t0 = time.monotonic()
    tok = cb.build_tokenizer(N_PIECES)
    (partial / "tokenizer.model").write_bytes(tok)
    (partial / "tokenizer_checklist.chk").write_text(
        f"{md5(partial / 'tokenizer.model')}  tokenizer.model\n"
    )
    (size_dir / "params.json").write_text(json.dumps(PARAMS_7B))  # one line, as Meta's
    p = parse_params(PARAMS_7B)
    specs = meta_specs(p, N_PIECES)
    n = sum(prod(s) for _, s, _ in specs)
    log(f"writing {size_dir / 'consolidated.00.pth'}: {n:,} parameters, one tensor at a time ...")
    save_streamed(size_dir / "consolidated.00.pth", specs, meta_maker(p, N_PIECES))
    log("md5 for checklist.chk ...")
    names = ["consolidated.00.pth", "params.json"]
    (size_dir / "checklist.chk").write_text("".join(f"{md5(size_dir / f)}  {f}\n" for f in names))
    size = (size_dir / "consolidated.00.pth").stat().st_size
    partial.rename(root)
    log(f"built {root}: {size / GB:.2f} GB in {time.monotonic() - t0:.0f}s")


def delta_shards(names: list[str], sizes: dict[str, int]) -> list[list[str]]:
    """transformers' split of the time: a new shard when the next tensor would pass the cap."""
    shards: list[list[str]] = [[]]
    used = 0
    for k in names:
        if shards[-1] and used + sizes[k] > DELTA_SHARD_BYTES:
            shards.append([])
            used = 0
        shards[-1].append(k)
        used += sizes[k]
    return shards


def build_delta(root: Path, delta: Path) -> None:
    """An lmsys-style LLaMA-1 delta for the 7B shape: fp16 .bin shards, index, config,
    tokenizer files (from `root`'s tokenizer.model)."""
    import torch

    from weightprep.llama.convert import expected_shape, meta_config
    from weightprep.llama.names import rules_for
    from weightprep.llama.params import generation_config, parse_params
    from weightprep.tokenizer import tokenizer_files

    p = parse_params(PARAMS_7B)
    config = meta_config(p, N_PIECES, 1, "float16")
    if (config["max_position_embeddings"], config["rms_norm_eps"]) != (2048, 1e-06):
        raise SystemExit(f"not a LLaMA-1 config: {config}")
    shapes = {r.hf: expected_shape(r, p, N_PIECES) for r in rules_for(p.n_layers)}
    names = sorted(shapes, key=db.hf_order)
    sizes = {k: 2 * prod(shapes[k]) for k in names}
    shards = delta_shards(names, sizes)
    partial = delta.with_name(delta.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(delta, ignore_errors=True)
    partial.mkdir(parents=True)
    t0 = time.monotonic()
    g = torch.Generator().manual_seed(DELTA_SEED)

    def make(name: str) -> Any:
        return (DELTA_SCALE * torch.randn(shapes[name], generator=g)).half()

    weight_map: dict[str, str] = {}
    for i, part in enumerate(shards):
        fname = f"pytorch_model-{i + 1:05d}-of-{len(shards):05d}.bin"
        log(f"writing {delta.name}/{fname}: {sum(sizes[k] for k in part) / GB:.2f} GB ...")
        save_streamed(partial / fname, [(k, shapes[k], torch.float16) for k in part], make)
        weight_map.update(dict.fromkeys(part, fname))
    index = {"metadata": {"total_size": sum(sizes.values())}, "weight_map": weight_map}
    (partial / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2) + "\n")
    (partial / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (partial / "generation_config.json").write_text(
        json.dumps(generation_config(), indent=2) + "\n"
    )
    files = tokenizer_files(root / "tokenizer.model", config["max_position_embeddings"])
    for name in DELTA_TOKENIZER:
        (partial / name).write_bytes(files[name])
    partial.rename(delta)
    log(f"built {delta}: {folder_bytes(delta) / GB:.2f} GB in {time.monotonic() - t0:.0f}s")


def check_inputs(root: Path, delta: Path) -> None:
    """Names and shapes of the delta against the base as a one-pass apply-delta reads it."""
    from weightprep.delta import preflight
    from weightprep.io.reader import CheckpointReader
    from weightprep.llama.convert import MetaSource

    with MetaSource(root, "7B") as src, CheckpointReader(delta) as r:
        preflight(src, r)


def ensure_inputs(work: Path) -> tuple[Path, Path]:
    root, delta = work / "LLaMA-7B", work / "delta-7B"
    meta_ok, delta_ok = inputs_cached(work)
    llama_stamp, delta_stamp = stamps()
    if not (meta_ok and delta_ok):
        log("self-check of the streamed .pth writer (tiny shape) ...")
        self_check()
    if meta_ok:
        log(f"reusing {root}")
    else:
        build_meta(root)
        mark(work, "llama", llama_stamp)
    if delta_ok:
        log(f"reusing {delta}")
    else:
        build_delta(root, delta)
        mark(work, "delta", delta_stamp)
    check_inputs(root, delta)
    return root, delta


def output_bytes_7b() -> int:
    """Bytes of the fp16 weights at the 7B shape: the size of each output, CONV and the delta."""
    from weightprep.llama.params import parse_params

    p = parse_params(PARAMS_7B)
    return sum(2 * prod(s) for n, s, _ in meta_specs(p, N_PIECES) if n != "rope.freqs")


def check_disk(work: Path) -> str:
    """Refuse (SystemExit) when the disk cannot hold what this run needs; else say what it has."""
    meta_ok, delta_ok = inputs_cached(work)
    w = output_bytes_7b()
    missing = (0 if meta_ok else w) + (0 if delta_ok else w)
    need = missing + 2 * w + GB  # then CONV and OUT2 at once, during the two-step's apply
    probe = work
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    what = (
        f"{free / GB:.1f} GB free on {probe}'s disk; this run needs {need / GB:.1f} GB "
        f"({missing / GB:.1f} GB of inputs to build, then a {w / GB:.1f} GB converted copy and "
        f"a {w / GB:.1f} GB output at once, + 1 GB)"
    )
    if free < need:
        raise SystemExit(
            f"not enough disk: {what}. Free some space or pass --workdir on a larger disk."
        )
    return what


# --------------------------------------------------------------------------- measuring


def allocated(root: Path) -> int:
    """Bytes allocated to the files under `root` (st_blocks), tolerant of files vanishing."""
    total = 0
    for d, _, files in os.walk(root):
        for f in files:
            try:
                total += os.lstat(os.path.join(d, f)).st_blocks * 512
            except OSError:
                pass
    return total


class DiskPeak:
    """Polls the bytes allocated under a folder; `peak` is the most seen above the start."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = allocated(root)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.peak = max(self.peak, allocated(self.root) - self.base)
            if self._stop.wait(DISK_POLL_S):
                return

    def __enter__(self) -> DiskPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, allocated(self.root) - self.base)


def code_version() -> tuple[str, dict[str, str]]:
    """A short digest of weightprep's sources now, and {file: sha256}: other sessions commit to
    a shared checkout while this runs, so each run records the code it ran."""
    files = cb.code_state()[1]
    text = "".join(f"{k} {v}\n" for k, v in sorted(files.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:8], files


def version_notes(versions: dict[str, str], files: dict[str, dict[str, str]]) -> list[str]:
    """One line when the runs did not all run the same weightprep code, naming what changed."""
    order = list(dict.fromkeys(versions.values()))
    if len(order) < 2:
        return []
    parts = []
    for i, v in enumerate(order):
        rows = ", ".join(k for k, x in versions.items() if x == v)
        part = f"code {v}: {rows}"
        if i:
            a, b = files[order[i - 1]], files[v]
            changed = sorted(f for f in a.keys() | b.keys() if a.get(f) != b.get(f))
            part += f" (changed: {', '.join(changed)})"
        parts.append(part)
    return [
        "**weightprep's code changed between runs** (other sessions commit to this checkout): "
        + "; ".join(parts)
    ]


def run(
    label: str,
    what: str,
    cmd: list[str],
    logs: Path,
    env: dict[str, str],
    limit: int | None = None,
) -> cb.Result:
    """bench/convert.py's `measure` (fresh process, cold), with the load average before it and,
    through GNU time where it is installed (~2 MiB more RSS), the CPU seconds the run used."""
    before = load1()
    timer = shutil.which("time")
    if timer:
        cmd = [timer, "-f", f"{CPU_TAG} %U %S", *cmd]
    res = cb.measure(label, what, cmd, logs, env=env, limit=limit)
    res.extra["load1_before"] = before
    log_file = logs / f"{label}.log"
    lines = log_file.read_text(errors="replace").splitlines() if log_file.is_file() else []
    for line in reversed(lines):
        if line.startswith(CPU_TAG + " "):
            user, system = map(float, line.split()[1:3])
            res.extra["cpu_s"] = user + system
            break
    return res


def digests(folder: Path) -> dict[str, str]:
    """sha256 of every file in `folder`, and (as "NAME~") of manifest.yaml without its `name:`
    and `description:` lines and of SHA256SUMS without manifest.yaml's line: those name the
    output folder and the base folder, so they differ between any two routes."""
    out = {f.name: sha256(f) for f in sorted(folder.iterdir()) if f.is_file()}
    drop = {
        "manifest.yaml": lambda line: line.startswith(("name:", "description:")),
        "SHA256SUMS": lambda line: line.endswith("  manifest.yaml"),
    }
    for name, skip in drop.items():
        if (folder / name).is_file():
            kept = [x for x in (folder / name).read_text().splitlines() if not skip(x)]
            out[name + "~"] = hashlib.sha256("\n".join(kept).encode()).hexdigest()
    return out


def compare(a: dict[str, str], b: dict[str, str]) -> tuple[bool, list[str], list[str], list[str]]:
    """(the model-*.safetensors files are byte-identical, those compared, other files that
    differ or are missing on one side, those of them that differ only in the lines naming the
    output and the base folder)."""
    st = sorted(n for n in a.keys() | b.keys() if n.endswith(".safetensors"))
    same = bool(st) and all(a.get(n) is not None and a.get(n) == b.get(n) for n in st)
    files = [n for n in a.keys() | b.keys() if n not in st and not n.endswith("~")]
    others = sorted(n for n in files if a.get(n) != b.get(n))
    named = [n for n in others if a.get(n + "~") is not None and a.get(n + "~") == b.get(n + "~")]
    return same, st, others, named


def describe(folder: Path) -> str:
    size = folder_bytes(folder)
    shards = len(list(folder.glob("model-*.safetensors")))
    dtypes = "+".join(sorted(cb.safetensors_dtypes(folder)))
    return f"{size / GB:.2f} GB, {shards} safetensors shard(s), {dtypes}"


def remove(*paths: Path) -> None:
    for p in paths:
        for q in (p, p.with_name(p.name + ".partial")):
            if q.is_dir():
                shutil.rmtree(q)
            elif q.exists():
                q.unlink()


def two_step_row(i: str, conv: cb.Result, app: cb.Result, disk: int) -> cb.Result:
    """The two steps as one row: times summed, memory the larger, disk over both."""
    rc = conv.rc if conv.rc != 0 else app.rc
    r = cb.Result(
        f"two-step{i}",
        "(b) = convert + apply",
        rc=rc,
        wall_s=conv.wall_s + app.wall_s,
        sync_s=conv.sync_s + app.sync_s,
        peak_rss_mib=max(conv.peak_rss_mib, app.peak_rss_mib),
        peak_anon_mib=max(conv.peak_anon_mib, app.peak_anon_mib),
        cold=conv.cold and app.cold,
        output=app.output,
    )
    r.extra = {"disk_peak_bytes": disk, "load1_before": conv.extra.get("load1_before", 0.0)}
    if "cpu_s" in conv.extra and "cpu_s" in app.extra:
        r.extra["cpu_s"] = conv.extra["cpu_s"] + app.extra["cpu_s"]
    return r


# --------------------------------------------------------------------------- report


def table(results: list[cb.Result]) -> str:
    head = (
        "| run | what | memory limit | result | wall s | wall + sync s | CPU s | peak RSS MiB "
        "| peak anon RSS MiB | cgroup peak MiB | disk peak GB | load1 before | output |\n"
        "|---|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|\n"
    )
    rows = []
    for r in results:
        timed = r.rc is not None
        disk = r.extra.get("disk_peak_bytes")
        bold = "**" if r.label.split("#")[0] in ("one-pass", "two-step") else ""
        rows.append(
            f"| {bold}{r.label}{bold} | {r.what} | {r.limit or 'none'} | {result_word(r)} "
            f"| {cb.fmt(r.wall_s if timed else None, 1)} "
            f"| {bold}{cb.fmt(r.total_s if timed else None, 1)}{bold} "
            f"| {cb.fmt(r.extra.get('cpu_s'), 1)} "
            f"| {cb.fmt(r.peak_rss_mib if timed else None)} "
            f"| {cb.fmt(r.peak_anon_mib if timed else None)} "
            f"| {cb.fmt(r.cgroup_peak_mib)} "
            f"| {cb.fmt(disk / GB if disk is not None and timed else None, 2)} "
            f"| {cb.fmt(r.extra.get('load1_before'), 2)} | {r.output or '–'} |"
        )
    return head + "\n".join(rows) + "\n"


def verdicts(results: list[cb.Result], out_bytes: int | None) -> tuple[list[str], dict]:
    """The issue's four targets, each met or missed, with the numbers."""
    g: dict[str, list[cb.Result]] = {}
    for r in results:
        if "@" not in r.label:
            g.setdefault(r.label.split("#")[0], []).append(r)
    n = len(g.get("one-pass", []))
    how = f"median of {n} rounds, " if n > 1 else ""
    lines: list[str] = []
    got: dict[str, Any] = {}

    def ok_pairs(a: str, b: str) -> list[tuple[cb.Result, cb.Result]]:
        return [
            (x, y) for x, y in zip(g.get(a, []), g.get(b, []), strict=True) if x.rc == y.rc == 0
        ]

    pairs = ok_pairs("one-pass", "two-step")
    if pairs:
        ratio = cb._median([x.total_s / y.total_s for x, y in pairs])
        wall = cb._median([x.wall_s / y.wall_s for x, y in pairs])
        x, y = pairs[len(pairs) // 2]
        got["vs_two_step"] = ratio
        lines.append(
            f"- **one-pass vs convert + apply: {ratio:.2f}×** ({how}wall + sync "
            f"{x.total_s:.1f} s vs {y.total_s:.1f} s in the same round; process wall alone "
            f"{wall:.2f}×). Target ≤ 0.6×: **{'met' if ratio <= 0.6 else 'MISSED'}**."
        )
    else:
        lines.append("- one-pass vs convert + apply: no round where both completed: **MISSED**.")
    pairs = ok_pairs("one-pass", "floor")
    if pairs:
        ratio = cb._median([x.total_s / y.total_s for x, y in pairs])
        wall = cb._median([x.wall_s / y.total_s for x, y in pairs])
        x, y = pairs[len(pairs) // 2]
        got["vs_floor"] = ratio
        lines.append(
            f"- **one-pass vs its I/O floor: {ratio:.2f}×** ({how}wall + sync {x.total_s:.1f} s "
            f"vs the floor's {y.total_s:.1f} s; process wall alone {wall:.2f}×). "
            f"Target ≤ 1.3×: **{'met' if ratio <= 1.3 else 'MISSED'}**."
        )
        if "cpu_s" in x.extra and "cpu_s" in y.extra:
            lines.append(
                f"  The one-pass run ({x.label}) used {x.extra['cpu_s']:.0f} CPU-seconds, "
                f"{x.extra['cpu_s'] / x.wall_s:.2f} CPUs' worth over its wall time, the floor "
                f"{y.extra['cpu_s']:.0f}; the 1-minute load average before them was "
                f"{x.extra['load1_before']:.2f} and {y.extra['load1_before']:.2f} on "
                f"{os.cpu_count()} CPUs."
            )
    capped = [r for r in results if r.label.startswith("one-pass@") and r.rc is not None]
    for c in capped:
        ok = c.rc == 0
        got["inside_limit"] = ok
        lines.append(
            f"- **one-pass inside a {c.limit} memory cgroup: "
            + (
                f"completed** (exit 0) in {c.total_s:.1f} s wall + sync, peak anon RSS "
                f"{c.peak_anon_mib:,.0f} MiB, cgroup peak {cb.fmt(c.cgroup_peak_mib)} MiB "
                "(page cache included)"
                if ok
                else f"did not complete** ({c.note})"
            )
            + f". Target: completes inside 1 GiB: **{'met' if ok else 'MISSED'}**."
        )
    if not capped:
        lines.append(
            "- one-pass inside 1 GiB: not run (`--limit ''`, or no memory cgroup could be made): **not measured**."
        )
    ones = [r for r in g.get("one-pass", []) if r.rc == 0]
    if ones and out_bytes:
        peak = max(r.extra["disk_peak_bytes"] for r in ones)
        ratio = peak / out_bytes
        ok = peak <= out_bytes * 1.01 + (16 << 20)
        got["disk_vs_output"] = ratio
        lines.append(
            f"- **one-pass disk peak {peak / GB:.2f} GB = {ratio:.3f}× its output** "
            f"({out_bytes / GB:.2f} GB). Target: writes only the output (disk peak ≈ output "
            f"size, here ≤ 1.01× + 16 MiB): **{'met' if ok else 'MISSED'}**."
        )
    twos = [r for r in g.get("two-step", []) if r.rc == 0]
    if twos and out_bytes:
        peak = max(r.extra["disk_peak_bytes"] for r in twos)
        lines.append(
            f"- for comparison, the two-step's disk peak: {peak / GB:.2f} GB = "
            f"{peak / out_bytes:.2f}× the output (the converted copy and the output at once)."
        )
    return lines, got


def other_files(c: dict[str, Any]) -> str:
    named, rest = (
        c["differ_only_in_names"],
        [n for n in c["others"] if n not in c["differ_only_in_names"]],
    )
    out = ""
    if named:
        out += (
            f"; {' and '.join(named)} differ only in the lines that name the output folder and "
            "the base folder (manifest.yaml's `name:` and `description:`, and SHA256SUMS's line "
            "for manifest.yaml)"
        )
    if rest:
        out += f"; **other files that differ: {', '.join(rest)}**"
    return out + ("; every other file identical" if not rest else "")


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--workdir",
        type=Path,
        default=REPO / "bench" / "out" / "onepass",
        help="inputs, outputs, logs and the report (default: bench/out/onepass)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of floor, one-pass, convert + apply (default 1: a round takes 5-10 minutes)",
    )
    ap.add_argument(
        "--limit", default="1G", help="memory limit of the one-pass cgroup run ('' to skip)"
    )
    ap.add_argument(
        "--limit-timeout",
        type=int,
        default=1200,
        help="seconds before the memory-limited run is stopped (`timeout`; default 1200)",
    )
    args = ap.parse_args(argv)

    started = time.monotonic()
    work = args.workdir.absolute()
    disk_note = check_disk(work)
    log(disk_note)
    weightprep = Path(sys.executable).with_name("weightprep")
    if not weightprep.is_file():
        raise SystemExit(
            f"{weightprep}: not found; run with the python of the venv weightprep is installed in"
        )
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    shutil.rmtree(logs, ignore_errors=True)  # only this run's logs
    logs.mkdir()
    root, delta = ensure_inputs(work)
    pth = root / "7B" / "consolidated.00.pth"
    delta_w = sorted(delta.glob("pytorch_model-*.bin"))

    out1, conv, out2 = work / "out-onepass", work / "conv", work / "out-twostep"
    floor_file, tmp = work / "floor.bin", work / "tmp"

    def clean() -> None:
        remove(out1, conv, out2, floor_file, tmp)
        tmp.mkdir()

    env = cb.quiet_env(TMPDIR=str(tmp))  # anything written to a temp dir counts in the disk peak
    wp = str(weightprep)
    one_cmd = [wp, "apply-delta", str(root), str(delta), str(out1), "--model-size", "7B", "--quiet"]
    conv_cmd = [wp, "convert-llama", str(root), str(conv), "--model-size", "7B", "--quiet"]
    apply_cmd = [wp, "apply-delta", str(conv), str(delta), str(out2), "--quiet"]
    floor_cmd = (
        f"cat {' '.join(map(str, delta_w))} > /dev/null && dd if={pth} of={floor_file} bs=16M"
    )
    what = {
        "floor": "(d) I/O floor: `cat` delta, `dd` copy of Meta's .pth, `sync`",
        "one-pass": "(a) `apply-delta META DELTA OUT --model-size 7B`",
        "convert": "(b1) `convert-llama META CONV --model-size 7B`",
        "apply": "(b2) `apply-delta CONV DELTA OUT2`",
    }

    # One untimed copy first, as bench/convert.py and bench/delta.py do: on this VM the first
    # large copy of a session often runs slower than later ones.
    log("priming: one untimed run of the floor's commands")
    clean()
    subprocess.run(["sh", "-c", floor_cmd], check=True, capture_output=True)
    os.sync()
    clean()
    code = cb.code_state()[0]  # git HEAD when the timed runs start; each run's code: `versions`

    results: list[cb.Result] = []
    checks: list[dict[str, Any]] = []
    hashes: dict[str, dict[str, str]] = {}
    out_bytes: int | None = None

    def save_json() -> None:
        (work / "onepass.json").write_text(
            json.dumps({"results": [asdict(r) for r in results], "checks": checks}, indent=2)
        )

    versions: dict[str, str] = {}  # run label -> code_version() when it started
    sources: dict[str, dict[str, str]] = {}

    def go(label: str, cmd: list[str], limit: int | None = None) -> cb.Result:
        v, files = code_version()
        versions[label] = v
        sources.setdefault(v, files)
        return run(label, what[label.split("#")[0].split("@")[0]], cmd, logs, env, limit)

    def timed(label: str, cmd: list[str], limit: int | None = None) -> cb.Result:
        with DiskPeak(work) as disk:
            r = go(label, cmd, limit)
        r.extra["disk_peak_bytes"] = disk.peak
        return r

    def check(one: str, two: str) -> None:
        same, files, others, named = compare(hashes[one], hashes[two])
        checks.append(
            {
                "one_pass": one,
                "two_step": two,
                "identical": same,
                "files": files,
                "others": others,
                "differ_only_in_names": named,
            }
        )
        log(f"{one} vs {two}: safetensors {'IDENTICAL' if same else 'DIFFER'}; others {others}")

    try:
        for i in range(args.repeat):
            sfx = f"#{i + 1}" if args.repeat > 1 else ""
            clean()
            r = timed(f"floor{sfx}", ["sh", "-c", floor_cmd])
            if r.rc == 0:
                r.output = f"{floor_file.stat().st_size / GB:.2f} GB copy"
            results.append(r)
            clean()
            save_json()

            one = timed(f"one-pass{sfx}", one_cmd)
            if one.rc == 0:
                one.output = describe(out1)
                out_bytes = folder_bytes(out1)
                log("hashing the one-pass output ...")
                hashes[one.label] = digests(out1)
            results.append(one)
            clean()
            save_json()

            with DiskPeak(work) as disk:
                c = go(f"convert{sfx}", conv_cmd)
                if c.rc == 0:
                    c.output = describe(conv)
                    a = go(f"apply{sfx}", apply_cmd)
                else:
                    a = cb.Result(f"apply{sfx}", what["apply"], note="not run: convert failed")
            if a.rc == 0:
                a.output = describe(out2)
                log("hashing the two-step output ...")
                hashes[a.label] = digests(out2)
            two = two_step_row(sfx, c, a, disk.peak)
            results += [c, a, two]
            if one.label in hashes and a.label in hashes:
                check(one.label, a.label)
                same = checks[-1]["identical"]
                one.output += f"; **{'= two-step, byte for byte' if same else '≠ two-step'}**"
            clean()
            save_json()

        if args.limit:
            lim = cb.parse_limit(args.limit)
            label = f"one-pass@{args.limit.upper().removesuffix('IB').removesuffix('B')}"
            capped = ["timeout", "--kill-after=10", str(args.limit_timeout), *one_cmd]
            r = timed(label, capped, lim)
            if r.rc == TIMED_OUT and not r.oom_killed:
                r.note = f"timed out: stopped after {args.limit_timeout}s, not OOM-killed"
            if r.rc == 0:
                r.output = describe(out1)
                ref = next((k for k in hashes if k.startswith("apply")), None)
                if ref:
                    log("hashing the memory-limited one-pass output ...")
                    hashes[r.label] = digests(out1)
                    check(r.label, ref)
                    same = checks[-1]["identical"]
                    r.output += f"; {'= two-step, byte for byte' if same else '**≠ two-step**'}"
            results.append(r)
            clean()
            save_json()
    finally:
        remove(out1, conv, out2, floor_file, tmp)

    notes: list[str] = []
    end, files = code_version()
    if versions and end != list(versions.values())[-1]:
        versions["(after the last run)"] = end
        sources.setdefault(end, files)
    notes += version_notes(versions, sources)
    for r in results:
        if r.rc not in (0, None) and not r.limit:
            notes.append(f"{r.label}: {r.note}")
    loads = [r.extra["load1_before"] for r in results if "load1_before" in r.extra]
    cold = all(r.cold for r in results if r.rc is not None)
    cg_note = next(
        (r.note for r in results if r.note.startswith("not run: could not create")), None
    )
    v = "v2" if "memory" in cb._read(Path("/sys/fs/cgroup/cgroup.controllers")).split() else "v1"
    lines, got = verdicts(results, out_bytes)
    if checks:
        for c in checks:
            lines.append(
                f"- output check, {c['one_pass']} vs {c['two_step']}: the "
                f"{len(c['files'])} `model-*.safetensors` files are "
                + ("**byte-identical** (sha256)" if c["identical"] else "**NOT identical**")
                + other_files(c)
            )
    else:
        lines.append("- output check: **not done** (a one-pass or two-step run failed)")
    gb = {
        "meta": folder_bytes(root) / GB,
        "delta": folder_bytes(delta) / GB,
    }
    head = git_head()
    doc = [
        f"# One pass vs two steps at the LLaMA-7B shape: {pth.stat().st_size / GB:.2f} GB Meta "
        f"checkpoint + {gb['delta']:.2f} GB lmsys-style delta\n",
        f"Date: {time.strftime('%Y-%m-%d %H:%M %Z')}.  ",
        f"Machine: {cb.machine()}.  ",
        f"Code: {code}.  ",
        f"Command: `{' '.join([Path(sys.executable).name, *sys.argv])}`.  ",
        f"Python {platform.python_version()}; each run a fresh process; "
        + (
            "page cache dropped before every run (`sync; echo 3 > /proc/sys/vm/drop_caches`)."
            if cold
            else "**page cache NOT dropped** (/proc/sys/vm/drop_caches not writable)."
        ),
        f"Memory limit: {cg_note or f'cgroup {v} memory controller, swap capped at the limit'}.  ",
        f"Inputs: `{root}` (1 shard, checklists) and `{delta}` ({len(delta_w)} fp16 .bin "
        f"shards of {', '.join(f'{f.stat().st_size / GB:.2f}' for f in delta_w)} GB).  ",
        f"1-minute load average before the runs: {min(loads, default=0):.2f}–"
        f"{max(loads, default=0):.2f} on {os.cpu_count()} CPUs (other jobs share this machine).\n",
        table(results),
        "wall + sync: the process's wall time plus the `sync` right after it (data it left "
        "dirty). CPU s: user + system seconds of the process tree (GNU time). peak RSS: VmHWM summed over the process tree (memory-mapped input pages "
        "included); peak anon RSS: RssAnon summed over the tree, polled every 50 ms. disk "
        "peak: the most bytes allocated under the work folder during the run above what was "
        "there before it (the inputs), polled every 0.25 s; the two-step row's spans both "
        "steps. output: what the run left (sha256-compared, then deleted).\n",
        *lines,
        *([""] + [f"- {n}" for n in notes] if notes else []),
        "",
        f"Disk: {disk_note}.  ",
        f"Total benchmark time: {time.monotonic() - started:.0f}s.",
    ]
    text = "\n".join(doc) + "\n"
    (work / "onepass.md").write_text(text)
    (work / "onepass.json").write_text(
        json.dumps(
            {
                "results": [asdict(r) for r in results],
                "checks": checks,
                "targets": got,
                "output_bytes": out_bytes,
                "inputs_GB": gb,
                "cold": cold,
                "notes": notes,
                "code": code,
                "head": head,
                "code_versions": versions,
                "machine": cb.machine(),
            },
            indent=2,
        )
    )
    print(text)
    return 0


def git_head() -> str:
    got = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    )
    return got.stdout.strip() or "unknown"


if __name__ == "__main__":
    sys.exit(main())
