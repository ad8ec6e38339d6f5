"""Plan and run a recipe in a work dir, resumably, and leave a record.

State (`WORKDIR/state.json`, rewritten atomically after every stage) keeps, per stage, the key
(sha256 of its kind, its resolved options and the digests of everything it reads) and the
manifest of its output. A stage is skipped when its key equals the recorded one and its output
still verifies against the recorded manifest; otherwise it runs again, and so does every stage
whose inputs it changed. Stage outputs appear whole or not at all (each is staged and renamed),
and a stage is recorded only after its output is complete, so an interrupted run continues
from the first stage that did not finish. Input folders are digested by content; file digests
are cached by (size, mtime, inode) so unchanged inputs are not re-read.
"""

from __future__ import annotations

import hashlib
import json
import platform
import resource
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from weightprep.checksum import hash_files, list_files
from weightprep.errors import DiskSpaceError, InputError, WeightprepError
from weightprep.io import faults
from weightprep.io.atomic import human_bytes, output_lock, write_atomic
from weightprep.manifest import parse_sums
from weightprep.progress import NullProgress, Progress
from weightprep.recipe import stages as kinds
from weightprep.recipe.schema import MAKES_OUTPUT, REF, Recipe, RecipeError, Stage

STATE = "state.json"
REMOTE = ("hf://", "gdrive://")
PRUNABLE = {"convert-llama", "fetch", "make-example-delta"}
# options naming something the stage itself edits (LAVIS's config, with a backup beside it)
EDITS = {"patch-lavis-config": ("lavis",)}


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


@dataclass
class StageRecord:
    id: str
    run: str
    command: str
    status: str  # ran | skipped | off | pruned | failed
    seconds: float = 0.0
    output: str | None = None
    output_bytes: int = 0
    outputs: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)
    peak_rss: int = 0
    result: dict = field(default_factory=dict)
    error: str = ""
    reason: str = ""  # why a stage is off


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("weightprep", "torch", "transformers", "huggingface_hub", "fschat"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _rss() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


class Workdir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.state_file = path / STATE
        try:
            self.state = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
        except (OSError, ValueError) as exc:
            raise InputError(
                f"{self.state_file}: unreadable ({exc}); remove it to start over"
            ) from None
        self.state.setdefault("version", 1)
        self.state.setdefault("stages", {})
        self.state.setdefault("file_cache", {})

    def save(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_atomic(self.state_file, json.dumps(self.state, indent=1, sort_keys=True).encode())

    # --- digests -----------------------------------------------------------------------------
    @staticmethod
    def _stamp(p: Path) -> list[int]:
        st = p.stat()
        return [st.st_size, st.st_mtime_ns, st.st_ino]

    def cached(self, p: Path) -> str | None:
        """The recorded sha256 of `p` if it has not changed size, mtime or inode since."""
        hit = self.state["file_cache"].get(str(p.resolve()))
        return hit[3] if hit and hit[:3] == self._stamp(p) else None

    def remember(self, p: Path, digest: str) -> None:
        self.state["file_cache"][str(p.resolve())] = [*self._stamp(p), digest]

    def sha256s(self, folder: Path, rels: list[str]) -> dict[str, str]:
        """sha256 of each `folder/rel`, from the cache where the file did not change, hashing
        the rest in parallel."""
        out = {r: self.cached(folder / r) for r in rels}
        misses = [r for r, d in out.items() if d is None]
        for r, e in hash_files(folder, misses).items():
            out[r] = e.sha256
            self.remember(folder / r, e.sha256)
        return out  # type: ignore[return-value]

    def files_digest(self, folder: Path, rels: list[str]) -> str:
        """Content digest of some files of a folder (relative names and sha256s)."""
        present = [r for r in rels if (folder / r).is_file()]
        got = self.sha256s(folder, present)
        h = hashlib.sha256()
        for rel in sorted(rels):
            h.update(f"{rel}\0{got.get(rel, 'missing')}\n".encode())
        return h.hexdigest()

    def path_digest(self, p: Path) -> str:
        """Content digest of a file or a whole folder."""
        if p.is_file():
            return self.sha256s(p.parent, [p.name])[p.name]
        if not p.is_dir():
            return "missing"
        return self.files_digest(p, list_files(p))

    def output_manifest(self, out: Path) -> dict[str, str]:
        """{file: sha256} of a stage output just finished: from the SHA256SUMS our commands
        write while writing (remembered, so a re-run only stats them), plus anything else."""
        listed: dict[str, str] = {}
        sums = out / "SHA256SUMS"
        if sums.is_file():
            m = parse_sums(sums.read_text(), str(sums), out.name)
            listed = {r: e.sha256 for r, e in m.files.items() if (out / r).is_file()}
            for r, d in listed.items():
                self.remember(out / r, d)
        rest = [r for r in list_files(out) if r not in listed]
        return {**listed, **self.sha256s(out, rest)}

    def still_valid(self, out: Path, files: dict[str, str]) -> bool:
        """The output holds exactly the recorded files with the recorded sha256s (files that did
        not change size, mtime or inode since they were recorded are not read again)."""
        return self.damage(out, files) is None

    def damage(self, out: Path, files: dict[str, str]) -> str | None:
        """What differs from the recorded output, in words naming the files; None: nothing."""
        if not out.is_dir():
            return f"its output {out} is missing"
        present = set(list_files(out))

        def names(xs: set[str]) -> str:
            xs_sorted = sorted(xs)
            return ", ".join(xs_sorted[:3]) + (f" and {len(xs) - 3} more" if len(xs) > 3 else "")

        if set(files) - present:
            return f"{out}: missing {names(set(files) - present)}"
        if present - set(files):
            return f"{out}: not in its record: {names(present - set(files))}"
        got = self.sha256s(out, list(files))
        changed = {f for f in files if got.get(f) != files[f]}
        return f"{out}: changed since it was made: {names(changed)}" if changed else None


def manifest_digest(files: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


@dataclass
class Runner:
    recipe: Recipe
    workdir: Path
    yes: bool = False
    progress: Progress = field(default_factory=NullProgress)

    def __post_init__(self) -> None:
        self.wd = Workdir(self.workdir)
        self.stages = self._with_fetches()

    # --- the recipe, with remote inputs fetched first ----------------------------------------
    def _with_fetches(self) -> list[Stage]:
        extra = []
        for name, value in self.recipe.inputs.items():
            if value.startswith(REMOTE):
                src, _, rev = value.partition("@")
                opts = {"source": src, **({"revision": rev} if rev else {})}
                extra.append(Stage(f"input-{name}", "fetch", opts))
        return extra + list(self.recipe.stages)

    def out_dir(self, stage: Stage) -> Path | None:
        return self.workdir / stage.id if stage.run in MAKES_OUTPUT else None

    def input_path(self, name: str) -> Path:
        value = self.recipe.inputs[name]
        if value.startswith(REMOTE):
            return self.workdir / f"input-{name}"
        return Path(value).expanduser()

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
            out = self.out_dir(self._stage(ref))
            if out is None:
                raise RecipeError(f"${{{ref}}}: stage {ref} writes no folder")
            return str(out)

        return REF.sub(sub, value)

    def _stage(self, sid: str) -> Stage:
        for s in self.stages:
            if s.id == sid:
                return s
        raise RecipeError(f"no stage {sid!r} (stages: {', '.join(s.id for s in self.stages)})")

    def deps(self, sid: str) -> set[str]:
        """The stages `sid` reads: earlier stages it names, and the fetch stages of the remote
        inputs it names."""
        stage = self._stage(sid)
        out = set(self.recipe.refs.get(sid, set()))
        for v in stage.options.values():
            for t in v if isinstance(v, list) else [v]:
                for ref in REF.findall(str(t)):
                    if ref.startswith("inputs."):
                        name = ref.removeprefix("inputs.")
                        if self.recipe.inputs.get(name, "").startswith(REMOTE):
                            out.add(f"input-{name}")
        return out

    def enabled(self, stage: Stage) -> bool:
        if stage.when is None:
            return True
        v = self.resolve(stage.when)
        return bool(v) and str(v).lower() not in ("false", "0", "no", "off")

    def options(self, stage: Stage) -> dict:
        return {k: self.resolve(v) for k, v in stage.options.items()}

    def reads(self, stage: Stage) -> dict[str, str]:
        """What the stage reads, by reference: {ref: path}."""
        out = {}
        for v in stage.options.values():
            for t in v if isinstance(v, list) else [v]:
                if isinstance(t, str):
                    for ref in REF.findall(t):
                        if not ref.startswith("settings."):
                            head = ref.split(".")[0]
                            out[ref] = (
                                self.resolve("${" + ref + "}")
                                if head != "inputs"
                                else str(self.input_path(ref.removeprefix("inputs.")))
                            )
        return out

    def key(self, stage: Stage, upstream_digest: dict[str, str]) -> tuple[str, dict[str, str]]:
        digests = {}
        edited = {
            r for k in EDITS.get(stage.run, ()) for r in REF.findall(str(stage.options.get(k, "")))
        }
        for ref, path in self.reads(stage).items():
            if ref in edited:  # the stage changes it itself (idempotently): its path is the key
                digests[ref] = f"path:{Path(path).expanduser().absolute()}"
            elif ref.startswith("inputs.") and self.recipe.inputs[ref[7:]].startswith(REMOTE):
                # fetched by its own stage: that stage's output digest (it may be pruned)
                digests[ref] = upstream_digest.get(f"input-{ref[7:]}", "unknown")
            elif ref.startswith("inputs."):
                only = kinds.read_files(stage.run, self.options(stage), Path(path))
                digests[ref] = (
                    self.wd.files_digest(Path(path), only)
                    if only is not None
                    else self.wd.path_digest(Path(path))
                )
            else:
                digests[ref] = upstream_digest.get(ref, "unknown")
        body = {"run": stage.run, "with": self.options(stage), "reads": digests, "v": 1}
        return hashlib.sha256(
            json.dumps(body, sort_keys=True, default=str).encode()
        ).hexdigest(), digests

    # --- plan ---------------------------------------------------------------------------------
    def plan(
        self, *, from_: str | None = None, only: str | None = None, redo: tuple[str, ...] = ()
    ) -> list[Planned]:
        ids = [s.id for s in self.stages]
        for name in (from_, only, *redo):
            if name is not None and name not in ids:
                raise RecipeError(f"no stage {name!r} (stages: {', '.join(ids)})")
        recorded = self.wd.state["stages"]
        chosen = [
            s.id
            for i, s in enumerate(self.stages)
            if (only is None or s.id == only) and (from_ is None or i >= ids.index(from_))
        ]
        needed: set[str] = set()
        todo = list(chosen)
        while todo:
            for d in self.deps(todo.pop()):
                if d not in needed:
                    needed.add(d)
                    todo.append(d)
        digest: dict[str, str] = {}
        sizes: dict[str, int | None] = {}
        planned: list[Planned] = []
        running: set[str] = set()
        for i, s in enumerate(self.stages):
            out = self.out_dir(s)
            opts = self.options(s)
            cmd = kinds.command_line(s.run, opts, out)
            reads = self.reads(s)
            psizes = {}
            for k, v in s.options.items():
                refs = (
                    [r for r in REF.findall(v) if not r.startswith("settings.")]
                    if isinstance(v, str)
                    else []
                )
                if refs:
                    r = refs[0]
                    psizes[k] = (
                        sizes.get(r)
                        if not r.startswith("inputs.")
                        else kinds.folder_bytes(Path(reads[r]))
                    )
            if s.run == "fetch":
                psizes["source"] = None
            meta = kinds.meta_input_bytes(s.run, opts)
            if meta is not None:
                psizes[meta[0]] = meta[1]
            est = kinds.estimate(s.run, opts, psizes)
            missing = kinds.unavailable(s.run) if self.enabled(s) else None
            if not self.enabled(s) or missing:
                planned.append(
                    Planned(
                        s.id,
                        s.run,
                        "off",
                        missing or f"when {s.when} is empty or false",
                        cmd,
                        list(reads.values()),
                        None,
                        0,
                        0,
                        0,
                    )
                )
                continue
            selected = (only is None or s.id == only) and (from_ is None or i >= ids.index(from_))
            key, _ = self.key(s, digest)
            rec = recorded.get(s.id)
            action, reason = "run", "not run before"
            if rec and rec.get("key") == key:
                if rec.get("pruned"):
                    action, reason = "pruned", "removed after use (keep_intermediate=false)"
                elif out is None:
                    action, reason = "skip", "done with the same options and inputs"
                elif (damage := self.wd.damage(out, rec.get("outputs", {}))) is None:
                    action, reason = "skip", "done, and its output still verifies"
                else:
                    reason = damage
            elif rec:
                waiting = [r for r in self.recipe.refs.get(s.id, set()) if r in running]
                reason = (
                    f"if {', '.join(sorted(waiting))} comes out different"
                    if waiting
                    else "its options or inputs changed"
                )
            if s.id in redo:
                action, reason = "run", "--redo"
            if not selected:
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
            planned.append(
                Planned(
                    s.id,
                    s.run,
                    action,
                    reason,
                    cmd,
                    list(reads.values()),
                    str(out) if out else None,
                    est.disk if action == "run" else 0,
                    est.memory,
                    est.seconds if action == "run" else 0,
                )
            )
        if self.workdir.is_dir():
            self.wd.save()  # keep the input digests just computed
        # a pruned stage must come back when a stage that reads it runs
        for p in planned:
            if p.action != "pruned":
                continue
            for q in planned:
                if q.action == "run" and p.id in self.deps(q.id):
                    p.action, p.reason = "run", f"removed earlier, and {q.id} needs it again"
                    break
        return planned

    def preflight(self, plan: list[Planned]) -> None:
        need = sum(p.disk or 0 for p in plan if p.action == "run")
        self.workdir.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.workdir).free
        if need > free:
            raise DiskSpaceError(
                f"{self.workdir}: the stages to run need about {human_bytes(need)}, and the disk has "
                f"{human_bytes(free)} free: {human_bytes(need - free)} missing"
            )
        for p in plan:
            s = self._stage(p.id)
            if (
                p.action == "run"
                and s.run == "publish"
                and self.options(s).get("public")
                and not self.yes
            ):
                raise InputError(
                    f"stage {s.id} publishes publicly, which cannot be undone: add --yes"
                )
        for p in plan:
            if p.action != "run":
                continue
            for ref, path in self.reads(self._stage(p.id)).items():
                name = ref.removeprefix("inputs.")
                remote = self.recipe.inputs.get(name, "").startswith(REMOTE)
                if ref.startswith("inputs.") and not remote and not Path(path).exists():
                    raise InputError(
                        f"{path}: input {ref.removeprefix('inputs.')} does not exist (set it with --set {ref}=PATH)"
                    )

    # --- run ----------------------------------------------------------------------------------
    def run(self, plan: list[Planned]) -> list[StageRecord]:
        self.preflight(plan)
        with output_lock(self.workdir.absolute()):
            return self._run(plan)

    def _run(self, plan: list[Planned]) -> list[StageRecord]:
        recorded = self.wd.state["stages"]
        digest = {p.id: recorded.get(p.id, {}).get("digest", "unknown") for p in plan}
        records: list[StageRecord] = []
        keep = self.recipe.settings.get("keep_intermediate", True)
        self._started = time.time()
        for p in plan:
            s = self._stage(p.id)
            if p.action in ("skip", "pruned", "off"):
                status = {"skip": "skipped", "pruned": "pruned", "off": "off"}[p.action]
                records.append(_from_state(s, p, status, recorded.get(s.id, {})))
                continue
            out = self.out_dir(s)
            key, inputs = self.key(s, digest)
            opts = self.options(s)
            old = recorded.get(s.id)
            if (
                p.reason != "--redo"
                and old
                and old.get("key") == key
                and not old.get("pruned")
                and (out is None or self.wd.still_valid(out, old.get("outputs", {})))
            ):  # what it reads came out the same as last time
                records.append(_from_state(s, p, "skipped", old))
                continue
            t0 = time.perf_counter()
            try:
                record = None
                if s.run == "publish":  # the model card tells how the weights were made
                    self.write_record(records, plan)
                    record = (self.workdir / "RUN.md").read_text()
                result = kinds.run_stage(s.run, opts, out, self.progress, record)
            except (WeightprepError, KeyboardInterrupt) as exc:
                records.append(
                    StageRecord(
                        s.id,
                        s.run,
                        p.command,
                        "failed",
                        time.perf_counter() - t0,
                        error=str(exc) or type(exc).__name__,
                    )
                )
                self.write_record(records, plan, failed=s.id)
                raise
            files = self.wd.output_manifest(out) if out is not None else {}
            d = manifest_digest(files) if out is not None else key
            digest[s.id] = d
            rec = StageRecord(
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
                "output_bytes": rec.output_bytes,
                "result": result,
                "finished": time.time(),
                "seconds": rec.seconds,
                "peak_rss": rec.peak_rss,
            }
            self.wd.save()
            records.append(rec)
            faults.reached("run-stage", 1)  # tests: a kill between two stages
            if keep is False:
                self._prune(s, plan, records)
        self.write_record(records, plan)
        return records

    def _prune(self, stage: Stage, plan: list[Planned], records: list[StageRecord]) -> None:
        """Remove intermediate outputs every reader of which has now finished (and verified)."""
        done = {r.id for r in records if r.status in ("ran", "skipped")}
        for up in self.recipe.refs.get(stage.id, set()) | {
            f"input-{n}" for n in self.recipe.inputs
        }:
            try:
                u = self._stage(up)
            except RecipeError:
                continue
            if u.run not in PRUNABLE:
                continue
            readers = [q.id for q in plan if q.action != "off" and up in self.deps(q.id)]
            if readers and all(r in done for r in readers):
                out = self.out_dir(u)
                if out is not None and out.exists():
                    kinds.remove_output(out)
                    self.wd.state["stages"].setdefault(up, {})["pruned"] = True
                    self.wd.save()
                    for r in records:
                        if r.id == up:
                            r.status = r.status + ", then removed"

    # --- the record ---------------------------------------------------------------------------
    def write_record(
        self, records: list[StageRecord], plan: list[Planned], failed: str | None = None
    ) -> None:
        doc = {
            "recipe": self.recipe.name,
            "source": self.recipe.source,
            "workdir": str(self.workdir),
            "settings": self.recipe.settings,
            "inputs": self.recipe.inputs,
            "versions": versions(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "ok": failed is None,
            "failed_stage": failed,
            "stages": [asdict(r) for r in records],
        }
        write_atomic(self.workdir / "run.json", json.dumps(doc, indent=1, default=str).encode())
        write_atomic(self.workdir / "RUN.md", render_md(doc).encode())


def _from_state(stage: Stage, p: Planned, status: str, rec: dict) -> StageRecord:
    """The record of a stage not run now, from what state.json kept of the run that made it."""
    return StageRecord(
        stage.id,
        stage.run,
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


def render_md(doc: dict) -> str:
    lines = [
        f"# weightprep run {doc['recipe']}",
        "",
        f"{'Finished' if doc['ok'] else 'FAILED at stage ' + str(doc['failed_stage'])} "
        f"{doc['finished']} in `{doc['workdir']}`.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in doc["versions"].items()),
        "",
        "Skipped stages show the seconds and peak RSS of the run that made their output.",
        "",
        "| stage | status | seconds | output | bytes | peak RSS |",
        "|---|---|--:|---|--:|--:|",
    ]
    for s in doc["stages"]:
        lines.append(
            f"| {s['id']} ({s['run']}) | {s['status']} | {s['seconds']:.1f} | {s['output'] or ''} "
            f"| {s['output_bytes']} | {human_bytes(s['peak_rss']) if s['peak_rss'] else ''} |"
        )
    for s in doc["stages"]:
        if s["status"] == "off":
            why = s.get("reason") or "its `when` setting is empty or false"
            lines += ["", f"## {s['id']}", "", f"off ({why})"]
            continue
        lines += ["", f"## {s['id']}", "", f"`{s['command']}`"]
        if s.get("error"):
            lines.append(f"\nerror: {s['error']}")
        if s["inputs"]:
            lines.append(
                "\nreads: " + ", ".join(f"`{k}` {v[:16]}…" for k, v in s["inputs"].items())
            )
        compared = s.get("result", {}).get("compared")
        if compared:
            lines.append(f"\ncompared: {compared}")
        for c in s.get("result", {}).get("language_check", []):
            lines.append(f"\nlanguage check: {'PASS' if c['ok'] else 'FAIL'}: {c['detail']}")
        if s["outputs"]:
            lines.append("\n| file | sha256 |\n|---|---|")
            lines += [f"| `{f}` | `{d}` |" for f, d in sorted(s["outputs"].items())]
        smoke = s.get("result", {}).get("smoke_test")
        if smoke:
            lines.append(
                f"\nsmoke test: {'PASS' if smoke['ok'] else 'FAIL'} on {smoke['device']} ({smoke['dtype']})"
            )
            if smoke.get("language"):
                lang = smoke["language"]
                lines.append(
                    f"\nlanguage check: {'PASS' if lang['ok'] else 'FAIL'}: {lang['detail']}"
                )
            for r in smoke["results"]:
                lines.append(f"- [{r['mode']}] {r['prompt']} → {r['answer']!r}")
    return "\n".join(lines) + "\n"
