"""Apply (or make) delta weights the way FastChat's `apply_delta` does, one tensor at a time.

FastChat's normal path (`fastchat.model.apply_delta`, fschat 0.2.36) loads base and delta with
`torch_dtype=torch.float16`, adds in float16 (`param.data += delta`), saves the *base* model
object (so the base's config) and the *delta's* tokenizer. This module computes the same
tensors with the same torch kernel, but streams: each output tensor is read from the
memory-mapped inputs, added, hashed and written, then dropped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from weightprep.errors import InputError, VerificationError
from weightprep.io.atomic import check_free_space, refuse_inside, staged_folder
from weightprep.io.outputs import MANIFEST_NAME, file_entries, seal, write_files
from weightprep.io.prefetch import prefetch_map
from weightprep.io.reader import CheckpointReader
from weightprep.io.safetensors_writer import TensorSpec, check_written, plan_shards, write_sharded
from weightprep.manifest import FileEntry, Manifest, TensorEntry, resolve_manifest
from weightprep.progress import NullProgress, Progress
from weightprep.tokenizer import tokenizer_files

# Buffers older transformers saved into checkpoints; FastChat's from_pretrained drops them.
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)
EMBEDDINGS = ("model.embed_tokens.weight", "lm_head.weight")


@dataclass(frozen=True)
class DeltaReport:
    output: Path
    n_tensors: int
    bytes_written: int
    files: dict[str, str]
    verified: str  # what the output was compared with, in words
    seconds: float
    language: tuple = ()  # LanguageCheck of the base and of the output, when run
    input_checks: tuple[str, ...] = ()  # BASE as Meta's download: what it was checked against
    meta_input: bool = False  # BASE was Meta's download (converted in the same pass)


@dataclass(frozen=True)
class LanguageOptions:
    """The language check (weightprep.language) for `apply-delta --verify`."""

    reference: Path | None = None
    max_perplexity: float | None = None


def weight_names(r: CheckpointReader) -> set[str]:
    """The tensors that are weights (not buffers transformers recomputes and ignores)."""
    return {n for n in r.info if not n.endswith(IGNORED_SUFFIXES)}


def preflight(
    base: CheckpointReader, other: CheckpointReader, other_role: str = "delta"
) -> list[str]:
    """Names both sides share, in the base's order; raise InputError on any mismatch."""
    b, o = weight_names(base), weight_names(other)
    if b - o or o - b:
        only_b, only_o = sorted(b - o), sorted(o - b)
        parts = []
        if only_b:
            parts.append(f"{len(only_b)} tensor(s) only in the base ({', '.join(only_b[:3])})")
        if only_o:
            parts.append(f"{len(only_o)} only in the {other_role} ({', '.join(only_o[:3])})")
        raise InputError(
            f"{other.folder}: does not match the base {base.folder}: {'; '.join(parts)}"
        )
    for n in sorted(b):
        bi, oi = base.info[n], other.info[n]
        if not (bi.dtype.is_floating_point and oi.dtype.is_floating_point):
            raise InputError(f"{oi.file}: {n} is {oi.dtype}/{bi.dtype}, not floating point")
        if bi.shape != oi.shape:
            if n in EMBEDDINGS and bi.shape[1:] == oi.shape[1:]:
                raise InputError(
                    f"{oi.file}: {n} has {oi.shape[0]} rows, the base {bi.shape[0]}: a vocabulary "
                    f"mismatch. Vicuna v0 deltas (32001 tokens) need FastChat <= 0.1.10; "
                    f"use the v1.1 delta of the same size (lmsys/vicuna-7b-delta-v1.1 for "
                    f"LLaMA-7B, lmsys/vicuna-13b-delta-v1.1 for 13B)"
                )
            raise InputError(
                f"{oi.file}: {n} has shape {list(oi.shape)}, the base {list(bi.shape)}"
            )
    return [n for n in base.info if n in b]


def _copy_json(src: Path, name: str, dtype: str | None = None) -> bytes | None:
    from weightprep.io.jsonfile import read_object

    p = src / name
    if not p.is_file():
        return None
    doc = read_object(p)
    if dtype is not None:
        doc["torch_dtype"] = dtype
    return (json.dumps(doc, indent=2) + "\n").encode()


def _tokenizer_from(folder: Path, max_length: int) -> dict[str, bytes]:
    tok = folder / "tokenizer.model"
    if not tok.is_file():
        raise InputError(
            f"{folder}: tokenizer.model not found (the output's tokenizer comes from here)"
        )
    cfg = folder / "tokenizer_config.json"
    if cfg.is_file():
        try:
            doc = json.loads(cfg.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            doc = None
        # only a hint (the output's tokenizer_config.json is written afresh): ignore a bad one
        m = doc.get("model_max_length") if isinstance(doc, dict) else None
        if isinstance(m, int) and 0 < m < 10**7:
            max_length = m
    return tokenizer_files(tok, max_length)


def _compare(
    got_tensors: dict[str, TensorEntry], got_files: dict[str, FileEntry], manifest: Manifest
) -> tuple[str, list[str]]:
    bad = []
    for n, want in manifest.tensors.items():
        g = got_tensors.get(n)
        if g is None:
            bad.append(f"{n}: missing")
        elif g != want:
            bad.append(f"{n}: differs")
    extra = sorted(set(got_tensors) - set(manifest.tensors)) if manifest.tensors else []
    bad += [f"{n}: not in the manifest" for n in extra]
    for f, want in manifest.files.items():
        g = got_files.get(f)
        if g is None:
            bad.append(f"{f}: missing")
        elif (want.sha256 and g.sha256 != want.sha256) or (
            want.size is not None and g.size != want.size
        ):
            bad.append(f"{f}: differs")
    what = f"{len(manifest.tensors)} tensor digests and {len(manifest.files)} file digests of {manifest.name}"
    return what, bad


def _dumps(doc: dict) -> bytes:
    return (json.dumps(doc, indent=2) + "\n").encode()


def _open_base(base_dir: Path, model_size: str | None, verify_input: str | None):
    """(reader, MetaSource or None, planned input checks) for BASE: an HF folder, or Meta's
    download (a root with `model_size`, or a size folder), read the way convert-llama reads it."""
    from weightprep.llama.convert import MetaSource, is_meta_download

    if not is_meta_download(base_dir):
        if model_size or verify_input:
            raise InputError(
                f"{base_dir}: --model-size and --verify-input apply when BASE is Meta's "
                "download (params.json + consolidated.NN.pth); this is a Hugging Face folder"
            )
        return CheckpointReader(base_dir), None, []
    from weightprep.llama.input_check import plan_checks

    src = MetaSource(base_dir, model_size)
    manifest = resolve_manifest(verify_input)[0] if verify_input else None
    return src, src, plan_checks(src.ckpt, manifest, True)


def combine(
    base_dir: Path,
    other_dir: Path,
    output: Path,
    op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    other_role: str,
    config_from: Path,
    tokenizer_from: Path,
    force: bool = False,
    verify: bool = False,
    manifest: str | None = None,
    verify_base: str | None = None,
    max_shard_bytes: int = 5 * 10**9,
    progress: Progress | None = None,
    language: LanguageOptions | None = None,
    allow_base_mismatch: bool = False,
    model_size: str | None = None,
    verify_input: str | None = None,
) -> DeltaReport:
    """out[name] = op(base[name], other[name]) in float16 for every tensor, streamed. BASE may
    be Meta's download: each tensor is then merged and permuted as convert-llama does, in the
    same read (one pass, no converted copy written), with Meta's checklists checked alongside."""
    from weightprep.llama.input_check import InputVerifier

    progress = progress or NullProgress()
    t0 = time.monotonic()
    refuse_inside(output, base_dir, other_dir)
    want = resolve_manifest(manifest)[0] if manifest else None
    base_reader, meta, input_checks = _open_base(base_dir, model_size, verify_input)
    base_folder = meta.folder if meta is not None else base_dir
    if other_role == "delta":
        _guard_base(base_folder, other_dir, allow_base_mismatch)
    if verify_base:
        if meta is not None:
            raise InputError(
                f"{base_dir}: --verify-base reads an HF folder; for Meta's download use "
                "--verify-input (checked in the same read as the merge)"
            )
        _verify_base(base_dir, verify_base)
    with base_reader as base, CheckpointReader(other_dir) as other:
        names = preflight(base, other, other_role)
        base_check = None
        if language is not None:  # the base first: a wrong one is known before anything is written
            base_check = _language_of_base(base, meta, base_dir, language)
        specs = [TensorSpec(n, torch.float16, base.info[n].shape) for n in names]
        plan = plan_shards(specs, max_shard_bytes)
        total = sum(s.nbytes for s in specs)
        if meta is not None and config_from == base_dir:
            config: bytes | None = _dumps(meta.config("float16"))
            gen: bytes | None = _dumps(meta.generation_config())
        else:
            config = _copy_json(config_from, "config.json", "float16")
            gen = _copy_json(config_from, "generation_config.json")
        if config is None:
            raise InputError(f"{config_from}: config.json not found")
        max_len = json.loads(config).get("max_position_embeddings", 2048)
        extra = {"config.json": config, **_tokenizer_from(tokenizer_from, max_len)}
        if gen is not None:
            extra["generation_config.json"] = gen
        check_free_space(
            output.absolute().parent, total + (1 << 20) + sum(map(len, extra.values()))
        )

        def build(n: str) -> tuple[str, torch.Tensor]:
            return n, op(base[n].to(torch.float16), other[n].to(torch.float16))

        tensors = prefetch_map(build, names)
        # Per-tensor digests cost a second sha256 pass of CPU (docs/performance.md): computed
        # when the user asked for verification, which needs them.
        digests: dict[str, TensorEntry] | None = {} if (verify or want is not None) else None
        verifier = InputVerifier(input_checks) if input_checks else None
        progress.start(total, f"{other_role} {other_dir.name}")
        try:
            with staged_folder(output, force=force) as stage:
                files = write_sharded(stage, plan, tensors, progress, tensor_digests=digests)
                write_files(stage, files, extra)
                check_written(stage, plan)
                inputs_ok = tuple(verifier.result()) if verifier else ()
                entries = file_entries(stage, files)
                checks: tuple = ()
                if base_check is not None:
                    checks = (base_check, _language_of_output(stage, language, base_check))
                verified = "nothing compared (no --verify)"
                if verify and want is None:
                    verified = (
                        "digests: nothing compared: no --manifest given (wrote "
                        f"{MANIFEST_NAME} to compare against later)"
                    )
                elif want is not None:
                    verified, bad = _compare(digests or {}, entries, want)
                    if bad:
                        raise VerificationError(
                            f"{output}: output does not match {want.name} ({len(bad)} problem(s): "
                            f"{'; '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}); nothing was kept"
                        )
                if meta is not None:
                    verified = (
                        "input: " + "; ".join(inputs_ok)
                        if inputs_ok
                        else "input: nothing compared (no checklist.chk, no --verify-input)"
                    ) + f"; {verified}"
                if checks:
                    verified += "; language check: " + ", ".join(c.detail for c in checks)
                seal(
                    stage,
                    files,
                    digests,
                    output.name,
                    f"{other_role} {other_dir.name} on {base_folder.name}",
                )
        except BaseException:
            if verifier:
                verifier.cancel()
            raise
        finally:
            # join the prefetch thread before the readers close: it may be inside a read
            tensors.close()
            progress.finish()
    return DeltaReport(
        output.absolute(),
        len(names),
        total,
        files,
        verified,
        time.monotonic() - t0,
        checks,
        inputs_ok,
        meta is not None,
    )


def _language_of_base(base, meta, base_dir: Path, language: LanguageOptions):
    """The base's language check, on the reader the merge already holds open."""
    from weightprep.language import check_reader
    from weightprep.llama.forward import read_config

    if meta is None:
        config, tokenizer = read_config(base_dir), base_dir / "tokenizer.model"
    else:
        config, tokenizer = meta.config("float16"), meta.ckpt.tokenizer
    return check_reader(
        base,
        config,
        tokenizer,
        reference=language.reference,
        max_perplexity=language.max_perplexity,
        who="base: ",
    )


def _language_of_output(stage: Path, language: LanguageOptions, base_check):
    """The output's language check; raises (so the staged output is removed) when it or the
    base's failed, naming both figures."""
    from weightprep.language import check_folder

    out = check_folder(
        stage, reference=language.reference, max_perplexity=language.max_perplexity, who="output: "
    )
    if not (out.ok and base_check.ok):
        hint = (
            "the output fails but the base passes: the delta does not belong to this base "
            "(another base model or version?)"
            if base_check.ok
            else "the base itself fails: it is not a working language model (random, "
            "corrupt, a delta, or not the model the delta was made from)"
        )
        raise VerificationError(
            f"language check failed: {out.detail}; {base_check.detail}; {hint}; nothing was kept"
        )
    return out


def _guard_base(base_dir: Path, delta_dir: Path, allow_mismatch: bool) -> None:
    """Refuse a delta given as the base, and a LLaMA-2 base under a LLaMA-1 delta (or the
    reverse): same shapes, so only the configs tell, and the merge would be garbage."""
    from weightprep.inspect import base_delta_mismatch, delta_evidence

    ev = delta_evidence(base_dir)
    if ev is not None and ev[0]:
        raise InputError(
            f"{base_dir}: this BASE is a delta, not a model ({ev[1]}); give the original "
            "model (e.g. LLaMA-7B converted by convert-llama) as BASE and the delta second"
        )
    if not allow_mismatch:
        why = base_delta_mismatch(base_dir, delta_dir)
        if why:
            raise InputError(
                f"{base_dir}: not the base {delta_dir.name} was made from ({why}); pass "
                "--allow-base-mismatch if you are sure"
            )


def _verify_base(base_dir: Path, spec: str) -> None:
    from weightprep.checksum import verify_files, verify_tensors

    m, path = resolve_manifest(spec)
    if m.tensors:
        bad = [r for r in verify_tensors(base_dir, m) if r.status in ("MISMATCH", "MISSING")]
    else:
        report = verify_files(base_dir, m)
        bad = [r for r in report.results if r.status in ("MISMATCH", "MISSING")]
    if bad:
        names = ", ".join(f"{r.path} {r.status}" for r in bad[:5])
        raise VerificationError(f"{base_dir}: the base does not match {m.name}: {names}")


def apply_delta(base: Path, delta: Path, output: Path, **kw) -> DeltaReport:
    """base + delta in float16, as FastChat computes it; config from the base, tokenizer from the delta.

    Example: `apply_delta(Path("llama-7b-hf"), Path("vicuna-7b-delta-v1.1"), Path("vicuna-7b"))`.
    """
    return combine(
        base,
        delta,
        output,
        torch.add,
        other_role="delta",
        config_from=base,
        tokenizer_from=delta,
        **kw,
    )


def make_delta(base: Path, target: Path, output: Path, **kw) -> DeltaReport:
    """target - base in float16, as FastChat's `make_delta`; config and tokenizer from the target."""
    return combine(
        base,
        target,
        output,
        lambda b, t: torch.sub(t, b),
        other_role="target",
        config_from=target,
        tokenizer_from=target,
        **kw,
    )
