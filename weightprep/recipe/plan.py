"""The graph of a recipe's stages and the plan: what runs, what is skipped, and why.

A stage is skipped when its key equals the recorded one and its output still verifies against
the recorded manifest; otherwise it runs, and so may every stage whose inputs it changes. The
plan reads no file in full: input digests come from the digest cache (size, mtime, inode); a file
the cache does not know makes the stage `run`, and the run hashes it (once) before deciding.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from weightprep.recipe.registry import Kind, coerce, command_line, kind
from weightprep.recipe.schema import REF, Recipe, RecipeError, Stage
from weightprep.recipe.state import Workdir
from weightprep.remote.location import is_remote


@dataclass
class Planned:
    id: str
    run: str
    action: str  # run | skip | off | pruned
    reason: str
    command: str
    reads: list[str]
    writes: str | None
    disk: int | None
    memory: int | None
    seconds: float | None
    disk_at: str | None = None  # where `disk` goes, when not under the work dir


class Graph:
    """A recipe's stages (remote inputs fetched by stages of their own, in front) in a work
    dir: references resolved, dependencies, keys."""

    def __init__(self, recipe: Recipe, workdir: Path, hashing: bool = True) -> None:
        self.recipe = recipe
        self.workdir = workdir
        self.wd = Workdir(workdir, hashing)
        extra = []
        for name, value in recipe.inputs.items():
            if is_remote(value):
                src, _, rev = value.partition("@")
                opts = {"source": src, **({"revision": rev} if rev else {})}
                extra.append(Stage(f"input-{name}", "fetch", opts))
        self.stages: list[Stage] = extra + list(recipe.stages)

    def kind(self, stage: Stage) -> Kind:
        return kind(stage.run)

    def stage(self, sid: str) -> Stage:
        for s in self.stages:
            if s.id == sid:
                return s
        raise RecipeError(f"no stage {sid!r} (stages: {', '.join(s.id for s in self.stages)})")

    def out_dir(self, stage: Stage) -> Path | None:
        return self.workdir / stage.id if self.kind(stage).writes_folder else None

    def remote_input(self, name: str) -> bool:
        return is_remote(self.recipe.inputs.get(name, ""))

    def input_path(self, name: str) -> Path:
        if self.remote_input(name):
            return self.workdir / f"input-{name}"
        return Path(self.recipe.inputs[name]).expanduser()

    def resolve(self, value: object) -> object:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, str):
            return value
        whole = REF.fullmatch(value)
        if whole and whole.group(1).startswith("settings."):
            return self.recipe.settings[whole.group(1).removeprefix("settings.")]

        def sub(m) -> str:
            ref = m.group(1)
            head, _, rest = ref.partition(".")
            if head == "inputs":
                return str(self.input_path(rest))
            if head == "settings":
                return str(self.recipe.settings[rest])
            out = self.out_dir(self.stage(ref))
            if out is None:
                raise RecipeError(f"${{{ref}}}: stage {ref} writes no folder")
            return str(out)

        return REF.sub(sub, value)

    def raw_options(self, stage: Stage) -> dict:
        """`with:` resolved, as written (the key is made of these)."""
        return {k: self.resolve(v) for k, v in stage.options.items()}

    def options(self, stage: Stage) -> dict:
        """`with:` resolved and typed as the command takes them; empty values dropped."""
        return coerce(self.kind(stage), self.raw_options(stage), f"stage {stage.id}")

    def command(self, stage: Stage) -> str:
        return command_line(self.kind(stage), self.options(stage), self.out_dir(stage))

    def refs(self, stage: Stage) -> dict[str, list[str]]:
        """option -> the references (inputs and stages, not settings) in its value."""
        out = {}
        for k, v in stage.options.items():
            texts = v if isinstance(v, list) else [v]
            found = [r for t in texts if isinstance(t, str) for r in REF.findall(t)]
            found = [r for r in found if not r.startswith("settings.")]
            if found:
                out[k] = found
        return out

    def deps(self, sid: str) -> set[str]:
        """The stages `sid` reads: earlier stages it names, and the fetch stages of the remote
        inputs it names."""
        stage = self.stage(sid)
        out = set(self.recipe.refs.get(sid, set()))
        for refs in self.refs(stage).values():
            for ref in refs:
                name = ref.removeprefix("inputs.")
                if ref.startswith("inputs.") and self.remote_input(name):
                    out.add(f"input-{name}")
        return out

    def enabled(self, stage: Stage) -> bool:
        if stage.when is None:
            return True
        v = self.resolve(stage.when)
        return bool(v) and str(v).lower() not in ("false", "0", "no", "off")

    def reads(self, stage: Stage) -> dict[str, str]:
        """What the stage reads, by reference: {ref: path}."""
        out = {}
        for refs in self.refs(stage).values():
            for ref in refs:
                head, _, rest = ref.partition(".")
                out[ref] = (
                    str(self.input_path(rest))
                    if head == "inputs"
                    else self.resolve("${" + ref + "}")
                )
        return out  # type: ignore[return-value]

    def local_inputs(self, stage: Stage) -> dict[str, Path]:
        """option -> the local input folder it names (not fetched, not an earlier stage's)."""
        out = {}
        for k, refs in self.refs(stage).items():
            for ref in refs:
                name = ref.removeprefix("inputs.")
                if ref.startswith("inputs.") and not self.remote_input(name):
                    out[k] = self.input_path(name)
        return out

    def only_reads(self, stage: Stage, path: Path) -> list[str] | None:
        k = self.kind(stage)
        return k.only_reads(self.options(stage), path) if k.only_reads else None

    def key(self, stage: Stage, upstream: dict[str, str]) -> tuple[str | None, dict[str, str]]:
        """(key, {ref: digest}); the key is None when an input's digest is not known without
        reading it (a plan with a cold or stale digest cache)."""
        digests: dict[str, str] = {}
        unknown = False
        edited = {
            r for o in self.kind(stage).edits for r in REF.findall(str(stage.options.get(o, "")))
        }
        for ref, path in self.reads(stage).items():
            name = ref.removeprefix("inputs.")
            if ref in edited:  # the stage changes it itself (idempotently): its path is the key
                digests[ref] = f"path:{Path(path).expanduser().absolute()}"
            elif ref.startswith("inputs.") and self.remote_input(name):
                # fetched by its own stage: that stage's output digest (it may be pruned)
                digests[ref] = upstream.get(f"input-{name}", "unknown")
            elif ref.startswith("inputs."):
                only = self.only_reads(stage, Path(path))
                d = (
                    self.wd.files_digest(Path(path), only)
                    if only is not None
                    else self.wd.path_digest(Path(path))
                )
                unknown |= d is None
                digests[ref] = d or "unknown"
            else:
                digests[ref] = upstream.get(ref, "unknown")
        body = {"run": stage.run, "with": self.raw_options(stage), "reads": digests, "v": 1}
        key = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
        return (None if unknown else key), digests

    def unhashed(self, stage: Stage) -> list[str]:
        """The input files the stage reads whose digest the cache does not hold."""
        out = []
        for ref, path in self.reads(stage).items():
            if ref.startswith("inputs.") and not self.remote_input(ref.removeprefix("inputs.")):
                p = Path(path)
                out += [str(p / r) for r in self.wd.unknown(p, self.only_reads(stage, p))]
        return out

    def sizes(self, stage: Stage, predicted: dict[str, int | None]) -> dict[str, int | None]:
        """option -> bytes of what it names: an input's size now (stat only), an earlier
        stage's recorded or predicted output size."""
        k, opts = self.kind(stage), self.options(stage)
        out: dict[str, int | None] = {}
        from weightprep.recipe.stages import folder_bytes

        for name, refs in self.refs(stage).items():
            ref = refs[0]
            if ref.startswith("inputs.") and not self.remote_input(ref[7:]):
                p = Path(str(opts[name])) if name in opts else self.input_path(ref[7:])
                out[name] = k.input_size(opts, name, p) if k.input_size else folder_bytes(p)
            elif ref.startswith("inputs."):
                out[name] = predicted.get(f"input-{ref[7:]}")
            else:
                out[name] = predicted.get(ref)
        return out


def plan(
    g: Graph, *, from_: str | None = None, only: str | None = None, redo: tuple[str, ...] = ()
) -> list[Planned]:
    ids = [s.id for s in g.stages]
    for name in (from_, only, *redo):
        if name is not None and name not in ids:
            raise RecipeError(f"no stage {name!r} (stages: {', '.join(ids)})")
    recorded = g.wd.state["stages"]

    def selected(i: int, s: Stage) -> bool:
        return (only is None or s.id == only) and (from_ is None or i >= ids.index(from_))

    needed: set[str] = set()
    todo = [s.id for i, s in enumerate(g.stages) if selected(i, s)]
    while todo:
        for d in g.deps(todo.pop()):
            if d not in needed:
                needed.add(d)
                todo.append(d)
    digest: dict[str, str] = {}
    sizes: dict[str, int | None] = {}
    planned: list[Planned] = []
    running: set[str] = set()
    for i, s in enumerate(g.stages):
        out = g.out_dir(s)
        cmd = g.command(s)
        reads = list(g.reads(s).values())
        kind = g.kind(s)
        if not g.enabled(s):
            why = f"when {s.when} is empty or false"
        else:
            why = kind.unavailable() if kind.unavailable else None
        if why:
            planned.append(Planned(s.id, s.run, "off", why, cmd, reads, None, 0, 0, 0))
            continue
        est = g.kind(s).estimate(g.options(s), g.sizes(s, sizes))
        key, _ = g.key(s, digest)
        rec = recorded.get(s.id)
        action, reason = "run", "not run before"
        if rec and key is None:
            files = g.unhashed(s)
            shown = ", ".join(files[:2]) + (f" and {len(files) - 2} more" if len(files) > 2 else "")
            reason = (
                f"an input changed on disk since it was hashed ({shown}); the run hashes it "
                "and skips the stage if its content is the same"
            )
        elif rec and rec.get("key") == key:
            if rec.get("pruned"):
                action, reason = "pruned", "removed after use (keep_intermediate=false)"
            elif out is None:
                action, reason = "skip", "done with the same options and inputs"
            elif (damage := g.wd.damage(out, rec.get("outputs", {}))) is None:
                action, reason = "skip", "done, and its output still verifies"
            else:
                reason = damage
        elif rec:
            waiting = [r for r in g.recipe.refs.get(s.id, set()) if r in running]
            reason = (
                f"if {', '.join(sorted(waiting))} comes out different"
                if waiting
                else "its options or inputs changed"
            )
        if s.id in redo:
            action, reason = "run", "--redo"
        if not selected(i, s):
            if action == "run" and rec is None and s.id in needed:
                raise RecipeError(
                    f"stage {s.id} has never run, and the selected stages read its output: "
                    "run it first (without --from/--only)"
                )
            if action != "pruned":
                action, reason = "skip", "not selected (--from/--only)"
        if action in ("skip", "pruned") and rec:
            digest[s.id] = rec.get("digest", "unknown")
            sizes[s.id] = rec.get("output_bytes")
        else:
            running.add(s.id)
            digest[s.id] = f"pending:{s.id}"
            sizes[s.id] = est.disk
        todo_ = action == "run"
        planned.append(
            Planned(
                s.id,
                s.run,
                action,
                reason,
                cmd,
                reads,
                str(out) if out else None,
                est.disk if todo_ else 0,
                est.memory,
                est.seconds if todo_ else 0,
                str(est.disk_at) if est.disk_at else None,
            )
        )
    # a pruned stage must come back when a stage that reads it runs
    for p in planned:
        if p.action != "pruned":
            continue
        for q in planned:
            if q.action == "run" and p.id in g.deps(q.id):
                p.action, p.reason = "run", f"removed earlier, and {q.id} needs it again"
                break
    return planned
