"""Meta LLaMA 1/2 checkpoint -> Hugging Face `LlamaForCausalLM` folder, streamed.

One output tensor at a time: the model-parallel parts are memory-mapped, concatenated, permuted
for rotary where needed, cast, written and dropped. Peak memory is a few copies of the largest
tensor, whatever the model size.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from math import prod
from pathlib import Path

import torch

from weightprep.errors import InputError
from weightprep.io.atomic import check_free_space, refuse_inside, staged_folder
from weightprep.io.outputs import seal, write_files
from weightprep.io.prefetch import prefetch_map
from weightprep.io.pth import load_state_dict
from weightprep.io.reader import TensorInfo
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
DEFAULT_SHARD_BYTES = 5 * 10**9  # transformers' default max_shard_size


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


def meta_config(p: LlamaParams, vocab: int, version: int, dtype: str) -> dict:
    """The config.json a conversion writes (and a one-pass apply-delta takes as the base's)."""
    config = hf_config(p, vocab, version, dtype)
    if p.rope_theta > 10000.0:
        config["max_position_embeddings"] = 16384  # CodeLlama-style long-context checkpoints
    return config


def is_meta_download(path: Path) -> bool:
    """Meta's layout: a size folder (params.json, consolidated.NN.pth) or a root holding them."""
    if not path.is_dir():
        return False
    if (path / "params.json").is_file() or any(path.glob("consolidated.*.pth")):
        return True
    try:
        return (
            any((d / "params.json").is_file() for d in path.iterdir() if d.is_dir())
            and not (path / "config.json").is_file()
        )
    except OSError:
        return False


class MetaSource:
    """Meta's download read like a Hugging Face folder: `src.info[hf_name]` (TensorInfo) and
    `src[hf_name]` give each tensor merged across model-parallel shards and permuted for HF's
    rotary layout, in Meta's dtype, one at a time. `open()` memory-maps the shards and checks
    their names and shapes; use as a context manager.

    Example: `with MetaSource(Path("LLaMA"), "7B") as src: src["model.norm.weight"]`.
    """

    def __init__(
        self, input_path: Path, model_size: str | None = None, llama_version: int | None = None
    ) -> None:
        self.ckpt = locate(input_path, model_size)
        self.folder = self.ckpt.size_dir
        self.params = read_params(self.ckpt.params)
        self.version = llama_version or (2 if self.params.llama2_keys else 1)
        if self.version not in (1, 2):
            raise InputError(
                f"--llama-version {self.version}: only 1 and 2 are LLaMA checkpoints this reads"
            )
        known = KNOWN_SHARDS.get((model_size or "").upper())
        if known is not None and known != len(self.ckpt.shards):
            raise InputError(
                f"{self.ckpt.size_dir}: {model_size} ships as {known} consolidated.NN.pth file(s), found {len(self.ckpt.shards)}"
            )
        self.spm = read_spm(self.ckpt.tokenizer)
        p = self.params
        self.vocab = self.spm.vocab_size if p.vocab_size <= 0 else p.vocab_size
        self.rules = rules_for(p.n_layers)
        self._rule = {r.hf: r for r in self.rules}
        self._shards: list[dict[str, torch.Tensor]] = []
        self.info: dict[str, TensorInfo] = {}

    def open(self) -> MetaSource:
        self._shards = [load_state_dict(path) for path in self.ckpt.shards]
        _check_inputs(self._shards, self.ckpt.shards, self.rules, self.params, self.vocab)
        first = self._shards[0]
        info = {
            r.hf: TensorInfo(
                self.ckpt.shards[0], first[r.meta].dtype, expected_shape(r, self.params, self.vocab)
            )
            for r in self.rules
        }
        # In the order a CheckpointReader lists the float16 conversion (its shards in turn,
        # each one's names sorted, as safetensors lists them), so that a one-pass apply-delta
        # writes exactly what convert-llama followed by apply-delta writes.
        specs = [TensorSpec(r.hf, torch.float16, info[r.hf].shape) for r in self.rules]
        order = [
            s.name
            for shard in plan_shards(specs, DEFAULT_SHARD_BYTES)
            for s in sorted(shard, key=lambda s: s.name)
        ]
        self.info = {n: info[n] for n in order}
        return self

    def tensor(self, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
        r = self._rule[name]
        parts = [sd[r.meta] for sd in self._shards]
        return _build(r, parts, self.params, dtype or parts[0].dtype, self.ckpt.size_dir)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tensor(name)

    def config(self, dtype: str) -> dict:
        return meta_config(self.params, self.vocab, self.version, dtype)

    def generation_config(self) -> dict:
        return generation_config()

    def __enter__(self) -> MetaSource:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._shards = []


def convert_meta_to_hf(
    input_path: Path,
    output: Path,
    *,
    model_size: str | None = None,
    llama_version: int | None = None,
    dtype: str = "float16",
    max_shard_bytes: int = DEFAULT_SHARD_BYTES,
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
    src = MetaSource(input_path, model_size, llama_version)
    ckpt, p, version, vocab = src.ckpt, src.params, src.version, src.vocab
    if (
        output.absolute() == ckpt.size_dir.absolute()
        or ckpt.size_dir.absolute() in output.absolute().parents
    ):
        raise InputError(f"{output}: is inside the input folder {ckpt.size_dir}; write elsewhere")
    refuse_inside(output, input_path)

    manifest = resolve_manifest(verify_input)[0] if verify_input else None
    checks = plan_checks(ckpt, manifest, use_checklists)
    src.open()
    rules = src.rules
    target = DTYPES[dtype]
    specs = [TensorSpec(r.hf, target, expected_shape(r, p, vocab)) for r in rules]
    plan = plan_shards(specs, max_shard_bytes)
    total = sum(s.nbytes for s in specs)
    config = src.config(dtype)
    tok_files = tokenizer_files(ckpt.tokenizer, max_length=config["max_position_embeddings"])
    check_free_space(
        output.absolute().parent, total + sum(len(v) for v in tok_files.values()) + (1 << 20)
    )

    def build(r: NameRule) -> tuple[str, torch.Tensor]:
        return r.hf, src.tensor(r.hf, target)

    tensors = prefetch_map(build, rules)

    extra = {
        "config.json": (json.dumps(config, indent=2) + "\n").encode(),
        "generation_config.json": (json.dumps(generation_config(), indent=2) + "\n").encode(),
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
        tensors.close()  # joins the prefetch thread before the shards are dropped
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
