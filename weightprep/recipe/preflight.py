"""Everything cheap, checked before anything heavy (and by `--plan`), for the stages to run:

- every local input exists (and each stage's own cheap checks: Meta's layout, manifests found,
  LAVIS's yaml found and writable, the publish target's credentials accepted by a whoami /
  about call, a folder target's parent writable);
- a public upload has `--yes`;
- the disks hold the stages' disk estimates (per filesystem), the machine their peak memory.

Nothing here reads a weight file or writes anything. `refusal` turns the failed checks into one
error: exit 2 for bad input, 3 when only the machine (disk, memory, network) is short.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from weightprep.errors import DiskSpaceError, EnvironmentProblem, InputError, WeightprepError
from weightprep.io.atomic import human_bytes
from weightprep.recipe.plan import Graph, Planned
from weightprep.recipe.registry import Check


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem of `path` (tests replace this to play a small disk)."""
    return shutil.disk_usage(path).free


def memory_bytes() -> int | None:
    """Physical memory plus swap: what a process can ever have resident (None: unknown)."""
    try:
        info = dict(
            line.split(":", 1)
            for line in Path("/proc/meminfo").read_text().splitlines()
            if ":" in line
        )
        return sum(int(info[k].split()[0]) * 1024 for k in ("MemTotal", "SwapTotal") if k in info)
    except (OSError, ValueError):
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return None


def nearest_existing(p: Path) -> Path:
    """`p`, or its nearest parent that exists: where a folder not made yet will go."""
    p = p.expanduser().absolute()
    while not p.exists():
        p = p.parent
    return p


def run_checks(g: Graph, plan: list[Planned], yes: bool) -> list[Check]:
    checks: list[Check] = []
    todo = [p for p in plan if p.action == "run"]
    pending = {p.id for p in todo} | {
        p.id for p in plan if p.action in ("pruned", "off")
    }  # outputs that do not exist yet
    seen: set[str] = set()
    for p in todo:
        s = g.stage(p.id)
        for option, path in g.local_inputs(s).items():
            name = next(r[7:] for r in g.refs(s)[option] if r.startswith("inputs."))
            if name in seen:
                continue
            seen.add(name)
            if path.exists():
                checks.append(Check(f"inputs.{name}", True, f"{path} exists"))
            else:
                checks.append(
                    Check(
                        f"inputs.{name}",
                        False,
                        f"{path}: input {name} does not exist (set it with --set inputs.{name}=PATH)",
                    )
                )
    for p in todo:
        s = g.stage(p.id)
        k = g.kind(s)
        if k.name == "publish" and g.options(s).get("public") and not yes:
            checks.append(
                Check(
                    f"stage {s.id}",
                    False,
                    f"stage {s.id} publishes publicly, which cannot be undone: add --yes",
                )
            )
        if k.preflight is None:
            continue
        opts = g.options(s)
        # options naming what an earlier stage has yet to make, or a missing input (said above)
        later = {
            o
            for o, refs in g.refs(s).items()
            if any(r.split(".")[0] in pending for r in refs)
            or any(r.startswith("inputs.") and not g.input_path(r[7:]).exists() for r in refs)
        }
        try:
            found = k.preflight(opts, later)
        except WeightprepError as exc:
            found = [Check(f"stage {s.id}", False, str(exc), exc.exit_code)]
        checks += [Check(f"{s.id}: {c.what}", c.ok, c.detail, c.exit_code) for c in found]
    checks += disk_checks(g, todo)
    checks.append(memory_check(todo))
    return checks


def disk_checks(g: Graph, todo: list[Planned]) -> list[Check]:
    """The stages' disk estimates added up per filesystem, against its free space."""
    need: dict[int, tuple[Path, int, list[str]]] = {}
    unknown = [p.id for p in todo if p.disk is None]
    for p in todo:
        where = nearest_existing(Path(p.disk_at) if p.disk_at else g.workdir)
        dev = where.stat().st_dev
        at, n, ids = need.get(dev, (where, 0, []))
        need[dev] = (at, n + (p.disk or 0), ids + [p.id])
    if not need:
        at = nearest_existing(g.workdir)
        need[at.stat().st_dev] = (at, 0, [])
    out = []
    for at, n, _ids in need.values():
        free = free_bytes(at)
        more = f" (and {', '.join(unknown)} of unknown size)" if unknown else ""
        if n > free:
            out.append(
                Check(
                    "disk",
                    False,
                    f"{at}: the stages to run need about {human_bytes(n)}{more}, and the disk has "
                    f"{human_bytes(free)} free: {human_bytes(n - free)} missing",
                    3,
                )
            )
        else:
            out.append(
                Check(
                    "disk",
                    True,
                    f"{at}: need about {human_bytes(n)}{more}, {human_bytes(free)} free",
                )
            )
    return out


def memory_check(todo: list[Planned]) -> Check:
    peak = max((p for p in todo if p.memory), key=lambda p: p.memory or 0, default=None)
    have = memory_bytes()
    if peak is None or have is None:
        return Check("memory", True, "nothing to compare" if peak is None else "unknown here")
    need = peak.memory or 0
    if need > have:
        return Check(
            "memory",
            False,
            f"stage {peak.id} needs about {human_bytes(need)} of memory, and this machine has "
            f"{human_bytes(have)} (RAM and swap)",
            3,
        )
    return Check(
        "memory", True, f"peak about {human_bytes(need)} ({peak.id}), {human_bytes(have)} here"
    )


def refusal(checks: list[Check]) -> WeightprepError | None:
    """One error naming every failed check: InputError (exit 2), or EnvironmentProblem (3) when
    every failure is the machine's."""
    bad = [c for c in checks if not c.ok]
    if not bad:
        return None
    text = "; ".join(c.detail for c in bad)
    if len(bad) > 1:
        text = f"{len(bad)} problems before any stage ran: {text}"
    if all(c.what == "disk" for c in bad):
        return DiskSpaceError(text)
    if all(c.exit_code == 3 for c in bad):
        return EnvironmentProblem(text)
    return InputError(text)
