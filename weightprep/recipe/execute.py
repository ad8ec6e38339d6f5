"""Running the plan: each stage in turn, its output staged and renamed, state.json written after
each, intermediates removed when asked, the record written at the end (and on failure).

Progress goes to a `Listener` (the CLI prints it): a stage's start when it starts, its end when
it ends, so a log off a terminal shows where a run is.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import Protocol

from weightprep.errors import WeightprepError
from weightprep.io import faults
from weightprep.progress import NullProgress, Progress
from weightprep.recipe import record as rec_
from weightprep.recipe.plan import Graph, Planned
from weightprep.recipe.record import StageRecord
from weightprep.recipe.registry import Check, Context
from weightprep.recipe.stages import remove_output
from weightprep.recipe.state import manifest_digest


class Listener(Protocol):
    def started(self, p: Planned, index: int, total: int) -> None: ...

    def finished(self, p: Planned, r: StageRecord, index: int, total: int) -> None: ...


class NullListener:
    def started(self, p: Planned, index: int, total: int) -> None:
        pass

    def finished(self, p: Planned, r: StageRecord, index: int, total: int) -> None:
        pass


def _rss() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def from_state(p: Planned, status: str, rec: dict) -> StageRecord:
    """The record of a stage not run now, from what state.json kept of the run that made it."""
    return StageRecord(
        p.id,
        p.run,
        p.command,
        status,
        rec.get("seconds", 0.0),
        p.writes,
        rec.get("output_bytes", 0),
        rec.get("outputs", {}),
        rec.get("inputs", {}),
        rec.get("peak_rss", 0),
        rec.get("result", {}),
        reason=p.reason if status == "off" else "",
    )


def execute(
    g: Graph,
    plan: list[Planned],
    preflight: list[Check],
    progress: Progress | None = None,
    listener: Listener | None = None,
) -> list[StageRecord]:
    progress = progress or NullProgress()
    listener = listener or NullListener()
    recorded = g.wd.state["stages"]
    digest = {p.id: recorded.get(p.id, {}).get("digest", "unknown") for p in plan}
    records: list[StageRecord] = []
    keep = g.recipe.settings.get("keep_intermediate", True)
    total = len(plan)

    def write(failed: str | None = None, error: str = "") -> None:
        doc = rec_.document(g.recipe, g.workdir, records, preflight, failed, error)
        rec_.write(g.workdir, doc)

    for i, p in enumerate(plan, 1):
        s = g.stage(p.id)
        if p.action in ("skip", "pruned", "off"):
            status = {"skip": "skipped", "pruned": "pruned", "off": "off"}[p.action]
            records.append(from_state(p, status, recorded.get(s.id, {})))
            listener.finished(p, records[-1], i, total)
            continue
        out = g.out_dir(s)
        key, inputs = g.key(s, digest)
        old = recorded.get(s.id)
        if (
            p.reason != "--redo"
            and old
            and old.get("key") == key
            and not old.get("pruned")
            and (out is None or g.wd.still_valid(out, old.get("outputs", {})))
        ):  # what it reads came out the same as last time
            records.append(from_state(p, "skipped", old))
            listener.finished(p, records[-1], i, total)
            continue
        if old and old.get("pruned") and old.get("key") == key and p.reason.startswith("an input"):
            # the plan could not tell without hashing; the content is the same: still done
            records.append(from_state(p, "pruned", old))
            listener.finished(p, records[-1], i, total)
            continue
        listener.started(p, i, total)
        t0 = time.perf_counter()
        try:
            ctx = Context(progress, workdir=g.workdir, stage_id=s.id)
            if s.run == "publish":  # the model card tells how the weights were made
                write()
                ctx.record = (g.workdir / "RUN.md").read_text()
            result = g.kind(s).run(g.options(s), out, ctx)
            result.setdefault("checks", [])
            result["checks"] += skipped_options(g, s.id)
        except (WeightprepError, KeyboardInterrupt, OSError) as exc:
            error = str(exc) or type(exc).__name__
            records.append(
                StageRecord(s.id, s.run, p.command, "failed", time.perf_counter() - t0, error=error)
            )
            listener.finished(p, records[-1], i, total)
            write(failed=s.id, error=error)
            raise
        files = g.wd.output_manifest(out) if out is not None else {}
        d = manifest_digest(files) if out is not None else str(key)
        digest[s.id] = d
        r = StageRecord(
            s.id,
            s.run,
            p.command,
            "ran",
            time.perf_counter() - t0,
            str(out) if out else None,
            sum((out / f).stat().st_size for f in files) if out else 0,
            files,
            inputs,
            _rss(),
            result,
        )
        recorded[s.id] = {
            "key": key,
            "digest": d,
            "outputs": files,
            "inputs": inputs,
            "output_bytes": r.output_bytes,
            "result": result,
            "finished": time.time(),
            "seconds": r.seconds,
            "peak_rss": r.peak_rss,
        }
        g.wd.save()
        records.append(r)
        listener.finished(p, r, i, total)
        faults.reached("run-stage", 1)  # tests: a kill between two stages
        if keep is False:
            prune(g, s.id, plan, records)
    write()
    return records


def skipped_options(g: Graph, sid: str) -> list[str]:
    """Options the recipe sets from a setting that is empty: what was skipped, in words
    (`llama_manifest: ""` leaves verify_input out, and the record says so)."""
    s, opts = g.stage(sid), g.options(g.stage(sid))
    out = []
    for k, v in s.options.items():
        if isinstance(v, str) and "${settings." in v and k not in opts:
            out.append(f"{k}: skipped ({v} is empty, so --{k.replace('_', '-')} was not passed)")
    return out


def prune(g: Graph, sid: str, plan: list[Planned], records: list[StageRecord]) -> None:
    """Remove intermediate outputs every reader of which has now finished (and verified)."""
    done = {r.id for r in records if r.status in ("ran", "skipped")}
    ups = g.recipe.refs.get(sid, set()) | {f"input-{n}" for n in g.recipe.inputs}
    for up in ups:
        if up not in {s.id for s in g.stages}:
            continue
        u = g.stage(up)
        if not g.kind(u).prunable:
            continue
        readers = [q.id for q in plan if q.action != "off" and up in g.deps(q.id)]
        if readers and all(r in done for r in readers):
            out = g.out_dir(u)
            if out is not None and Path(out).exists():
                remove_output(out)
                g.wd.state["stages"].setdefault(up, {})["pruned"] = True
                g.wd.save()
                for r in records:
                    if r.id == up:
                        r.status = r.status + ", then removed"
