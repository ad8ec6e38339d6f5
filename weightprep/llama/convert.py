"""Meta LLaMA 1/2 checkpoint -> Hugging Face `LlamaForCausalLM` folder, streamed.

One output tensor at a time: the model-parallel parts are memory-mapped, concatenated, permuted
for rotary where needed, cast, written and dropped. Peak memory is a few copies of the largest
tensor, whatever the model size.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from math import prod
from pathlib import Path

import torch

from weightprep.errors import InputError
from weightprep.io.atomic import check_free_space, refuse_inside, staged_folder
from weightprep.io.outputs import seal, write_files
from weightprep.io.prefetch import prefetch_map
from weightprep.io.pth import load_state_dict
from weightprep.io.safetensors_writer import TensorSpec, check_written, plan_shards, write_sharded
from weightprep.llama.input_check import InputVerifier, plan_checks
from weightprep.llama.layout import locate
from weightprep.llama.names import NameRule, is_ignored, permute_rotary, rules_for
from weightprep.llama.params import (
    KNOWN_SHARDS,
    LlamaParams,
    generation_config,
    hf_config,
    read_params,
)
from weightprep.manifest import TensorEntry, resolve_manifest
from weightprep.progress import NullProgress, Progress
from weightprep.tokenizer import read_spm, tokenizer_files

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass(frozen=True)
class ConversionReport:
    output: Path
    size_dir: Path
    num_shards: int
    llama_version: int
    dtype: str
    n_params: int
    n_tensors: int
    bytes_written: int
    files: dict[str, str]  # output file -> sha256
    input_checks: tuple[str, ...]  # what the input was verified against
    seconds: float


def expected_shape(rule: NameRule, p: LlamaParams, vocab: int) -> tuple[int, ...]:
    kv = p.n_kv_heads * p.head_dim
    suffix = rule.meta.rsplit(".", 2)[-2]
    return {
        "tok_embeddings": (vocab, p.dim),
        "output": (vocab, p.dim),
        "norm": (p.dim,),
        "attention_norm": (p.dim,),
        "ffn_norm": (p.dim,),
        "wq": (p.dim, p.dim),
        "wk": (kv, p.dim),
        "wv": (kv, p.dim),
        "wo": (p.dim, p.dim),
        "w1": (p.intermediate_size, p.dim),
        "w3": (p.intermediate_size, p.dim),
        "w2": (p.dim, p.intermediate_size),
    }[suffix]


def _merged_shape(rule: NameRule, parts: list[torch.Tensor]) -> tuple[int, ...]:
    shape = list(parts[0].shape)
    if rule.concat_dim is not None:
        shape[rule.concat_dim] = sum(t.shape[rule.concat_dim] for t in parts)
    return tuple(shape)


def _check_inputs(
    shards: list[dict[str, torch.Tensor]],
    paths: tuple[Path, ...],
    rules: list[NameRule],
    p: LlamaParams,
    vocab: int,
) -> None:
    wanted = {r.meta for r in rules}
    for sd, path in zip(shards, paths, strict=True):
        missing = sorted(wanted - set(sd))
        if missing:
            raise InputError(
                f"{path}: missing tensor(s) {', '.join(missing[:3])}"
                + (" ..." if len(missing) > 3 else "")
            )
        extra = sorted(k for k in set(sd) - wanted if not is_ignored(k))
        if extra:
            raise InputError(
                f"{path}: unexpected tensor(s) {', '.join(extra[:3])}; "
                "does params.json (n_layers) belong to these weights?"
            )
    for r in rules:
        parts = [sd[r.meta] for sd in shards]
        got = _merged_shape(r, parts)
        want = expected_shape(r, p, vocab)
        if got != want:
            hint = f"{len(shards)} shard(s) found"
            raise InputError(
                f"{paths[0].parent}: {r.meta} merges to shape {list(got)} but params.json and the "
                f"tokenizer ({vocab} pieces) imply {list(want)} ({hint})"
            )
    heads_ok = p.n_heads % len(shards) == 0 and p.n_kv_heads % len(shards) == 0
    if not heads_ok:
        raise InputError(
            f"{paths[0].parent}: {len(shards)} shards cannot split {p.n_heads} heads / "
            f"{p.n_kv_heads} key-value heads evenly"
        )


def _build(
    rule: NameRule, parts: list[torch.Tensor], p: LlamaParams, dtype: torch.dtype, path: Path
) -> torch.Tensor:
    if rule.concat_dim is None:
        t = parts[0]
        for other in parts[1:]:
            if not torch.equal(other, t):
                raise InputError(f"{path}: replicated {rule.meta} differs between shards")
    elif len(parts) == 1:
        t = parts[0]
    else:
        t = torch.cat(parts, dim=rule.concat_dim)
    if rule.rotary == "q":
        t = permute_rotary(t, p.n_heads)
    elif rule.rotary == "k":
        t = permute_rotary(t, p.n_kv_heads)
    return t.to(dtype)


def convert_meta_to_hf(
    input_path: Path,
    output: Path,
    *,
    model_size: str | None = None,
    llama_version: int | None = None,
    dtype: str = "float16",
    max_shard_bytes: int = 5 * 10**9,
    force: bool = False,
    verify_input: str | None = None,
    use_checklists: bool = True,
    tensor_digests: bool = True,
    progress: Progress | None = None,
) -> ConversionReport:
    """Convert Meta's LLaMA download at `input_path` into an HF folder at `output`.

    The input is checked against Meta's `checklist.chk` files when present (`use_checklists`)
    and against `verify_input` (a shipped manifest's name or a manifest file) when given; a
    mismatch raises `VerificationError` and leaves no output.

    Example: `convert_meta_to_hf(Path("LLaMA"), Path("llama-7b-hf"), model_size="7B")`.
    """
    progress = progress or NullProgress()
    t0 = time.monotonic()
    if dtype not in DTYPES:
        raise InputError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}")
    ckpt = locate(input_path, model_size)
    p = read_params(ckpt.params)
    version = llama_version or (2 if p.llama2_keys else 1)
    if version not in (1, 2):
        raise InputError(
            f"--llama-version {version}: only 1 and 2 are LLaMA checkpoints this reads"
        )
    known = KNOWN_SHARDS.get((model_size or "").upper())
    if known is not None and known != len(ckpt.shards):
        raise InputError(
            f"{ckpt.size_dir}: {model_size} ships as {known} consolidated.NN.pth file(s), found {len(ckpt.shards)}"
        )
    spm = read_spm(ckpt.tokenizer)
    vocab = spm.vocab_size if p.vocab_size <= 0 else p.vocab_size
    if (
        output.absolute() == ckpt.size_dir.absolute()
        or ckpt.size_dir.absolute() in output.absolute().parents
    ):
        raise InputError(f"{output}: is inside the input folder {ckpt.size_dir}; write elsewhere")
    refuse_inside(output, input_path)

    manifest = resolve_manifest(verify_input)[0] if verify_input else None
    checks = plan_checks(ckpt, manifest, use_checklists)
    shards = [load_state_dict(path) for path in ckpt.shards]
    rules = rules_for(p.n_layers)
    _check_inputs(shards, ckpt.shards, rules, p, vocab)
    target = DTYPES[dtype]
    specs = [TensorSpec(r.hf, target, expected_shape(r, p, vocab)) for r in rules]
    plan = plan_shards(specs, max_shard_bytes)
    total = sum(s.nbytes for s in specs)
    config = hf_config(p, vocab, version, dtype)
    if p.rope_theta > 10000.0:
        config["max_position_embeddings"] = 16384  # CodeLlama-style long-context checkpoints
    tok_files = tokenizer_files(ckpt.tokenizer, max_length=config["max_position_embeddings"])
    check_free_space(
        output.absolute().parent, total + sum(len(v) for v in tok_files.values()) + (1 << 20)
    )

    def build(r: NameRule) -> tuple[str, torch.Tensor]:
        return r.hf, _build(r, [sd[r.meta] for sd in shards], p, target, ckpt.size_dir)

    tensors: Iterator[tuple[str, torch.Tensor]] = prefetch_map(build, rules)

    extra = {
        "config.json": (json.dumps(config, indent=2) + "\n").encode(),
        "generation_config.json": (
            json.dumps(generation_config(version), indent=2) + "\n"
        ).encode(),
        **tok_files,
    }
    verifier = InputVerifier(checks) if checks else None  # sizes checked here, hashes in background
    progress.start(total, f"convert {ckpt.size_dir.name}")
    digests: dict[str, TensorEntry] | None = {} if tensor_digests else None
    try:
        with staged_folder(output, force=force) as stage:
            files = write_sharded(stage, plan, tensors, progress, tensor_digests=digests)
            write_files(stage, files, extra)
            check_written(stage, plan)
            verified = tuple(verifier.result()) if verifier else ()
            seal(
                stage,
                files,
                digests,
                output.name,
                f"converted by weightprep from {ckpt.size_dir.name} ({dtype})",
            )
    except BaseException:
        if verifier:
            verifier.cancel()
        raise
    finally:
        progress.finish()
    return ConversionReport(
        output=output.absolute(),
        size_dir=ckpt.size_dir,
        num_shards=len(ckpt.shards),
        llama_version=version,
        dtype=dtype,
        n_params=sum(prod(s.shape) for s in specs),
        n_tensors=len(specs),
        bytes_written=total,
        files=files,
        input_checks=verified,
        seconds=time.monotonic() - t0,
    )
