"""Tiny, random vision-language models in the real formats, built offline from configs.

`make smoke-test` and the tests use them in place of the published weights: each folder is laid
out as its Hub repo is (config.json, safetensors, processor and tokenizer files), so the smoke
test loads it through the same `from_pretrained` / `hf_hub_download`-shaped code as the real one.
- InstructBLIP: vision tower, Q-Former and projection around a given LLaMA/Vicuna folder (the
  tiny one `convert-llama` and `apply-delta` made), with a BERT WordPiece Q-Former tokenizer.
- VipLLaVA: CLIP-style vision tower (VipLLaVA's five feature layers) over a LLaMA with the given
  folder's tokenizer.
- mBLIP: BLIP-2 over a tiny mT5 with a SentencePiece unigram tokenizer, saved as checkpoints made
  before transformers' `<image>`-token scheme are (no `num_query_tokens`, no `image_token_id`).
- rinna MiniGPT-4: a tiny GPT-NeoX with a SentencePiece tokenizer, a tiny BLIP-2 (for its ViT and
  Q-Former), and a `checkpoint.pth` written as MiniGPT-4's trainer writes it (`{"model": ...}`).
Weights are random (seeded); the projections are scaled up so that the image visibly moves the
logits, as it does in trained models.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch

from weightprep.errors import InputError

SEED = 0
IMAGE = 30  # pixels; 3x3 patches of 10
PROMPT_WORDS = (
    "write a short description for the image what is unusual about this detailed describe "
    "in german are these one sentence can you see"
).split()


def _vision(**extra) -> dict:
    base = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=IMAGE,
        patch_size=10,
    )
    return {**base, **extra}


def _qformer(vocab_size: int = 64) -> dict:
    return dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        encoder_hidden_size=32,
        vocab_size=vocab_size,
        max_position_embeddings=64,
        cross_attention_frequency=1,
    )


def _scale_(weight: torch.Tensor, std: float) -> None:
    with torch.no_grad():
        weight.normal_(0.0, std)


def _cycle_lm_(model: torch.nn.Module, skip: list[int], std: float = 0.5) -> None:
    """Make a random LM say something for the checks to look at, deterministically.

    A random tiny LM decoded greedily repeats one token forever (which the repetition check
    rightly fails). Here the output head maps each token to the next one in a fixed, seeded
    cycle through the vocabulary: with embeddings large enough to dominate the residual stream,
    greedy decoding walks the cycle. End/pad tokens get zero output rows so that the answer does
    not end at once.
    """
    emb = model.get_input_embeddings().weight
    out = model.get_output_embeddings()
    if out.weight.data_ptr() == emb.data_ptr():  # mT5 ties them even when told not to
        out.weight = torch.nn.Parameter(emb.detach().clone())
    head = out.weight
    gen = torch.Generator().manual_seed(SEED)
    order = [i for i in range(head.shape[0]) if i not in set(skip) and i < emb.shape[0]]
    order = [order[i] for i in torch.randperm(len(order), generator=gen).tolist()]
    with torch.no_grad():
        emb.normal_(0.0, std, generator=gen)
        head.zero_()
        for a, b in zip(order, order[1:] + order[:1], strict=True):
            head[b] = emb[a]


def _image_reaches_queries_(qformer: torch.nn.Module) -> None:
    """Random Q-Former cross-attention (std 0.02) barely moves the query tokens: scale it up so
    that different images give different query outputs, as in a trained Q-Former."""
    for layer in qformer.layer if hasattr(qformer, "layer") else qformer.encoder.layer:
        if getattr(layer, "has_cross_attention", False):
            _scale_(layer.crossattention.attention.value.weight, 0.5)
            _scale_(layer.crossattention.output.dense.weight, 0.5)


def _unigram(folder: Path, size: int = 400) -> Path:
    """A SentencePiece unigram model in `folder/spiece.model`, T5 style (pad 0, eos 1, unk 2)."""
    import sentencepiece as spm

    from weightprep.example import _corpus

    buf = io.BytesIO()
    lines = _corpus(SEED + 1) + [" ".join(PROMPT_WORDS)] * 20
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=buf,
        model_type="unigram",
        vocab_size=size,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        byte_fallback=True,
        num_threads=1,
        minloglevel=2,
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spiece.model").write_bytes(buf.getvalue())
    return folder / "spiece.model"


def _t5_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    _unigram(folder)
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "T5Tokenizer", "extra_ids": 0})
    )
    return AutoTokenizer.from_pretrained(folder)


def _bert_tokenizer():
    from transformers import BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words += list("abcdefghijklmnopqrstuvwxyz0123456789.,?!'")
    words += ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"] + PROMPT_WORDS
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    return BertTokenizer(vocab=vocab, do_lower_case=True)


def _image_processor():
    from transformers import BlipImageProcessor

    return BlipImageProcessor(size={"height": IMAGE, "width": IMAGE})


def _llm_dir(llm: Path | None, model: str) -> Path:
    if llm is None:
        raise InputError(
            f"{model}: the example needs --llm, a converted tiny LLaMA folder "
            "(weightprep convert-llama's or apply-delta's output)"
        )
    if not llm.is_dir():
        raise InputError(f"--llm {llm}: no such folder")
    if not (llm / "config.json").is_file():
        raise InputError(
            f"--llm {llm}: no config.json: not a Hugging Face model folder (a Meta download "
            "needs `weightprep convert-llama` first)"
        )
    return llm


def instructblip(out: Path, llm: Path | None) -> dict:
    from transformers import (
        AutoConfig,
        AutoTokenizer,
        InstructBlipConfig,
        InstructBlipForConditionalGeneration,
        InstructBlipProcessor,
    )

    llm = _llm_dir(llm, "instructblip")
    qtok = _bert_tokenizer()
    text = AutoConfig.from_pretrained(llm)
    cfg = InstructBlipConfig(
        vision_config=_vision(),
        qformer_config=_qformer(len(qtok)),
        text_config=text.to_dict(),
        num_query_tokens=4,
    )
    torch.manual_seed(SEED)
    model = InstructBlipForConditionalGeneration(cfg)
    _scale_(model.vision_model.embeddings.patch_embedding.weight, 1.0)
    _scale_(model.language_projection.weight, 1.0)
    _scale_(model.query_tokens, 1.0)
    processor = InstructBlipProcessor(
        _image_processor(), AutoTokenizer.from_pretrained(llm), qtok, num_query_tokens=4
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return {"weights": str(out), "llm": str(llm)}


def vipllava(out: Path, llm: Path | None) -> dict:
    from transformers import (
        AutoConfig,
        AutoTokenizer,
        CLIPImageProcessor,
        LlavaProcessor,
        VipLlavaConfig,
        VipLlavaForConditionalGeneration,
    )

    llm = _llm_dir(llm, "vip-llava")
    tok = AutoTokenizer.from_pretrained(llm)
    tok.add_tokens(["<image>"], special_tokens=True)
    text = AutoConfig.from_pretrained(llm).to_dict()
    text["vocab_size"] = len(tok)
    image_id = tok.convert_tokens_to_ids("<image>")
    cfg = VipLlavaConfig(
        vision_config={"model_type": "clip_vision_model", **_vision(num_hidden_layers=12)},
        text_config=text,
        image_token_index=image_id,
        projector_layernorm_eps=1e-5,
        vision_feature_layers=[-2, -5, -8, -11, 6],  # VipLLaVA-7B's
    )
    torch.manual_seed(SEED)
    model = VipLlavaForConditionalGeneration(cfg)
    _scale_(model.model.vision_tower.embeddings.patch_embedding.weight, 1.0)
    _scale_(model.model.multi_modal_projector.linear_2.weight, 1.0)
    _cycle_lm_(model, [0, 1, 2, image_id])
    images = CLIPImageProcessor(
        size={"shortest_edge": IMAGE}, crop_size={"height": IMAGE, "width": IMAGE}
    )
    processor = LlavaProcessor(
        image_processor=images,
        tokenizer=tok,
        patch_size=10,
        vision_feature_select_strategy="default",
        image_token="<image>",
        num_additional_image_tokens=1,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return {"weights": str(out)}


def mblip(out: Path, llm: Path | None = None) -> dict:
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor

    tok = _t5_tokenizer(out / "_spm")
    text = dict(
        model_type="mt5",
        vocab_size=len(tok) + 8,  # mT5's embedding is larger than its tokenizer, too
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
        tie_word_embeddings=False,
    )
    cfg = Blip2Config(
        vision_config=_vision(), qformer_config=_qformer(), text_config=text, num_query_tokens=4
    )
    torch.manual_seed(SEED)
    model = Blip2ForConditionalGeneration(cfg)
    _scale_(model.vision_model.embeddings.patch_embedding.weight, 1.0)
    _scale_(model.language_projection.weight, 1.0)
    _scale_(model.query_tokens, 1.0)
    _image_reaches_queries_(model.qformer)
    _cycle_lm_(model.language_model, [0, 1, 2], std=4.0)
    model.config.image_token_index = None  # saved before the `<image>` scheme, like mBLIP's
    model.save_pretrained(out)
    processor = Blip2Processor(_image_processor(), tok)  # no num_query_tokens, like mBLIP's
    processor.save_pretrained(out)
    # the tokenizer saved above carries the processor's `<image>`; mBLIP's does not
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (out / name).unlink(missing_ok=True)
    tok_only = _t5_tokenizer(out / "_spm")
    tok_only.save_pretrained(out)
    return {"weights": str(out)}


def minigpt4(out: Path, llm: Path | None = None) -> dict:
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
    )

    # the LLM: a tiny GPT-NeoX with a SentencePiece tokenizer, as rinna's bilingual-gpt-neox-4b
    llm_dir = out / "gpt-neox"
    tok = _t5_tokenizer(llm_dir / "_spm")
    neox = GPTNeoXConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=256,
        bos_token_id=2,
        eos_token_id=1,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    torch.manual_seed(SEED)
    lm = GPTNeoXForCausalLM(neox)
    _cycle_lm_(lm, [0, 1, 2])
    lm.save_pretrained(llm_dir)
    tok.save_pretrained(llm_dir)
    # the BLIP-2 whose ViT + Q-Former MiniGPT-4 uses (blip2-flan-t5-xxl's, in the real thing)
    blip2_dir = out / "blip2"
    text = dict(
        model_type="t5",
        vocab_size=64,
        d_model=16,
        d_kv=4,
        d_ff=32,
        num_layers=1,
        num_heads=4,
        decoder_start_token_id=0,
    )
    blip2 = Blip2ForConditionalGeneration(
        Blip2Config(
            vision_config=_vision(),
            qformer_config=_qformer(),
            text_config=text,
            num_query_tokens=4,
        )
    )
    _scale_(blip2.vision_model.embeddings.patch_embedding.weight, 1.0)
    _image_reaches_queries_(blip2.qformer)
    _scale_(blip2.query_tokens, 1.0)
    blip2.save_pretrained(blip2_dir)
    _image_processor().save_pretrained(blip2_dir)
    # rinna's repo: checkpoint.pth as MiniGPT-4's trainer saves it
    proj = torch.nn.Linear(32, neox.hidden_size)
    _scale_(proj.weight, 3.0)
    rinna_dir = out / "minigpt4"
    rinna_dir.mkdir(parents=True)
    torch.save(
        {
            "model": {
                "llama_proj.weight": proj.weight.detach(),
                "llama_proj.bias": proj.bias.detach(),
            },
            "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]},
            "config": {"model": {"arch": "mini_gpt4", "num_query_token": 4}},
            "epoch": 0,
        },
        rinna_dir / "checkpoint.pth",
    )
    return {"weights": str(rinna_dir), "llm": str(llm_dir), "vision": str(blip2_dir)}


BUILDERS = {
    "instructblip-vicuna7b": instructblip,
    "instructblip-vicuna13b": instructblip,
    "vip-llava-7b": vipllava,
    "mblip-mt0-xl": mblip,
    "rinna-minigpt4": minigpt4,
}


def build(model: str, out: Path, llm: Path | None = None) -> dict:
    """Write the tiny stand-in for `model` under `out`; return the smoke-test arguments for it
    (`weights`, and `llm` / `vision` where the model takes them)."""
    if model not in BUILDERS:
        raise InputError(f"unknown model {model!r}; one of: {', '.join(BUILDERS)}")
    from weightprep.extras import require_smoke

    require_smoke(f"make-example-vlm {model}")
    if BUILDERS[model] in (instructblip, vipllava):
        _llm_dir(llm, model)  # before anything is written
    out.mkdir(parents=True, exist_ok=True)
    args = BUILDERS[model](out, llm)
    (out / "smoke-args.json").write_text(json.dumps(args, indent=2) + "\n")
    return args
