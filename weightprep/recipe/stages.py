"""The stage kinds: for each, how it runs (weightprep's core, in-process, never a subprocess),
its estimates, its cheap checks, and its declaration (`Kind`, recipe/registry.py) at the end.

Adding a kind: write its `_run_X` (and `_estimate_X`, `_preflight_X` where it has them), add
one `Kind(...)` to `KINDS`, and a row to docs/run.md's table. tests/test_run_registry.py then
holds its options to the command's parameters.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from weightprep.errors import VerificationError, WeightprepError
from weightprep.io.atomic import human_bytes, staged_folder
from weightprep.recipe.registry import Check, Context, Estimate, Kind, Opt, Sizes

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


# --- sizes -----------------------------------------------------------------------------------
def folder_bytes(p: Path) -> int | None:
    """Bytes under `p` (stat only, nothing read)."""
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


def _secs(kind: str, n: int | None) -> float | None:
    return n / RATES[kind] if n else None


def _first(sizes: Sizes, *names: str) -> int | None:
    return next((sizes[k] for k in names if sizes.get(k)), None)


# --- Meta's download as an input ---------------------------------------------------------------
META_OPTION = {"convert-llama": "input", "apply-delta": "base", "make-example-delta": "base"}


def _meta(kind: str, opts: dict, path: Path) -> bool:
    """The stage reads `path` as Meta's download: convert-llama's input, or the BASE of a
    one-pass apply-delta (or of make-example-delta)."""
    key = META_OPTION[kind]
    if opts.get(key) is None or Path(opts[key]) != path:
        return False
    if kind == "convert-llama":
        return True
    from weightprep.llama.convert import is_meta_download

    return is_meta_download(path)


def _meta_size(kind: str):
    def size(opts: dict, name: str, path: Path) -> int | None:
        if name == META_OPTION[kind] and path.is_dir() and _meta(kind, opts, path):
            return convert_input_bytes(path, opts.get("model_size"))
        return folder_bytes(path)

    return size


def _meta_files(kind: str):
    """The files of a Meta download the stage reads, so that its key digests those and not,
    say, every size of a 235 GB LLaMA download; None: all of the input."""

    def only(opts: dict, path: Path) -> list[str] | None:
        try:
            if not _meta(kind, opts, path):
                return None
            from weightprep.llama.layout import locate

            c = locate(path, opts.get("model_size"))
        except (WeightprepError, ValueError, OSError):
            return None
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

    return only


def _check_manifest(opts: dict, name: str, stage: str) -> list[Check]:
    if name not in opts:
        return []
    from weightprep.manifest import resolve_manifest

    try:
        m, path = resolve_manifest(str(opts[name]))
    except WeightprepError as exc:
        return [Check(f"{stage} {name}", False, str(exc))]
    return [Check(f"{stage} {name}", True, f"manifest {m.name} ({len(m.files)} files) found")]


def _check_meta(kind: str, opts: dict, pending: set[str], stage: str) -> list[Check]:
    key = META_OPTION[kind]
    path = opts.get(key)
    if key in pending or path is None or not Path(path).is_dir() or not _meta(kind, opts, path):
        return []
    from weightprep.llama.layout import locate

    try:
        c = locate(Path(path), opts.get("model_size"))
    except WeightprepError as exc:
        return [Check(f"{stage} {key}", False, str(exc))]
    size = sum(s.stat().st_size for s in c.shards)
    return [
        Check(
            f"{stage} {key}",
            True,
            f"Meta's download {c.size_dir}: params.json, {len(c.shards)} shard(s) "
            f"({human_bytes(size)}), {c.tokenizer.name}",
        )
    ]


# --- the kinds ---------------------------------------------------------------------------------
def _run_make_example(opts: dict, out: Path | None, ctx: Context) -> dict:
    from weightprep.example import make_example

    assert out is not None
    with staged_folder(out, force=True) as tmp:
        make_example(tmp, seed=opts.get("seed", 0))
    return {"compared": GENERATED, "checks": [GENERATED]}


def _example_estimate(opts: dict, sizes: Sizes) -> Estimate:
    return Estimate(EXAMPLE_BYTES, 2 * GB, 10.0)


def _input_words(checks: list[str], opts: dict) -> list[str]:
    """Meta's input checks in words, and what an empty verify_input skipped."""
    words = [f"input: {c}" for c in checks] or [
        "input: nothing compared (no checklist.chk beside the files, no verify_input)"
    ]
    if not opts.get("verify_input"):
        words.append("input: not checked against a published manifest (no verify_input)")
    return words


def _run_convert(opts: dict, out: Path | None, ctx: Context) -> dict:
    from weightprep.llama.convert import convert_meta_to_hf

    assert out is not None
    r = convert_meta_to_hf(
        opts["input"],
        out,
        model_size=opts.get("model_size"),
        llama_version=opts.get("llama_version"),
        dtype=opts.get("dtype", "float16"),
        verify_input=opts.get("verify_input"),
        force=True,
        progress=ctx.progress,
    )
    checks = list(r.input_checks)
    return {
        "input_checks": checks,
        "n_params": r.n_params,
        "checks": _input_words(checks, opts),
        "compared": "input: " + "; ".join(checks)
        if checks
        else "input: nothing compared (no checklist.chk beside the files, no verify_input)",
    }


def _estimate_convert(opts: dict, sizes: Sizes) -> Estimate:
    src = sizes.get("input")
    factor = 2 if opts.get("dtype") in ("float32", "fp32") else 1
    return Estimate(src * factor if src else None, GB, _secs("convert-llama", src))


def _preflight_convert(opts: dict, pending: set[str]) -> list[Check]:
    return _check_meta("convert-llama", opts, pending, "convert-llama") + _check_manifest(
        opts, "verify_input", "convert-llama"
    )


def _run_verify(opts: dict, out: Path | None, ctx: Context) -> dict:
    from weightprep.checksum import verify_files
    from weightprep.manifest import resolve_manifest

    m, _ = resolve_manifest(str(opts["manifest"]))
    rep = verify_files(
        Path(opts["folder"]).expanduser(),
        m,
        strict=opts.get("strict", False),
        progress=ctx.progress,
    )
    bad = [
        f"{r.path} ({r.status.lower()})" for r in rep.results if r.status in ("MISMATCH", "MISSING")
    ]
    if not rep.ok:
        raise VerificationError(f"{opts['folder']} against {m.name}: {'; '.join(bad[:3])}")
    said = (
        f"{rep.count('OK')} file(s) of {opts['folder']} with their sha256/md5 in the manifest "
        f"{m.name}: all equal"
    )
    return {
        "manifest": m.name,
        "ok": rep.count("OK"),
        "extra": rep.count("EXTRA"),
        "compared": said,
        "checks": [said],
    }


def _only_verify(opts: dict, path: Path) -> list[str] | None:
    if opts.get("folder") is None or Path(opts["folder"]).expanduser() != path:
        return None
    from weightprep.manifest import resolve_manifest

    try:
        return sorted(resolve_manifest(str(opts["manifest"]))[0].files)
    except (WeightprepError, ValueError):
        return None


def _run_fetch(opts: dict, out: Path | None, ctx: Context) -> dict:
    from weightprep.fetch import fetch

    assert out is not None
    res = fetch(
        str(opts["source"]),
        out,
        revision=opts.get("revision"),
        manifest=opts.get("manifest"),
        force=True,
        progress=ctx.progress,
    )
    against = list(getattr(res, "verified_against", []))
    said = "every file with " + "; ".join(against) if against else "nothing compared"
    return {
        "bytes_downloaded": getattr(res, "bytes_downloaded", None),
        "compared": said,
        "checks": [f"download: {said}"],
    }


def _preflight_fetch(opts: dict, pending: set[str]) -> list[Check]:
    from weightprep.remote.location import parse_location

    try:
        loc = parse_location(str(opts["source"]))
    except WeightprepError as exc:
        return [Check("fetch source", False, str(exc))]
    return [Check("fetch source", True, f"{loc} (its size is known once listed by the fetch)")]


def _run_make_example_delta(opts: dict, out: Path | None, ctx: Context) -> dict:
    from weightprep.example import make_delta_example

    assert out is not None
    with staged_folder(out, force=True) as tmp:
        tmp.rmdir()
        make_delta_example(
            opts["base"], tmp, steps=opts.get("steps", 10), model_size=opts.get("model_size")
        )
    return {"compared": GENERATED, "checks": [GENERATED]}


def _run_apply_delta(opts: dict, out: Path | None, ctx: Context) -> dict:
    from weightprep.delta import LanguageOptions, apply_delta

    assert out is not None
    verify = opts.get("verify", False)
    r = apply_delta(
        opts["base"],
        Path(opts["delta"]).expanduser(),
        out,
        force=True,
        verify=verify,
        manifest=opts.get("manifest"),
        verify_base=opts.get("verify_base"),
        progress=ctx.progress,
        language=LanguageOptions(opts.get("reference_text"), opts.get("max_perplexity"))
        if verify
        else None,
        allow_base_mismatch=opts.get("allow_base_mismatch", False),
        model_size=opts.get("model_size"),
        verify_input=opts.get("verify_input"),
    )
    words = _input_words(list(r.input_checks), opts) if r.meta_input else []
    output = r.verified
    if r.meta_input:  # "input: ...; OUTPUT[; language check: ...]"
        said = "; ".join(r.input_checks) if r.input_checks else ""
        output = output.split("; ", said.count("; ") + 1 if said else 1)[-1]
    output = output.split("; language check: ")[0]
    words.append(f"output: {output}")  # the language check has lines of its own
    return {
        "verified": r.verified,
        "compared": r.verified,
        "input_checks": list(r.input_checks),
        "language_check": [c.to_dict() for c in r.language],
        "checks": words,
    }


def _estimate_apply(opts: dict, sizes: Sizes) -> Estimate:
    src = _first(sizes, "base", "delta")
    return Estimate(src, GB, _secs("apply-delta", src))


def _preflight_apply(opts: dict, pending: set[str]) -> list[Check]:
    out = _check_meta("apply-delta", opts, pending, "apply-delta")
    for name in ("verify_input", "verify_base", "manifest"):
        if name not in pending:
            out += _check_manifest(opts, name, "apply-delta")
    return out


def _run_patch_lavis(opts: dict, out: Path | None, ctx: Context) -> dict:
    from weightprep.lavis import patch_lavis_config

    r = patch_lavis_config(
        opts["llm"], lavis=opts.get("lavis"), model_type=opts.get("model_type", "vicuna7b")
    )
    words = [f"LAVIS: {c}" for c in r.checks]
    if r.status == "patched":
        words.append(
            f"LAVIS: patched {r.config}: llm_model {r.old!r} -> {r.new!r}; "
            f"the original is kept as {r.backup}"
        )
    else:
        words.append(f"LAVIS: {r.config} {r.status} (llm_model = {r.new!r}); nothing written")
    return {
        "config": str(r.config),
        "status": r.status,
        "backup": str(r.backup or ""),
        "checks": words,
        "compared": "the model folder as LAVIS loads it: " + "; ".join(r.checks),
    }


def _preflight_lavis(opts: dict, pending: set[str]) -> list[Check]:
    from weightprep.lavis import backup_path, locate_config, patch_text

    what = "LAVIS config"
    if "lavis" in pending:  # a missing input: said once, by the input check
        return []
    try:
        config = locate_config(opts.get("lavis"), opts.get("model_type", "vicuna7b"))
        patch_text(config.read_text(encoding="utf-8"), "/preflight", config)
    except (WeightprepError, OSError, UnicodeDecodeError) as exc:
        return [Check(what, False, str(exc))]
    for p in (config, config.parent):
        if not os.access(p, os.W_OK):
            return [Check(what, False, f"{p}: not writable (the patch and its backup go there)")]
    return [
        Check(what, True, f"{config} found and writable; a backup goes to {backup_path(config)}")
    ]


def _run_make_example_vlm(opts: dict, out: Path | None, ctx: Context) -> dict:
    from weightprep.smoke.example import build

    assert out is not None
    with staged_folder(out, force=True) as tmp:
        args = build(str(opts["model"]), tmp, opts["llm"])
    return {
        "compared": GENERATED,
        "checks": [GENERATED],
        "smoke_args": {k: v.replace(str(tmp), str(out)) for k, v in args.items()},
    }


def _run_publish(opts: dict, out: Path | None, ctx: Context) -> dict:
    from weightprep.publish.run import Options, publish

    r = publish(
        opts["model"],
        str(opts["to"]),
        Options(
            public=opts.get("public", False),
            revision=opts.get("revision"),
            message=opts.get("message"),
            record=ctx.record,
        ),
        ctx.progress,
    )
    said = f"the remote copy's files with the local ones ({r.checked_by})"
    return {
        "dest": r.dest,
        "bytes_sent": r.bytes_sent,
        "files": len(r.files),
        "compared": said,
        "checks": [
            f"publish: {opts['model']} verified against its {r.checked_by or 'sha256 (hashed now)'}",
            f"publish: all {len(r.files)} file(s) at {r.dest} checked against the local sha256s "
            f"after the upload ({human_bytes(r.bytes_sent)} sent)",
        ],
    }


def _estimate_publish(opts: dict, sizes: Sizes) -> Estimate:
    src = sizes.get("model")
    to = str(opts.get("to", ""))
    if "://" in to:
        return Estimate(0, GB // 2, _secs("publish", src))
    return Estimate(src, GB // 2, _secs("publish", src), disk_at=Path(to).expanduser())


def _preflight_publish(opts: dict, pending: set[str]) -> list[Check]:
    """The destination can be written: a Hub token the Hub accepts (whoami), Drive credentials
    Drive accepts (about), or a folder whose nearest existing parent is writable."""
    from weightprep.remote.location import parse_location

    to = str(opts["to"])
    what = f"publish to {to}"
    try:
        loc = parse_location(to)
        if loc.kind == "hf":
            from weightprep.remote.hub import whoami

            return [Check(what, True, f"the Hub accepts the token: {whoami(to)}")]
        if loc.kind == "gdrive":
            from weightprep.remote.drive import about

            a = about(None)
            quota = "no quota limit" if a["free"] is None else f"{human_bytes(a['free'])} free"
            return [Check(what, True, f"Drive accepts the credentials of {a['user']} ({quota})")]
    except WeightprepError as exc:
        return [Check(what, False, str(exc), exc.exit_code)]
    from weightprep.recipe.preflight import nearest_existing

    probe = nearest_existing(loc.path)
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        return [Check(what, False, f"{probe}: not a writable folder")]
    return [Check(what, True, f"{probe} is a writable folder")]


def _run_smoke(opts: dict, out: Path | None, ctx: Context) -> dict:
    from weightprep.smoke.report import write_report
    from weightprep.smoke.runner import Options, run_smoke

    rep = run_smoke(
        Options(
            model=str(opts["model"]),
            llm=opts.get("llm"),
            weights=opts.get("weights"),
            vision=opts.get("vision"),
            images=tuple(Path(str(p)).expanduser() for p in opts.get("image", ())),
            prompts=tuple(str(p) for p in opts.get("prompt", ())),
            device=opts.get("device", "auto"),
            dtype=opts.get("dtype", "auto"),
            max_new_tokens=opts.get("max_new_tokens", 64),
            expect=tuple(opts.get("expect", ())),
            example=opts.get("example", False),
            reference_text=opts.get("reference_text"),
            max_perplexity=opts.get("max_perplexity"),
        )
    )
    # The HTML page (images, answers, every check), written pass or fail, linked from RUN.md;
    # by default beside RUN.md.
    report = opts.get("report")
    if report is None and ctx.workdir is not None:
        report = ctx.workdir / f"{ctx.stage_id or 'smoke'}-report.html"
    links = {}
    if report is not None:
        report = Path(str(report)).expanduser()
        write_report(rep.to_dict(), report)
        links["smoke-test report (images, answers, checks)"] = str(report)
    if not rep.ok:
        raise VerificationError(
            "smoke test failed: "
            + "; ".join(f"{c.name}: {c.detail}" for c in rep.failures[:3])
            + (f" (report: {report})" if report is not None else "")
        )
    lang = rep.language["detail"] if rep.language else "language check not run"
    checks = rep.all_checks()
    return {
        "smoke_test": rep.to_dict(),
        "compared": f"language check: {lang}; all {len(checks)} checks passed",
        "checks": [f"smoke test: {'ok' if c.ok else 'FAIL'} {c.name}: {c.detail}" for c in checks],
        "links": links,
    }


def _needs_smoke_extra() -> str | None:
    """make-example-vlm and smoke-test need the `smoke` extra's transformers, which LAVIS's
    environment (transformers==4.33.2) does not have: there they are planned off, saying why."""
    from weightprep.extras import smoke_unavailable

    return smoke_unavailable()


def _estimate_smoke(opts: dict, sizes: Sizes) -> Estimate:
    src = _first(sizes, "llm", "weights")
    if not src:
        return Estimate(0, None, None)
    return Estimate(0, src + 2 * GB, (_secs("smoke-test", src) or 0) + 60)


def remove_output(out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "make-example",
            (Opt("seed", int),),
            _run_make_example,
            _example_estimate,
            writes_folder=True,
        ),
        Kind(
            "convert-llama",
            (
                Opt("input", Path, required=True, positional=True),
                Opt("model_size", str),
                Opt("llama_version", int),
                Opt("dtype", str),
                Opt("verify_input", str),
            ),
            _run_convert,
            _estimate_convert,
            writes_folder=True,
            prunable=True,
            only_reads=_meta_files("convert-llama"),
            input_size=_meta_size("convert-llama"),
            preflight=_preflight_convert,
        ),
        Kind(
            "verify",
            (
                Opt("folder", str, required=True, positional=True),
                Opt("manifest", str, required=True),
                Opt("strict", bool),
            ),
            _run_verify,
            lambda o, s: Estimate(0, GB // 4, _secs("verify", s.get("folder"))),
            only_reads=_only_verify,
            preflight=lambda o, p: (
                [] if "manifest" in p else _check_manifest(o, "manifest", "verify")
            ),
        ),
        Kind(
            "fetch",
            (
                Opt("source", str, required=True, positional=True),
                Opt("revision", str),
                Opt("manifest", str),
            ),
            _run_fetch,
            lambda o, s: Estimate(None, GB // 2, None),
            writes_folder=True,
            prunable=True,
            preflight=_preflight_fetch,
        ),
        Kind(
            "make-example-delta",
            (
                Opt("base", Path, required=True, positional=True),
                Opt("steps", int),
                Opt("model_size", str),
            ),
            _run_make_example_delta,
            _example_estimate,
            writes_folder=True,
            prunable=True,
            only_reads=_meta_files("make-example-delta"),
            input_size=_meta_size("make-example-delta"),
        ),
        Kind(
            "apply-delta",
            (
                Opt("base", Path, required=True, positional=True),
                Opt("delta", str, required=True, positional=True),
                Opt("verify", bool),
                Opt("manifest", str),
                Opt("verify_base", str),
                Opt("reference_text", Path),
                Opt("max_perplexity", float),
                Opt("allow_base_mismatch", bool),
                Opt("model_size", str),
                Opt("verify_input", str),
            ),
            _run_apply_delta,
            _estimate_apply,
            writes_folder=True,
            only_reads=_meta_files("apply-delta"),
            input_size=_meta_size("apply-delta"),
            preflight=_preflight_apply,
        ),
        Kind(
            "patch-lavis-config",
            (
                Opt("llm", Path, required=True, positional=True, param="model_dir"),
                Opt("lavis", Path),
                Opt("model_type", str),
            ),
            _run_patch_lavis,
            lambda o, s: Estimate(0, GB // 4, 1.0),
            edits=("lavis",),
            preflight=_preflight_lavis,
        ),
        Kind(
            "make-example-vlm",
            (Opt("model", str, required=True), Opt("llm", Path, required=True)),
            _run_make_example_vlm,
            _example_estimate,
            writes_folder=True,
            unavailable=_needs_smoke_extra,
        ),
        Kind(
            "publish",
            (
                Opt("model", Path, required=True, positional=True, param="model_dir"),
                Opt("to", str, required=True, positional=True, param="dest"),
                Opt("public", bool),
                Opt("revision", str),
                Opt("message", str),
            ),
            _run_publish,
            _estimate_publish,
            preflight=_preflight_publish,
        ),
        Kind(
            "smoke-test",
            (
                Opt("model", str, required=True),
                Opt("llm", str),
                Opt("weights", str),
                Opt("vision", str),
                Opt("image", list),
                Opt("prompt", list),
                Opt("report", Path),
                Opt("device", str),
                Opt("dtype", str),
                Opt("max_new_tokens", int),
                Opt("expect", list),
                Opt("example", bool),
                Opt("reference_text", Path),
                Opt("max_perplexity", float),
            ),
            _run_smoke,
            _estimate_smoke,
            unavailable=_needs_smoke_extra,
        ),
    )
}
