"""Benchmark the language check (`weightprep.language.check_folder`) on the ~1.9 GB LLaMA-1B
example, and project its time and memory for LLaMA-7B.

The check is what `weightprep apply-delta --verify` runs on the base and on the output, and what
`weightprep inspect --perplexity` runs: the model's perplexity on the built-in English passage
(the Gettysburg Address), computed in float32 on the CPU while one decoder layer's weights at a
time are read from the safetensors shards (`weightprep.llama.forward`).

The input is `WORK/llama-1b-hf`: bench/convert.py's cached Meta-layout checkpoint
(`WORK/LLaMA-1B`, dim 2048, 16 layers, 32000-piece tokenizer, random fp16 weights; built with
bench/convert.py's own builder if missing) converted once with `weightprep convert-llama
WORK/LLaMA-1B WORK/llama-1b-hf --model-size 7B --quiet`, and reused while its SHA256SUMS is
newer than the checkpoint (bench/publish.py uses the same folder). Each row is a fresh process
(the venv's python running CHILD, a few lines that call `check_folder`, from
WORK/language-child.py), run with the page cache dropped first (`sync; echo 3 >
/proc/sys/vm/drop_caches`) when that file is writable:

  read-dd      `dd if=model.safetensors of=/dev/null bs=16M`: the cold read alone, for context
  startup      the same `python -c`, importing `weightprep.language` (and torch) only
  io-proxy     `check_folder(FOLDER, reference=TWO_WORDS)`: a 2-word passage, so every weight
               is still read, copied and cast to float32, but there is almost nothing to compute
  check        `check_folder(FOLDER)`: the real check on the built-in passage
  check@LIMIT  the real check once more inside a memory cgroup of LIMIT (default 1.5 GiB), with
               bench/convert.py's cgroup helper (root only; skipped, saying why, otherwise)

For each run: the process's wall seconds, peak RSS (VmHWM summed over the process tree, polled
every 50 ms; it includes the pages of the memory-mapped shard the process touched) and peak
anonymous RSS (RssAnon, the part that cannot be reclaimed), the child's own CPU seconds and
import time, and the 1-minute load average before it (other jobs on a shared machine show up
there). From the medians it projects LLaMA-7B:

  T7 = T_start + (T_io - T_start) * B7/B1 + (T_check - T_io) * (P7 * n7)/(P1 * n1)

with B the bytes of the weights, P the parameters multiplied per token (decoder linears + LM
head) and n the tokens scored (n7: --tokens-7b, as LLaMA's tokenizer cuts the passage; the
bench's small tokenizer cuts it finer); and peak anonymous memory as the 1B measurement minus the
largest model-dependent working set of the 1B shape plus that of the 7B shape.

    .venv/bin/python bench/language.py                 # or `make bench-language`
    .venv/bin/python bench/language.py --repeat 5 --limit 1G

Prints a Markdown report and writes it to WORK/language.md, raw numbers to WORK/language.json,
each run's output to WORK/language-logs/. WORK (--workdir) defaults to bench/out, which git
ignores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import convert as cb  # noqa: E402  (bench/convert.py: input builder, cgroups, measure, drop_caches)

med = cb._median
load1 = cb.load1

MiB = cb.MiB
TWO_WORDS = "Four score"  # the passage's first two words: the io-proxy's passage
# Tokens scored for LLaMA-7B: the figure check_folder's docstring gives for LLaMA's tokenizer.
# Not measured here (no LLaMA tokenizer on the machine); the bench's small trained BPE model
# cuts the same passage into about twice as many, so the projection rescales the compute.
TOKENS_7B = 402
HEAD_ROWS = 8192  # weightprep.llama.forward.token_nll's default chunk of LM-head rows
# Files whose change during a run would mix code versions in the rows.
MEASURED = (
    "weightprep/language.py",
    "weightprep/llama/forward.py",
    "weightprep/io/reader.py",
    "weightprep/reference_texts.py",
)

# Runs in a fresh interpreter: times its own imports, runs one check, reports on its last line.
CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    t0 = time.perf_counter()
    from pathlib import Path
    from weightprep.language import check_folder
    import torch
    out = {"import_s": time.perf_counter() - t0, "torch_threads": torch.get_num_threads()}
    if sys.argv[1] != "--import-only":
        ref = Path(sys.argv[2]) if len(sys.argv) > 2 else None
        t1 = time.perf_counter()
        r = check_folder(Path(sys.argv[1]), reference=ref)
        out.update(check_s=time.perf_counter() - t1, perplexity=r.perplexity, tokens=r.tokens)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out.update(cpu_s=ru.ru_utime + ru.ru_stime, major_faults=ru.ru_majflt)
    print("WPBENCH " + json.dumps(out), flush=True)
    """
)


# --------------------------------------------------------------------------- shapes


@dataclass(frozen=True)
class Shape:
    """What the projection needs of a LLaMA shape."""

    name: str
    dim: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int

    @property
    def kv_dim(self) -> int:
        return self.dim // self.heads * self.kv_heads

    @property
    def params(self) -> int:
        """All parameters (embeddings, untied head, norms)."""
        layer = 2 * self.dim * self.dim + 2 * self.dim * self.kv_dim + 3 * self.dim * self.ffn
        return self.layers * (layer + 2 * self.dim) + 2 * self.vocab * self.dim + self.dim

    @property
    def matmul_params(self) -> int:
        """Parameters multiplied with every token: the decoder's linears and the LM head (the
        embedding is a lookup). Compute is 2 * this * tokens FLOPs, plus attention's 2 * n^2 *
        dim per layer, which at ~400 tokens is under 2% of it."""
        layer = 2 * self.dim * self.dim + 2 * self.dim * self.kv_dim + 3 * self.dim * self.ffn
        return self.layers * layer + self.vocab * self.dim

    def working_set(self, tokens: int) -> dict[str, int]:
        """Bytes the check holds at once beyond the interpreter, per phase, from
        weightprep/language.py and weightprep/llama/forward.py: the fp16 embeddings while the
        passage is looked up; in a layer, the largest matrix in fp16 and its fp32 copy (the
        fp16 one is freed once cast) with the MLP's activations; at the end, the fp16 LM head
        with one fp32 chunk of HEAD_ROWS rows and its logits."""
        n, d, f, v = tokens, self.dim, self.ffn, self.vocab
        big = max(d * f, d * d)  # the largest decoder matrix
        return {
            "embeddings (fp16) + hidden states": v * d * 2 + n * d * 4,
            "largest layer matrix fp16 + fp32, MLP activations": big * (2 + 4)
            + n * d * 4 * 2
            + n * f * 4 * 3,
            "LM head (fp16) + one fp32 chunk + its logits": v * d * 2
            + HEAD_ROWS * d * 4
            + n * HEAD_ROWS * 4,
        }


LLAMA_7B = Shape("LLaMA-7B", dim=4096, layers=32, heads=32, kv_heads=32, ffn=11008, vocab=32000)


def shape_of(folder: Path) -> Shape:
    cfg = json.loads((folder / "config.json").read_text())
    heads = int(cfg["num_attention_heads"])
    return Shape(
        "bench 1B",
        dim=int(cfg["hidden_size"]),
        layers=int(cfg["num_hidden_layers"]),
        heads=heads,
        kv_heads=int(cfg.get("num_key_value_heads") or heads),
        ffn=int(cfg["intermediate_size"]),
        vocab=int(cfg["vocab_size"]),
    )


# --------------------------------------------------------------------------- the input


def ensure_input(work: Path, weightprep: Path) -> Path:
    """WORK/llama-1b-hf: bench/convert.py's checkpoint, converted once and reused."""
    meta = work / "LLaMA-1B"
    cb.build_checkpoint(meta, None)  # reuses the cached checkpoint when it is there
    src = work / "llama-1b-hf"
    sums = src / "SHA256SUMS"
    if sums.is_file() and sums.stat().st_mtime >= (meta / "BUILT.json").stat().st_mtime:
        cb.log(f"reusing {src}")
        return src
    shutil.rmtree(src, ignore_errors=True)
    cb.log(f"converting {meta} -> {src}")
    subprocess.run(
        [str(weightprep), "convert-llama", str(meta), str(src), "--model-size", "7B", "--quiet"],
        check=True,
    )
    return src


# --------------------------------------------------------------------------- running


def run(label: str, what: str, cmd: list[str], logs: Path, limit: int | None = None) -> cb.Result:
    """One fresh process, cold, through bench/convert.py's `measure`; the child's own report
    (last line `WPBENCH {...}`) goes into `extra`."""
    before = load1()
    res = cb.measure(label, what, cmd, logs, env=cb.quiet_env(), limit=limit)
    res.extra["load1_before"] = before
    log = logs / f"{label}.log"
    for line in reversed(log.read_text(errors="replace").splitlines() if log.is_file() else []):
        if line.startswith("WPBENCH "):
            res.extra.update(json.loads(line.removeprefix("WPBENCH ")))
            break
    return res


def groups(results: list[cb.Result]) -> dict[str, list[cb.Result]]:
    out: dict[str, list[cb.Result]] = {}
    for r in results:
        out.setdefault(r.label.split("#")[0], []).append(r)
    return out


# --------------------------------------------------------------------------- report


def fmt(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x:,.{digits}f}"


def results_table(results: list[cb.Result], what: dict[str, str]) -> str:
    lines = [
        "| row | what | runs ok | median wall s | min–max wall s | median CPU s (child) "
        "| median import s | median peak RSS MiB | median peak anon RSS MiB | tokens | perplexity |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, rs in groups(results).items():
        ok = [r for r in rs if r.rc == 0]
        if not ok:
            why = "; ".join(r.note for r in rs if r.note) or "failed"
            lines.append(f"| {name} | {what[name]} | 0/{len(rs)} | {why} " + "| – " * 7 + "|")
            continue

        def m(key: str, rows: list[cb.Result] = ok) -> float | None:
            vals = [r.extra[key] for r in rows if key in r.extra]
            return med(vals) if vals else None

        walls = [r.wall_s for r in ok]
        lim = f" (limit {ok[0].limit})" if ok[0].limit else ""
        tokens = m("tokens")
        lines.append(
            f"| {name} | {what[name]}{lim} | {len(ok)}/{len(rs)} | **{med(walls):.2f}** "
            f"| {min(walls):.2f}–{max(walls):.2f} | {fmt(m('cpu_s'))} | {fmt(m('import_s'), 2)} "
            f"| {med([r.peak_rss_mib for r in ok]):,.0f} "
            f"| {med([r.peak_anon_mib for r in ok]):,.0f} "
            f"| {fmt(tokens, 0)} | {fmt(m('perplexity'), 0)} |"
        )
    return "\n".join(lines) + "\n"


def runs_table(results: list[cb.Result]) -> str:
    lines = [
        "| run | cold | result | wall s | CPU s | peak RSS MiB | peak anon MiB | cgroup peak MiB "
        "| load1 before |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        result = (
            "not run"
            if r.rc is None
            else "ok"
            if r.rc == 0
            else ("**OOM-killed**" if r.oom_killed else f"**exit {r.rc}**")
        )
        lines.append(
            f"| {r.label} | {'yes' if r.cold else 'no'} | {result} | {fmt(r.wall_s, 2)} "
            f"| {fmt(r.extra.get('cpu_s'))} | {r.peak_rss_mib:,.0f} | {r.peak_anon_mib:,.0f} "
            f"| {fmt(r.cgroup_peak_mib, 0)} | {fmt(r.extra.get('load1_before'), 2)} |"
        )
    return "\n".join(lines) + "\n"


def project(
    results: list[cb.Result], s1: Shape, bytes1: int, tokens7: int
) -> dict[str, object] | str:
    """The 7B projection from the medians, with every input it used."""
    g = {k: [r for r in v if r.rc == 0] for k, v in groups(results).items()}
    need = ("startup", "io-proxy", "check")
    if any(not g.get(k) for k in need):
        return "no projection: a startup, io-proxy or check row has no successful run"
    t_start = med([r.wall_s for r in g["startup"]])
    t_io = med([r.wall_s for r in g["io-proxy"]])
    t_check = med([r.wall_s for r in g["check"]])
    n1 = int(med([r.extra["tokens"] for r in g["check"] if "tokens" in r.extra]))
    n7 = tokens7
    s7 = LLAMA_7B
    bytes7 = s7.params * 2
    read_s, compute_s = t_io - t_start, t_check - t_io
    f_bytes = bytes7 / bytes1
    f_compute = (s7.matmul_params * n7) / (s1.matmul_params * n1)
    anon1 = med([r.peak_anon_mib for r in g["check"]])
    ws1, ws7 = s1.working_set(n1), s7.working_set(n7)
    m1, m7 = max(ws1.values()), max(ws7.values())
    dd = [r.wall_s for r in g.get("read-dd", [])]
    return {
        "t_start_s": t_start,
        "t_io_proxy_s": t_io,
        "t_check_s": t_check,
        "bytes_part_s": read_s,
        "compute_part_s": compute_s,
        "bytes_1b": bytes1,
        "bytes_7b": bytes7,
        "params_1b": s1.params,
        "params_7b": s7.params,
        "matmul_params_1b": s1.matmul_params,
        "matmul_params_7b": s7.matmul_params,
        "tokens_1b": n1,
        "tokens_7b": n7,
        "bytes_factor": f_bytes,
        "compute_factor": f_compute,
        "bytes_part_7b_s": read_s * f_bytes,
        "compute_part_7b_s": compute_s * f_compute,
        "t_7b_s": t_start + read_s * f_bytes + compute_s * f_compute,
        # the same if the 7B's tokenizer cut the passage as finely as the bench's does
        "t_7b_bench_tokens_s": t_start + read_s * f_bytes + compute_s * f_compute * n1 / n7,
        "dd_read_s": med(dd) if dd else None,
        "dd_read_7b_s": med(dd) * f_bytes if dd else None,
        "t_7b_upper_s": t_start
        + max(read_s, med(dd) if dd else 0.0) * f_bytes
        + compute_s * f_compute,
        "peak_anon_1b_mib": anon1,
        "working_set_1b": ws1,
        "working_set_7b": ws7,
        "peak_anon_7b_mib": anon1 + (m7 - m1) / MiB,
        "file_pages_7b_mib": bytes7 / MiB,
    }


def projection_text(p: dict[str, object] | str) -> str:
    if isinstance(p, str):
        return p + "\n"
    f: dict = p
    ws1: dict[str, int] = f["working_set_1b"]
    ws7: dict[str, int] = f["working_set_7b"]
    m1, m7 = max(ws1.values()) / MiB, max(ws7.values()) / MiB
    dd = alt = ""
    if f["dd_read_s"] is not None:
        dd = (
            f" For comparison, the cold `dd` of the shard took {f['dd_read_s']:.2f} s "
            f"(×{f['bytes_factor']:.2f} = {f['dd_read_7b_s']:.1f} s for 7B)"
            + (
                "; the rest of the bytes part is copying each tensor out of the mapping and "
                "casting it to float32."
                if f["bytes_part_s"] > f["dd_read_s"]
                else ": the check's reads through the mapping kept up with `dd`'s (the disk's "
                "speed varies from run to run on this machine)."
            )
        )
        alt = (
            " With the bytes part from the slower of the two (io-proxy, `dd`): "
            f"{f['t_7b_upper_s']:.0f} s."
        )
    lines = [
        "### Projection for LLaMA-7B (dim 4096, 32 layers, FFN 11008, vocab 32000)\n",
        "Formula, from the medians above:\n",
        "    T7 = T_start + (T_io - T_start) * B7/B1 + (T_check - T_io) * (P7 * n7)/(P1 * n1)\n",
        f"- T_start = {f['t_start_s']:.2f} s: interpreter, `import torch` and "
        "`weightprep.language`; fixed.",
        f"- T_io − T_start = {f['t_io_proxy_s']:.2f} − {f['t_start_s']:.2f} = "
        f"**{f['bytes_part_s']:.2f} s**: the bytes part (cold read of every tensor, copy out of "
        f"the mapping, cast to float32), scaled by B7/B1 = {f['bytes_7b']:,} / "
        f"{f['bytes_1b']:,} bytes = ×{f['bytes_factor']:.2f}.{dd}",
        f"- T_check − T_io = {f['t_check_s']:.2f} − {f['t_io_proxy_s']:.2f} = "
        f"**{f['compute_part_s']:.2f} s**: the compute part, scaled by (P7·n7)/(P1·n1) = "
        f"({f['matmul_params_7b']:,} × {f['tokens_7b']}) / ({f['matmul_params_1b']:,} × "
        f"{f['tokens_1b']}) = ×{f['compute_factor']:.2f}. P: parameters multiplied per token "
        "(the decoder's linears and the LM head); n: tokens scored.",
        "",
        f"**T7 ≈ {f['t_start_s']:.1f} + {f['bytes_part_7b_s']:.1f} + "
        f"{f['compute_part_7b_s']:.1f} = {f['t_7b_s']:.0f} s** on this machine, with n7 = "
        f"{f['tokens_7b']} (`--tokens-7b`). Were the 7B's tokenizer to cut the passage as finely "
        f"as the bench's ({f['tokens_1b']} tokens): {f['t_7b_bench_tokens_s']:.0f} s. "
        "Attention (2·n²·dim FLOPs a layer, not in P) is under 4% of the compute at these "
        f"lengths, so scaling it linearly in n errs by less than that.{alt}\n",
        "Memory: peak anon RSS(7B) ≈ peak anon RSS(1B) − W(1B) + W(7B), W being the largest of "
        "the check's model-dependent working sets:\n",
        "| working set | 1B MiB | 7B MiB |",
        "|---|--:|--:|",
        *(f"| {k} | {ws1[k] / MiB:,.0f} | {ws7[k] / MiB:,.0f} |" for k in ws1),
        "",
        f"**{f['peak_anon_1b_mib']:,.0f} − {m1:,.0f} + {m7:,.0f} ≈ "
        f"{f['peak_anon_7b_mib']:,.0f} MiB anonymous** for 7B. Peak RSS also counts the pages "
        "of the memory-mapped shards the check has touched: up to the whole "
        f"{f['file_pages_7b_mib']:,.0f} MiB for 7B, clean page cache that the kernel reclaims "
        "under pressure.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--workdir", type=Path, default=cb.REPO / "bench" / "out", help="default: bench/out"
    )
    ap.add_argument("--repeat", type=int, default=3, help="repetitions of each row (default 3)")
    ap.add_argument(
        "--limit",
        default="1536M",
        help="memory limit of the one cgroup run (default 1536M = 1.5 GiB; '' to skip)",
    )
    ap.add_argument(
        "--tokens-7b",
        type=int,
        default=TOKENS_7B,
        help=f"tokens LLaMA's own tokenizer gives the passage, for the projection (default "
        f"{TOKENS_7B}, the figure in check_folder's docstring; the bench's small tokenizer "
        "cuts the passage finer)",
    )
    args = ap.parse_args(argv)

    started = time.monotonic()
    code, sources = cb.code_state()
    work = args.workdir.absolute()
    logs = work / "language-logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    weightprep = Path(sys.executable).with_name("weightprep")
    if not weightprep.is_file():
        raise SystemExit(
            f"{weightprep}: not found; run with the python of the venv weightprep is installed in"
        )
    src = ensure_input(work, weightprep)
    shards = sorted(src.glob("*.safetensors"))
    bytes1 = sum(p.stat().st_size for p in shards)
    s1 = shape_of(src)
    two = work / "language-two-words.txt"
    two.write_text(TWO_WORDS + "\n")

    child = work / "language-child.py"  # CHILD as a file: `python -c CHILD` would flood the log
    child.write_text(CHILD)
    py = [sys.executable, str(child)]
    what = {
        "read-dd": "`dd` cold read of the shard(s) to /dev/null",
        "startup": "the same child: import weightprep.language (+ torch) only",
        "io-proxy": f"check_folder on a 2-word passage ({TWO_WORDS!r}): reads every weight",
        "check": "check_folder on the built-in passage (the real check)",
    }
    if len(shards) == 1:
        read_cmd = ["dd", f"if={shards[0]}", "of=/dev/null", "bs=16M"]
    else:
        what["read-dd"] = "`cat` of the shards to /dev/null: the cold read alone"
        read_cmd = ["sh", "-c", 'cat "$@" > /dev/null', "cat", *map(str, shards)]
    plan: list[tuple[str, list[str], int | None]] = []
    for i in range(args.repeat):
        sfx = f"#{i + 1}"
        plan += [
            (f"read-dd{sfx}", read_cmd, None),
            (f"startup{sfx}", [*py, "--import-only"], None),
            (f"io-proxy{sfx}", [*py, str(src), str(two)], None),
            (f"check{sfx}", [*py, str(src)], None),
        ]
    if args.limit:
        lim = cb.parse_limit(args.limit)
        label = f"check@{lim // MiB}M"
        what[label.split("#")[0]] = what["check"]
        plan.append((label, [*py, str(src)], lim))

    results: list[cb.Result] = []
    for label, cmd, limit in plan:
        results.append(run(label, what[label.split("#")[0]], cmd, logs, limit))
        (work / "language.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
    two.unlink()
    child.unlink()

    notes: list[str] = []
    now = cb.code_state()[1]
    changed = [f for f in MEASURED if sources.get(f) != now.get(f)]
    if changed:
        notes.append(
            "**the measured code changed while this ran** (rows may mix versions): "
            + ", ".join(changed)
        )
    cold = all(r.cold for r in results if r.rc is not None)
    capped = [r for r in results if r.limit]
    if capped:
        c = capped[0]
        if c.rc is None:
            notes.append(f"{c.label}: {c.note}")
        else:
            notes.append(
                f"{c.label}: the check inside a {c.limit} memory cgroup "
                + (
                    f"**completed** (exit 0, {c.wall_s:.2f} s, peak anon RSS "
                    f"{c.peak_anon_mib:,.0f} MiB, cgroup peak {fmt(c.cgroup_peak_mib, 0)} MiB "
                    "with page cache)"
                    if c.rc == 0
                    else f"**did not complete**: {c.note}"
                )
            )
    loads = [r.extra["load1_before"] for r in results if "load1_before" in r.extra]
    ok_checks = [r.wall_s for r in results if r.label.startswith("check#") and r.rc == 0]
    spread = (max(ok_checks) / min(ok_checks) - 1) if ok_checks else 0.0
    if max(loads, default=0.0) > 1.0 or spread > 0.15:
        notes.append(
            f"**timings may be noisy**: 1-minute load average before a run up to "
            f"{max(loads):.2f} on {os.cpu_count()} CPUs, check walls spread {spread:.0%} "
            "(other jobs share this machine)"
        )
    for r in results:
        if r.rc not in (0, None) and not r.limit:
            notes.append(f"{r.label}: {r.note}")
    proj = project(results, s1, bytes1, args.tokens_7b)
    threads = next((r.extra["torch_threads"] for r in results if "torch_threads" in r.extra), "?")

    doc = [
        f"# Language check benchmark: {bytes1 / 1e9:.2f} GB LLaMA-1B example "
        f"(dim {s1.dim}, {s1.layers} layers, FFN {s1.ffn}, vocab {s1.vocab}, fp16, "
        f"{s1.params:,} parameters)\n",
        f"Machine: {cb.machine()}.  ",
        f"Code: {code}.  ",
        f"Command: `{' '.join([Path(sys.executable).name, *sys.argv])}`.  ",
        f"Input: `{src}` ({len(shards)} shard(s)).  ",
        f"torch threads in the child: {threads}.  ",
        f"Python {platform.python_version()}; each run a fresh process; "
        + (
            "page cache dropped before every run (`sync; echo 3 > /proc/sys/vm/drop_caches`: "
            "writable, so every run was cold for this machine's page cache)."
            if cold
            else "**page cache NOT dropped** (/proc/sys/vm/drop_caches not writable): warm runs."
        )
        + "\n",
        results_table(results, what),
        "peak RSS: VmHWM summed over the process tree (includes the touched pages of the "
        "memory-mapped shard); peak anon RSS: RssAnon, polled every 50 ms. CPU s: the child's "
        "own user + system time (dd rows: –). Perplexity is high because the weights are "
        "random: the bench measures cost, not the verdict.\n",
        *([f"- {n}" for n in notes] + [""] if notes else []),
        projection_text(proj),
        "### Every run\n",
        runs_table(results),
        f"Total benchmark time: {time.monotonic() - started:.0f}s.",
    ]
    text = "\n".join(doc) + "\n"
    (work / "language.md").write_text(text)
    (work / "language.json").write_text(
        json.dumps(
            {
                "results": [asdict(r) for r in results],
                "projection": proj,
                "shape_1b": asdict(s1),
                "shape_7b": asdict(LLAMA_7B),
                "cold": cold,
                "notes": notes,
                "code": code,
                "machine": cb.machine(),
            },
            indent=2,
        )
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
