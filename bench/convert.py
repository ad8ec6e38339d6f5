"""Benchmark `weightprep convert-llama` against the I/O floor and transformers' converter.

Builds (once, cached in the work folder) a ~1B-parameter LLaMA checkpoint in Meta's layout:
dim 2048, 16 layers, 16 heads, a real 32000-piece SentencePiece tokenizer, fp16 weights,
~1.9 GB: `ROOT/tokenizer.model` + `ROOT/7B/{params.json,consolidated.00.pth}`. Then runs, each
in a fresh process with the page cache dropped first (`sync; echo 3 >
/proc/sys/vm/drop_caches`, when writable):

  floor-read  `dd if=consolidated.00.pth of=/dev/null bs=16M` (cold read alone, for reference)
  floor       `dd if=consolidated.00.pth of=WORK/floor.bin bs=16M`, then `sync`: the I/O floor
  ours-fp16   `weightprep convert-llama ROOT OUT --model-size 7B --quiet --dtype float16`
  ours-bf16   the same with `--dtype bfloat16`
  reference   transformers 4.47.1's `convert_llama_weights_to_hf.py --model_size 7B`
  NAME@LIMIT  the same inside a memory cgroup (v2, else v1) limited to LIMIT, swap capped

For each run: wall seconds of the process, wall + the `sync` right after it (writeback of what
the process left dirty), peak RSS (VmHWM of every process in the tree, polled every 50 ms and
summed; wait4's ru_maxrss kept in the JSON as a cross-check), peak anonymous RSS (RssAnon summed
over the tree, polled), the output's size and dtypes, and for cgroup runs whether the OOM killer
fired and the cgroup's own peak usage (page cache included). Two instrumented in-process runs
then split our converter's time into phases by wrapping its functions from outside (no product
code is changed).

Run it as root (for drop_caches and cgroups; without root those parts are skipped and the
report says so), with the python of the virtualenv weightprep is installed in:

    .venv/bin/python bench/convert.py --ref-python .peers/transformers-4.47.1/bin/python
    .venv/bin/python bench/convert.py --ref-python ... --repeat 5   # medians over 5 runs

It prints a Markdown table and writes it to WORK/convert.md, raw numbers to WORK/convert.json
and each run's output to WORK/logs/. WORK (--workdir) defaults to bench/out, which git
ignores; the built checkpoint stays there so re-runs skip building it (delete the folder to
reclaim its 1.9 GB); converted outputs are deleted after each run.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import select
import shutil
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MiB = 1 << 20
GiB = 1 << 30

PARAMS = {
    "dim": 2048,
    "multiple_of": 256,
    "n_heads": 16,
    "n_layers": 16,
    "norm_eps": 1e-06,
    "vocab_size": -1,
}
N_PIECES = 32000
SEED = 0
BUILD_VERSION = 1  # bump when the built checkpoint changes, to invalidate the cache
POLL_S = 0.05
DROP_CACHES = Path("/proc/sys/vm/drop_caches")
REF_SCRIPT = "transformers/models/llama/convert_llama_weights_to_hf.py"


# --------------------------------------------------------------------------- the input


def build_tokenizer(n_pieces: int = N_PIECES) -> bytes:
    """weightprep's small trained BPE model, padded with NORMAL pieces to `n_pieces`."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    from weightprep.example import train_tokenizer

    proto = pb.ModelProto()
    proto.ParseFromString(train_tokenizer(seed=SEED))
    normal = pb.ModelProto.SentencePiece.NORMAL
    existing = {p.piece for p in proto.pieces}
    score = min(p.score for p in proto.pieces if p.type == normal)
    k = 0
    while len(proto.pieces) < n_pieces:
        piece = f"\u2581wp{k:05d}"
        k += 1
        if piece in existing:
            continue
        score -= 1.0
        new = proto.pieces.add()
        new.piece, new.score, new.type = piece, score, normal
    proto.trainer_spec.vocab_size = n_pieces
    data = proto.SerializeToString()
    size = spm.SentencePieceProcessor(model_proto=data).get_piece_size()
    if size != n_pieces:
        raise SystemExit(f"padded tokenizer has {size} pieces, wanted {n_pieces}")
    return data


def build_checkpoint(root: Path, ref_python: Path | None) -> Path:
    """Write (or reuse) the Meta-layout checkpoint under `root`; return the .pth path."""
    import torch

    from weightprep.example import meta_tensors
    from weightprep.llama.params import parse_params

    stamp = {"version": BUILD_VERSION, "params": PARAMS, "pieces": N_PIECES, "seed": SEED}
    marker = root / "BUILT.json"
    pth = root / "7B" / "consolidated.00.pth"
    built = json.loads(marker.read_text()) if marker.is_file() else {}
    if pth.is_file() and {k: v for k, v in built.items() if k != "ref_checked"} == stamp:
        log(f"reusing the checkpoint in {root}")
        if ref_python is not None and not built.get("ref_checked"):
            check_ref_tokenizer(ref_python, root)
            marker.write_text(json.dumps({**stamp, "ref_checked": True}))
        return pth
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    (partial / "7B").mkdir(parents=True)
    t0 = time.monotonic()
    tok = build_tokenizer()
    (partial / "tokenizer.model").write_bytes(tok)
    (partial / "7B" / "params.json").write_text(json.dumps(PARAMS))  # one line, as Meta's
    params = parse_params(PARAMS)
    log(f"building {params.n_layers}-layer dim-{params.dim} fp16 weights ...")
    # One copy in memory (fp16; meta_tensors casts each tensor as it makes it), saved as is.
    tensors = meta_tensors(params, N_PIECES, torch.Generator().manual_seed(SEED))
    n = sum(t.numel() for t in tensors.values())
    torch.save(tensors, partial / "7B" / "consolidated.00.pth")
    del tensors
    size = (partial / "7B" / "consolidated.00.pth").stat().st_size
    log(f"wrote {n:,} parameters, {size / 1e9:.2f} GB in {time.monotonic() - t0:.0f}s")
    if ref_python is not None:
        check_ref_tokenizer(ref_python, partial)
    partial.rename(root)
    marker.write_text(json.dumps({**stamp, "ref_checked": ref_python is not None}))
    return pth


def ref_input(root: Path, work: Path) -> Path:
    """The reference wants tokenizer.model inside its --input_dir: a size folder of links."""
    d = work / "ref-input"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    for src in (
        root / "tokenizer.model",
        root / "7B" / "params.json",
        root / "7B" / "consolidated.00.pth",
    ):
        (d / src.name).symlink_to(src.resolve())
    return d


@functools.cache
def ref_script(ref_python: Path) -> Path:
    out = subprocess.run(
        [
            str(ref_python),
            "-c",
            "import transformers, os; print(os.path.dirname(transformers.__file__))",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip()).parent / REF_SCRIPT


def check_ref_tokenizer(ref_python: Path, root: Path) -> None:
    """Run the reference's own tokenizer step (`--model_size tokenizer_only`) on the tokenizer."""
    tmp = root / "ref-tokenizer-check"
    d = tmp / "in"
    d.mkdir(parents=True)
    shutil.copy(root / "tokenizer.model", d / "tokenizer.model")
    cmd = [
        str(ref_python),
        str(ref_script(ref_python)),
        "--input_dir",
        str(d),
        "--model_size",
        "tokenizer_only",
        "--output_dir",
        str(tmp / "out"),
    ]
    probe = (
        "import sys; from transformers import AutoTokenizer; "
        "t = AutoTokenizer.from_pretrained(sys.argv[1]); print(type(t).__name__, len(t))"
    )
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True, env=quiet_env())
        got = subprocess.run(
            [str(ref_python), "-c", probe, str(tmp / "out")],
            check=True,
            capture_output=True,
            text=True,
            env=quiet_env(),
        ).stdout.split()
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"the reference rejects the tokenizer:\n{exc.stderr[-2000:]}") from exc
    if got[-1] != str(N_PIECES):
        raise SystemExit(f"the reference's tokenizer step gives {got}, wanted {N_PIECES} pieces")
    log(f"reference tokenizer step accepts it: {' '.join(got)}")
    shutil.rmtree(tmp)


# --------------------------------------------------------------------------- measuring


@dataclass
class Result:
    label: str
    what: str
    limit: str = ""
    rc: int | None = None
    oom_killed: bool = False
    wall_s: float = 0.0
    sync_s: float = 0.0
    peak_rss_mib: float = 0.0  # sum over the tree of each process's VmHWM
    # wait4's ru_maxrss: the largest single process's peak, but it counts the forked child
    # before exec (a copy of this harness, ~220 MiB), so it is never below that.
    ru_maxrss_mib: float = 0.0
    peak_anon_mib: float = 0.0  # max over samples of sum(RssAnon)
    cgroup_peak_mib: float | None = None
    cold: bool = False
    output: str = ""  # what the run left: size and safetensors dtypes
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def total_s(self) -> float:
        return self.wall_s + self.sync_s


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def quiet_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.update(extra)
    return env


def drop_caches() -> bool:
    os.sync()
    try:
        DROP_CACHES.write_text("3\n")
    except OSError:
        return False
    return True


def _status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, val = line.partition(":")
                if key in ("VmHWM", "RssAnon"):
                    out[key] = int(val.split()[0]) * 1024
    except OSError:
        pass
    return out


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return pids


class MemCgroup:
    """A memory-limited cgroup (v2 if the memory controller is there, else v1), no swap."""

    def __init__(self, path: Path, version: int) -> None:
        self.path, self.version = path, version

    @classmethod
    def create(cls, name: str, limit: int) -> MemCgroup | str:
        v2 = Path("/sys/fs/cgroup")
        v1 = Path("/sys/fs/cgroup/memory")
        errors = []
        if "memory" in _read(v2 / "cgroup.controllers").split():
            try:
                if "memory" not in _read(v2 / "cgroup.subtree_control").split():
                    (v2 / "cgroup.subtree_control").write_text("+memory")
                cg = cls(v2 / name, 2)
                cg._mkdir()
                (cg.path / "memory.max").write_text(str(limit))
                if (cg.path / "memory.swap.max").exists():
                    (cg.path / "memory.swap.max").write_text("0")
                return cg
            except OSError as exc:
                errors.append(f"cgroup v2 at {v2}: {exc}")
        if (v1 / "memory.limit_in_bytes").exists():
            try:
                cg = cls(v1 / name, 1)
                cg._mkdir()
                (cg.path / "memory.limit_in_bytes").write_text(str(limit))
                memsw = cg.path / "memory.memsw.limit_in_bytes"
                if memsw.exists():
                    try:
                        memsw.write_text(str(limit))
                    except OSError:
                        pass  # no swap accounting; this machine has no swap anyway
                return cg
            except OSError as exc:
                errors.append(f"cgroup v1 at {v1}: {exc}")
        return (
            "; ".join(errors) or "no cgroup v2 memory controller and no cgroup v1 memory hierarchy"
        )

    def _mkdir(self) -> None:
        if self.path.exists():
            self.path.rmdir()
        self.path.mkdir()

    def join(self) -> None:  # runs in the child between fork and exec
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def oom_kills(self) -> int:
        text = _read(self.path / ("memory.events" if self.version == 2 else "memory.oom_control"))
        for line in text.splitlines():
            key, _, val = line.partition(" ")
            if key == "oom_kill":
                return int(val)
        return 0

    def peak(self) -> int | None:
        text = _read(
            self.path / ("memory.peak" if self.version == 2 else "memory.max_usage_in_bytes")
        )
        return int(text) if text.strip().isdigit() else None

    def remove(self) -> None:
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def measure(
    label: str,
    what: str,
    cmd: Sequence[str],
    logs: Path,
    *,
    env: dict[str, str] | None = None,
    limit: int | None = None,
    cleanup: Callable[[], None] = lambda: None,
    describe: Callable[[], str] = lambda: "",
) -> Result:
    """Run `cmd` once in a fresh process, cold, optionally inside a `limit`-byte memory cgroup."""
    res = Result(label, what, limit=f"{limit // MiB} MiB" if limit else "")
    cleanup()
    res.cold = drop_caches()
    cg: MemCgroup | None = None
    if limit:
        made = MemCgroup.create(f"wpbench-{os.getpid()}", limit)
        if isinstance(made, str):
            res.note = f"not run: could not create a memory cgroup ({made})"
            log(f"{label}: {res.note}")
            return res
        cg = made
    log(
        f"{label}: {' '.join(cmd)}"
        + (f"  [memory limit {limit // MiB} MiB, cgroup v{cg.version}]" if cg else "")
    )
    logfile = logs / f"{label}.log"
    hwm: dict[int, int] = {}
    t0 = time.perf_counter()
    with open(logfile, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=cg.join if cg else None
        )
    pidfd = os.pidfd_open(proc.pid)
    try:
        while True:
            pids = _tree(proc.pid)
            anon = 0
            for p in pids:
                st = _status(p)
                hwm[p] = max(hwm.get(p, 0), st.get("VmHWM", 0))
                anon += st.get("RssAnon", 0)
            res.peak_anon_mib = max(res.peak_anon_mib, anon / MiB)
            if select.select([pidfd], [], [], POLL_S)[0]:
                break
        _, status, ru = os.wait4(proc.pid, 0)
        res.wall_s = time.perf_counter() - t0
    finally:
        os.close(pidfd)
    proc.returncode = res.rc = os.waitstatus_to_exitcode(status)
    t1 = time.perf_counter()
    os.sync()
    res.sync_s = time.perf_counter() - t1
    res.peak_rss_mib = sum(hwm.values()) / MiB
    res.ru_maxrss_mib = ru.ru_maxrss * 1024 / MiB
    if cg:
        res.oom_killed = cg.oom_kills() > 0
        peak = cg.peak()
        res.cgroup_peak_mib = peak / MiB if peak is not None else None
        cg.remove()
    if res.rc != 0:
        tail = logfile.read_bytes()[-600:].decode(errors="replace").strip().splitlines()
        why = "OOM-killed" if res.oom_killed else f"exit {res.rc}"
        res.note = (res.note + f"; {why}" if res.note else why) + (
            f": {tail[-1][:160]}" if tail and not res.oom_killed else ""
        )
    log(
        f"{label}: rc={res.rc} wall={res.wall_s:.1f}s sync={res.sync_s:.1f}s "
        f"rss={res.peak_rss_mib:.0f}MiB anon={res.peak_anon_mib:.0f}MiB"
        + (f" cgroup_peak={res.cgroup_peak_mib:.0f}MiB oom={res.oom_killed}" if cg else "")
    )
    if res.rc == 0:
        res.output = describe()
    cleanup()
    return res


# --------------------------------------------------------------------------- phases

# Shared by bench/convert.py and bench/delta.py: runs first in the fresh interpreter of a phase
# run; times the streaming writer's file writes, fsyncs, sha256 calls and hasher waits from
# outside the product (module attributes swapped, no product code changed).
WRITER_TIMERS = textwrap.dedent(
    """
    import json, os, sys, time
    T0 = time.perf_counter()
    from collections import defaultdict
    from pathlib import Path
    import weightprep.io.safetensors_writer as w
    t = defaultdict(float)

    def add(key, s):
        t[key] += time.perf_counter() - s

    def wrap(fn, key):
        def f(*a, **k):
            s = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                add(key, s)
        return f

    def timed(mod, name, key):
        setattr(mod, name, wrap(getattr(mod, name), key))

    class Sha:
        def __init__(self, data=b""):
            import hashlib
            self.h = hashlib.sha256()
            self.update(data)
        def update(self, b):
            s = time.perf_counter()
            self.h.update(b)
            add(SHA, s)
        def hexdigest(self):
            return self.h.hexdigest()

    class File:
        def __init__(self, *a):
            self.f = open(*a)
        def __getattr__(self, name):
            return getattr(self.f, name)
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            self.f.close()
        def write(self, b):
            s = time.perf_counter()
            n = self.f.write(b)
            add(WRITE, s)
            return n

    class Os:
        def __getattr__(self, name):
            return getattr(os, name)
        def fsync(self, fd):
            s = time.perf_counter()
            os.fsync(fd)
            add(FSYNC, s)

    class Future:
        def __init__(self, f):
            self.f = f
        def result(self):
            s = time.perf_counter()
            r = self.f.result()
            add(WAIT, s)
            return r

    class Pool(w.ThreadPoolExecutor):
        def submit(self, *a, **k):
            return Future(super().submit(*a, **k))

    w.ThreadPoolExecutor = Pool
    w.hashlib = type("H", (), {"sha256": Sha})
    w.open = File
    w.os = Os()
    """
)

# Runs in a fresh interpreter after WRITER_TIMERS: wraps the converter's internals and converts once.
PHASES = WRITER_TIMERS + textwrap.dedent(
    """
    import weightprep.llama.convert as c
    t[IMPORT] = time.perf_counter() - T0

    timed(c, "load_state_dict", OPEN)
    timed(c, "_check_inputs", CHECK)
    timed(c, "tokenizer_files", TOK)
    timed(c, "_build", BUILD)
    timed(c, "check_written", REOPEN)
    timed(c, "write_sharded", WRITER)
    s = time.perf_counter()
    c.convert_meta_to_hf(Path(sys.argv[1]), Path(sys.argv[2]), model_size="7B", dtype=sys.argv[3])
    add(CONVERT, s)
    add(TOTAL, T0)
    print(json.dumps(t))
    """
)
# Row names, in the order shown; "·" marks a phase nested in the row above it.
PHASE_NAMES = {
    "IMPORT": "start-up: import torch + weightprep",
    "CONVERT": "convert_meta_to_hf, all of it",
    "OPEN": "· open the .pth (torch.load, mmap)",
    "TOK": "· tokenizer files (tokenizer.json from the 32000 pieces)",
    "CHECK": "· check names/shapes",
    "WRITER": "· write_sharded, all of it",
    "BUILD": "·· build each tensor: concat/permute/cast (on a prefetch thread if there is one)",
    "WRITE": "·· f.write (page-in of the mmapped input + copy into the page cache)",
    "WAIT": "·· wait for the sha256 thread after each write",
    "FSYNC": "·· fsync of the shard",
    "SHA": "·· sha256, summed (on the hasher thread if the writer has one)",
    "REOPEN": "· re-open and check the written headers",
    "TOTAL": "process, all of it",
}
PHASES = "".join(f"{k} = {v!r}\n" for k, v in PHASE_NAMES.items()) + PHASES


def phases(root: Path, work: Path, dtype: str) -> dict[str, float] | str:
    out = work / f"out-phases-{dtype}"
    shutil.rmtree(out, ignore_errors=True)
    cold = drop_caches()
    try:
        got = subprocess.run(
            [sys.executable, "-c", PHASES, str(root), str(out), dtype],
            capture_output=True,
            text=True,
            env=quiet_env(),
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)
    if got.returncode != 0:
        return f"instrumented run failed: {got.stderr.strip().splitlines()[-1:]}"
    t: dict[str, float] = json.loads(got.stdout.strip().splitlines()[-1])
    t["(cold cache)"] = float(cold)
    return t


# --------------------------------------------------------------------------- report


def safetensors_dtypes(folder: Path) -> set[str]:
    """The tensor dtypes named in the headers of `folder`'s .safetensors files."""
    found = set()
    for path in folder.glob("*.safetensors"):
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        found |= {v["dtype"] for k, v in header.items() if k != "__metadata__"}
    return found


def code_state() -> tuple[str, dict[str, str]]:
    """A description of the weightprep code being measured, and {file: sha256} of its sources."""
    import hashlib

    files = {
        path.relative_to(REPO).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted((REPO / "weightprep").rglob("*.py"))
    }

    def git(*a: str) -> str:
        got = subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True)
        return got.stdout.strip() if got.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD") or "unknown commit"
    changed = git("status", "--porcelain", "--", "weightprep")
    dirty = " + uncommitted changes" if changed else ""
    return f"weightprep at {head}{dirty}", files


def machine() -> str:
    mem = next(
        line
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    fs = subprocess.run(
        ["df", "-hT", str(REPO)], capture_output=True, text=True
    ).stdout.splitlines()[-1:]
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {int(mem.split()[1]) / (1 << 20):.1f} GiB RAM, "
        f"kernel {platform.release()}, work disk: `{' '.join(fs[0].split()) if fs else '?'}`"
    )


def fmt(x: float | None, digits: int = 0) -> str:
    return "–" if x is None else f"{x:,.{digits}f}"


def table(results: list[Result]) -> str:
    head = (
        "| run | what | memory limit | result | wall s | wall + sync s | peak RSS MiB "
        "| peak anon RSS MiB | cgroup peak MiB | output |\n"
        "|---|---|---|---|--:|--:|--:|--:|--:|---|\n"
    )
    rows = []
    for r in results:
        if r.rc is None:
            result = "not run"
        elif r.rc == 0:
            result = "ok"
        else:
            result = "**OOM-killed**" if r.oom_killed else f"**exit {r.rc}**"
        timed = r.rc is not None
        rows.append(
            f"| {r.label} | {r.what} | {r.limit or 'none'} | {result} "
            f"| {fmt(r.wall_s if timed else None, 1)} | {fmt(r.total_s if timed else None, 1)} "
            f"| {fmt(r.peak_rss_mib if timed else None)} "
            f"| {fmt(r.peak_anon_mib if timed else None)} "
            f"| {fmt(r.cgroup_peak_mib)} | {r.output or '–'} |"
        )
    return head + "\n".join(rows) + "\n"


def load1() -> float:
    """The 1-minute load average: other jobs on a shared machine show up in the timings."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def _groups(results: list[Result]) -> dict[str, list[Result]]:
    """Successful unlimited runs by name, repetitions together ("ours-fp16#2" -> "ours-fp16")."""
    groups: dict[str, list[Result]] = {}
    for r in results:
        if r.rc == 0 and "@" not in r.label:
            groups.setdefault(r.label.split("#")[0], []).append(r)
    return groups


def summary(results: list[Result]) -> str:
    """Medians (and the range of wall + sync) over repetitions; empty for a single run each."""
    groups = _groups(results)
    if max((len(rs) for rs in groups.values()), default=1) < 2:
        return ""
    lines = [
        "| run | runs | median wall s | median wall + sync s | min–max wall + sync s "
        "| median peak RSS MiB | median peak anon RSS MiB |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for name, rs in groups.items():
        tot = [r.total_s for r in rs]
        lines.append(
            f"| {name} | {len(rs)} | {_median([r.wall_s for r in rs]):.1f} | {_median(tot):.1f} "
            f"| {min(tot):.1f}–{max(tot):.1f} | {_median([r.peak_rss_mib for r in rs]):,.0f} "
            f"| {_median([r.peak_anon_mib for r in rs]):,.0f} |"
        )
    return "\n".join(lines) + "\n"


def verdicts(results: list[Result]) -> list[str]:
    """The targets: inside 1 GiB; wall ≤ 1.5× the I/O floor and ≤ 0.5× the reference."""
    groups = _groups(results)
    total = {k: _median([r.total_s for r in rs]) for k, rs in groups.items()}
    wall = {k: _median([r.wall_s for r in rs]) for k, rs in groups.items()}
    n = max((len(rs) for rs in groups.values()), default=1)
    how = f"median of {n} runs, " if n > 1 else ""
    out = []
    floor, ref = total.get("floor"), total.get("reference")
    for name in ("ours-fp16", "ours-bf16"):
        if name not in total:
            continue
        ours = total[name]
        if floor:
            ratio = ours / floor
            out.append(
                f"- {name}: {how}wall + sync {ours:.1f}s = **{ratio:.2f}× the I/O floor** "
                f"({floor:.1f}s; target ≤ 1.5×: {'met' if ratio <= 1.5 else 'MISSED'}; "
                f"process wall alone {wall[name]:.1f}s = {wall[name] / floor:.2f}×)"
            )
        if ref:
            ratio = ours / ref
            out.append(
                f"- {name}: {how}**{ratio:.2f}× the reference** ({ref:.1f}s; "
                f"target ≤ 0.5×: {'met' if ratio <= 0.5 else 'MISSED'})"
            )
        for capped in (r for r in results if r.label.startswith(f"{name}@") and r.rc is not None):
            ok = capped.rc == 0
            out.append(
                f"- {name} inside {capped.limit}: {'completed (exit 0)' if ok else capped.note} "
                f"(target: completes inside 1 GiB; {'met' if ok else 'MISSED'})"
            )
    return out


def phase_table(ph: dict[str, dict[str, float] | str]) -> str:
    if not ph:
        return ""
    keys = [
        k for k in PHASE_NAMES.values() if any(isinstance(t, dict) and k in t for t in ph.values())
    ]
    lines = [
        "| phase (instrumented in-process run, cold cache) | "
        + " | ".join(f"{d} s" for d in ph)
        + " |",
        "|---|" + "--:|" * len(ph),
    ]
    for k in keys:
        cells = [fmt(t.get(k), 2) if isinstance(t, dict) else "–" for t in ph.values()]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    for d, t in ph.items():
        if isinstance(t, str):
            lines.append(f"\n{d}: {t}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def parse_limit(text: str) -> int:
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    mult = {"K": 1 << 10, "M": MiB, "G": GiB}.get(text[-1:], 1)
    return int(float(text.rstrip("KMG")) * mult)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--ref-python",
        type=Path,
        help="python of a venv with transformers 4.47.1 "
        "(+accelerate): runs its convert_llama_weights_to_hf.py; skipped if missing",
    )
    ap.add_argument(
        "--workdir", type=Path, default=REPO / "bench" / "out", help="default: bench/out"
    )
    ap.add_argument(
        "--ref-limits",
        default="1G,2G,2560M,3G",
        help="memory limits to try the reference under (comma-separated; '' for none)",
    )
    ap.add_argument(
        "--ours-limit", default="1G", help="memory limit for our converter's cgroup runs"
    )
    ap.add_argument("--no-phases", action="store_true", help="skip the instrumented phase runs")
    ap.add_argument(
        "--repeat", type=int, default=3, help="repetitions of each unlimited run (default 3)"
    )
    args = ap.parse_args(argv)

    started = time.monotonic()
    code, sources = code_state()
    work = args.workdir.absolute()
    logs = work / "logs"
    shutil.rmtree(logs, ignore_errors=True)  # only this run's logs
    logs.mkdir(parents=True)
    ref_python = args.ref_python.absolute() if args.ref_python else None
    notes: list[str] = []
    if ref_python is not None and not ref_python.is_file():
        notes.append(
            f"reference skipped: {args.ref_python} does not exist (`make peers` builds it)"
        )
        ref_python = None
    elif ref_python is None:
        notes.append("reference skipped: no --ref-python given")

    root = work / "LLaMA-1B"
    pth = build_checkpoint(root, ref_python)
    in_bytes = pth.stat().st_size
    weightprep = Path(sys.executable).with_name("weightprep")
    if not weightprep.is_file():
        raise SystemExit(
            f"{weightprep}: not found; run with the python of the venv weightprep is installed in"
        )
    out = work / "out-convert"
    floor_file = work / "floor.bin"
    ref_tmp = work / "ref-tmp"

    def rm_outputs() -> None:
        for p in (out, out.with_name(out.name + ".partial"), floor_file, ref_tmp):
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()

    def describe() -> str:
        if floor_file.is_file():
            return f"{floor_file.stat().st_size / 1e9:.2f} GB copy"
        if not out.is_dir():
            return ""
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        return f"{size / 1e9:.2f} GB, " + "+".join(sorted(safetensors_dtypes(out)))

    def ours(dtype: str) -> list[str]:
        return [
            str(weightprep),
            "convert-llama",
            str(root),
            str(out),
            "--model-size",
            "7B",
            "--quiet",
            "--dtype",
            dtype,
        ]

    def ref_cmd() -> list[str]:
        assert ref_python is not None
        return [
            str(ref_python),
            str(ref_script(ref_python)),
            "--input_dir",
            str(ref_input(root, work)),
            "--model_size",
            "7B",
            "--output_dir",
            str(out),
        ]

    runs: list[tuple[str, str, list[str], int | None, dict[str, str]]] = []
    plain = quiet_env()
    ref_env = quiet_env(TMPDIR=str(ref_tmp))  # its temporary .bin shards land in WORK
    for i in range(args.repeat):
        sfx = f"#{i + 1}" if args.repeat > 1 else ""
        runs += [
            (
                f"floor-read{sfx}",
                "`dd` cold read of the .pth to /dev/null",
                ["dd", f"if={pth}", "of=/dev/null", "bs=16M"],
                None,
                plain,
            ),
            (
                f"floor{sfx}",
                "(d) I/O floor: `dd` copy of the .pth, then `sync`",
                ["dd", f"if={pth}", f"of={floor_file}", "bs=16M"],
                None,
                plain,
            ),
            (f"ours-fp16{sfx}", "(a) weightprep, float16", ours("float16"), None, plain),
            (
                f"ours-bf16{sfx}",
                "(b) weightprep, `--dtype bfloat16`",
                ours("bfloat16"),
                None,
                plain,
            ),
        ]
        if ref_python:
            runs.append(
                (f"reference{sfx}", "(c) transformers 4.47.1 converter", ref_cmd(), None, ref_env)
            )
    if args.ours_limit:
        lim = parse_limit(args.ours_limit)
        tag = args.ours_limit.upper().removesuffix("IB").removesuffix("B")
        runs += [
            (f"ours-fp16@{tag}", "(a) weightprep, float16", ours("float16"), lim, plain),
            (
                f"ours-bf16@{tag}",
                "(b) weightprep, `--dtype bfloat16`",
                ours("bfloat16"),
                lim,
                plain,
            ),
        ]
    if ref_python:
        for text in filter(None, (s.strip() for s in args.ref_limits.split(","))):
            tag = text.upper().removesuffix("IB").removesuffix("B")
            runs.append(
                (
                    f"reference@{tag}",
                    "(c) transformers 4.47.1 converter",
                    ref_cmd(),
                    parse_limit(text),
                    ref_env,
                )
            )

    # One untimed copy first (the floor's own command). On the VM this was written on, the first
    # large copy of a session often ran up to 2x slower than later ones, for reasons outside the
    # guest; this takes part of that out of the first row, --repeat and medians the rest.
    log("priming: one untimed copy of the input")
    rm_outputs()
    subprocess.run(
        ["dd", f"if={pth}", f"of={floor_file}", "bs=16M"], check=True, capture_output=True
    )
    os.sync()
    rm_outputs()
    results = []
    for label, what, cmd, limit, env in runs:
        results.append(
            measure(
                label, what, cmd, logs, env=env, limit=limit, cleanup=rm_outputs, describe=describe
            )
        )
        (work / "convert.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
    shutil.rmtree(work / "ref-input", ignore_errors=True)

    ph: dict[str, dict[str, float] | str] = {}
    if not args.no_phases:
        for dtype in ("float16", "bfloat16"):
            log(f"phases: instrumented {dtype} conversion")
            ph[dtype] = phases(root, work, dtype)

    now = code_state()[1]
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
    v = "v2" if "memory" in _read(Path("/sys/fs/cgroup/cgroup.controllers")).split() else "v1"
    doc = [
        f"# convert-llama benchmark: {in_bytes / 1e9:.2f} GB Meta checkpoint "
        f"(dim {PARAMS['dim']}, {PARAMS['n_layers']} layers, vocab {N_PIECES}, fp16)\n",
        f"Machine: {machine()}.  ",
        f"Code: {code}.  ",
        f"Command: `{' '.join([Path(sys.executable).name, *sys.argv])}`.  ",
        f"Python {platform.python_version()}; each run a fresh process; "
        + (
            "page cache dropped before every run (`sync; echo 3 > /proc/sys/vm/drop_caches`)."
            if cold
            else "**page cache NOT dropped** (/proc/sys/vm/drop_caches not writable)."
        ),
        f"Memory limits: {cg_note or f'cgroup {v} memory controller, swap capped at the limit'}.\n",
        table(results),
        summary(results),
        "wall + sync: the process's wall time plus the `sync` right after it (data it left dirty).",
        "peak RSS: VmHWM summed over the process tree (file-backed mmap pages included); "
        "peak anon RSS: RssAnon summed over the tree, polled every 50 ms.\n",
        *verdicts(results),
        *([""] + [f"- {n}" for n in notes] if notes else []),
        "",
        phase_table(ph),
        f"Total benchmark time: {time.monotonic() - started:.0f}s.",
    ]
    text = "\n".join(doc) + "\n"
    (work / "convert.md").write_text(text)
    (work / "convert.json").write_text(
        json.dumps(
            {"results": [asdict(r) for r in results], "phases": ph, "machine": machine()}, indent=2
        )
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
