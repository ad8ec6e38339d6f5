"""The record of a run: `run.json` (for scripts) and `RUN.md` (for people), written after every
run, successful or not, and before a publish stage (its model card carries RUN.md).

Every check is there in words: the preflight's, and each stage's `checks` (the input checks such
as Meta's md5 checklist, comparisons, the language check, the LAVIS file patched and its backup,
publish verification). A stage's `links` (files it wrote for people, such as a report) are
linked from RUN.md.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from weightprep.io.atomic import human_bytes, write_atomic
from weightprep.recipe.registry import Check


@dataclass
class StageRecord:
    id: str
    run: str
    command: str
    status: str  # ran | skipped | off | pruned | failed (| "ran, then removed")
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


def document(
    recipe,
    workdir: Path,
    records: list[StageRecord],
    preflight: list[Check],
    failed: str | None = None,
    error: str = "",
) -> dict:
    return {
        "recipe": recipe.name,
        "source": recipe.source,
        "workdir": str(workdir),
        "settings": recipe.settings,
        "inputs": recipe.inputs,
        "versions": versions(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "ok": failed is None and not error,
        "failed_stage": failed,
        "error": error,
        "preflight": [asdict(c) for c in preflight],
        "stages": [asdict(r) for r in records],
    }


def write(workdir: Path, doc: dict) -> None:
    write_atomic(workdir / "run.json", json.dumps(doc, indent=1, default=str).encode())
    write_atomic(workdir / "RUN.md", render_md(doc).encode())


def render_md(doc: dict) -> str:
    head = "Finished" if doc["ok"] else f"FAILED at stage {doc['failed_stage']}"
    lines = [
        f"# weightprep run {doc['recipe']}",
        "",
        f"{head} {doc['finished']} in `{doc['workdir']}`.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in doc["versions"].items()),
    ]
    if doc.get("error"):
        lines += ["", f"error: {doc['error']}"]
    if doc.get("preflight"):
        lines += ["", "## Preflight (before any stage ran)", ""]
        lines += [
            f"- {'OK' if c['ok'] else 'FAIL'} {c['what']}: {c['detail']}" for c in doc["preflight"]
        ]
    lines += [
        "",
        "## Stages",
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
        result = s.get("result", {})
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
        if result.get("compared"):
            lines.append(f"\ncompared: {result['compared']}")
        if result.get("checks"):
            lines.append("\nchecks:\n")
            lines += [f"- {c}" for c in result["checks"]]
        for c in result.get("language_check", []):
            lines.append(f"\nlanguage check: {'PASS' if c['ok'] else 'FAIL'}: {c['detail']}")
        for label, path in result.get("links", {}).items():
            rel = os.path.relpath(path, doc["workdir"])  # RUN.md sits in the work dir
            lines.append(f"\n{label}: [{rel}]({rel})")
        if s["outputs"]:
            lines.append("\n| file | sha256 |\n|---|---|")
            lines += [f"| `{f}` | `{d}` |" for f, d in sorted(s["outputs"].items())]
        smoke = result.get("smoke_test")
        if smoke:
            lines.append(
                f"\nsmoke test: {'PASS' if smoke['ok'] else 'FAIL'} on {smoke['device']} "
                f"({smoke['dtype']})"
            )
            if smoke.get("language"):
                lang = smoke["language"]
                lines.append(
                    f"\nlanguage check: {'PASS' if lang['ok'] else 'FAIL'}: {lang['detail']}"
                )
            for r in smoke["results"]:
                lines.append(f"- [{r['mode']}] {r['prompt']} → {r['answer']!r}")
    return "\n".join(lines) + "\n"
