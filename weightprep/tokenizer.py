"""LLaMA tokenizer files that give SentencePiece's own ids in every loader users call.

The slow loader (`LlamaTokenizer(use_fast=False)`, which LAVIS uses) reads `tokenizer.model`
directly. Every other loader reads `tokenizer.json`, which we write here as a plain JSON
document (no `tokenizers` or protobuf needed, so the same bytes come out beside transformers
4.33.2's tokenizers 0.13 and beside the newest): BPE over SentencePiece's pieces, merges ranked by
the score of the piece they make (as SentencePiece's BPE encoder picks merges), byte fallback, and
SentencePiece's normalizer (`add_dummy_prefix`, spaces -> "▁", nothing else for LLaMA's identity
rule), BOS prepended by the post-processor.

`tokenizer_config.json` names `PreTrainedTokenizerFast` as the class. Why: transformers 5.x's
`LlamaTokenizer` ignores `tokenizer.json`'s normalizer and rebuilds its own Metaspace step, which
adds no dummy prefix to text that already starts with a space; `AutoTokenizer` follows
`tokenizer_class`, and `PreTrainedTokenizerFast` runs our `tokenizer.json` as written. Every
release from 4.33 on knows that class name. docs/convert.md#tokenizer has the loader table.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from weightprep.errors import InputError

SPIECE_UNDERLINE = "▁"
# the class `AutoTokenizer` builds from tokenizer_config.json; see the module docstring
TOKENIZER_CLASS = "PreTrainedTokenizerFast"

# SentencePiece piece types (sentencepiece_model.proto): NORMAL=1, UNKNOWN=2, CONTROL=3,
# USER_DEFINED=4, UNUSED=5, BYTE=6
_NORMAL, _SPECIAL = 1, (2, 3, 4)


@dataclass(frozen=True)
class SpmInfo:
    vocab_size: int
    bos: str
    eos: str
    unk: str
    bos_id: int
    eos_id: int
    unk_id: int


@dataclass(frozen=True)
class _Piece:
    piece: str
    score: float
    type: int


@dataclass(frozen=True)
class _Model:
    """What tokenizer.json needs from a SentencePiece ModelProto (proto2 defaults applied)."""

    pieces: list[_Piece]
    model_type: int  # 1 unigram, 2 BPE
    byte_fallback: bool
    unk_id: int
    bos_id: int
    eos_id: int
    normalizer: str
    add_dummy_prefix: bool
    remove_extra_whitespaces: bool
    escape_whitespaces: bool
    treat_whitespace_as_suffix: bool


def _fields(buf: bytes, source: str):
    """(field number, wire type, value) of one protobuf message; value is int, bytes or float."""
    i, n = 0, len(buf)

    def varint() -> int:
        nonlocal i
        shift = out = 0
        while True:
            if i >= n or shift > 63:
                raise InputError(f"{source}: not a SentencePiece model (a damaged varint)")
            b = buf[i]
            i += 1
            out |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return out

    while i < n:
        key = varint()
        num, wire = key >> 3, key & 7
        if wire == 0:
            yield num, wire, varint()
        elif wire == 2:
            size = varint()
            if i + size > n:
                raise InputError(f"{source}: not a SentencePiece model (truncated)")
            yield num, wire, buf[i : i + size]
            i += size
        elif wire == 5:
            if i + 4 > n:
                raise InputError(f"{source}: not a SentencePiece model (truncated)")
            yield num, wire, struct.unpack("<f", buf[i : i + 4])[0]
            i += 4
        elif wire == 1:
            if i + 8 > n:
                raise InputError(f"{source}: not a SentencePiece model (truncated)")
            yield num, wire, buf[i : i + 8]
            i += 8
        else:
            raise InputError(f"{source}: not a SentencePiece model (wire type {wire})")


def _int32(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _parse(data: bytes, source: str) -> _Model:
    """Read a SentencePiece model with a small protobuf wire-format reader.

    Why not sentencepiece_model_pb2: it needs protobuf, which LAVIS's environment need not have,
    and its generated code has broken across protobuf majors. tests/test_tokenizer.py holds this
    reader equal to protobuf's on a trained model.
    """
    pieces: list[_Piece] = []
    trainer: dict[int, object] = {}
    norm: dict[int, object] = {}
    for num, wire, val in _fields(data, source):
        if num == 1 and wire == 2:
            p = {k: v for k, _, v in _fields(val, source)}
            text = p.get(1, b"")
            try:
                piece = text.decode("utf-8") if isinstance(text, bytes) else ""
            except UnicodeDecodeError as exc:
                raise InputError(f"{source}: not a SentencePiece model ({exc})") from exc
            score = p.get(2, 0.0)
            pieces.append(
                _Piece(piece, score if isinstance(score, float) else 0.0, _num(p, 3, _NORMAL))
            )
        elif num == 2 and wire == 2:
            trainer = {k: v for k, _, v in _fields(val, source)}
        elif num == 3 and wire == 2:
            norm = {k: v for k, _, v in _fields(val, source)}
    if not pieces:
        raise InputError(f"{source}: not a SentencePiece model (no pieces)")
    name = norm.get(1, b"")
    return _Model(
        pieces=pieces,
        model_type=_num(trainer, 3, 1),
        byte_fallback=bool(_num(trainer, 35, 0)),
        unk_id=_int32(_num(trainer, 40, 0)),
        bos_id=_int32(_num(trainer, 41, 1)),
        eos_id=_int32(_num(trainer, 42, 2)),
        normalizer=name.decode("utf-8", "replace") if isinstance(name, bytes) else "",
        add_dummy_prefix=bool(_num(norm, 3, 1)),
        remove_extra_whitespaces=bool(_num(norm, 4, 1)),
        escape_whitespaces=bool(_num(norm, 5, 1)),
        treat_whitespace_as_suffix=bool(_num(trainer, 24, 0)),
    )


def _num(fields: dict, key: int, default: int) -> int:
    """An integer field (proto2 default when absent); any other wire type counts as absent."""
    v = fields.get(key, default)
    return v if isinstance(v, int) else default


def read_spm(path: Path) -> SpmInfo:
    """Open a SentencePiece model and return what the converter needs from it."""
    import sentencepiece as spm

    if not path.is_file():
        raise InputError(f"{path}: tokenizer.model not found")
    data = path.read_bytes()
    _parse(data, str(path))
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


def _merges(pieces: list[_Piece]) -> list[str]:
    """BPE merges "a b", best first: every split of a normal piece into two normal pieces,
    ranked by the score of the piece it makes (ties by piece id, then by the parts' ids)."""
    vocab = {p.piece: i for i, p in enumerate(pieces)}
    mergeable = {p.piece for p in pieces if p.type == _NORMAL}
    ranked = []
    for i, p in enumerate(pieces):
        if p.type != _NORMAL or vocab[p.piece] != i:
            continue
        for k in range(1, len(p.piece)):
            a, b = p.piece[:k], p.piece[k:]
            if a in mergeable and b in mergeable:
                ranked.append((-p.score, i, vocab[a], vocab[b], a, b))
    ranked.sort()
    return [f"{a} {b}" for *_, a, b in ranked]


def tokenizer_json_doc(data: bytes, source: str = "tokenizer.model") -> dict:
    """`tokenizer.json` (tokenizers' format, as a dict) that encodes exactly as the model does.

    Keys in the order `tokenizers` writes them. Merges as "a b" strings (no piece holds a space;
    every tokenizers release reads this form) and no `ignore_merges` key (tokenizers 0.19+
    defaults it to False, SentencePiece's rule; 0.13 does not know it).
    """
    m = _parse(data, source)
    if m.model_type != 2:
        raise InputError(f"{source}: a LLaMA tokenizer is BPE; this one is not")
    if (
        m.normalizer not in ("identity", "")
        or m.remove_extra_whitespaces
        or not m.escape_whitespaces
        or m.treat_whitespace_as_suffix
    ):
        raise InputError(
            f"{source}: normalizer {m.normalizer!r} (remove_extra_whitespaces="
            f"{m.remove_extra_whitespaces}) is not LLaMA's identity rule; cannot reproduce it "
            "in tokenizer.json"
        )
    for role, i in (("unk", m.unk_id), ("bos", m.bos_id)):
        if not 0 <= i < len(m.pieces):
            raise InputError(f"{source}: no {role} piece (id {i}); LLaMA's has one")
    unk, bos = m.pieces[m.unk_id].piece, m.pieces[m.bos_id].piece
    vocab: dict[str, int] = {}
    for i, p in enumerate(m.pieces):
        vocab.setdefault(p.piece, i)
    flags = {"single_word": False, "lstrip": False, "rstrip": False, "normalized": False}
    added = [
        {"id": i, "content": p.piece, **flags, "special": True}
        for i, p in enumerate(m.pieces)
        if p.type in _SPECIAL
    ]
    normalizers = [{"type": "Replace", "pattern": {"String": " "}, "content": SPIECE_UNDERLINE}]
    decoders: list[dict] = [
        {"type": "Replace", "pattern": {"String": SPIECE_UNDERLINE}, "content": " "},
        {"type": "ByteFallback"},
        {"type": "Fuse"},
    ]
    if m.add_dummy_prefix:
        normalizers.insert(0, {"type": "Prepend", "prepend": SPIECE_UNDERLINE})
        decoders.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})

    def seq(kind: str, *more: dict) -> list[dict]:
        return [{kind: {"id": x, "type_id": t}} for x, t in more]

    bos_step = {"SpecialToken": {"id": bos, "type_id": 0}}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": normalizers},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [bos_step, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [
                bos_step,
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": bos, "type_id": 1}},
                {"Sequence": {"id": "B", "type_id": 1}},
            ],
            "special_tokens": {bos: {"id": bos, "ids": [m.bos_id], "tokens": [bos]}},
        },
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": unk,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": True,
            "byte_fallback": m.byte_fallback,
            "vocab": vocab,
            "merges": _merges(m.pieces),
        },
    }


def build_tokenizer_json(data: bytes, source: str = "tokenizer.model") -> str:
    """`tokenizer.json`'s text: the same bytes whichever tokenizers/transformers is installed."""
    return json.dumps(tokenizer_json_doc(data, source), indent=2, ensure_ascii=False)


def tokenizer_config(info: SpmInfo, max_length: int) -> dict:
    """`tokenizer_config.json` for a LLaMA folder (LLaMA's special tokens, no pad)."""
    return {
        "tokenizer_class": TOKENIZER_CLASS,
        "bos_token": info.bos,
        "eos_token": info.eos,
        "unk_token": info.unk,
        "pad_token": None,
        "add_bos_token": True,
        "add_eos_token": False,
        # legacy=True is SentencePiece's own behaviour; False changes text after special tokens.
        "legacy": True,
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_length,
        "sp_model_kwargs": {},
        "padding_side": "left",
    }


def tokenizer_files(tokenizer_model: Path, max_length: int) -> dict[str, bytes]:
    """All tokenizer files for an HF LLaMA folder, as `{filename: bytes}`."""
    info = read_spm(tokenizer_model)
    data = tokenizer_model.read_bytes()
    special = {"bos_token": info.bos, "eos_token": info.eos, "unk_token": info.unk}

    def dump(obj: dict) -> bytes:
        return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode()

    return {
        "tokenizer.model": data,
        "tokenizer.json": build_tokenizer_json(data, str(tokenizer_model)).encode(),
        "tokenizer_config.json": dump(tokenizer_config(info, max_length)),
        "special_tokens_map.json": dump(special),
    }
