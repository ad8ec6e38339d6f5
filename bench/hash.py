"""Benchmark `weightprep hash` against `sha256sum` (file by file), cold and warm page cache.

Run: `.venv/bin/python bench/hash.py [--workdir bench/out/hash]` (or `make bench-hash`).
Builds one 1 GB file and a folder of four 300 MB shards (random bytes, made once), then times:
`sha256sum FILE`, `weightprep hash DIR -o …` on a folder holding only that file, `sha256sum` over
the four shards one after another, and `weightprep hash` over the folder (threads). Cold runs
drop the page cache first (`echo 3 > /proc/sys/vm/drop_caches`, root only). Prints a Markdown
table and writes it to WORKDIR/hash.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

MB = 10**6


def make(path: Path, size: int) -> None:
    if path.exists() and path.stat().st_size == size:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 64 * MB)
            f.write(os.urandom(n))
            left -= n


def drop_caches() -> bool:
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def timed(cmd: list[str], cold: bool) -> float:
    if cold:
        drop_caches()
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("bench/out/hash"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    wp = str(Path(sys.executable).with_name("weightprep"))
    one = args.workdir / "one"
    four = args.workdir / "four"
    make(one / "big.bin", 1000 * MB)
    for i in range(4):
        make(four / f"shard-{i}.bin", 300 * MB)
    out = args.workdir / "out.yaml"
    shards = sorted(str(p) for p in four.iterdir())
    cases = [
        ("1 GB file", "sha256sum", ["sha256sum", str(one / "big.bin")]),
        ("1 GB file", "weightprep hash", [wp, "hash", str(one), "-o", str(out), "-q"]),
        ("4 × 300 MB", "sha256sum, file by file", ["sha256sum", *shards]),
        ("4 × 300 MB", "weightprep hash (threads)", [wp, "hash", str(four), "-o", str(out), "-q"]),
    ]
    can_drop = drop_caches()
    rows = []
    for cache in (["cold"] if can_drop else []) + ["warm"]:
        for what, tool, cmd in cases:
            if cache == "warm":
                timed(cmd, cold=False)  # fill the cache
            times = sorted(timed(cmd, cold=cache == "cold") for _ in range(args.repeat))
            rows.append((what, cache, tool, times[len(times) // 2]))
    lines = [
        f"Machine: {os.cpu_count()} CPUs; median of {args.repeat} runs; cold = page cache dropped"
        + ("" if can_drop else " (not possible here: warm only)"),
        "",
        "| input | cache | tool | wall s | GB/s | speed vs sha256sum |",
        "|---|---|---|--:|--:|--:|",
    ]
    base = {}
    for what, cache, tool, t in rows:
        size = 1000 * MB if what.startswith("1") else 1200 * MB
        if tool.startswith("sha256sum"):
            base[(what, cache)] = t
        ratio = base[(what, cache)] / t
        lines.append(
            f"| {what} | {cache} | {tool} | {t:.2f} | {size / t / 1e9:.2f} | {ratio:.2f}× |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    (args.workdir / "hash.md").write_text(table)
    if os.environ.get("WEIGHTPREP_BENCH_KEEP") != "1":
        shutil.rmtree(four)
        shutil.rmtree(one)


if __name__ == "__main__":
    main()
