"""Each recipe stage kind: how it runs (calling weightprep's core, never a subprocess), what
command line it equals, and what disk, memory and time it is expected to need."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from weightprep.errors import InputError, VerificationError
from weightprep.io.atomic import staged_folder
from weightprep.progress import Progress

GB = 10**9
# Measured rates on the reference 2-core machine (docs/performance.md): bytes per second.
RATES = {
    "convert-llama": 0.26 * GB,
    "apply-delta": 0.2 * GB,
    "verify": 0.8 * GB,
    "fetch": 0.05 * GB,  # a typical home/Colab link; the real one varies most
    "publish": 0.05 * GB,
    "smoke-test": 0.3 * GB,  # loading; generation adds seconds per prompt
}
EXAMPLE_BYTES = 20 * 2**20
GENERATED = "nothing compared: made here by weightprep (the built-in example)"


@dataclass(frozen=True)
class Estimate:
    disk: int | None  # bytes the stage adds under the work dir (None: unknown)
    memory: int | None  # peak resident bytes
    seconds: float | None


def folder_bytes(p: Path) -> int | None:
    if not p.exists():
        return None
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def weights_bytes(p: Path) -> int | None:
    if not p.is_dir():
        return None
    exts = {".pth", ".bin", ".safetensors"}
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and f.suffix in exts)


def convert_input_bytes(root: Path, model_size: str | None) -> int | None:
    """The checkpoint bytes convert-llama reads: the size folder's, not the whole download's."""
    folder = root / model_size if model_size and (root / model_size).is_dir() else root
    total = sum(f.stat().st_size for f in folder.glob("consolidated.*.pth"))
    return total or weights_bytes(folder)


def _reads_meta(kind: str, opts: dict, path: Path) -> bool:
    """The stage reads `path` as Meta's download: convert-llama's input, or the BASE of a
    one-pass apply-delta (or of make-example-delta)."""
    if kind == "convert-llama":
        return Path(str(opts.get("input"))) == path
    if kind in ("apply-delta", "make-example-delta") and Path(str(opts.get("base"))) == path:
        from weightprep.llama.convert import is_meta_download

        return is_meta_download(path)
    return False


def meta_input_bytes(kind: str, opts: dict) -> tuple[str, int | None] | None:
    """(option, bytes) of a Meta download a stage reads: its size folder's, not the root's."""
    key = "input" if kind == "convert-llama" else "base"
    path = Path(str(opts.get(key, "")))
    if not path.is_dir() or not _reads_meta(kind, opts, path):
        return None
    return key, convert_input_bytes(path, opts.get("model_size"))


def read_files(kind: str, opts: dict, path: Path) -> list[str] | None:
    """The files under input `path` a stage actually reads (names relative to it), so that a
    key digests those and not, say, every size of a 235 GB LLaMA download; None: all of it."""
    from weightprep.errors import WeightprepError

    try:
        if _reads_meta(kind, opts, path):
            from weightprep.llama.layout import locate

            c = locate(path, opts.get("model_size"))
            files = [c.params, *c.shards, c.tokenizer]
            files += [
                p.parent / n
                for p in (c.params, c.tokenizer)
                for n in ("checklist.chk", "tokenizer_checklist.chk")
            ]
            root = path.resolve()
            return sorted(
                {
                    str(f.resolve().relative_to(root))
                    for f in files
                    if f.is_file() and root in f.resolve().parents
                }
            )
        if kind == "verify" and Path(str(opts.get("folder"))) == path:
            from weightprep.manifest import resolve_manifest

            return sorted(resolve_manifest(str(opts["manifest"]))[0].files)
    except (WeightprepError, ValueError):
        return None
    return None


def estimate(kind: str, opts: dict, sizes: dict[str, int | None]) -> Estimate:
    """`sizes` gives the bytes of each path option (known now, or predicted from upstream)."""
    src = next(
        (sizes[k] for k in ("input", "base", "folder", "model", "llm") if sizes.get(k)), None
    )
    rate = RATES.get(kind)
    secs = (src / rate) if (src and rate) else None
    if kind in ("make-example", "make-example-delta", "make-example-vlm"):
        return Estimate(EXAMPLE_BYTES, 2 * GB, 10.0)
    if kind == "convert-llama":
        factor = 2 if opts.get("dtype") == "float32" else 1
        return Estimate(src * factor if src else None, GB, secs)
    if kind == "apply-delta":
        return Estimate(src, GB, secs)
    if kind == "fetch":
        return Estimate(sizes.get("source"), GB // 2, None)
    if kind == "verify":
        return Estimate(0, GB // 4, secs)
    if kind == "publish":
        to_folder = "://" not in str(opts.get("to", ""))
        return Estimate(src if to_folder else 0, GB // 2, (src / RATES["publish"]) if src else None)
    if kind == "smoke-test":
        return Estimate(0, (src + 2 * GB) if src else None, (secs or 0) + 60 if src else None)
    return Estimate(0, GB // 4, 1.0)


def _b(v: object) -> bool:
    return v is True or str(v).lower() in ("1", "true", "yes", "on")


def _path(v: object) -> Path | None:
    return Path(str(v)).expanduser() if v not in (None, "") else None


def _float(v: object) -> float | None:
    if v in (None, ""):
        return None
    try:
        return float(str(v))
    except ValueError:
        raise InputError(f"max_perplexity: {v!r} is not a number") from None


def command_line(kind: str, opts: dict, out: Path | None) -> str:
    """The single command this stage equals (for the record and the plan)."""
    import shlex

    pos = {
        "make-example": [],
        "convert-llama": ["input"],
        "verify": ["folder"],
        "fetch": ["source"],
        "make-example-delta": ["base"],
        "apply-delta": ["base", "delta"],
        "patch-lavis-config": ["llm"],
        "make-example-vlm": [],
        "publish": ["model", "to"],
        "smoke-test": [],
    }[kind]
    words = ["weightprep", kind] + [str(opts[k]) for k in pos]
    if out is not None:
        words.append(str(out))
    for k, v in opts.items():
        if k in pos:
            continue
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            if v:
                words.append(flag)
        elif isinstance(v, list):
            for item in v:
                words += [flag, str(item)]
        elif v not in (None, ""):
            words += [flag, str(v)]
    return " ".join(shlex.quote(w) for w in words)


def unavailable(kind: str) -> str | None:
    """Why a stage of `kind` cannot run in this environment, or None: make-example-vlm and
    smoke-test need the `smoke` extra's transformers (not in LAVIS's environment)."""
    if kind in ("make-example-vlm", "smoke-test"):
        from weightprep.extras import smoke_unavailable

        return smoke_unavailable()
    return None


def run_stage(
    kind: str, opts: dict, out: Path | None, progress: Progress, record: str | None = None
) -> dict:
    """Run one stage; its output (if any) appears at `out` complete or not at all. Returns
    what the record keeps about it."""
    if kind == "make-example":
        from weightprep.example import make_example

        with staged_folder(out, force=True) as tmp:
            make_example(tmp, seed=int(opts.get("seed", 0)))
        return {"compared": GENERATED}
    if kind == "convert-llama":
        from weightprep.llama.convert import convert_meta_to_hf

        r = convert_meta_to_hf(
            Path(opts["input"]),
            out,
            model_size=opts.get("model_size"),
            llama_version=opts.get("llama_version"),
            dtype=opts.get("dtype", "float16"),
            verify_input=opts.get("verify_input") or None,
            force=True,
            progress=progress,
        )
        checks = list(r.input_checks)
        return {
            "input_checks": checks,
            "n_params": r.n_params,
            "compared": "input: " + "; ".join(checks)
            if checks
            else "input: nothing compared (no checklist.chk beside the files, no verify_input)",
        }
    if kind == "verify":
        from weightprep.checksum import verify_files
        from weightprep.manifest import resolve_manifest

        m, _ = resolve_manifest(str(opts["manifest"]))
        rep = verify_files(
            Path(opts["folder"]), m, strict=_b(opts.get("strict")), progress=progress
        )
        bad = [
            f"{r.path} ({r.status.lower()})"
            for r in rep.results
            if r.status in ("MISMATCH", "MISSING")
        ]
        if not rep.ok:
            raise VerificationError(f"{opts['folder']} against {m.name}: {'; '.join(bad[:3])}")
        return {
            "manifest": m.name,
            "ok": rep.count("OK"),
            "extra": rep.count("EXTRA"),
            "compared": f"{rep.count('OK')} file(s) of {opts['folder']} with their sha256/md5 in "
            f"the manifest {m.name}: all equal",
        }
    if kind == "fetch":
        from weightprep.fetch import fetch

        res = fetch(
            str(opts["source"]),
            out,
            revision=opts.get("revision") or None,
            manifest=opts.get("manifest") or None,
            force=True,
            progress=progress,
        )
        against = list(getattr(res, "verified_against", []))
        return {
            "bytes_downloaded": getattr(res, "bytes_downloaded", None),
            "compared": "every file with " + "; ".join(against) if against else "nothing compared",
        }
    if kind == "make-example-delta":
        from weightprep.example import make_delta_example

        with staged_folder(out, force=True) as tmp:
            tmp.rmdir()
            make_delta_example(
                Path(opts["base"]),
                tmp,
                steps=int(opts.get("steps", 10)),
                model_size=opts.get("model_size") or None,
            )
        return {"compared": GENERATED}
    if kind == "apply-delta":
        from weightprep.delta import LanguageOptions, apply_delta

        verify = _b(opts.get("verify"))
        r = apply_delta(
            Path(opts["base"]),
            Path(opts["delta"]),
            out,
            force=True,
            verify=verify,
            manifest=opts.get("manifest") or None,
            verify_base=opts.get("verify_base") or None,
            progress=progress,
            language=LanguageOptions(
                _path(opts.get("reference_text")), _float(opts.get("max_perplexity"))
            )
            if verify
            else None,
            allow_base_mismatch=_b(opts.get("allow_base_mismatch")),
            model_size=opts.get("model_size") or None,
            verify_input=opts.get("verify_input") or None,
        )
        return {
            "verified": r.verified,
            "compared": r.verified,
            "language_check": [c.to_dict() for c in r.language],
        }
    if kind == "patch-lavis-config":
        from weightprep.lavis import patch_lavis_config

        lavis = opts.get("lavis")
        r = patch_lavis_config(
            Path(opts["llm"]),
            lavis=Path(lavis).expanduser() if lavis else None,
            model_type=opts.get("model_type", "vicuna7b"),
        )
        return {
            "config": str(r.config),
            "status": r.status,
            "backup": str(r.backup or ""),
            "compared": "the model folder as LAVIS loads it: " + "; ".join(r.checks),
        }
    if kind == "make-example-vlm":
        from weightprep.smoke.example import build

        with staged_folder(out, force=True) as tmp:
            args = build(str(opts["model"]), tmp, Path(opts["llm"]))
        return {
            "compared": GENERATED,
            "smoke_args": {k: v.replace(str(tmp), str(out)) for k, v in args.items()},
        }
    if kind == "publish":
        from weightprep.publish.run import Options, publish

        r = publish(
            Path(opts["model"]),
            str(opts["to"]),
            Options(
                public=_b(opts.get("public")),
                revision=opts.get("revision") or None,
                message=opts.get("message") or None,
                record=record,
            ),
            progress,
        )
        return {
            "dest": r.dest,
            "bytes_sent": r.bytes_sent,
            "files": len(r.files),
            "compared": f"the remote copy's files with the local ones ({r.checked_by})",
        }
    if kind == "smoke-test":
        from weightprep.smoke.runner import Options, run_smoke

        expect = opts.get("expect") or []
        expect = [expect] if isinstance(expect, str) else list(expect)
        rep = run_smoke(
            Options(
                model=str(opts["model"]),
                llm=opts.get("llm") or None,
                weights=opts.get("weights") or None,
                vision=opts.get("vision") or None,
                device=opts.get("device", "auto"),
                dtype=opts.get("dtype", "auto"),
                max_new_tokens=int(opts.get("max_new_tokens", 64)),
                expect=tuple(str(e) for e in expect),
                example=_b(opts.get("example")),
                reference_text=_path(opts.get("reference_text")),
                max_perplexity=_float(opts.get("max_perplexity")),
            )
        )
        if not rep.ok:
            raise VerificationError(
                "smoke test failed: " + "; ".join(f"{c.name}: {c.detail}" for c in rep.failures[:3])
            )
        lang = rep.language["detail"] if rep.language else "language check not run"
        return {
            "smoke_test": rep.to_dict(),
            "compared": f"language check: {lang}; all {len(rep.all_checks())} checks passed",
        }
    raise InputError(f"unknown stage kind {kind}")


def remove_output(out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
