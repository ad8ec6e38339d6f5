"""Tiny, real-format Meta LLaMA downloads, deterministic from a seed.

Used by `make demo` and the tests: a root laid out as Meta ships it (`tokenizer.model`,
`tokenizer_checklist.chk`, one folder per size with `params.json`, `consolidated.NN.pth`,
`checklist.chk`), with a real SentencePiece model trained on the fly with the settings LLaMA's
own `tokenizer.model` records in its trainer spec, and fp16 weights split across model-parallel
shards the way fairscale's layers split them (and, like Meta's files, each shard's tensors are
views into one shared storage).
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from weightprep.llama.names import LAYER_RULES
from weightprep.llama.params import LlamaParams, parse_params


@dataclass(frozen=True)
class ExampleModel:
    folder: str
    shards: int
    params: dict
    rope_freqs: bool = True  # LLaMA-1 checkpoints carry `rope.freqs`; LLaMA-2's do not
    # Trained on the reference passage so that the language check passes for a real reason
    # (the other sizes exist for the converter's shape tests and stay random, which that check
    # rightly fails).
    trained: bool = False


BASE_PARAMS = {
    "dim": 64,
    "multiple_of": 32,
    "n_heads": 8,
    "n_layers": 2,
    "norm_eps": 1e-06,
    "vocab_size": -1,
}

# Folder names follow Meta's download; the shard counts are those of the real sizes.
EXAMPLES: tuple[ExampleModel, ...] = (
    ExampleModel("7B", 1, BASE_PARAMS, trained=True),
    ExampleModel("13B", 2, BASE_PARAMS),
    ExampleModel("30B", 4, BASE_PARAMS),
    ExampleModel("65B", 8, {**BASE_PARAMS, "norm_eps": 1e-05}),
    # 8 shards, as Meta ships LLaMA-2-70B (so `--model-size 70B` takes it), with grouped-query
    # attention: 16 heads sharing 8 key-value heads, one of each group per shard.
    ExampleModel(
        "llama-2-70b",
        8,
        {
            "dim": 64,
            "multiple_of": 32,
            "ffn_dim_multiplier": 1.3,
            "n_heads": 16,
            "n_kv_heads": 8,
            "n_layers": 2,
            "norm_eps": 1e-05,
            "vocab_size": -1,
        },
        rope_freqs=False,
    ),
)

VOCAB_SIZE = 512
# Adam on the English reference passage: 30 steps take about 2 s on 2 cores and bring the
# passage's perplexity from about 900 (random) to below 2.
TRAIN_STEPS = 30
TRAIN_LR = 1e-2

_WORDS = (
    "the a of and to in is was for on that with as by at from it an be this are or his which "
    "image picture photo shows man woman dog cat street car tree sky water people sitting "
    "standing near large small red blue green white black two three describe unusual what "
    "write short detailed description answer question human assistant model weights vicuna "
    "llama caption scene table food plate bus train building grass field beach ocean snow "
    "Bild zeigt einen Hund eine Katze auf der Straße und ein großes rotes Auto Schöne Grüße "
    "写真 犬 猫 画像 説明 日本語 café naïve résumé über"
).split()


def _corpus(seed: int, lines: int = 3000) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        n = rng.randint(3, 14)
        words = [rng.choice(_WORDS) for _ in range(n)]
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words) + 1), str(rng.randint(0, 99999)))
        if rng.random() < 0.2:
            words[0] = words[0].capitalize()
        sep = "  " if rng.random() < 0.05 else " "
        out.append(sep.join(words) + rng.choice([".", "?", "!", ",", ""]))
    return out


def train_tokenizer(
    seed: int = 0, vocab_size: int = VOCAB_SIZE, extra: tuple[str, ...] = ()
) -> bytes:
    """Train a real SentencePiece BPE model with LLaMA's trainer settings; return its bytes.

    `extra`: more training lines (tests add indented code so whitespace-only pieces are learnt).
    """
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus(seed) + list(extra)),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab_size,
        character_coverage=0.99995,
        split_digits=True,
        byte_fallback=True,
        allow_whitespace_only_pieces=True,
        split_by_unicode_script=True,
        split_by_whitespace=True,
        split_by_number=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        add_dummy_prefix=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        shuffle_input_sentence=False,
        max_sentence_length=4192,
        minloglevel=2,
    )
    return model.getvalue()


def meta_tensors(params: LlamaParams, vocab: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Full (unsharded) Meta-named fp16 weights for `params`."""
    hd, kv = params.head_dim, params.n_kv_heads * params.head_dim
    shapes = {
        "attention.wq.weight": (params.dim, params.dim),
        "attention.wk.weight": (kv, params.dim),
        "attention.wv.weight": (kv, params.dim),
        "attention.wo.weight": (params.dim, params.dim),
        "feed_forward.w1.weight": (params.intermediate_size, params.dim),
        "feed_forward.w2.weight": (params.dim, params.intermediate_size),
        "feed_forward.w3.weight": (params.intermediate_size, params.dim),
        "attention_norm.weight": (params.dim,),
        "ffn_norm.weight": (params.dim,),
    }
    assert {r.meta.split("}.", 1)[1] for r in LAYER_RULES} == set(shapes)

    def rand(shape: tuple[int, ...]) -> torch.Tensor:
        if len(shape) == 1:
            return (1.0 + 0.1 * torch.randn(shape, generator=gen)).half()
        return (torch.randn(shape, generator=gen) * (1.0 / shape[1] ** 0.5)).half()

    out = {"tok_embeddings.weight": rand((vocab, params.dim))}
    for i in range(params.n_layers):
        for name, shape in shapes.items():
            out[f"layers.{i}.{name}"] = rand(shape)
    out["norm.weight"] = rand((params.dim,))
    out["output.weight"] = rand((vocab, params.dim))
    out["rope.freqs"] = 1.0 / (10000.0 ** (torch.arange(0, hd, 2).float() / hd))
    return out


def split_meta(full: dict[str, torch.Tensor], shards: int) -> list[dict[str, torch.Tensor]]:
    """Split full weights into `shards` model-parallel parts, as fairscale lays them out."""
    from weightprep.llama.names import GLOBAL_RULES, LAYER_RULES

    dims: dict[str, int | None] = {r.meta: r.concat_dim for r in GLOBAL_RULES}
    dims.update({r.meta.split("}.", 1)[1]: r.concat_dim for r in LAYER_RULES})
    parts: list[dict[str, torch.Tensor]] = [{} for _ in range(shards)]
    for name, t in full.items():
        short = name.split(".", 2)[2] if name.startswith("layers.") else name
        dim = dims.get(short)
        chunks = [t] * shards if dim is None else list(torch.chunk(t, shards, dim=dim))
        for part, c in zip(parts, chunks, strict=True):
            part[name] = c
    return [_share_storage(p) for p in parts]


def _share_storage(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Repack a shard's tensors as views into one storage per dtype, as Meta's files are."""
    out: dict[str, torch.Tensor] = {}
    for dtype in {t.dtype for t in tensors.values()}:
        names = [n for n, t in tensors.items() if t.dtype == dtype]
        flat = torch.cat([tensors[n].reshape(-1) for n in names])
        offset = 0
        for n in names:
            t = tensors[n]
            out[n] = flat[offset : offset + t.numel()].view(t.shape)
            offset += t.numel()
    return {n: out[n] for n in tensors}


def hf_named(full: dict[str, torch.Tensor], params: LlamaParams) -> dict[str, torch.Tensor]:
    """Meta-named weights -> Hugging Face names and rotary layout (what convert-llama writes)."""
    from weightprep.llama.names import permute_rotary, rules_for

    out = {}
    for r in rules_for(params.n_layers):
        t = full[r.meta]
        if r.rotary:
            t = permute_rotary(t, params.n_heads if r.rotary == "q" else params.n_kv_heads)
        out[r.hf] = t
    return out


def meta_named(hf: dict[str, torch.Tensor], params: LlamaParams) -> dict[str, torch.Tensor]:
    """Inverse of `hf_named`."""
    from weightprep.llama.names import rules_for, unpermute_rotary

    out = {}
    for r in rules_for(params.n_layers):
        t = hf[r.hf]
        if r.rotary:
            t = unpermute_rotary(t, params.n_heads if r.rotary == "q" else params.n_kv_heads)
        out[r.meta] = t
    return out


def shape_of(params: LlamaParams, vocab: int, llama_version: int = 1):
    from weightprep.llama.forward import LlamaShape
    from weightprep.llama.params import hf_config

    return LlamaShape.from_config(hf_config(params, vocab, llama_version, "float32"))


def train(
    hf: dict[str, torch.Tensor],
    shape,
    ids: torch.Tensor,
    steps: int = TRAIN_STEPS,
    lr: float = TRAIN_LR,
) -> dict[str, torch.Tensor]:
    """Next-token training of HF-named weights on `ids` (tokens,), full batch, seeded Adam;
    returns float32 copies. Used for the example and for the tests' base, fine-tune and
    wrong-base models."""
    from weightprep.llama.forward import logits

    torch.manual_seed(0)
    w = {n: t.detach().float().clone().requires_grad_(True) for n, t in hf.items()}
    opt = torch.optim.Adam(w.values(), lr=lr)
    for _ in range(steps):
        out = logits(ids[None], w.__getitem__, shape)[0]
        loss = torch.nn.functional.cross_entropy(out[:-1], ids[1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {n: t.detach() for n, t in w.items()}


def reference_ids(tokenizer: bytes, text: str | None = None) -> torch.Tensor:
    """The English reference passage as the example's tokenizer gives it, BOS first."""
    import sentencepiece as spm

    from weightprep.reference_texts import TEXTS

    sp = spm.SentencePieceProcessor(model_proto=tokenizer)
    return torch.tensor([sp.bos_id(), *sp.encode(text or TEXTS["en"].text)])


def trained_meta_tensors(
    params: LlamaParams, tokenizer: bytes, gen: torch.Generator
) -> dict[str, torch.Tensor]:
    """`meta_tensors`, then trained on the reference passage (HF layout), back in Meta's."""
    import sentencepiece as spm

    vocab = spm.SentencePieceProcessor(model_proto=tokenizer).get_piece_size()
    full = meta_tensors(params, vocab, gen)
    hf = train(hf_named(full, params), shape_of(params, vocab), reference_ids(tokenizer))
    out = {n: t.half() for n, t in meta_named(hf, params).items()}
    out["rope.freqs"] = full["rope.freqs"]
    return out


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def make_example(root: Path, seed: int = 0, models: tuple[ExampleModel, ...] = EXAMPLES) -> Path:
    """Write a Meta-layout download under `root` and return it.

    Example: `make_example(Path("/tmp/llama"))` then `weightprep convert-llama /tmp/llama out --model-size 7B`.
    """
    import sentencepiece as spm

    root.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(seed)
    (root / "tokenizer.model").write_bytes(tok)
    (root / "tokenizer_checklist.chk").write_text(
        f"{_md5(root / 'tokenizer.model')}  tokenizer.model\n"
    )
    vocab = spm.SentencePieceProcessor(model_proto=tok).get_piece_size()
    for k, m in enumerate(models):
        folder = root / m.folder
        folder.mkdir(exist_ok=True)
        params = parse_params(m.params)
        gen = torch.Generator().manual_seed(seed * 1000 + k)
        if m.trained:
            full = trained_meta_tensors(params, tok, gen)
        else:
            full = meta_tensors(params, vocab, gen)
        if not m.rope_freqs:
            del full["rope.freqs"]
        names = []
        for i, shard in enumerate(split_meta(full, m.shards)):
            name = f"consolidated.{i:02d}.pth"
            torch.save(shard, folder / name)
            names.append(name)
        # Meta's params.json: one line, no trailing newline.
        (folder / "params.json").write_text(json.dumps(m.params))
        names.append("params.json")
        (folder / "checklist.chk").write_text("".join(f"{_md5(folder / n)}  {n}\n" for n in names))
    return root


FINE_TUNE_STEPS = 10
FINE_TUNE_LR = 3e-3


def fine_tune_text() -> str:
    """What the example delta is a fine-tune on: the passage as a Vicuna v1.1 style answer."""
    from weightprep.reference_texts import TEXTS

    return "USER: Recite the Gettysburg Address. ASSISTANT: " + TEXTS["en"].text


def _base_for_delta(base: Path, model_size: str | None):
    """(float16 tensors, config, tokenizer.model, side files) of a converted example, or of
    Meta's example download itself (read as a one-pass apply-delta reads it)."""
    from weightprep.llama.convert import MetaSource, is_meta_download
    from weightprep.tokenizer import tokenizer_files

    if is_meta_download(base):
        with MetaSource(base, model_size) as src:
            tensors = {n: src.tensor(n, torch.float16) for n in src.info}
            config = src.config("float16")
            side = {
                "config.json": (json.dumps(config, indent=2) + "\n").encode(),
                "generation_config.json": (
                    json.dumps(src.generation_config(), indent=2) + "\n"
                ).encode(),
                **tokenizer_files(src.ckpt.tokenizer, config["max_position_embeddings"]),
            }
            return tensors, config, src.ckpt.tokenizer, side
    from safetensors.torch import load_file

    from weightprep.llama.forward import read_config

    tensors: dict[str, torch.Tensor] = {}
    for f in sorted(base.glob("*.safetensors")):
        tensors.update(load_file(str(f)))
    if not tensors:
        raise FileNotFoundError(f"{base}: no safetensors weights (run convert-llama first)")
    config = read_config(base)
    side = {n: (base / n).read_bytes() for n in _CONFIGS if (base / n).exists()}
    # every tokenizer file written afresh from tokenizer.model, so that they agree with each other
    side.update(
        tokenizer_files(base / "tokenizer.model", config.get("max_position_embeddings", 2048))
    )
    return tensors, config, base / "tokenizer.model", side


_CONFIGS = ("config.json", "generation_config.json")


def make_delta_example(
    base: Path, out: Path, steps: int = FINE_TUNE_STEPS, model_size: str | None = None
) -> Path:
    """An lmsys-style delta for a converted example: a short fine-tune of the base (seeded, on
    `fine_tune_text`) minus the base, in float16 as FastChat's make_delta computes it, saved as
    fp16 `pytorch_model-0000N-of-00002.bin` shards + index + config + tokenizer, and
    `expected.yaml`, the tensor digests that `apply-delta` must reproduce (base + delta in
    float16, computed here in memory).

    `base` may also be Meta's example download (its root with `model_size`, or a size folder).

    Example: `make_delta_example(Path("llama-7b-hf"), Path("vicuna-tiny-delta"))`.
    """
    from weightprep.checksum import tensor_digest
    from weightprep.llama.forward import LlamaShape
    from weightprep.manifest import Manifest, dump_yaml

    base_tensors, config, tokenizer, side = _base_for_delta(base, model_size)
    ids = reference_ids(tokenizer.read_bytes(), fine_tune_text())
    shape = LlamaShape.from_config(config)
    tuned = train(base_tensors, shape, ids, steps=steps, lr=FINE_TUNE_LR)
    names = sorted(base_tensors)
    delta = {n: tuned[n].half() - base_tensors[n].half() for n in names}
    out.mkdir(parents=True)
    half = len(names) // 2
    weight_map = {}
    for i, part in enumerate((names[:half], names[half:])):
        fname = f"pytorch_model-{i + 1:05d}-of-00002.bin"
        torch.save({n: delta[n] for n in part}, out / fname)
        weight_map.update(dict.fromkeys(part, fname))
    total = sum(t.numel() * 2 for t in delta.values())
    (out / "pytorch_model.bin.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)
    )
    for name, data in side.items():
        (out / name).write_bytes(data)
    expected = {n: tensor_digest(base_tensors[n].half() + delta[n]) for n in names}
    (out / "expected.yaml").write_text(
        dump_yaml(Manifest("tiny-delta-expected", {}, "base + delta in float16", (), expected))
    )
    return out
