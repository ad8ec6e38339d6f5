"""Benchmark `weightprep apply-delta` against the I/O floor and FastChat's `apply_delta`.

Builds (once, cached in the work folder, default bench/out/delta) from the ~1B-parameter Meta
checkpoint of bench/convert.py (bench/out/LLaMA-1B, built with convert.py's builder if missing):

  base/       `weightprep convert-llama LLaMA-1B base --model-size 7B --quiet`: HF layout,
              fp16 safetensors, ~1.9 GB
  delta/      an lmsys-style delta (as Vicuna's are published): fp16
              `pytorch_model-0000N-of-0000M.bin` shards + `pytorch_model.bin.index.json` +
              config.json + tokenizer files copied from base/; every tensor 0.001*randn (seeded),
              written one shard at a time
  base-bin/   the same base as fp16 `pytorch_model-*.bin` shards (same shard split as the delta),
              for FastChat's --low-cpu-mem, which reads only `pytorch_model-*.bin` base files (on
              a safetensors base it writes an empty model and exits 0)

Then runs, each in a fresh process with the page cache dropped first (`sync; echo 3 >
/proc/sys/vm/drop_caches`, when writable), `--repeat` times (medians reported):

  floor-read      `cat` of base's and delta's weight files to /dev/null (cold read alone)
  floor           `cat DELTA_SHARDS > /dev/null; dd if=BASE_SHARD of=WORK/floor.bin bs=16M`,
                  then `sync`: read both inputs, write one model's worth of bytes: the I/O floor
  ours            `weightprep apply-delta base delta OUT --quiet` (stream backend)
  ours-binbase    the same on base-bin/ (the input --low-cpu-mem gets)
  fastchat        `python -m fastchat.model.apply_delta --base-model-path base ...` (fschat 0.2.36)
  fastchat-lowmem the same with `--low-cpu-mem`, on base-bin/
  NAME@LIMIT      the same inside a memory cgroup (v2, else v1) limited to LIMIT, swap capped,
                  stopped by `timeout` after --limit-timeout seconds (below its need FastChat
                  can thrash on its memory-mapped inputs for minutes instead of being OOM-killed)

Measurement (fresh process, cold cache, wall and wall + sync, peak RSS as polled VmHWM over the
process tree, peak anonymous RSS, cgroups, OOM detection) is bench/convert.py's, imported from
it. Before timing, one untimed FastChat run makes a reference output; every timed run's output is
then compared with it tensor by tensor (`torch.equal`) before it is deleted. An instrumented
in-process run then splits our apply-delta's time into phases by wrapping its functions from
outside (no product code is changed).

Run it as root, with the python of the virtualenv weightprep is installed in:

    .venv/bin/python bench/delta.py --fastchat-python .peers/fastchat-0.2.36/bin/python
    .venv/bin/python bench/delta.py --fastchat-python ... --repeat 5

It prints a Markdown table and writes it to WORK.md (bench/out/delta.md), raw numbers to
WORK.json and each run's output to WORK/logs/. The built inputs (5.7 GB) stay in WORK so re-runs skip building
them (delete the folder to reclaim the space); outputs are deleted after each run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from math import prod
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import convert as cb  # noqa: E402  (bench/convert.py: the shared measuring harness)

REPO = cb.REPO
log = cb.log

BUILD_VERSION = 1  # bump when the built inputs change, to invalidate the cache
SHARDS = 3
DELTA_SEED = 1
DELTA_SCALE = 0.001
SIDE_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


# --------------------------------------------------------------------------- the inputs


def hf_order(name: str) -> tuple[int, int, str]:
    """transformers' state_dict order: embeddings, layers 0..N, final norm, lm_head."""
    m = re.match(r"model\.layers\.(\d+)\.", name)
    if m:
        return (1, int(m[1]), name)
    return (0 if "embed_tokens" in name else 2 if name.startswith("model.") else 3, 0, name)


def split_even(names: list[str], sizes: dict[str, int], n: int) -> list[list[str]]:
    """`names`, in order, cut into `n` runs of about equal bytes."""
    total = sum(sizes[k] for k in names)
    shards: list[list[str]] = [[]]
    done = 0
    for k in names:
        if shards[-1] and len(shards) < n and done >= total * len(shards) / n:
            shards.append([])
        shards[-1].append(k)
        done += sizes[k]
    return shards


def save_bin_shards(
    folder: Path, shards: list[list[str]], make: Callable[[str], Any], total: int
) -> dict[str, str]:
    """Write `pytorch_model-0000N-of-0000M.bin` + index, one shard in memory at a time."""
    import torch

    weight_map = {}
    for i, names in enumerate(shards):
        fname = f"pytorch_model-{i + 1:05d}-of-{len(shards):05d}.bin"
        part = {k: make(k) for k in names}
        torch.save(part, folder / fname)
        del part
        weight_map.update(dict.fromkeys(names, fname))
    (folder / "pytorch_model.bin.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n"
    )
    return weight_map


def build_inputs(work: Path, llama: Path, weightprep: Path) -> tuple[Path, Path, Path]:
    """Build (or reuse) base/, base-bin/ and delta/ under `work`."""
    import torch

    from weightprep.delta import preflight
    from weightprep.io.reader import CheckpointReader

    cb.build_checkpoint(llama, None)
    src = json.loads((llama / "BUILT.json").read_text())
    src.pop("ref_checked", None)
    stamp = {
        "version": BUILD_VERSION,
        "llama": src,
        "shards": SHARDS,
        "delta_seed": DELTA_SEED,
        "delta_scale": DELTA_SCALE,
    }
    base, base_bin, delta = work / "base", work / "base-bin", work / "delta"
    marker = work / "BUILT.json"
    built = json.loads(marker.read_text()) if marker.is_file() else {}
    if built.get("stamp") == stamp and all(p.is_dir() for p in (base, base_bin, delta)):
        log(f"reusing base/, base-bin/ and delta/ in {work}")
        return base, base_bin, delta
    marker.unlink(missing_ok=True)
    for p in (base, base_bin, delta):
        for q in (p, p.with_name(p.name + ".partial")):
            shutil.rmtree(q, ignore_errors=True)
    t0 = time.monotonic()
    log(f"converting {llama} to {base} ...")
    subprocess.run(
        [str(weightprep), "convert-llama", str(llama), str(base), "--model-size", "7B", "--quiet"],
        check=True,
        env=cb.quiet_env(),
    )
    with CheckpointReader(base) as r:
        names = sorted(r.info, key=hf_order)
        sizes = {k: r.info[k].dtype.itemsize * prod(r.info[k].shape) for k in names}
        if any(r.info[k].dtype != torch.float16 for k in names):
            raise SystemExit(f"{base}: not all float16")
        shards = split_even(names, sizes, SHARDS)
        total = sum(sizes.values())
        side = [f for f in SIDE_FILES if (base / f).is_file()]

        log(f"writing {base_bin} ({len(shards)} .bin shards) ...")
        tmp = base_bin.with_name(base_bin.name + ".partial")
        tmp.mkdir(parents=True)
        save_bin_shards(tmp, shards, lambda k: r[k].clone(), total)
        for f in side:
            shutil.copy(base / f, tmp / f)
        tmp.rename(base_bin)

        log(f"writing {delta} ({len(shards)} .bin shards of {DELTA_SCALE}*randn) ...")
        g = torch.Generator().manual_seed(DELTA_SEED)
        tmp = delta.with_name(delta.name + ".partial")
        tmp.mkdir(parents=True)
        save_bin_shards(
            tmp,
            shards,
            lambda k: (DELTA_SCALE * torch.randn(r.info[k].shape, generator=g)).half(),
            total,
        )
        for f in side:
            shutil.copy(base / f, tmp / f)
        tmp.rename(delta)
    for other in (base_bin, delta):
        with CheckpointReader(base) as rb, CheckpointReader(other) as ro:
            preflight(rb, ro)  # same names and shapes as the base, or InputError
    sizes_gb = {p.name: folder_bytes(p) / 1e9 for p in (base, base_bin, delta)}
    marker.write_text(json.dumps({"stamp": stamp, "GB": sizes_gb}, indent=2))
    log(
        "built "
        + ", ".join(f"{k} {v:.2f} GB" for k, v in sizes_gb.items())
        + f" in {time.monotonic() - t0:.0f}s"
    )
    return base, base_bin, delta


def folder_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def weight_files(p: Path) -> list[Path]:
    from weightprep.io.reader import weight_files as wf

    return wf(p)


# --------------------------------------------------------------------------- checking outputs


def describe_output(out: Path, ref: Path | None) -> str:
    """Size, format, dtypes and tensor count of `out`, and whether it equals `ref`'s tensors."""
    import torch

    from weightprep.delta import weight_names as _names
    from weightprep.io.reader import CheckpointReader

    size = folder_bytes(out)
    for idx in ("pytorch_model.bin.index.json", "model.safetensors.index.json"):
        if (out / idx).is_file() and not json.loads((out / idx).read_text()).get("weight_map"):
            return f"**EMPTY model** ({idx} has an empty weight_map), {size / 1e9:.2f} GB"
    try:
        r = CheckpointReader(out)
    except Exception as exc:  # report whatever is wrong; do not stop the bench
        return f"**unreadable**: {exc}"
    with r:
        fmt = "+".join(sorted({f.suffix.lstrip(".") for f in r.files}))
        dtypes = "+".join(sorted({str(i.dtype).removeprefix("torch.") for i in r.info.values()}))
        names = _names(r)
        desc = f"{size / 1e9:.2f} GB {fmt}, {dtypes}, {len(names)} tensors"
        if ref is None:
            return desc
        with CheckpointReader(ref) as rr:
            want = _names(rr)
            if names != want:
                return desc + f", **names differ from FastChat's** ({len(names ^ want)})"
            bad = [n for n in sorted(names) if not torch.equal(r[n], rr[n])]
        if bad:
            return desc + f", **{len(bad)} tensors differ from FastChat's** (e.g. {bad[0]})"
        return desc + ", = FastChat's"


# --------------------------------------------------------------------------- phases

# Runs in a fresh interpreter after bench/convert.py's WRITER_TIMERS: wraps apply-delta's
# internals with timers and applies once.
PHASES = cb.WRITER_TIMERS + textwrap.dedent(
    """
    import weightprep.delta as d
    import weightprep.io.reader as rd
    t[IMPORT] = time.perf_counter() - T0

    # The main thread's wait for the prefetched tensor: wrap the iterator prefetch_map returns.
    orig_prefetch = d.prefetch_map
    def prefetch_map(fn, items):
        it = orig_prefetch(wrap(fn, BUILD), items)
        while True:
            s = time.perf_counter()
            try:
                x = next(it)
            except StopIteration:
                return
            finally:
                add(NEXT, s)
            yield x
    d.prefetch_map = prefetch_map

    rd.CheckpointReader.__init__ = wrap(rd.CheckpointReader.__init__, OPEN)
    rd.CheckpointReader.__getitem__ = wrap(rd.CheckpointReader.__getitem__, GET)
    timed(d, "preflight", CHECK)
    timed(d, "_tokenizer_from", TOK)
    timed(d, "write_sharded", WRITER)
    timed(d, "check_written", REOPEN)
    orig_combine = d.combine
    def combine(base, other, out, op, **kw):
        return orig_combine(base, other, out, wrap(op, ADD), **kw)
    d.combine = combine
    s = time.perf_counter()
    d.apply_delta(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
    add(APPLY, s)
    add(TOTAL, T0)
    print(json.dumps(t))
    """
)
# Row names, in the order shown; "·" marks a phase nested in the row above it.
PHASE_NAMES = {
    "IMPORT": "start-up: import torch + weightprep",
    "APPLY": "apply_delta, all of it",
    "OPEN": "· open base and delta (safe_open / torch.load mmap)",
    "CHECK": "· preflight: names/shapes",
    "TOK": "· tokenizer files (tokenizer.json from the 32000 pieces)",
    "WRITER": "· write_sharded, all of it",
    "BUILD": "·· build each tensor (prefetch thread): get both + add, summed",
    "GET": "··· reader[name] for base and delta (safetensors get_tensor / mmap view)",
    "ADD": "··· torch.add in float16 (+ page-in of mmapped inputs)",
    "NEXT": "·· main thread waiting for the prefetched tensor",
    "WRITE": "·· f.write (copy into the page cache)",
    "WAIT": "·· wait for the sha256 threads after each write",
    "FSYNC": "·· fsync of the shard",
    "SHA": "·· sha256, summed (file digests; + per-tensor digests with --verify)",
    "REOPEN": "· re-open and check the written headers",
    "TOTAL": "process, all of it",
}
PHASES = "".join(f"{k} = {v!r}\n" for k, v in PHASE_NAMES.items()) + PHASES


def phases(base: Path, delta: Path, work: Path) -> dict[str, float] | str:
    out = work / "out-phases"
    shutil.rmtree(out, ignore_errors=True)
    cold = cb.drop_caches()
    try:
        got = subprocess.run(
            [sys.executable, "-c", PHASES, str(base), str(delta), str(out)],
            capture_output=True,
            text=True,
            env=cb.quiet_env(),
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(out.with_name(out.name + ".partial"), ignore_errors=True)
    if got.returncode != 0:
        return f"instrumented run failed: {got.stderr.strip().splitlines()[-1:]}"
    t: dict[str, float] = json.loads(got.stdout.strip().splitlines()[-1])
    t["(cold cache)"] = float(cold)
    return t


def phase_table(ph: dict[str, float] | str) -> str:
    if isinstance(ph, str):
        return ph + "\n"
    if not ph:
        return ""
    lines = [
        "| phase (instrumented in-process run, cold cache) | s |",
        "|---|--:|",
        *(f"| {v} | {ph[v]:.2f} |" for v in PHASE_NAMES.values() if v in ph),
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- report

TIMED_OUT = 124  # exit status of coreutils `timeout` when it had to stop the command


def result_word(r: cb.Result) -> str:
    if r.rc is None:
        return "not run"
    if r.rc == 0:
        return "ok"
    if r.oom_killed:
        return "**OOM-killed**"
    return "**timed out**" if r.rc == TIMED_OUT else f"**exit {r.rc}**"


def table(results: list[cb.Result]) -> str:
    """bench/convert.py's table, with `timeout`'s exit status spelled out."""
    head = (
        "| run | what | memory limit | result | wall s | wall + sync s | peak RSS MiB "
        "| peak anon RSS MiB | cgroup peak MiB | output |\n"
        "|---|---|---|---|--:|--:|--:|--:|--:|---|\n"
    )
    rows = []
    for r in results:
        timed = r.rc is not None
        rows.append(
            f"| {r.label} | {r.what} | {r.limit or 'none'} | {result_word(r)} "
            f"| {cb.fmt(r.wall_s if timed else None, 1)} "
            f"| {cb.fmt(r.total_s if timed else None, 1)} "
            f"| {cb.fmt(r.peak_rss_mib if timed else None)} "
            f"| {cb.fmt(r.peak_anon_mib if timed else None)} "
            f"| {cb.fmt(r.cgroup_peak_mib)} | {r.output or '–'} |"
        )
    return head + "\n".join(rows) + "\n"


def verdicts(results: list[cb.Result]) -> list[str]:
    """The targets: inside 1 GiB; wall ≤ 1.5× the I/O floor and ≤ 0.5× FastChat normal."""
    g = cb._groups(results)
    total = {k: cb._median([r.total_s for r in rs]) for k, rs in g.items()}
    wall = {k: cb._median([r.wall_s for r in rs]) for k, rs in g.items()}
    n = max((len(rs) for rs in g.values()), default=1)
    how = f"median of {n} runs, " if n > 1 else ""
    out = []
    floor, fc, low = total.get("floor"), total.get("fastchat"), total.get("fastchat-lowmem")
    for capped in (r for r in results if r.label.startswith("ours@") and r.rc is not None):
        ok = capped.rc == 0
        out.append(
            f"- ours inside {capped.limit}: "
            + (
                f"completed (exit 0) in {capped.total_s:.1f}s, peak anon RSS "
                f"{capped.peak_anon_mib:.0f} MiB"
                if ok
                else capped.note
            )
            + f" (target: completes inside 1 GiB; {'met' if ok else 'MISSED'})"
        )
    if "ours" in total:
        ours = total["ours"]
        if floor:
            ratio = ours / floor
            out.append(
                f"- ours: {how}wall + sync {ours:.1f}s = **{ratio:.2f}× the I/O floor** "
                f"({floor:.1f}s; target ≤ 1.5×: {'met' if ratio <= 1.5 else 'MISSED'}; "
                f"process wall alone {wall['ours']:.1f}s = {wall['ours'] / floor:.2f}×)"
            )
        if fc:
            ratio = ours / fc
            out.append(
                f"- ours: {how}**{ratio:.2f}× FastChat normal** ({fc:.1f}s; "
                f"target ≤ 0.5×: {'met' if ratio <= 0.5 else 'MISSED'})"
            )
        if low:
            out.append(f"- ours: {ours / low:.2f}× FastChat --low-cpu-mem ({low:.1f}s)")
    for name in ("fastchat", "fastchat-lowmem"):
        capped = [r for r in results if r.label.startswith(f"{name}@") and r.rc is not None]
        if not capped:
            continue
        fits = [r.limit for r in capped if r.rc == 0]
        fails = [f"{r.limit} ({result_word(r).strip('*')})" for r in capped if r.rc != 0]
        out.append(
            f"- {name} under memory limits: completed at {', '.join(fits) or 'none tried'}; "
            f"failed at {', '.join(fails) or 'none'}"
        )
    return out


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--fastchat-python",
        type=Path,
        help="python of a venv with fschat 0.2.36 (+ transformers 4.47.1, accelerate, "
        "sentencepiece): runs `-m fastchat.model.apply_delta`; FastChat rows skipped if missing",
    )
    ap.add_argument(
        "--workdir",
        type=Path,
        default=REPO / "bench" / "out" / "delta",
        help="default: bench/out/delta",
    )
    ap.add_argument(
        "--llama",
        type=Path,
        default=REPO / "bench" / "out" / "LLaMA-1B",
        help="bench/convert.py's Meta checkpoint (built there if missing); "
        "default: bench/out/LLaMA-1B",
    )
    ap.add_argument("--ours-limit", default="1G", help="memory limit for our cgroup run")
    ap.add_argument(
        "--fastchat-limits",
        default="1G,2G,2560M,3G",
        help="memory limits to try FastChat normal under (comma-separated; '' for none)",
    )
    ap.add_argument(
        "--lowmem-limits",
        default="1G,2G,3G",
        help="memory limits to try FastChat --low-cpu-mem under ('' for none)",
    )
    ap.add_argument(
        "--limit-timeout",
        type=int,
        default=150,
        help="seconds before a memory-limited run is stopped (`timeout`; default 150): "
        "FastChat can thrash for minutes at a limit below its need instead of being OOM-killed",
    )
    ap.add_argument(
        "--repeat", type=int, default=3, help="repetitions of each unlimited run (default 3)"
    )
    ap.add_argument("--no-phases", action="store_true", help="skip the instrumented phase run")
    ap.add_argument(
        "--no-check", action="store_true", help="do not compare outputs with FastChat's"
    )
    args = ap.parse_args(argv)

    started = time.monotonic()
    code, sources = cb.code_state()
    work = args.workdir.absolute()
    logs = work / "logs"
    report_md = work.with_name(work.name + ".md")  # bench/out/delta.md by default
    report_json = work.with_name(work.name + ".json")
    shutil.rmtree(logs, ignore_errors=True)  # only this run's logs
    logs.mkdir(parents=True)
    notes: list[str] = []
    fc_python = args.fastchat_python.absolute() if args.fastchat_python else None
    if fc_python is not None and not fc_python.is_file():
        notes.append(
            f"FastChat skipped: {args.fastchat_python} does not exist (`make peers` builds it)"
        )
        fc_python = None
    elif fc_python is None:
        notes.append("FastChat skipped: no --fastchat-python given")

    weightprep = Path(sys.executable).with_name("weightprep")
    if not weightprep.is_file():
        raise SystemExit(
            f"{weightprep}: not found; run with the python of the venv weightprep is installed in"
        )
    base, base_bin, delta = build_inputs(work, args.llama.absolute(), weightprep)
    base_w, bin_w, delta_w = weight_files(base), weight_files(base_bin), weight_files(delta)
    if len(base_w) != 1:
        raise SystemExit(f"{base}: expected one safetensors file, found {len(base_w)}")

    out = work / "out"
    floor_file = work / "floor.bin"
    tmp = work / "tmp"  # TMPDIR for FastChat (--low-cpu-mem splits its inputs there)
    ref = work / "fastchat-ref"

    def rm_outputs() -> None:
        for p in (out, out.with_name(out.name + ".partial"), floor_file, tmp):
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        tmp.mkdir()

    def describe() -> str:
        if floor_file.is_file():
            return f"{floor_file.stat().st_size / 1e9:.2f} GB copy"
        if not out.is_dir():
            return ""
        return describe_output(out, ref if ref.is_dir() else None)

    def ours(b: Path) -> list[str]:
        return [str(weightprep), "apply-delta", str(b), str(delta), str(out), "--quiet"]

    def fastchat(b: Path, low: bool, target: Path = out) -> list[str]:
        assert fc_python is not None
        cmd = [
            str(fc_python),
            "-m",
            "fastchat.model.apply_delta",
            "--base-model-path",
            str(b),
            "--target-model-path",
            str(target),
            "--delta-path",
            str(delta),
        ]
        return cmd + (["--low-cpu-mem"] if low else [])

    q = " ".join
    read_cmd = f"cat {q(map(str, base_w + delta_w))} > /dev/null"
    floor_cmd = (
        f"cat {q(map(str, delta_w))} > /dev/null && dd if={base_w[0]} of={floor_file} bs=16M"
    )
    plain = cb.quiet_env()
    fc_env = cb.quiet_env(TMPDIR=str(tmp))
    Run = tuple[str, str, list[str], int | None, dict[str, str]]
    runs: list[Run] = []
    for i in range(args.repeat):
        sfx = f"#{i + 1}" if args.repeat > 1 else ""
        runs += [
            (
                f"floor-read{sfx}",
                "`cat` of base + delta weights to /dev/null",
                ["sh", "-c", read_cmd],
                None,
                plain,
            ),
            (
                f"floor{sfx}",
                "(d) I/O floor: `cat` delta, `dd` copy of base, `sync`",
                ["sh", "-c", floor_cmd],
                None,
                plain,
            ),
            (f"ours{sfx}", "(a) weightprep apply-delta (stream)", ours(base), None, plain),
            (
                f"ours-binbase{sfx}",
                "(a′) weightprep apply-delta, .bin base",
                ours(base_bin),
                None,
                plain,
            ),
        ]
        if fc_python:
            runs += [
                (f"fastchat{sfx}", "(b) FastChat apply_delta", fastchat(base, False), None, fc_env),
                (
                    f"fastchat-lowmem{sfx}",
                    "(c) FastChat --low-cpu-mem, .bin base",
                    fastchat(base_bin, True),
                    None,
                    fc_env,
                ),
            ]

    def tag(text: str) -> str:
        return text.strip().upper().removesuffix("IB").removesuffix("B")

    def limits(spec: str) -> list[str]:
        return [s.strip() for s in spec.split(",") if s.strip()]

    for text in limits(args.ours_limit):
        runs.append(
            (
                f"ours@{tag(text)}",
                "(a) weightprep apply-delta (stream)",
                ours(base),
                cb.parse_limit(text),
                plain,
            )
        )
    if fc_python:
        for text in limits(args.fastchat_limits):
            runs.append(
                (
                    f"fastchat@{tag(text)}",
                    "(b) FastChat apply_delta",
                    fastchat(base, False),
                    cb.parse_limit(text),
                    fc_env,
                )
            )
        for text in limits(args.lowmem_limits):
            runs.append(
                (
                    f"fastchat-lowmem@{tag(text)}",
                    "(c) FastChat --low-cpu-mem, .bin base",
                    fastchat(base_bin, True),
                    cb.parse_limit(text),
                    fc_env,
                )
            )

    # One untimed copy first (the floor's own command), as bench/convert.py does: on this VM the
    # first large copy of a session often runs slower than later ones.
    log("priming: one untimed copy of the base")
    rm_outputs()
    subprocess.run(["sh", "-c", floor_cmd], check=True, capture_output=True)
    os.sync()
    rm_outputs()
    shutil.rmtree(ref, ignore_errors=True)
    if fc_python and not args.no_check:
        log("check reference: one untimed FastChat apply_delta run")
        got = subprocess.run(
            fastchat(base, False, ref),
            capture_output=True,
            text=True,
            env=fc_env,
        )
        if got.returncode != 0:
            notes.append(f"no check: the untimed FastChat run failed: {got.stderr[-300:]}")
            shutil.rmtree(ref, ignore_errors=True)
        rm_outputs()
    elif not args.no_check:
        notes.append("outputs not checked: no FastChat to compare with")

    results: list[cb.Result] = []
    try:
        for label, what, cmd, limit, env in runs:
            if limit:  # `timeout` runs inside the cgroup too; its own RSS is ~1 MiB
                cmd = ["timeout", "--kill-after=10", str(args.limit_timeout), *cmd]
            r = cb.measure(
                label,
                what,
                cmd,
                logs,
                env=env,
                limit=limit,
                cleanup=rm_outputs,
                describe=describe,
            )
            if r.rc == TIMED_OUT and not r.oom_killed:
                r.note = f"timed out: stopped after {args.limit_timeout}s, not OOM-killed"
            results.append(r)
            report_json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    finally:
        shutil.rmtree(ref, ignore_errors=True)
        rm_outputs()
        shutil.rmtree(tmp, ignore_errors=True)

    ph: dict[str, float] | str = {}
    if not args.no_phases:
        log("phases: instrumented apply-delta")
        ph = phases(base, delta, work)

    now = cb.code_state()[1]
    changed = sorted(f for f in sources.keys() | now.keys() if sources.get(f) != now.get(f))
    if changed:
        notes.append(
            "**weightprep's code changed while this ran** (rows may mix versions): "
            + ", ".join(changed)
        )
    cold = all(r.cold for r in results if r.rc is not None)
    cg_note = next(
        (r.note for r in results if r.note.startswith("not run: could not create")), None
    )
    v = "v2" if "memory" in cb._read(Path("/sys/fs/cgroup/cgroup.controllers")).split() else "v1"
    gb = {p.name: folder_bytes(p) / 1e9 for p in (base, base_bin, delta)}
    read_gb = sum(f.stat().st_size for f in base_w + delta_w) / 1e9
    doc = [
        f"# apply-delta benchmark: {gb['base']:.2f} GB fp16 base + {gb['delta']:.2f} GB "
        f"lmsys-style delta ({len(delta_w)} fp16 .bin shards)\n",
        f"Machine: {cb.machine()}.  ",
        f"Code: {code}.  ",
        f"Command: `{' '.join([Path(sys.executable).name, *sys.argv])}`.  ",
        f"Python {platform.python_version()}; each run a fresh process; "
        + (
            "page cache dropped before every run (`sync; echo 3 > /proc/sys/vm/drop_caches`)."
            if cold
            else "**page cache NOT dropped** (/proc/sys/vm/drop_caches not writable)."
        ),
        f"Memory limits: {cg_note or f'cgroup {v} memory controller, swap capped at the limit'}.  ",
        f"Inputs: base/ = one safetensors file; base-bin/ = the same tensors as {len(bin_w)} "
        f".bin shards; delta/ = {len(delta_w)} .bin shards; the floor reads {read_gb:.2f} GB "
        f"and writes {base_w[0].stat().st_size / 1e9:.2f} GB.\n",
        table(results),
        cb.summary(results),
        "wall + sync: the process's wall time plus the `sync` right after it (data it left dirty).",
        "peak RSS: VmHWM summed over the process tree (file-backed mmap pages included); "
        "peak anon RSS: RssAnon summed over the tree, polled every 50 ms.",
        "output: what the run left, checked tensor by tensor against an untimed FastChat run "
        "(`= FastChat's`: every tensor torch.equal).\n",
        *verdicts(results),
        *([""] + [f"- {n}" for n in notes] if notes else []),
        "",
        phase_table(ph),
        f"Total benchmark time: {time.monotonic() - started:.0f}s.",
    ]
    text = "\n".join(doc) + "\n"
    report_md.write_text(text)
    report_json.write_text(
        json.dumps(
            {
                "results": [asdict(r) for r in results],
                "phases": ph,
                "machine": cb.machine(),
                "inputs_GB": gb,
            },
            indent=2,
        )
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
