"""Our tokenizer files give SentencePiece's own ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sentencepiece as spm

from tests.conftest import run_peer
from tests.strings import STRINGS
from weightprep.errors import InputError
from weightprep.tokenizer import build_tokenizer_json, read_spm


def expected(folder: Path) -> list[list[int]]:
    sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    return [[sp.bos_id(), *sp.encode(s)] for s in STRINGS]


def test_enough_strings_and_byte_fallback_exercised(converted) -> None:
    out = converted("7B")
    sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
    assert len(STRINGS) >= 50
    ids = {i for s in STRINGS for i in sp.encode(s)}
    assert any(sp.is_byte(i) for i in ids), "no string needed byte fallback"


def test_tokenizer_json_matches_sentencepiece(converted) -> None:
    from tokenizers import Tokenizer

    out = converted("7B")
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert [tok.encode(s).ids for s in STRINGS] == expected(out)
    sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
    for s, ids in zip(STRINGS, expected(out), strict=True):
        assert tok.decode(ids, skip_special_tokens=True) == sp.decode(ids[1:]), repr(s)


def test_fast_loader_in_current_transformers(converted) -> None:
    from transformers import PreTrainedTokenizerFast

    out = converted("7B")
    tok = PreTrainedTokenizerFast.from_pretrained(out)
    assert [tok(s)["input_ids"] for s in STRINGS] == expected(out)


def test_auto_tokenizer_in_current_transformers(converted) -> None:
    # transformers 5.x's LlamaTokenizer rebuilds the pipeline with its own Metaspace step, which
    # does not add SentencePiece's dummy prefix to text that already starts with a space (or a
    # literal "▁")
    # (docs/convert.md). Every other string must match.
    from transformers import AutoTokenizer

    out = converted("7B")
    tok = AutoTokenizer.from_pretrained(out)
    pairs = [
        (s, e)
        for s, e in zip(STRINGS, expected(out), strict=True)
        if not (s[:1].isspace() or s.startswith("▁"))
    ]
    assert len(pairs) >= 45
    assert [tok(s)["input_ids"] for s, _ in pairs] == [e for _, e in pairs]


@pytest.mark.peer
def test_slow_and_fast_in_lavis_transformers(converted) -> None:
    """transformers 4.33.2 (LAVIS's pin): LlamaTokenizer(use_fast=False) and the fast one."""
    out = converted("7B")
    code = (
        "import json, sys\n"
        "from transformers import LlamaTokenizer, LlamaTokenizerFast\n"
        "strings = json.load(open(sys.argv[2]))\n"
        "slow = LlamaTokenizer.from_pretrained(sys.argv[1], use_fast=False)\n"
        "fast = LlamaTokenizerFast.from_pretrained(sys.argv[1])\n"
        "print(json.dumps({'slow': [slow(s)['input_ids'] for s in strings],"
        " 'fast': [fast(s)['input_ids'] for s in strings]}))\n"
    )
    strings_file = out.parent / "strings.json"
    strings_file.write_text(json.dumps(STRINGS))
    got = json.loads(
        run_peer("transformers-4.33.2", code, str(out), str(strings_file)).splitlines()[-1]
    )
    assert got["slow"] == expected(out)
    assert got["fast"] == expected(out)


def test_not_a_sentencepiece_model(tmp_path: Path) -> None:
    bad = tmp_path / "tokenizer.model"
    bad.write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(InputError, match="tokenizer.model"):
        read_spm(bad)
    with pytest.raises(InputError):
        build_tokenizer_json(bad.read_bytes(), str(bad))
