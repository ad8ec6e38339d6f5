"""The language check: do these weights predict text? Checksums prove bytes; this proves meaning.

The model's perplexity on a built-in public-domain passage (`weightprep.reference_texts`) is
compared with a bound per model family (`BOUNDS`, justified in docs/trust.md). A trained
LLaMA-7B scores single digits on English prose; a uniform guess scores its vocabulary size
(32000); random weights, a delta used as a model, or a delta applied to the wrong base score in
the hundreds to tens of thousands. The bound sits between, with a wide margin on both sides.

For a folder the check streams (`check_folder`): one decoder layer's weights in memory at a
time, the passage's hidden states carried from layer to layer (`weightprep.llama.forward`), so
a 7B model is scored in about 1 GB. The smoke test scores the model it has already loaded
(`check_loaded`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from weightprep.errors import InputError
from weightprep.progress import NullProgress, Progress
from weightprep.reference_texts import TEXTS, ReferenceText


@dataclass(frozen=True)
class Bound:
    max_perplexity: float
    text: str  # key of TEXTS
    why: str  # the published figures it rests on (docs/trust.md has the sources)


# Per family: the passage it is scored on and the highest perplexity that passes.
BOUNDS: dict[str, Bound] = {
    "llama": Bound(
        50.0,
        "en",
        "LLaMA-7B scores 5.7 on WikiText-2 and LLaMA-2-7B 5.5; a uniform guess over LLaMA's "
        "32000 tokens scores 32000",
    ),
    "gpt_neox": Bound(
        100.0,
        "ja",
        "rinna's Japanese GPT-NeoX models report validation perplexities near 8-9; a uniform "
        "guess over the bilingual model's 65536 tokens scores 65536",
    ),
    "mt5": Bound(
        1000.0,
        "de",
        "no published perplexity for mT0-XL's decoder: the bound only separates a working "
        "model from noise (a uniform guess over mT5's 250112 tokens scores 250112)",
    ),
}


@dataclass(frozen=True)
class LanguageCheck:
    ok: bool
    perplexity: float
    bound: float
    tokens: int  # tokens predicted
    text: str  # the passage, in words
    family: str
    detail: str  # the result in words
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def reference_for(family: str, reference: Path | None) -> ReferenceText:
    if reference is None:
        return TEXTS[BOUNDS[family].text]
    try:
        text = reference.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{reference}: not UTF-8 text (--reference-text)") from None
    except OSError as exc:
        raise InputError(f"{reference}: cannot read it ({exc.strerror or exc})") from None
    if not text.strip():
        raise InputError(f"{reference}: empty (--reference-text needs a passage)")
    return ReferenceText(reference.name, f"{reference} (--reference-text)", text)


def bound_for(family: str, max_perplexity: float | None) -> float:
    if max_perplexity is not None:
        if not max_perplexity > 1.0:
            raise InputError(f"--max-perplexity {max_perplexity}: must be above 1")
        return float(max_perplexity)
    return BOUNDS[family].max_perplexity


def verdict(
    nll_sum: float,
    n: int,
    bound: float,
    ref: ReferenceText,
    family: str,
    seconds: float,
    who: str = "",
) -> LanguageCheck:
    ppl = math.exp(nll_sum / n) if math.isfinite(nll_sum) else nll_sum  # nan stays nan
    ok = ppl <= bound  # NaN fails too
    rel = "<=" if ok else ">"
    detail = f"{who}perplexity {ppl:.4g} {rel} {bound:g} on {n} tokens of {ref.title}"
    if math.isnan(ppl):
        detail += " (the weights give NaN: corrupt, or overflowing in this dtype)"
    return LanguageCheck(ok, ppl, bound, n, ref.title, family, detail, seconds)


def _tokenize(tok: Path, text: str, context: int, vocab: int) -> torch.Tensor:
    """The passage as LLaMA sees it: BOS, then SentencePiece's ids (no EOS), cut to the context."""
    import sentencepiece as spm

    if not tok.is_file():
        raise InputError(f"{tok}: missing (the language check tokenizes the passage with it)")
    sp = spm.SentencePieceProcessor()
    try:
        sp.load(str(tok))
    except (OSError, RuntimeError) as exc:
        raise InputError(f"{tok}: not a SentencePiece model ({exc})") from None
    bos = sp.bos_id() if sp.bos_id() >= 0 else 1
    ids = [bos, *sp.encode(text)][:context]
    if max(ids) >= vocab:
        raise InputError(
            f"{tok}: gives token id {max(ids)} but the model has {vocab} rows; the tokenizer "
            "is not this model's"
        )
    if len(ids) < 2:
        raise InputError(f"{tok}: the passage gives fewer than 2 tokens")
    return torch.tensor(ids)


def streamed_nll(
    reader, shape, ids: torch.Tensor, progress: Progress | None = None
) -> tuple[float, int]:
    """Sum of the next-token negative log-likelihoods of `ids` (float32) under the LLaMA-family
    model that `reader` gives tensor by tensor (`reader.info`, `reader[name]`: a
    CheckpointReader, or Meta's download through MetaSource), one layer's weights at a time."""
    from weightprep.llama import forward as fw

    progress = progress or NullProgress()
    where = getattr(reader, "folder", "the model")
    missing = [
        n
        for n in ("model.embed_tokens.weight", "model.norm.weight", fw.head_name(shape))
        if n not in reader.info
    ]
    if missing:
        raise InputError(f"{where}: no {missing[0]}: not a LLaMA model in Hugging Face format")

    def nbytes(n: str) -> int:
        info = reader.info[n]
        return math.prod(info.shape) * torch.empty((), dtype=info.dtype).element_size()

    total = sum(nbytes(n) for n in reader.info)
    progress.start(total, f"language check {Path(str(where)).name}")
    try:
        with torch.inference_mode():

            def weight(name: str) -> torch.Tensor:
                if name not in reader.info:
                    raise InputError(f"{where}: no tensor {name}; not a LLaMA model")
                progress.advance(nbytes(name))
                return reader[name].float()

            emb = reader["model.embed_tokens.weight"]
            if tuple(emb.shape) != (shape.vocab, shape.hidden):
                raise InputError(
                    f"{reader.info['model.embed_tokens.weight'].file}: embeddings "
                    f"{list(emb.shape)}, its config says {shape.vocab} x {shape.hidden}"
                )
            h = emb[ids].float()[None]
            del emb
            progress.advance(nbytes("model.embed_tokens.weight"))
            cos, sin = fw.rotary_tables(shape, ids.shape[0])
            for i in range(shape.layers):
                h = fw.decoder_layer(h, weight, i, shape, cos, sin)
            h = fw.rms_norm(h, weight("model.norm.weight"), shape.eps)[0]
            head = reader[fw.head_name(shape)]
            if not shape.tied:
                progress.advance(nbytes("lm_head.weight"))
            nll = fw.token_nll(h[:-1], head, ids[1:])
    finally:
        progress.finish()
    return float(nll.sum()), int(nll.numel())


def check_reader(
    reader,
    config: dict,
    tokenizer: Path,
    *,
    reference: Path | None = None,
    max_perplexity: float | None = None,
    progress: Progress | None = None,
    who: str = "",
) -> LanguageCheck:
    """The language check on an open reader of a LLaMA-family model, its config and its
    SentencePiece `tokenizer.model`."""
    from weightprep.llama.forward import LlamaShape

    t0 = time.monotonic()
    shape = LlamaShape.from_config(config, str(getattr(reader, "folder", "config")))
    ref = reference_for("llama", reference)
    bound = bound_for("llama", max_perplexity)
    ids = _tokenize(tokenizer, ref.text, shape.context, shape.vocab)
    nll, n = streamed_nll(reader, shape, ids, progress)
    return verdict(nll, n, bound, ref, "llama", time.monotonic() - t0, who)


def check_folder(
    folder: Path,
    *,
    reference: Path | None = None,
    max_perplexity: float | None = None,
    progress: Progress | None = None,
    who: str = "",
) -> LanguageCheck:
    """Score a LLaMA-family model folder (HF format: config.json, tokenizer.model, weights) on
    the reference passage, streamed. Raises InputError when it is not such a folder.

    Example: `check_folder(Path("vicuna-7b")).detail` ->
    'perplexity 3.1 <= 50 on N tokens of the Gettysburg Address' (figures illustrative).
    """
    from weightprep.io.reader import CheckpointReader
    from weightprep.llama.forward import read_config

    config = read_config(folder)
    with CheckpointReader(folder) as reader:
        return check_reader(
            reader,
            config,
            folder / "tokenizer.model",
            reference=reference,
            max_perplexity=max_perplexity,
            progress=progress,
            who=who,
        )


# transformers' model_type -> the family whose bound and passage apply
FAMILIES = {"llama": "llama", "gpt_neox": "gpt_neox", "mt5": "mt5", "t5": "mt5", "umt5": "mt5"}


def check_loaded(
    model,
    tokenizer,
    config,
    *,
    reference: Path | None = None,
    max_perplexity: float | None = None,
) -> LanguageCheck | None:
    """Score an already-loaded transformers language model (the smoke test's) on its family's
    passage; None when weightprep has no bound for its family. `model(input_ids=...)` must give
    text logits (a causal LM, an encoder-decoder, or a LLaVA-style model called without an
    image). An encoder-decoder (mT5) is scored on the passage's second half given its first."""
    family = FAMILIES.get(getattr(config, "model_type", ""))
    if family is None:
        return None
    t0 = time.monotonic()
    ref = reference_for(family, reference)
    bound = bound_for(family, max_perplexity)
    ids = list(tokenizer(ref.text, add_special_tokens=False).input_ids)
    device = next(model.parameters()).device
    with torch.inference_mode():
        if getattr(config, "is_encoder_decoder", False):
            ids = ids[:1024]
            half = len(ids) // 2
            src, labels = torch.tensor(ids[:half]), torch.tensor(ids[half:])
            out = model(input_ids=src[None].to(device), labels=labels[None].to(device))
            logits, targets = out.logits[0], labels
        else:
            bos = getattr(config, "bos_token_id", None)
            ids = ([bos] if bos is not None else []) + ids
            context = getattr(config, "max_position_embeddings", None) or 2048
            x = torch.tensor(ids[:context])
            logits = model(input_ids=x[None].to(device)).logits[0, :-1]
            targets = x[1:]
        logp = torch.log_softmax(logits.float(), dim=-1)
        nll = -logp.gather(-1, targets[:, None].to(device))[:, 0]
    return verdict(float(nll.sum()), int(nll.numel()), bound, ref, family, time.monotonic() - t0)
