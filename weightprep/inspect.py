"""What a folder is, told from cheap evidence: configs, tokenizer files, file headers and the
few small norm tensors; the whole model is read only when a check asks (`--perplexity`).

- kind: `meta` (Meta's download: a root with `tokenizer.model` and size folders, or a size
  folder with `params.json` + `consolidated.NN.pth`), `model` (a language model in Hugging Face
  format), `delta` (delta weights), `vlm` (an InstructBLIP / BLIP-2 / LLaVA-family bundle, or a
  MiniGPT-4 / LAVIS-style checkpoint), `unknown`.
- A delta is told from a model by its weights, never by its name: a trained model's
  RMSNorm/LayerNorm weights sit around 0.1-1, a delta's (fine-tuned minus base) around 0. Only
  the 1-D norm tensors are read, through the memory-mapping reader.
- family (llama-1, llama-2, gpt-neox, mt5, ...) and size (7B, 13B, ...) from config.json /
  params.json; every verdict carries its evidence in words.
- special-token ids from every file that states them, and whether they agree (configs with
  bos 0 / eos 1 beside a tokenizer with bos 1 / eos 2 are a known trap: transformers #22642).
- weight files that are not weights: Git LFS pointers, HTML pages, truncated shards (first
  bytes and headers are checked before any parser sees the file; meta-llama/llama #353).
- manifest.yaml / SHA256SUMS (Meta's checklist.chk) present, and with `verify` whether it holds.

The module never prints or exits: `inspect_folder` returns an `Inspection`.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from weightprep.errors import InputError, one_line
from weightprep.io.jsonfile import read_object
from weightprep.io.outputs import MANIFEST_NAME, SUMS_NAME
from weightprep.progress import NullProgress, Progress

KINDS = ("meta", "model", "delta", "vlm", "unknown")
VLM_TYPES = frozenset(
    {
        "instructblip",
        "instructblipvideo",
        "blip-2",
        "blip_2",
        "llava",
        "llava_llama",
        "llava_mistral",
        "llava_mpt",
        "llava_next",
        "llava_onevision",
        "vipllava",
        "minigpt4",
    }
)
# What a MiniGPT-4 / LAVIS training checkpoint keeps under ckpt["model"].
VLM_CHECKPOINT_KEYS = ("llama_proj.", "llm_proj.", "Qformer.", "query_tokens", "visual_encoder.")
FAMILY_BY_TYPE = {"gpt_neox": "gpt-neox", "mt5": "mt5", "t5": "t5"}
# (hidden size, layers) -> size; 8192 x 80 is LLaMA-1 65B, or LLaMA-2 70B with 8 key/value heads.
LLAMA_SIZES = {(4096, 32): "7B", (5120, 40): "13B", (6656, 60): "30B", (8192, 80): "65B"}
CONTEXT = {2048: "llama-1", 4096: "llama-2"}
_NAMES = {"llama-1": "LLaMA-1", "llama-2": "LLaMA-2"}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
MANIFEST_NAMES = (MANIFEST_NAME, SUMS_NAME)  # the two files weightprep writes beside weights
MAX_JSON_BYTES = 64 * 2**20  # LLaMA-3's tokenizer.json is 9 MB
MAX_ST_HEADER = 100 * 2**20  # safetensors' own limit
LFS_MAGIC = b"version https://git-lfs.github.com/spec/v1"
# torch.save's format before 1.6 (not a zip) starts with its magic number, pickled
TORCH_LEGACY_MAGIC = bytes.fromhex("80028a0a6cfc9c46f9206aa85019")
NORM_RE = re.compile(r"(?:^|\.)(?:[^.]*norm[^.]*|ln(?:_[^.]*)?)\.weight$", re.IGNORECASE)
# mean |w| of norm tensors: a model's around 0.1-1, a delta's around 0 (a short fine-tune moves
# them by about 0.01). The verdict is the median's side of BOUNDARY; it is certain when every
# tensor is on that side and the median at least FAR times away from it.
BOUNDARY = 0.05
FAR = 4.0
ROLES = ("bos", "eos", "unk", "pad")
CHECKED_ROLES = ("bos", "eos", "unk")  # a differing pad id does not change what is generated


@dataclass(frozen=True)
class DeltaJudgement:
    """Model or delta, from the mean |w| of each norm tensor."""

    is_delta: bool
    confidence: str  # certain | likely
    median: float
    low: float
    high: float
    tensors: int
    evidence: str


@dataclass(frozen=True)
class SpecialTokens:
    """file -> role (bos, eos, unk, pad) -> id (a list where a file gives several, None when
    it gives none); `tokens`: role -> the token's text as the tokenizer files name it."""

    sources: dict[str, dict[str, int | list[int] | None]]
    tokens: dict[str, str]
    agree: bool


@dataclass(frozen=True)
class WeightFile:
    path: str  # relative to the folder
    bytes: int
    status: str  # ok | lfs-pointer | html | empty | truncated | corrupt
    detail: str = ""


@dataclass(frozen=True)
class ManifestCheck:
    path: str  # relative to the folder
    status: str  # present | verified | failed
    detail: str


@dataclass(frozen=True)
class Inspection:
    folder: Path
    kind: str
    family: str | None
    size: str | None
    kind_evidence: tuple[str, ...]
    family_evidence: tuple[str, ...]
    size_evidence: tuple[str, ...]
    delta: DeltaJudgement | None
    special_tokens: SpecialTokens
    weights: tuple[WeightFile, ...]
    manifests: tuple[ManifestCheck, ...]
    language: object | None  # weightprep.language.LanguageCheck, with --perplexity
    problems: tuple[str, ...]
    notes: tuple[str, ...]
    parameters: int | None = None

    @property
    def ok(self) -> bool:
        """Told what the folder is, and found nothing wrong."""
        return self.kind != "unknown" and not self.problems

    def to_dict(self) -> dict:
        lang = self.language
        if lang is not None:
            lang = lang.to_dict() if hasattr(lang, "to_dict") else asdict(lang)  # type: ignore[call-overload]
        return {
            "folder": str(self.folder),
            "kind": self.kind,
            "family": self.family,
            "size": self.size,
            "evidence": {
                "kind": list(self.kind_evidence),
                "family": list(self.family_evidence),
                "size": list(self.size_evidence),
            },
            "parameters": self.parameters,
            "delta": asdict(self.delta) if self.delta else None,
            "special_tokens": asdict(self.special_tokens),
            "weights": [asdict(w) for w in self.weights],
            "manifests": [asdict(m) for m in self.manifests],
            "language": lang,
            "problems": list(self.problems),
            "notes": list(self.notes),
            "ok": self.ok,
        }


@dataclass
class _Found:
    """What inspection has found so far (mutable while it looks; frozen into an Inspection)."""

    kind: str = "unknown"
    family: str | None = None
    size: str | None = None
    kind_evidence: list[str] = field(default_factory=list)
    family_evidence: list[str] = field(default_factory=list)
    size_evidence: list[str] = field(default_factory=list)
    delta: DeltaJudgement | None = None
    tokens: SpecialTokens = field(default_factory=lambda: SpecialTokens({}, {}, True))
    weights: list[WeightFile] = field(default_factory=list)
    manifests: list[ManifestCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    parameters: int | None = None


# --- small readers ------------------------------------------------------------------------------


def _head(path: Path, n: int = 1024) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _natural(p: Path) -> list:
    """7B before 13B: digits compare as numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name.lower())]


def _count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n:,}"


def _not_a_file(head: bytes, size: int) -> tuple[str, str] | None:
    """(status, words) when the first bytes show the file is not what its name says: an empty
    file, a Git LFS pointer, an HTML or XML page saved in its place."""
    if size == 0:
        return "empty", "empty (an interrupted download?)"
    if head.startswith(LFS_MAGIC):
        m = re.search(rb"\nsize (\d+)", head)
        stands = f" standing for a {_human(int(m.group(1)))} file" if m else ""
        return "lfs-pointer", (
            f"a Git LFS pointer ({size} bytes){stands}, not the file itself: run `git lfs pull` "
            "in the clone, or download it with huggingface-cli"
        )
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html")):
        return "html", (
            f"an HTML page ({size} bytes), not weights: a login or error page was saved under "
            "this name; download it again"
        )
    if text.startswith(b"<?xml"):
        return "html", (
            f"an XML document ({size} bytes), not weights: a server's error response was "
            "saved under this name; download it again"
        )
    return None


def _check_safetensors(path: Path, size: int) -> tuple[str, str] | None:
    if size < 8:
        return "truncated", f"{size} bytes: too short for a safetensors file (truncated)"
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n > size - 8:
            return "truncated", (
                f"truncated: its header says {n} bytes of header alone, the file has {size}"
            )
        if n > MAX_ST_HEADER:
            return "corrupt", f"not a safetensors file (a {n}-byte header)"
        raw = f.read(n)
    try:
        header = json.loads(raw)
        ends = [
            int(v["data_offsets"][1])
            for k, v in header.items()
            if k != "__metadata__" and isinstance(v, dict)
        ]
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        return "corrupt", f"not a safetensors file (its header is not JSON: {one_line(exc)})"
    except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        return "corrupt", "not a safetensors file (its header has no data_offsets)"
    need = 8 + n + max(ends, default=0)
    if size < need:
        return "truncated", f"truncated: {size} bytes, its header says {need} (re-download it)"
    return None


def _check_torch_zip(path: Path, size: int, head: bytes) -> tuple[str, str] | None:
    if head.startswith(TORCH_LEGACY_MAGIC):
        return None  # torch's pre-1.6 format: no directory to check cheaply
    if not head.startswith(b"PK"):
        return "corrupt", "not a PyTorch checkpoint (neither a zip archive nor torch's old format)"
    try:
        with zipfile.ZipFile(path) as z:
            end = max(
                (i.header_offset + i.compress_size for i in z.infolist()),
                default=0,
            )
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        return "truncated", (
            f"truncated or corrupt: its zip directory is unreadable ({one_line(exc)}); "
            "re-download it"
        )
    if end > size:
        return "truncated", f"truncated: its zip directory reaches byte {end}, the file has {size}"
    return None


def weight_file_status(folder: Path, path: Path) -> WeightFile:
    """Is this weight file really one? First bytes, then the container's own directory: a
    safetensors header's data offsets, a zip's central directory. Never unpickles anything."""
    rel = path.relative_to(folder).as_posix()
    if not path.is_file():
        return WeightFile(rel, 0, "corrupt", "not a regular file (a broken link, FIFO or folder)")
    size = path.stat().st_size
    head = _head(path)
    found = _not_a_file(head, size)
    if found is None:
        if path.suffix == ".safetensors":
            found = _check_safetensors(path, size)
        else:
            found = _check_torch_zip(path, size, head)
    return WeightFile(rel, size, *found) if found else WeightFile(rel, size, "ok")


def _read_json(path: Path, f: _Found, rel: str) -> dict | None:
    """A JSON object from `path`, or None; a file that is there but unreadable is a problem."""
    if not path.is_file():
        return None
    size = path.stat().st_size
    found = _not_a_file(_head(path), size)
    if found is not None:
        f.problems.append(f"{rel}: {found[1]}")
        return None
    try:
        return read_object(path, MAX_JSON_BYTES)
    except InputError as exc:  # its message names the file by its full path: use rel
        f.problems.append(f"{rel}: {str(exc).removeprefix(f'{path}: ')}")
        return None


def _load_json_quiet(path: Path) -> dict | None:
    """A JSON object, or None for anything else (guards that must not fail on it)."""
    try:
        return read_object(path, MAX_JSON_BYTES) if path.is_file() else None
    except (OSError, InputError):
        return None


# --- family and size ----------------------------------------------------------------------------


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def llama_size(
    hidden: object, layers: object, kv_heads: object, where: str, names: tuple[str, str]
) -> tuple[str | None, str]:
    """(size, evidence) from the hidden size and layer count (`names`: what `where` calls them)."""
    said = f"{where}: {names[0]} {hidden}, {layers} {names[1]}"
    size = LLAMA_SIZES.get((hidden, layers)) if isinstance(hidden, int) else None
    if size is None:
        return None, f"{said}: not a released LLaMA size"
    if size == "65B" and kv_heads == 8:
        return "70B", f"{said}, 8 key/value heads: LLaMA-2 70B"
    return size, f"{said}: LLaMA {size}"


def config_size(cfg: dict, where: str = "config.json") -> tuple[str | None, str]:
    """(size, evidence) of a LLaMA config.json. Example: `config_size({"hidden_size": 4096,
    "num_hidden_layers": 32})` -> ("7B", "config.json: hidden_size 4096, 32 layers: LLaMA 7B")."""
    return llama_size(
        cfg.get("hidden_size"),
        cfg.get("num_hidden_layers"),
        cfg.get("num_key_value_heads"),
        where,
        ("hidden_size", "layers"),
    )


def is_llama(cfg: dict) -> bool:
    return cfg.get("model_type") == "llama" or "LlamaForCausalLM" in (
        cfg.get("architectures") or []
    )


def config_family(cfg: dict, where: str = "config.json") -> tuple[str | None, str]:
    """(family, evidence) from a config.json: llama-1 / llama-2 by context length (2048 / 4096;
    old configs say max_sequence_length), else by rms_norm_eps (1e-6 is LLaMA-1 7B-30B only);
    other families by model_type."""
    mt = cfg.get("model_type")
    if not is_llama(cfg):
        if not isinstance(mt, str) or not mt:
            return None, f"{where}: no model_type"
        return FAMILY_BY_TYPE.get(mt, mt.replace("_", "-")), f"{where}: model_type {mt}"
    key = next((k for k in ("max_position_embeddings", "max_sequence_length") if k in cfg), None)
    ctx = cfg.get(key) if key else None
    eps = _num(cfg.get("rms_norm_eps"))
    parts = [f"{key} {ctx}"] if key else []
    if eps is not None:
        parts.append(f"rms_norm_eps {eps:g}")
    said = f"{where}: " + (", ".join(parts) or "neither context length nor rms_norm_eps")
    if cfg.get("vocab_size") == 128256:
        return "llama-3", f"{where}: vocab_size 128256 (LLaMA-3's tokenizer)"
    if ctx in CONTEXT:
        other = 4096 if ctx == 2048 else 2048
        name = CONTEXT[ctx]
        return (
            name,
            f"{said} ({ctx} positions: {_NAMES[name]}'s; {_NAMES[CONTEXT[other]]} has {other})",
        )
    if ctx is None and eps == 1e-6:
        return "llama-1", f"{said} (1e-06 is LLaMA-1's; LLaMA-2 uses 1e-05)"
    if ctx is None and eps == 1e-5 and config_size(cfg)[0] == "65B":
        return "llama-1", f"{said}, 80 layers of 8192 with full attention heads: LLaMA-1 65B"
    return "llama", f"{said}: which LLaMA is not told"


def _params_family(raw: dict, folder: Path, where: str = "params.json") -> tuple[str | None, str]:
    """llama-1 / llama-2 of a Meta size folder's params.json."""
    if {"n_kv_heads", "ffn_dim_multiplier"} & set(raw):
        return "llama-2", f"{where} has n_kv_heads/ffn_dim_multiplier (LLaMA-2's only)"
    eps = _num(raw.get("norm_eps"))
    if eps == 1e-6:
        return "llama-1", f"{where}: norm_eps 1e-06 (LLaMA-1's; LLaMA-2 uses 1e-05)"
    if eps == 1e-5:
        size = llama_size(raw.get("dim"), raw.get("n_layers"), None, where, ("dim", "layers"))[0]
        if size == "65B":
            return "llama-1", f"{where}: norm_eps 1e-05, dim 8192, 80 layers: LLaMA-1 65B"
        if size in ("7B", "13B"):
            return "llama-2", f"{where}: norm_eps 1e-05 at {size} (LLaMA-1's {size} has 1e-06)"
        if folder.name.lower().startswith("llama-2"):
            return "llama-2", f"{where}: norm_eps 1e-05, in Meta's folder {folder.name}"
        if folder.name.upper() in ("65B", "30B", "33B"):
            return "llama-1", f"{where}: norm_eps 1e-05, in Meta's LLaMA-1 folder {folder.name}"
    return "llama", f"{where}: norm_eps {raw.get('norm_eps')}: which LLaMA is not told"


def vlm_type(cfg: dict) -> str | None:
    """The vision-language model_type of a config.json (instructblip, blip-2, llava, ...)."""
    mt = cfg.get("model_type")
    if isinstance(mt, str) and mt in VLM_TYPES:
        return mt
    if "mm_vision_tower" in cfg:  # LLaVA's own repository format
        return f"{mt} with mm_vision_tower" if mt else "llava (mm_vision_tower)"
    return None


def _llama_generation(folder: Path) -> tuple[str, str] | None:
    """("llama-1" | "llama-2", evidence) from config.json or a Meta params.json, else None."""
    cfg = _load_json_quiet(folder / "config.json")
    if cfg is not None:
        if not is_llama(cfg):
            return None
        fam, why = config_family(cfg, f"{folder.name}/config.json")
        why = why.split(" (")[0]  # the facts, without the reasoning
    else:
        raw = _load_json_quiet(folder / "params.json")
        if raw is None:
            return None
        fam, why = _params_family(raw, folder, f"{folder.name}/params.json")
    return (fam, why) if fam in ("llama-1", "llama-2") else None


def base_delta_mismatch(base: Path, delta: Path) -> str | None:
    """One line of evidence when `base` is LLaMA-2 and `delta` was made from LLaMA-1 or the
    reverse (config.json context length 2048 vs 4096, rms_norm_eps 1e-6 vs 1e-5), else None.

    Why: lmsys' Vicuna v1.1 delta (2048, 1e-6) applied to Llama-2-7b-hf (4096, 1e-5) runs
    without error and gives a model that writes nonsense. Example:
    `base_delta_mismatch(Path("Llama-2-7b-hf"), Path("vicuna-7b-delta-v1.1"))`.
    """
    b, d = _llama_generation(base), _llama_generation(delta)
    if b is None or d is None or b[0] == d[0]:
        return None
    return (
        f"the base {base} is {_NAMES[b[0]]} ({b[1]}) but the delta {delta} was made from "
        f"{_NAMES[d[0]]} ({d[1]}); use the base the delta was made from"
    )


# --- weights: delta or model --------------------------------------------------------------------


def _judge(names_means: list[tuple[str, float]]) -> DeltaJudgement | None:
    means = [m for _, m in names_means if math.isfinite(m)]
    if not means:
        return None
    med, lo, hi = statistics.median(means), min(means), max(means)
    is_delta = med < BOUNDARY
    same_side = all((m < BOUNDARY) == is_delta for m in means)
    clear = same_side and (med < BOUNDARY / FAR if is_delta else med > BOUNDARY * FAR)
    confidence = "certain" if clear else "likely"
    what = "delta weights" if is_delta else "a model"
    evidence = (
        f"mean |w| of its {len(means)} norm tensors: median {med:.3g} "
        f"(from {lo:.3g} to {hi:.3g}); a model's norm weights sit around 0.1-1, a delta's "
        f"around 0: {what}, {confidence}"
    )
    return DeltaJudgement(is_delta, confidence, med, lo, hi, len(means), evidence)


def _read_norms(folder: Path) -> tuple[DeltaJudgement | None, int]:
    """(judgement, parameter count) from the weights a loader would read; only the 1-D norm
    tensors are touched. Raises InputError when the weights cannot be opened."""
    import torch

    from weightprep.io.reader import CheckpointReader

    with CheckpointReader(folder) as r:
        params = sum(math.prod(i.shape) for i in r.info.values())
        names = [
            n
            for n, i in r.info.items()
            if len(i.shape) == 1 and i.dtype.is_floating_point and NORM_RE.search(n)
        ]
        with torch.inference_mode():
            found = [(n, float(r[n].float().abs().mean())) for n in names]
    return _judge(found), params


def _weight_paths(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES)


def delta_evidence(folder: Path) -> tuple[bool, str] | None:
    """(is a delta, the evidence in words) from the folder's norm tensors, or None when it
    cannot be told (no weights, damaged weights, no norm tensors).

    Why: a delta's config.json is its base's, so only the weights tell; a delta loaded as a
    model gives garbage without any error. Example: `delta_evidence(Path("vicuna-7b-delta"))`
    -> (True, "mean |w| of its 65 norm tensors: median 0.00412 ...: delta weights, certain").
    """
    if not folder.is_dir():
        return None
    try:
        paths = _weight_paths(folder)
        if not paths or any(weight_file_status(folder, p).status != "ok" for p in paths):
            return None
        judgement, _ = _read_norms(folder)
    except (InputError, OSError):
        return None
    return None if judgement is None else (judgement.is_delta, judgement.evidence)


# --- special tokens -----------------------------------------------------------------------------


def _ids(value: object) -> int | list[int] | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return list(value)
    return None


def _token_text(value: object) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _spm(folder: Path, f: _Found):
    """The folder's SentencePiece model (tokenizer.model, or T5's spiece.model) and its name."""
    import sentencepiece as spm

    for name in ("tokenizer.model", "spiece.model"):
        p = folder / name
        if not p.is_file():
            continue
        size = p.stat().st_size
        bad = _not_a_file(_head(p), size)
        if bad is not None:
            f.problems.append(f"{name}: {bad[1]}")
            return None, name
        if size > MAX_JSON_BYTES:
            f.problems.append(f"{name}: {size} bytes is too large for a SentencePiece model")
            return None, name
        sp = spm.SentencePieceProcessor()
        try:
            sp.LoadFromSerializedProto(p.read_bytes())
        except Exception as exc:  # sentencepiece raises RuntimeError/OSError variants
            f.problems.append(f"{name}: not a SentencePiece model ({one_line(exc)})")
            return None, name
        return sp, name
    return None, None


def _tokenizer_json_vocab(doc: dict) -> dict[str, int]:
    vocab: dict[str, int] = {}
    model = doc.get("model")
    v = model.get("vocab") if isinstance(model, dict) else None
    if isinstance(v, dict):
        vocab.update({k: i for k, i in v.items() if isinstance(i, int)})
    elif isinstance(v, list):  # Unigram: [[piece, score], ...]
        vocab.update({e[0]: i for i, e in enumerate(v) if isinstance(e, list) and e})
    for t in doc.get("added_tokens") or []:
        if (
            isinstance(t, dict)
            and isinstance(t.get("content"), str)
            and isinstance(t.get("id"), int)
        ):
            vocab[t["content"]] = t["id"]
    return vocab


# tokenizer classes whose only source is tokenizer.json (weightprep's folders name the first)
FAST_ONLY_CLASSES = ("PreTrainedTokenizerFast", "TokenizersBackend")


def _tokenizer_class(tcfg: dict | None) -> str | None:
    c = (tcfg or {}).get("tokenizer_class")
    return c if isinstance(c, str) else None


def _special_tokens(folder: Path, f: _Found, cfg: dict | None) -> None:
    sources: dict[str, dict[str, int | list[int] | None]] = {}
    if cfg is not None:
        sources["config.json"] = {r: _ids(cfg.get(f"{r}_token_id")) for r in ROLES}
    gen = _read_json(folder / "generation_config.json", f, "generation_config.json")
    if gen is not None:
        sources["generation_config.json"] = {r: _ids(gen.get(f"{r}_token_id")) for r in ROLES}
    sp, sp_name = _spm(folder, f)
    tcfg = _read_json(folder / "tokenizer_config.json", f, "tokenizer_config.json")
    smap = _read_json(folder / "special_tokens_map.json", f, "special_tokens_map.json")
    tj = _read_json(folder / "tokenizer.json", f, "tokenizer.json")
    if not (folder / "tokenizer.json").exists() and _tokenizer_class(tcfg) in FAST_ONLY_CLASSES:
        f.problems.append(
            f"tokenizer.json: missing, and tokenizer_config.json names {_tokenizer_class(tcfg)}, "
            "which transformers 4.x builds from tokenizer.json alone (AutoTokenizer fails): "
            "copy tokenizer.json with the other tokenizer files"
        )
    tj_vocab = _tokenizer_json_vocab(tj) if tj is not None else None

    decoder: dict[str, int] = {}
    for k, v in ((tcfg or {}).get("added_tokens_decoder") or {}).items():
        text = _token_text(v)
        if text is not None and str(k).isdigit():
            decoder[text] = int(k)

    def sp_id(text: str) -> int | None:
        i = sp.piece_to_id(text)
        return i if sp.id_to_piece(i) == text else None

    def resolve(text: str, own: dict[str, int] | None = None) -> int | None:
        if own and text in own:
            return own[text]
        if sp is not None:
            return sp_id(text)
        if tj_vocab is not None:
            return tj_vocab.get(text)
        return decoder.get(text)

    tokens: dict[str, str] = {}
    for name, doc, own in (
        ("tokenizer_config.json", tcfg, decoder),
        ("special_tokens_map.json", smap, None),
    ):
        if doc is None:
            continue
        row: dict[str, int | list[int] | None] = {}
        for r in ROLES:
            text = _token_text(doc.get(f"{r}_token"))
            if text is None:
                row[r] = None
                continue
            if text == "":
                f.notes.append(f"{name}: {r}_token is empty (decapoda-style; transformers #22642)")
                row[r] = None
                continue
            tokens.setdefault(r, text)
            row[r] = resolve(text, own)
            if row[r] is None and (sp is not None or tj_vocab is not None):
                f.problems.append(
                    f"{name}: {r}_token {text!r} is not in the tokenizer's vocabulary"
                )
        sources[name] = row
    if sp is not None:
        for r in ROLES:
            i = getattr(sp, f"{r}_id")()
            if i >= 0:
                tokens.setdefault(r, sp.id_to_piece(i))
    if tj_vocab is not None:
        sources["tokenizer.json"] = {
            r: tj_vocab.get(tokens[r]) if r in tokens else None for r in ROLES
        }
    if sp is not None:
        sources[sp_name] = {r: (i if (i := getattr(sp, f"{r}_id")()) >= 0 else None) for r in ROLES}

    agree = True
    for r in ROLES:
        said = {name: row[r] for name, row in sources.items() if row.get(r) is not None}
        singles = {v for v in said.values() if isinstance(v, int)}
        lists = [v for v in said.values() if isinstance(v, list)]
        if len(singles) <= 1 and all(set(singles) <= set(v) for v in lists):
            continue
        by_value: dict[str, list[str]] = {}
        for name, v in said.items():
            by_value.setdefault(str(v), []).append(name)
        listing = "; ".join(f"{v} in {', '.join(names)}" for v, names in by_value.items())
        if r not in CHECKED_ROLES:
            f.notes.append(f"special tokens: {r} id differs: {listing} (generation is unaffected)")
            continue
        agree = False
        hint = ""
        if sp_name in sources and {"config.json", "generation_config.json"} & set(said):
            hint = f"; the weights were trained with {sp_name}'s ids (transformers #22642)"
        f.problems.append(f"special tokens disagree: {r} id {listing}{hint}")
    _pad_without_tokenizer_pad(sources, tokens, f)
    f.tokens = SpecialTokens(sources, tokens, agree)


def _pad_without_tokenizer_pad(sources: dict, tokens: dict[str, str], f: _Found) -> None:
    """A pad id in the configs that no tokenizer file names (Meta's LLaMA has no pad piece).
    A note, not a problem: nothing is mis-encoded, but generate() fills finished rows with that
    id (LAVIS's blip2_vicuna_instruct maps 0s back to 2 after generating for this reason)."""
    if "pad" in tokens:
        return
    said = {
        name: row.get("pad")
        for name, row in sources.items()
        if name in ("config.json", "generation_config.json") and row.get("pad") is not None
    }
    if not said:
        return
    ids = sorted({str(v) for v in said.values()})
    names = [
        t for r, t in tokens.items() if r != "pad" and _tokenizer_id(sources, r) in said.values()
    ]
    what = f" ({', '.join(names)})" if names else ""
    f.notes.append(
        f"special tokens: pad id {'/'.join(ids)}{what} in {', '.join(said)}, but no tokenizer "
        "file names a pad token: generate() fills finished rows with it"
    )


def _tokenizer_id(sources: dict, role: str) -> int | None:
    """The id the tokenizer files give `role` (tokenizer.json first), or None."""
    for name in ("tokenizer.json", "tokenizer.model", "spiece.model", "tokenizer_config.json"):
        v = sources.get(name, {}).get(role)
        if isinstance(v, int):
            return v
    return None


# --- the kinds ----------------------------------------------------------------------------------


def _check_files(folder: Path, paths: list[Path], f: _Found) -> bool:
    """Check each weight file's first bytes and header; True when all look like weights."""
    ok = True
    for p in paths:
        w = weight_file_status(folder, p)
        f.weights.append(w)
        if w.status != "ok":
            ok = False
            f.problems.append(f"{w.path}: {w.detail}")
    return ok


def _check_index(folder: Path, paths: list[Path], f: _Found, files_ok: bool) -> bool:
    """Each `*.index.json`: its shards present, and together as large as it says."""
    ok = True
    names = {p.name for p in paths}
    for idx in sorted(folder.glob("*.index.json")):
        doc = _read_json(idx, f, idx.name)
        wmap = doc.get("weight_map") if doc else None
        if not isinstance(wmap, dict):
            if doc is not None:
                f.problems.append(f"{idx.name}: no weight_map (tensor name -> shard file)")
            ok = False
            continue
        shards = sorted({s for s in wmap.values() if isinstance(s, str)})
        if not shards:
            f.problems.append(f"{idx.name}: an empty weight_map (it names no shard)")
            ok = False
        missing = [s for s in shards if s not in names]
        for s in missing:
            f.problems.append(f"{s}: missing ({idx.name} names it)")
        ok = ok and not missing
        total = (doc.get("metadata") or {}).get("total_size")
        held = sum((folder / s).stat().st_size for s in shards if s in names)
        if files_ok and not missing and isinstance(total, int) and held < total:
            f.problems.append(
                f"{idx.name}: says the tensors take {total} bytes but its shards hold {held} "
                "(a shard is short: truncated?)"
            )
            ok = False
    return ok


def _meta(folder: Path, f: _Found) -> bool:
    """Meta's download (root or size folder): True when `folder` is one."""
    from weightprep.llama.layout import SHARD_RE

    def is_size_dir(d: Path) -> bool:
        return (d / "params.json").is_file() and any(
            SHARD_RE.match(p.name) for p in d.glob("consolidated.*.pth")
        )

    if is_size_dir(folder):
        size_dirs, root = [folder], None
        f.kind_evidence.append(
            "params.json + consolidated.NN.pth: a size folder of Meta's download"
        )
    else:
        size_dirs = sorted(
            (d for d in folder.iterdir() if d.is_dir() and is_size_dir(d)), key=_natural
        )
        if not size_dirs:
            return False
        root = folder
        names = ", ".join(d.name for d in size_dirs)
        f.kind_evidence.append(
            f"size folders with params.json + consolidated.NN.pth ({names}): Meta's download"
        )
        if (folder / "tokenizer.model").is_file():
            f.kind_evidence.append("tokenizer.model beside them")
        else:
            f.problems.append(
                "tokenizer.model: missing (Meta's download keeps it beside the size folders)"
            )
    f.kind = "meta"
    families, sizes = [], []
    for d in size_dirs:
        where = "params.json" if root is None else f"{d.name}/params.json"
        raw = _read_json(d / "params.json", f, where)
        if raw is not None:
            fam, why = _params_family(raw, d, where)
            f.family_evidence.append(why)
            families.append(fam)
            size, why = llama_size(
                raw.get("dim"), raw.get("n_layers"), raw.get("n_kv_heads"), where, ("dim", "layers")
            )
            f.size_evidence.append(why if size else f"{why} (folder named {d.name})")
            sizes.append(size)
        _check_files(folder, sorted(d.glob("consolidated.*.pth")), f)
    told = [x for x in dict.fromkeys(families) if x]
    f.family = ", ".join(told) or None
    known = [x for x in dict.fromkeys(sizes) if x]
    f.size = ", ".join(known) or None
    tok_dir = next((d for d in (folder, folder.parent) if (d / "tokenizer.model").is_file()), None)
    if tok_dir is not None:
        _special_tokens(tok_dir, f, None)
    return True


def _minigpt4_checkpoint(folder: Path, paths: list[Path], f: _Found) -> bool:
    """A MiniGPT-4 / LAVIS training checkpoint: {"model": {"llama_proj.weight", ...}, ...}."""
    from weightprep.io.pth import load_checkpoint

    for p in paths:
        if p.suffix == ".safetensors" or weight_file_status(folder, p).status != "ok":
            continue
        try:
            ckpt = load_checkpoint(p)
        except InputError:
            continue
        state = ckpt.get("model") if isinstance(ckpt, dict) else None
        if not isinstance(state, dict):
            continue
        keys = [k for k in state if isinstance(k, str) and k.startswith(VLM_CHECKPOINT_KEYS)]
        if keys:
            f.kind = "vlm"
            shown = ", ".join(sorted(keys)[:3])
            f.kind_evidence.append(
                f"{p.name}: a MiniGPT-4 / LAVIS-style checkpoint (ckpt['model'] holds {shown})"
            )
            return True
    return False


def _hf(folder: Path, cfg: dict, f: _Found) -> None:
    mt = cfg.get("model_type")
    arch = ", ".join(a for a in cfg.get("architectures") or [] if isinstance(a, str))
    said = f"config.json: model_type {mt}" + (f", {arch}" if arch else "")
    vlm = vlm_type(cfg)
    text_cfg = cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else None
    fam_cfg, where = (
        (text_cfg, "config.json text_config") if vlm and text_cfg else (cfg, "config.json")
    )
    if not vlm or text_cfg:
        f.family, why = config_family(fam_cfg, where)
        f.family_evidence.append(why)
        if is_llama(fam_cfg):
            f.size, why = config_size(fam_cfg, where)
            f.size_evidence.append(why)
        else:
            f.size_evidence.append(f"{where}: no size table for {f.family or mt}")
    paths = _weight_paths(folder)
    files_ok = _check_files(folder, paths, f)
    weights_ok = _check_index(folder, paths, f, files_ok) and files_ok
    if vlm:
        f.kind = "vlm"
        f.kind_evidence.append(f"{said}: a vision-language bundle")
        return
    if not paths:
        f.kind_evidence.append(f"{said}, but no weight files to tell a model from a delta")
        return
    f.kind = "model"
    f.kind_evidence.append(said)
    if not weights_ok:
        f.kind_evidence.append("model or delta not told: the weight files are damaged")
        return
    try:
        f.delta, f.parameters = _read_norms(folder)
    except InputError as exc:
        f.problems.append(one_line(exc))
        f.kind_evidence.append("model or delta not told: the weights cannot be opened")
        return
    if f.parameters:
        f.size_evidence.append(f"the weights hold {_count(f.parameters)} parameters")
    if f.delta is None:
        f.kind_evidence.append("no norm tensors: model or delta not told by the weights")
        f.notes.append("no norm tensors in the weights: taken as a model from config.json alone")
        return
    if f.delta.is_delta:
        f.kind = "delta"
    f.kind_evidence.append(f.delta.evidence)


def _manifests(folder: Path, f: _Found, verify: bool, progress: Progress) -> None:
    from weightprep.checksum import verify_files
    from weightprep.manifest import read_manifest

    found: list[tuple[Path, str, frozenset[str]]] = []
    for name in MANIFEST_NAMES:
        if (folder / name).is_file():
            found.append((folder, name, frozenset(MANIFEST_NAMES)))
    if f.kind == "meta":
        if (folder / "tokenizer_checklist.chk").is_file():
            found.append((folder, "tokenizer_checklist.chk", frozenset()))
        for d in sorted((p for p in folder.iterdir() if p.is_dir()), key=_natural):
            if (d / "checklist.chk").is_file():
                found.append((d, "checklist.chk", frozenset({"checklist.chk"})))
        if (folder / "checklist.chk").is_file():
            found.append((folder, "checklist.chk", frozenset({"checklist.chk"})))
    if not found:
        f.notes.append("no manifest.yaml or SHA256SUMS: nothing to verify the files against")
        return
    for base, name, ignore in found:
        rel = (base / name).relative_to(folder).as_posix()
        if not verify:
            f.manifests.append(ManifestCheck(rel, "present", "not checked (pass --verify)"))
            continue
        try:
            report = verify_files(
                base, read_manifest(base / name), ignore=ignore, progress=progress
            )
        except InputError as exc:
            f.manifests.append(ManifestCheck(rel, "failed", one_line(exc)))
            f.problems.append(f"{rel}: unreadable ({one_line(exc)})")
            continue
        if report.ok:
            n = report.count("OK")
            f.manifests.append(
                ManifestCheck(rel, "verified", f"{n} file{'s' if n != 1 else ''} match")
            )
            continue
        bad = [
            f"{r.path} {r.status}" for r in report.results if r.status in ("MISMATCH", "MISSING")
        ]
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        detail = f"does not hold: {', '.join(bad[:5])}{more}"
        f.manifests.append(ManifestCheck(rel, "failed", detail))
        f.problems.append(f"{rel}: {detail}")


def inspect_folder(
    folder: Path,
    *,
    verify: bool = False,
    perplexity: bool = False,
    reference: Path | None = None,
    max_perplexity: float | None = None,
    progress: Progress | None = None,
) -> Inspection:
    """Say what `folder` is, and what is wrong with it, from cheap evidence.

    `verify` hashes it against its manifest.yaml / SHA256SUMS (Meta's checklist.chk);
    `perplexity` runs the language check (`weightprep.language`), which reads the whole model.
    Raises InputError when `folder` is not a readable folder. Example:
    `inspect_folder(Path("vicuna-7b-delta")).kind` -> "delta".
    """
    progress = progress or NullProgress()
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder" + ("" if folder.exists() else " (not found)"))
    try:
        next(folder.iterdir(), None)
    except OSError as exc:
        raise InputError(f"{folder}: cannot list it ({exc.strerror or exc})") from None
    f = _Found()
    cfg = None
    if (folder / "config.json").is_file():
        cfg = _read_json(folder / "config.json", f, "config.json")
    if cfg is not None:
        _hf(folder, cfg, f)
        _special_tokens(folder, f, cfg)
    elif not _meta(folder, f):
        paths = _weight_paths(folder)
        if not _minigpt4_checkpoint(folder, paths, f):
            _check_index(folder, paths, f, _check_files(folder, paths, f))
            if (folder / "config.json").is_file():
                f.kind_evidence.append("config.json is unreadable")
            elif paths:
                f.kind_evidence.append("weight files but no config.json or params.json")
            else:
                f.kind_evidence.append("no config.json, params.json or weight files")
    if f.kind == "unknown":
        f.problems.insert(0, f"could not tell what this folder is: {'; '.join(f.kind_evidence)}")
    _manifests(folder, f, verify, progress)
    language = None
    if perplexity:
        language = _language(folder, f, reference, max_perplexity, progress)
    return Inspection(
        folder=folder,
        kind=f.kind,
        family=f.family,
        size=f.size,
        kind_evidence=tuple(f.kind_evidence),
        family_evidence=tuple(f.family_evidence),
        size_evidence=tuple(f.size_evidence),
        delta=f.delta,
        special_tokens=f.tokens,
        weights=tuple(f.weights),
        manifests=tuple(f.manifests),
        language=language,
        problems=tuple(dict.fromkeys(f.problems)),
        notes=tuple(dict.fromkeys(f.notes)),
        parameters=f.parameters,
    )


def _language(
    folder: Path,
    f: _Found,
    reference: Path | None,
    max_perplexity: float | None,
    progress: Progress,
) -> object | None:
    """The language check, when the folder is something it can score; else a problem."""
    damaged = any(w.status != "ok" for w in f.weights)
    if f.kind not in ("model", "delta") or damaged:
        why = "the weight files are damaged" if damaged else f"this folder is {f.kind}"
        f.problems.append(
            f"language check not run: {why} (it scores a language model in Hugging Face format)"
        )
        return None
    from weightprep.language import check_folder

    result = check_folder(
        folder, reference=reference, max_perplexity=max_perplexity, progress=progress
    )
    if not result.ok:
        f.problems.append(f"language check failed: {result.detail}")
    return result
