"""LLaMA tokenizer files for both of transformers' loaders, with SentencePiece's own ids.

The slow loader (`LlamaTokenizer(use_fast=False)`, which LAVIS uses) reads `tokenizer.model`
directly. The fast loader reads `tokenizer.json`, which we build here from the SentencePiece
model with the `tokenizers` library, rather than through transformers' converter (4.46-4.57's
drops the leading "▁" under `legacy=False`): BPE over the same pieces, merges ranked by the
score of the piece they make (as SentencePiece's BPE encoder picks merges), byte fallback,
and SentencePiece's normalizer (`add_dummy_prefix`, spaces -> "▁", nothing else for LLaMA's
identity rule). Tests hold the ids equal to SentencePiece's on many strings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from weightprep.errors import InputError

SPIECE_UNDERLINE = "▁"


@dataclass(frozen=True)
class SpmInfo:
    vocab_size: int
    bos: str
    eos: str
    unk: str
    bos_id: int
    eos_id: int
    unk_id: int


def _load_proto(data: bytes, source: str):
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as exc:  # protobuf raises its own DecodeError type
        raise InputError(f"{source}: not a SentencePiece model ({exc})") from exc
    if not proto.pieces:
        raise InputError(f"{source}: not a SentencePiece model (no pieces)")
    return proto


def read_spm(path: Path) -> SpmInfo:
    """Open a SentencePiece model and return what the converter needs from it."""
    import sentencepiece as spm

    if not path.is_file():
        raise InputError(f"{path}: tokenizer.model not found")
    data = path.read_bytes()
    _load_proto(data, str(path))
    sp = spm.SentencePieceProcessor()
    try:
        sp.LoadFromSerializedProto(data)
    except Exception as exc:  # sentencepiece raises plain RuntimeError/OSError variants
        raise InputError(f"{path}: SentencePiece cannot load it ({exc})") from exc
    if sp.bos_id() < 0 or sp.eos_id() < 0:
        raise InputError(f"{path}: the model defines no BOS/EOS pieces; LLaMA's has <s> and </s>")
    return SpmInfo(
        vocab_size=sp.get_piece_size(),
        bos=sp.id_to_piece(sp.bos_id()),
        eos=sp.id_to_piece(sp.eos_id()),
        unk=sp.id_to_piece(sp.unk_id()),
        bos_id=sp.bos_id(),
        eos_id=sp.eos_id(),
        unk_id=sp.unk_id(),
    )


def build_tokenizer_json(data: bytes, source: str = "tokenizer.model") -> str:
    """A `tokenizer.json` (tokenizers' format) that encodes exactly as the SentencePiece model."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors

    proto = _load_proto(data, source)
    t = proto.trainer_spec
    n = proto.normalizer_spec
    if t.model_type != 2:  # BPE
        raise InputError(f"{source}: a LLaMA tokenizer is BPE; this one is not")
    if n.name not in ("identity", "") or n.remove_extra_whitespaces:
        raise InputError(
            f"{source}: normalizer {n.name!r} (remove_extra_whitespaces={n.remove_extra_whitespaces}) "
            "is not LLaMA's identity rule; cannot reproduce it in tokenizer.json"
        )
    normal, special = (
        1,
        {2, 3, 4},
    )  # SentencePiece piece types: NORMAL; UNKNOWN, CONTROL, USER_DEFINED
    vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
    scores = {p.piece: p.score for p in proto.pieces}
    mergeable = {p.piece for p in proto.pieces if p.type == normal}
    merges = []
    for piece in mergeable:
        for k in range(1, len(piece)):
            a, b = piece[:k], piece[k:]
            if a in mergeable and b in mergeable:
                merges.append((-scores[piece], vocab[piece], vocab[a], vocab[b], a, b))
    merges.sort()
    unk = proto.pieces[t.unk_id].piece
    tok = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=[(m[4], m[5]) for m in merges],
            unk_token=unk,
            fuse_unk=True,
            byte_fallback=t.byte_fallback,
        )
    )
    steps = [normalizers.Replace(" ", SPIECE_UNDERLINE)]
    if n.add_dummy_prefix:
        steps.insert(0, normalizers.Prepend(SPIECE_UNDERLINE))
    tok.normalizer = normalizers.Sequence(steps)
    dec = [decoders.Replace(SPIECE_UNDERLINE, " "), decoders.ByteFallback(), decoders.Fuse()]
    if n.add_dummy_prefix:
        dec.append(decoders.Strip(content=" ", left=1, right=0))
    tok.decoder = decoders.Sequence(dec)
    bos = proto.pieces[t.bos_id].piece
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1", special_tokens=[(bos, t.bos_id)]
    )
    tok.add_special_tokens(
        [
            AddedToken(p.piece, normalized=False, special=True)
            for p in proto.pieces
            if p.type in special
        ]
    )
    # Serialise in the layout tokenizers 0.13 (transformers 4.33, LAVIS's pin) can read too:
    # merges as "a b" strings (no piece contains a space; every version reads this form) and no
    # `ignore_merges` key (added in tokenizers 0.19; its default, False, is SentencePiece's rule).
    doc = json.loads(tok.to_str())
    doc["model"]["merges"] = [" ".join(m) for m in doc["model"]["merges"]]
    if doc["model"].pop("ignore_merges", False):
        raise AssertionError("ignore_merges must stay off")
    return json.dumps(doc, indent=2, ensure_ascii=False)


def tokenizer_files(tokenizer_model: Path, max_length: int) -> dict[str, bytes]:
    """All tokenizer files for an HF LLaMA folder, as `{filename: bytes}`."""
    info = read_spm(tokenizer_model)
    data = tokenizer_model.read_bytes()
    special = {"bos_token": info.bos, "eos_token": info.eos, "unk_token": info.unk}
    config = {
        "tokenizer_class": "LlamaTokenizer",
        **special,
        "pad_token": None,
        "add_bos_token": True,
        "add_eos_token": False,
        # legacy=True is SentencePiece's own behaviour; False changes text after special tokens.
        "legacy": True,
        "add_prefix_space": None,
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_length,
        "sp_model_kwargs": {},
        "padding_side": "left",
    }

    def dump(obj: dict) -> bytes:
        return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode()

    return {
        "tokenizer.model": data,
        "tokenizer.json": build_tokenizer_json(data, str(tokenizer_model)).encode(),
        "tokenizer_config.json": dump(config),
        "special_tokens_map.json": dump(special),
    }
