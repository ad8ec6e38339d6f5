"""Benchmark `weightprep publish` to a folder, to a stand-in Hugging Face Hub and to a stand-in
Google Drive, on the ~1.9 GB converted LLaMA-1B example.

The input is `WORK/llama-1b-hf`: bench/convert.py's cached Meta-layout checkpoint
(`WORK/LLaMA-1B`, built here the same way if it is missing) converted once with
`weightprep convert-llama WORK/LLaMA-1B WORK/llama-1b-hf --model-size 7B --quiet`, and reused
while its SHA256SUMS is there. Every timed command is a fresh process; "cold" means the page
cache was dropped just before it (`sync; echo 3 > /proc/sys/vm/drop_caches`, root only). Rows:

  publish-folder   `weightprep publish SRC DEST --quiet --json`, DEST a new folder on the same
                   disk (deleted after the repetition)
  baseline         `sh -c 'cp -r SRC DEST2 && cd DEST2 && sha256sum -c --quiet SHA256SUMS'`
  baseline-fast    `sh -c 'cp -r SRC DEST2 && weightprep verify DEST2 -m DEST2/SHA256SUMS -q'`:
                   the same check with OpenSSL's sha256 (SHA-NI), two files at a time
  publish-rerun    the same publish again onto the complete DEST (`bytes_sent` must be 0)
  hub-first        `weightprep publish SRC hf://bench/llama-1b`, against `tests/hubserver.py`'s
                   HubStandIn running in this process (a new one per repetition)
  hub-rerun        the same again (the server's `bytes_received` must not move)
  drive-first@C    `weightprep publish SRC gdrive://root/bench/llama-1b --chunk-size C`, against
                   `tests/driveserver.py`'s DriveStandIn in this process (a new one per repetition)
  drive-rerun@C    the same again (`bytes_received` must not move)
  context rows     `sha256sum FILE` cold and warm, weightprep's own `hash_file` (hashlib, 8 MiB
                   reads) cold and warm, `cp -r SRC DEST` cold (then `sync`, timed apart)
  phases           one instrumented in-process folder publish (functions wrapped from outside, no
                   product code changed) and separate cold runs of each part alone: read only,
                   copy + fsync only (no hashing), read back + hash of the copy only

For each run: wall seconds of the process, the `sync` right after it (what it left dirty), the
client's peak RSS (VmHWM summed over its process tree, polled every 50 ms), and for the stand-ins
the server's bytes received during the run, its peak RSS (this process's VmRSS, polled) and its
CPU seconds (this process's user + system time: the stand-in shares the 2 cores with the client).

    .venv/bin/python bench/publish.py                 # or `make bench-publish`
    .venv/bin/python bench/publish.py --repeat 5 --skip drive

Writes WORK/publish.json (every run) and WORK/publish.md (the tables, also printed); logs go to
WORK/publish-logs/. WORK (--workdir) defaults to bench/out, which git ignores.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import select
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import convert as cb  # noqa: E402  (bench/convert.py: input builder, drop_caches, process tree)

REPO = cb.REPO
sys.path.insert(0, str(REPO))  # for tests.hubserver / tests.driveserver
MB = 10**6
MiB = 1 << 20
TOKEN = "hf_bench_publish_token_0123456789"
DRIVE_TOKEN = "ya29.bench-publish-token-0123456789"
HUB_REPO = "bench/llama-1b"
DRIVE_DEST = "gdrive://root/bench/llama-1b"
KEEP_FREE = 5 * 10**9
SECTIONS = ("context", "folder", "phases", "hub", "drive")


@dataclass
class Run:
    label: str
    group: str
    rep: int
    cold: bool
    cmd: str
    rc: int = 0
    wall_s: float = 0.0
    sync_s: float = 0.0
    peak_rss_mib: float = 0.0  # client: VmHWM summed over the process tree
    client_cpu_s: float = 0.0  # client: user + system seconds of the process and its children
    bytes_sent: int | None = None  # the product's own --json `bytes_sent`
    in_process_s: float | None = None  # the product's own --json `seconds`
    server_bytes: int | None = None  # stand-in bytes_received during the run
    server_wire_bytes: int | None = None  # Drive stand-in: upload bytes read at all
    server_puts: int | None = None
    server_rss_before_mib: float | None = None
    server_peak_rss_mib: float | None = None
    server_cpu_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def vm(key: str = "VmRSS") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def reset_peak() -> bool:
    """Reset this process's VmHWM (`echo 5 > /proc/self/clear_refs`), so that it reads the
    stand-in's peak during one run, however short (polling can miss a brief copy)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def cpu_self() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def run(
    label: str,
    group: str,
    rep: int,
    cmd: Sequence[str],
    logs: Path,
    *,
    cold: bool = True,
    env: dict[str, str] | None = None,
    server: Any = None,
    want_json: bool = False,
) -> Run:
    """Run `cmd` once in a fresh process (cold unless told), polling memory; fail loudly."""
    r = Run(label, group, rep, cold, " ".join(cmd))
    if cold and not cb.drop_caches():
        r.cold = False
    out_path = logs / f"{label}#{rep}.out"
    err_path = logs / f"{label}#{rep}.log"
    before = (server.bytes_received, getattr(server, "wire_bytes", None)) if server else None
    puts = sum(m == "PUT" for m, _ in _requests(server)) if server else 0
    r.server_rss_before_mib = vm() / MiB if server else None
    hwm_reset = server is not None and reset_peak()
    peak_server = vm()
    cpu0 = cpu_self()
    hwm: dict[int, int] = {}
    cb.log(f"{label}#{rep}{' (cold)' if r.cold else ''}: {r.cmd}")
    t0 = time.perf_counter()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
    pidfd = os.pidfd_open(proc.pid)
    try:
        while True:
            for p in cb._tree(proc.pid):
                hwm[p] = max(hwm.get(p, 0), cb._status(p).get("VmHWM", 0))
            if server is not None:
                peak_server = max(peak_server, vm())
            if select.select([pidfd], [], [], cb.POLL_S)[0]:
                break
        _, status, ru = os.wait4(proc.pid, 0)
        r.wall_s = time.perf_counter() - t0
    finally:
        os.close(pidfd)
    r.rc = os.waitstatus_to_exitcode(status)
    r.client_cpu_s = ru.ru_utime + ru.ru_stime
    t1 = time.perf_counter()
    os.sync()
    r.sync_s = time.perf_counter() - t1
    r.peak_rss_mib = sum(hwm.values()) / MiB
    if server is not None:
        r.server_cpu_s = cpu_self() - cpu0
        r.server_peak_rss_mib = max(peak_server, vm("VmHWM") if hwm_reset else 0) / MiB
        r.server_bytes = server.bytes_received - before[0]
        if before[1] is not None:
            r.server_wire_bytes = server.wire_bytes - before[1]
        r.server_puts = sum(m == "PUT" for m, _ in _requests(server)) - puts
    if r.rc != 0:
        tail = err_path.read_bytes()[-1500:].decode(errors="replace")
        raise SystemExit(f"{label}#{rep} failed (exit {r.rc}):\n{tail}")
    if want_json:
        d = json.loads(out_path.read_text())
        r.bytes_sent, r.in_process_s = d["bytes_sent"], d["seconds"]
        r.extra["statuses"] = sorted({f["status"] for f in d["files"]})
    cb.log(
        f"{label}#{rep}: wall={r.wall_s:.2f}s sync={r.sync_s:.2f}s rss={r.peak_rss_mib:.0f}MiB "
        f"cpu={r.client_cpu_s:.1f}s"
        + (f" bytes_sent={r.bytes_sent:,}" if r.bytes_sent is not None else "")
        + (
            f" server: +{r.server_bytes:,} B, peak {r.server_peak_rss_mib:.0f}MiB, "
            f"cpu {r.server_cpu_s:.1f}s"
            if server is not None
            else ""
        )
    )
    return r


def _requests(server: Any) -> list[tuple[str, str]]:
    """(method, path) of every request the stand-in logged so far."""
    reqs = list(server.requests)
    if reqs and not isinstance(reqs[0], tuple):  # DriveStandIn logs RequestRecord objects
        return [(q.method, q.path) for q in reqs]
    return reqs


# --------------------------------------------------------------------------- the input


def ensure_input(work: Path, wp: str) -> Path:
    src = work / "llama-1b-hf"
    if (src / "SHA256SUMS").is_file():
        cb.log(f"reusing {src}")
        return src
    shutil.rmtree(src, ignore_errors=True)
    meta = work / "LLaMA-1B"
    cb.build_checkpoint(meta, None)  # reuses bench/convert.py's cached checkpoint when there
    cb.log(f"converting {meta} -> {src}")
    subprocess.run(
        [wp, "convert-llama", str(meta), str(src), "--model-size", "7B", "--quiet"], check=True
    )
    return src


def tree_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


# --------------------------------------------------------------------------- phases

# Runs in a fresh interpreter: wraps weightprep.publish.folder's calls from outside (module
# attributes swapped, no product code changed) and publishes argv[1] to argv[2] once.
PHASES = textwrap.dedent(
    """
    import json, os, sys, threading, time
    T0 = time.perf_counter()
    from collections import defaultdict
    from pathlib import Path
    import weightprep.publish.folder as fo
    import weightprep.publish.run as ru
    from weightprep.publish.run import Options, publish
    t = defaultdict(float)
    t["import"] = time.perf_counter() - T0
    lock = threading.Lock()

    def add(key, s):
        with lock:
            t[key] += time.perf_counter() - s

    def wrap(mod, name, key):
        fn = getattr(mod, name)
        def f(*a, **k):
            s = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                add(key, s)
        setattr(mod, name, f)

    wrap(ru, "prepare", "prepare")
    wrap(fo, "copy_verified", "copy_verified")
    wrap(fo, "hash_file", "hash_file")  # the read-back (and the up-to-date check of a re-run)
    wrap(fo, "_drop_cache", "dontneed")
    wrap(fo, "fsync_dir", "fsync_dir")
    wrap(fo.os, "replace", "rename")
    fsync = os.fsync
    def timed_fsync(fd):
        s = time.perf_counter()
        fsync(fd)
        add("fsync", s)
    os.fsync = timed_fsync

    class Sha:
        def __init__(self):
            import hashlib
            self.h = hashlib.sha256()
        def update(self, b):
            s = time.perf_counter()
            self.h.update(b)
            add("sha_copy", s)
        def hexdigest(self):
            return self.h.hexdigest()

    fo.hashlib = type("H", (), {"sha256": Sha})

    class Thread(threading.Thread):
        def join(self, *a):
            s = time.perf_counter()
            super().join(*a)
            add("join", s)

    fo.threading = type("T", (), {"Thread": Thread})

    class File:
        def __init__(self, *a, **k):
            self.f = open(*a, **k)
        def __getattr__(self, name):
            return getattr(self.f, name)
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            self.f.close()
        def readinto(self, b):
            s = time.perf_counter()
            n = self.f.readinto(b)
            add("read", s)
            return n
        def write(self, b):
            s = time.perf_counter()
            n = self.f.write(b)
            add("write", s)
            return n

    fo.open = File
    s = time.perf_counter()
    res = publish(Path(sys.argv[1]), sys.argv[2], Options())
    add("publish", s)
    t["bytes_sent"] = res.bytes_sent
    t["fsync"] -= t["fsync_dir"] if t["fsync"] >= t["fsync_dir"] else 0
    print(json.dumps(t))
    """
)
PHASE_NAMES = {
    "import": "start-up: import weightprep.publish (after the interpreter)",
    "publish": "publish(), all of it",
    "prepare": "· read SHA256SUMS, list and stat the source (no hashing: verify=False)",
    "copy_verified": "· copy_verified, all files",
    "read": "·· `readinto` of the source (cold reads, 8 MiB)",
    "write": "·· `write` of the copy (into the page cache)",
    "join": "·· wait for the previous chunk's sha256 thread",
    "sha_copy": "·· sha256 while copying (on its thread; overlaps read + write)",
    "fsync": "·· fsync of each copy",
    "dontneed": "·· posix_fadvise DONTNEED (drop the copy from the cache)",
    "hash_file": "·· read back + sha256 of the copy (cold, one thread, read then hash)",
    "rename": "·· rename into place",
    "fsync_dir": "·· fsync of the folder",
}

COPY_FSYNC = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    buf = bytearray(8 << 20)
    view = memoryview(buf)
    for p in sorted(src.iterdir()):
        with open(p, "rb", buffering=0) as s, open(dst / p.name, "wb", buffering=0) as d:
            while n := s.readinto(buf):
                d.write(view[:n])
            os.fsync(d.fileno())
    """
)
HASH_FILES = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from weightprep.checksum import hash_file
    for p in sys.argv[1:]:
        hash_file(Path(p))
    """
)


def phases(src: Path, work: Path, logs: Path, py: str) -> dict[str, Any]:
    dest = work / "publish-dest"
    shutil.rmtree(dest, ignore_errors=True)
    out: dict[str, Any] = {}
    cb.drop_caches()
    cb.log("phases: instrumented in-process folder publish (cold)")
    t0 = time.perf_counter()
    got = subprocess.run(
        [py, "-c", PHASES, str(src), str(dest)], capture_output=True, text=True, check=True
    )
    out["process_wall_s"] = time.perf_counter() - t0
    out["in_process"] = json.loads(got.stdout.strip().splitlines()[-1])
    # the parts alone, each cold
    files = sorted(str(p) for p in src.iterdir())
    alone = {}
    alone["read only: `cat SRC/* > /dev/null`"] = run(
        "read-only", "phases", 1, ["sh", "-c", f"cat {src}/* > /dev/null"], logs
    )
    copy = work / "publish-copy"
    shutil.rmtree(copy, ignore_errors=True)
    copy.mkdir()
    alone["copy + fsync only (8 MiB readinto/write, fsync per file; no hashing)"] = run(
        "copy-fsync", "phases", 1, [py, "-c", COPY_FSYNC, str(src), str(copy)], logs
    )
    copies = sorted(str(p) for p in copy.iterdir())
    alone["read back only: `hash_file` of every file of the copy (cold)"] = run(
        "readback", "phases", 1, [py, "-c", HASH_FILES, *copies], logs
    )
    alone["the same, warm (sha256 alone, no disk)"] = run(
        "readback-warm", "phases", 1, [py, "-c", HASH_FILES, *copies], logs, cold=False
    )
    alone["source `hash_file`, cold (what hashing the source costs if not overlapped)"] = run(
        "hash-source", "phases", 1, [py, "-c", HASH_FILES, *files], logs
    )
    py_start = run("python-start", "phases", 1, [py, "-c", "pass"], logs)
    alone["start-up: `python -c pass`, cold"] = py_start
    out["alone"] = {k: asdict(v) for k, v in alone.items()}
    shutil.rmtree(copy)
    shutil.rmtree(dest, ignore_errors=True)
    return out


# --------------------------------------------------------------------------- the sections


def context_runs(src: Path, work: Path, logs: Path, py: str, repeat: int) -> list[Run]:
    big = max(src.iterdir(), key=lambda p: p.stat().st_size)
    runs = []
    for cold in (True, False):
        tag = "cold" if cold else "warm"
        if not cold:
            subprocess.run(["cat", str(big)], stdout=subprocess.DEVNULL, check=True)
        for i in range(1, repeat + 1):
            runs.append(
                run(f"sha256sum-{tag}", "context", i, ["sha256sum", str(big)], logs, cold=cold)
            )
        for i in range(1, repeat + 1):
            runs.append(
                run(
                    f"hash_file-{tag}",
                    "context",
                    i,
                    [py, "-c", HASH_FILES, str(big)],
                    logs,
                    cold=cold,
                )
            )
    dest = work / "publish-cp"
    for i in range(1, repeat + 1):
        shutil.rmtree(dest, ignore_errors=True)
        runs.append(run("cp", "context", i, ["cp", "-r", str(src), str(dest)], logs))
        shutil.rmtree(dest)
    return runs


def folder_runs(src: Path, work: Path, logs: Path, wp: str, repeat: int) -> list[Run]:
    dest, dest2 = work / "publish-dest", work / "publish-baseline"
    runs = []
    sums = "SHA256SUMS"
    for i in range(1, repeat + 1):
        for d in (dest, dest2):
            shutil.rmtree(d, ignore_errors=True)
        cmd = [wp, "publish", str(src), str(dest), "--quiet", "--json"]
        first = run("publish-folder", "folder", i, cmd, logs, want_json=True)
        rerun = run("publish-rerun", "folder", i, cmd, logs, want_json=True)
        if rerun.bytes_sent != 0:
            raise SystemExit(f"re-run onto a complete folder copied {rerun.bytes_sent} bytes")
        shutil.rmtree(dest)
        base = f"cp -r {src} {dest2} && cd {dest2} && sha256sum -c --quiet {sums}"
        runs += [first, rerun, run("baseline", "folder", i, ["sh", "-c", base], logs)]
        shutil.rmtree(dest2)
        fast = f"cp -r {src} {dest2} && {wp} verify {dest2} -m {dest2}/{sums} -q"
        runs.append(run("baseline-fast", "folder", i, ["sh", "-c", fast], logs))
        shutil.rmtree(dest2)
    return runs


def base_env(tmp: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "HUGGINGFACE_", "GOOGLE_", "WEIGHTPREP_"))
    }
    env.update(
        HF_HOME=str(tmp / "hf_home"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        CLOUDSDK_CONFIG=str(tmp / "gcloud"),
        XDG_CACHE_HOME=str(tmp / "cache"),
    )
    return env


def hub_runs(src: Path, work: Path, logs: Path, wp: str, repeat: int) -> list[Run]:
    from tests.hubserver import HubStandIn

    runs = []
    for i in range(1, repeat + 1):
        tmp = work / "publish-tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        server = HubStandIn({}, lifetime=3600, token=TOKEN)
        try:
            env = base_env(tmp)
            env.update(
                HF_ENDPOINT=server.url,
                HF_HUB_OFFLINE="0",
                HF_HUB_DISABLE_XET="1",
                HF_TOKEN=TOKEN,
            )
            cmd = [wp, "publish", str(src), f"hf://{HUB_REPO}", "--quiet", "--json"]
            first = run("hub-first", "hub", i, cmd, logs, env=env, server=server, want_json=True)
            rerun = run("hub-rerun", "hub", i, cmd, logs, env=env, server=server, want_json=True)
            if rerun.server_bytes != 0 or rerun.bytes_sent != 0:
                raise SystemExit(
                    f"hub re-run sent bytes: server +{rerun.server_bytes}, json {rerun.bytes_sent}"
                )
            runs += [first, rerun]
        finally:
            server.close()
            del server
            gc.collect()
        shutil.rmtree(tmp, ignore_errors=True)
    return runs


def drive_runs(
    src: Path, work: Path, logs: Path, wp: str, repeat: int, chunks: list[str]
) -> list[Run]:
    from tests.driveserver import DriveStandIn

    runs = []
    for chunk in chunks:
        for i in range(1, repeat + 1):
            tmp = work / "publish-tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            server = DriveStandIn(token=DRIVE_TOKEN, lifetime=3600)
            try:
                env = base_env(tmp)
                env.update(
                    WEIGHTPREP_DRIVE_ENDPOINT=server.url,
                    GOOGLE_OAUTH_ACCESS_TOKEN=DRIVE_TOKEN,
                    NO_GCE_CHECK="True",
                )
                cmd = [wp, "publish", str(src), DRIVE_DEST, "--chunk-size", chunk, "--quiet"]
                cmd.append("--json")

                first, rerun = (
                    run(label, "drive", i, cmd, logs, env=env, server=server, want_json=True)
                    for label in (f"drive-first@{chunk}", f"drive-rerun@{chunk}")
                )
                if rerun.server_bytes != 0 or rerun.bytes_sent != 0:
                    raise SystemExit(
                        f"drive re-run sent bytes: server +{rerun.server_bytes}, "
                        f"json {rerun.bytes_sent}"
                    )
                runs += [first, rerun]
                if i == 1:
                    # what one listing costs the stand-in: it hashes (md5, sha1, sha256) each
                    # file's bytes every time it renders the file resource
                    with server.lock:
                        big = max(
                            (f for f in server.files.values() if f.get("bytes")),
                            key=lambda f: len(f["bytes"]),
                        )
                        t0 = time.perf_counter()
                        server._resource(big)
                        first.extra["stand_in_resource_s"] = time.perf_counter() - t0
                        first.extra["stand_in_resource_bytes"] = len(big["bytes"])
                        del big  # or this run's files outlive the server
            finally:
                server.close()
                del server
                gc.collect()
            shutil.rmtree(tmp, ignore_errors=True)
    return runs


# --------------------------------------------------------------------------- the report


def med(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def groups(runs: list[Run]) -> dict[str, list[Run]]:
    out: dict[str, list[Run]] = {}
    for r in runs:
        out.setdefault(r.label, []).append(r)
    return out


def summarize(runs: list[Run], total: int) -> dict[str, dict[str, Any]]:
    out = {}
    for label, rs in groups(runs).items():
        walls = [r.wall_s for r in rs]
        both = [r.wall_s + r.sync_s for r in rs]
        s: dict[str, Any] = {
            "runs": len(rs),
            "median_wall_s": med(walls),
            "min_wall_s": min(walls),
            "max_wall_s": max(walls),
            "median_wall_plus_sync_s": med(both),
            "median_peak_rss_mib": med([r.peak_rss_mib for r in rs]),
            "median_client_cpu_s": med([r.client_cpu_s for r in rs]),
            "cold": all(r.cold for r in rs),
        }
        if rs[0].group in ("hub", "drive", "folder"):
            s["median_MB_per_s"] = total / MB / s["median_wall_s"]
        for key in ("bytes_sent", "server_bytes", "server_wire_bytes", "server_puts"):
            vals = [getattr(r, key) for r in rs if getattr(r, key) is not None]
            if vals:
                s[key] = sorted(set(vals))
        for key in ("server_peak_rss_mib", "server_rss_before_mib", "server_cpu_s", "in_process_s"):
            vals = [getattr(r, key) for r in rs if getattr(r, key) is not None]
            if vals:
                s[f"median_{key}"] = med(vals)
                if key == "server_peak_rss_mib":
                    s["max_server_peak_rss_mib"] = max(vals)
        out[label] = s
    return out


def fmt(x: float | None, d: int = 2) -> str:
    return "–" if x is None else f"{x:,.{d}f}"


def ints(xs: list[int] | None) -> str:
    return "–" if not xs else " / ".join(f"{x:,}" for x in xs)


def report(meta: dict[str, Any], summ: dict[str, dict[str, Any]], ph: dict | None) -> str:
    total = meta["input_bytes"]
    big = meta["largest_file_bytes"]
    L = [
        f"# publish benchmark: {total / 1e9:.2f} GB folder ({meta['input_files']} files, "
        f"largest {big / 1e9:.2f} GB)",
        "",
        f"Machine: {meta['machine']}. {meta['code']}. Median and min over {meta['repeat']} "
        "runs, each a fresh process; cold = page cache dropped first.",
        "",
    ]
    rows = ("publish-folder", "baseline", "baseline-fast", "publish-rerun")
    fo = {k: v for k, v in summ.items() if k in rows}
    if fo:
        L += [
            "## Folder destination (same disk)",
            "",
            "| row | cold | median wall s | min wall s | median wall + sync s | ratio to baseline "
            "(median wall) | MB/s | bytes copied | peak RSS MiB | CPU s |",
            "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        bw = fo.get("baseline", {}).get("median_wall_s")
        bws = fo.get("baseline", {}).get("median_wall_plus_sync_s")
        for label in rows:
            s = fo.get(label)
            if not s:
                continue
            ratio = f"{s['median_wall_s'] / bw:.2f}×" if bw else "–"
            L.append(
                f"| {label} | {'yes' if s['cold'] else 'no'} | {fmt(s['median_wall_s'])} | "
                f"{fmt(s['min_wall_s'])} | {fmt(s['median_wall_plus_sync_s'])} | {ratio} | "
                f"{fmt(total / MB / s['median_wall_s'], 0)} | {ints(s.get('bytes_sent'))} | "
                f"{fmt(s['median_peak_rss_mib'], 0)} | {fmt(s['median_client_cpu_s'], 1)} |"
            )
        if bw and "publish-folder" in fo:
            pw = fo["publish-folder"]["median_wall_s"]
            pws = fo["publish-folder"]["median_wall_plus_sync_s"]
            L += [
                "",
                f"publish / baseline = {pw / bw:.2f}× on wall (target ≤ 1.2×: "
                f"{'met' if pw / bw <= 1.2 else 'missed'}), {pws / bws:.2f}× on wall + sync.",
            ]
            fast = fo.get("baseline-fast")
            if fast:
                L.append(
                    f"publish / baseline-fast = {pw / fast['median_wall_s']:.2f}× on wall, "
                    f"{pws / fast['median_wall_plus_sync_s']:.2f}× on wall + sync."
                )
        L.append("")
    ctx = {
        k: v for k, v in summ.items() if v.get("runs") and k.startswith(("sha256", "hash_", "cp"))
    }
    if ctx:
        L += [
            "## Context",
            "",
            "| row | cold | median wall s | min wall s | median wall + sync s | GB/s (median "
            "wall) | CPU s |",
            "|---|---|--:|--:|--:|--:|--:|",
        ]
        for label, s in ctx.items():
            size = total if label == "cp" else big
            L.append(
                f"| {label} | {'yes' if s['cold'] else 'no'} | {fmt(s['median_wall_s'])} | "
                f"{fmt(s['min_wall_s'])} | {fmt(s['median_wall_plus_sync_s'])} | "
                f"{size / 1e9 / s['median_wall_s']:.2f} | {fmt(s['median_client_cpu_s'], 1)} |"
            )
        L.append("")
    rem = {k: v for k, v in summ.items() if k.startswith(("hub-", "drive-"))}
    if rem:
        L += [
            "## Stand-in Hub and Drive (servers in the bench process, on the same 2 cores)",
            "",
            "| row | median wall s | min wall s | MB/s (median) | bytes sent (--json) | "
            "server bytes received | PUTs | client peak RSS MiB | client CPU s | server RSS "
            "before → peak MiB (max) | server CPU s |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for label, s in rem.items():
            L.append(
                f"| {label} | {fmt(s['median_wall_s'])} | {fmt(s['min_wall_s'])} | "
                f"{fmt(s['median_MB_per_s'], 0)} | {ints(s.get('bytes_sent'))} | "
                f"{ints(s.get('server_bytes'))} | {ints(s.get('server_puts'))} | "
                f"{fmt(s['median_peak_rss_mib'], 0)} | {fmt(s['median_client_cpu_s'], 1)} | "
                f"{fmt(s.get('median_server_rss_before_mib'), 0)} → "
                f"{fmt(s.get('max_server_peak_rss_mib'), 0)} | "
                f"{fmt(s.get('median_server_cpu_s'), 1)} |"
            )
        L.append("")
        if meta.get("stand_in_resource_s"):
            L += [
                f"DriveStandIn renders a file resource by hashing its bytes (md5 + sha1 + "
                f"sha256): {meta['stand_in_resource_s']:.2f} s for the "
                f"{meta['stand_in_resource_bytes'] / 1e9:.2f} GB file, once when its upload "
                "completes and again in every listing (so once in each re-run).",
                "",
            ]
    if ph:
        ip = ph["in_process"]
        L += [
            "## Where the folder publish's time goes (one cold instrumented run)",
            "",
            f"Process wall {ph['process_wall_s']:.2f} s. Rows marked · are nested in the row "
            "above; the sha256-while-copying row runs on its own thread and overlaps read + "
            "write.",
            "",
            "| phase | s |",
            "|---|--:|",
        ]
        for key, name in PHASE_NAMES.items():
            if key in ip:
                L.append(f"| {name} | {ip[key]:.2f} |")
        L += ["", "The parts alone (each a fresh process, cold unless said):", ""]
        L += ["| experiment | wall s | + sync s |", "|---|--:|--:|"]
        for name, r in ph["alone"].items():
            L.append(f"| {name} | {r['wall_s']:.2f} | {r['sync_s']:.2f} |")
        L.append("")
    return "\n".join(L) + "\n"


def publish_sources() -> dict[str, str]:
    """sha256 of the code a publish runs: weightprep/publish/, checksum.py, cli/publish.py."""
    import hashlib

    paths = [*(REPO / "weightprep" / "publish").glob("*.py")]
    paths += [REPO / "weightprep" / "checksum.py", REPO / "weightprep" / "cli" / "publish.py"]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(paths)}


def machine_facts() -> dict[str, str]:
    def out(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""

    import ssl

    return {
        "summary": cb.machine(),
        "sha256sum": out("sha256sum", "--version").splitlines()[0],
        "openssl": ssl.OPENSSL_VERSION,
        "sha_ni": str("sha_ni" in Path("/proc/cpuinfo").read_text()),
        "python": platform.python_version(),
        "mount": out("findmnt", "-no", "SOURCE,FSTYPE,OPTIONS", "--target", str(REPO)),
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--workdir", type=Path, default=REPO / "bench" / "out")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--chunk-sizes", default="64MiB,8MiB", help="Drive chunk sizes to run")
    ap.add_argument("--skip", default="", help=f"comma-separated sections of {SECTIONS}")
    args = ap.parse_args(argv)
    skip = {s for s in args.skip.split(",") if s}
    if skip - set(SECTIONS):
        ap.error(f"--skip: unknown {sorted(skip - set(SECTIONS))}; choose from {SECTIONS}")
    work = args.workdir.resolve()
    logs = work / "publish-logs"
    logs.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    wp = str(Path(py).with_name("weightprep"))
    t_start = time.monotonic()
    if not cb.drop_caches():
        cb.log("cannot drop the page cache (not root?): 'cold' runs will be warm")
    src = ensure_input(work, wp)
    total = tree_bytes(src)
    need = total + KEEP_FREE
    free = shutil.disk_usage(work).free
    if free < need:
        raise SystemExit(f"{work}: {free / 1e9:.1f} GB free; this needs {need / 1e9:.1f} GB")
    largest = max(p.stat().st_size for p in src.iterdir())
    code, sources = cb.code_state()
    measured = publish_sources()
    meta: dict[str, Any] = {
        "input": str(src),
        "input_bytes": total,
        "input_files": len(list(src.iterdir())),
        "largest_file_bytes": largest,
        "repeat": args.repeat,
        "machine": cb.machine(),
        "machine_facts": machine_facts(),
        "code": code,
        "free_bytes_at_start": free,
    }
    runs: list[Run] = []
    ph = None
    if "context" not in skip:
        runs += context_runs(src, work, logs, py, args.repeat)
    if "folder" not in skip:
        runs += folder_runs(src, work, logs, wp, args.repeat)
    if "phases" not in skip:
        ph = phases(src, work, logs, py)
    if "hub" not in skip:
        runs += hub_runs(src, work, logs, wp, args.repeat)
    if "drive" not in skip:
        chunks = [c for c in args.chunk_sizes.split(",") if c]
        runs += drive_runs(src, work, logs, wp, args.repeat, chunks)
        for r in runs:
            if "stand_in_resource_s" in r.extra:
                meta["stand_in_resource_s"] = r.extra["stand_in_resource_s"]
                meta["stand_in_resource_bytes"] = r.extra["stand_in_resource_bytes"]
    meta["wall_total_s"] = time.monotonic() - t_start
    if publish_sources() != measured:
        meta["code"] += " (publish code CHANGED during the run)"
    elif cb.code_state()[1] != sources:
        meta["code"] += " (other weightprep files changed during the run; publish code did not)"
    summ = summarize(runs, total)
    md = report(meta, summ, ph)
    md += f"\nWhole benchmark: {meta['wall_total_s']:.0f} s.\n"
    print(md)
    (work / "publish.md").write_text(md)
    (work / "publish.json").write_text(
        json.dumps(
            {"meta": meta, "summary": summ, "phases": ph, "runs": [asdict(r) for r in runs]},
            indent=1,
        )
    )
    cb.log(f"wrote {work / 'publish.md'} and {work / 'publish.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
