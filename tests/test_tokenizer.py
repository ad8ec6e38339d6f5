"""Our tokenizer files give SentencePiece's own ids in every loader users call, old and new.

One SentencePiece model is trained per session with LLaMA's trainer settings (bpe, byte fallback,
split digits, identity normalizer, dummy prefix, whitespace-only pieces) on the example corpus
plus indented code, so that "▁▁▁▁"-style pieces exist as in LLaMA's. Each loader runs in a
subprocess (tests/tokenizer_loaders.py): the main venv's transformers 5.x and tokenizers, and
transformers 4.33.2 with tokenizers 0.13 (LAVIS's pin) from the peer virtualenv.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sentencepiece as spm

from tests.conftest import run_peer
from tests.strings import STRINGS
from weightprep.errors import InputError
from weightprep.example import train_tokenizer
from weightprep.tokenizer import (
    TOKENIZER_CLASS,
    _parse,
    build_tokenizer_json,
    read_spm,
    tokenizer_files,
    tokenizer_json_doc,
)

LOADERS_SCRIPT = Path(__file__).with_name("tokenizer_loaders.py")
REPO = Path(__file__).resolve().parent.parent

CODE = [
    "def caption(image, prompt):",
    "    out = model.generate(image, prompt)",
    "    if out:",
    "        return out[0].strip()",
    "    return ''",
    "class Loader:",
    "    def __init__(self, path):",
    "        self.path = path  # where the weights are",
    "\tindented with a tab",
    "\t\ttwo tabs",
    "for i in range(10):\n    print(i)\n",
    '{\n  "bos_token_id": 1,\n  "eos_token_id": 2\n}',
]
# the corpus: tests/strings.py (spaces, unicode, digits, byte fallback, prose) plus these
CORPUS = STRINGS + [
    *CODE,
    "    four leading spaces",
    "        eight leading spaces",
    " one leading space then  two  inside",
    "trailing spaces   ",
    "trailing tab\t",
    "many     inner      spaces",
    "\n\nblank lines above",
    "Die Katze sitzt auf dem Tisch und schläft.",
    "Ärger über Öl und Übermut: 3 Äpfel, 12 Birnen.",
    "  Eingerückter deutscher Satz.",
    "猫がテーブルの上で寝ています。",
    "  インデントされた日本語の文。",
    "東京は2023年に1400万人が住んでいた。",
    "ﾊﾝｶｸｶﾀｶﾅ and 全角ＡＢＣ１２３",
    "digits 1234567890 and 007 and 3.5e-10",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math letters need byte fallback",
    "ꙮ ᚠᛁ 𓀀",
]
TRAIN_EXTRA = tuple(CODE * 20 + [" ".join(["    x = 1"] * 3)] * 20)


def _expected(sp: spm.SentencePieceProcessor) -> list[list[int]]:
    return [[sp.bos_id(), *sp.encode(s)] for s in CORPUS]


def _leading(s: str) -> bool:
    """Text whose first character is a space or a literal "▁" (transformers 5.x LlamaTokenizer)."""
    return s.startswith((" ", "▁"))


@pytest.fixture(scope="session")
def tok_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the tokenizer files weightprep writes, for a freshly trained model."""
    root = tmp_path_factory.mktemp("tok")
    model = root / "trained.model"
    model.write_bytes(train_tokenizer(seed=3, vocab_size=640, extra=TRAIN_EXTRA))
    out = root / "folder"
    out.mkdir()
    for name, data in tokenizer_files(model, 2048).items():
        (out / name).write_bytes(data)
    cfg = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 640}
    (out / "config.json").write_text(json.dumps({**cfg, "bos_token_id": 1, "eos_token_id": 2}))
    (root / "corpus.json").write_text(json.dumps(CORPUS, ensure_ascii=False))
    return out


@pytest.fixture(scope="session")
def sp(tok_folder: Path) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=str(tok_folder / "tokenizer.model"))


def _run_loaders(python: str | None, folder: Path) -> dict:
    corpus = str(folder.parent / "corpus.json")
    if python is None:
        out = run_peer("transformers-4.33.2", LOADERS_SCRIPT.read_text(), str(folder), corpus)
    else:
        res = subprocess.run(
            [python, str(LOADERS_SCRIPT), str(folder), corpus],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert res.returncode == 0, res.stderr[-4000:]
        out = res.stdout
    return json.loads(out.splitlines()[-1])


@pytest.fixture(scope="session")
def new(tok_folder: Path) -> dict:
    """Every loader of the main venv's transformers 5.x and tokenizers."""
    return _run_loaders(sys.executable, tok_folder)


@pytest.fixture(scope="session")
def old(tok_folder: Path) -> dict:
    """Every loader of transformers 4.33.2 and tokenizers 0.13 (LAVIS's pin), in the peer."""
    return _run_loaders(None, tok_folder)


# --- the model and tokenizer.json ---------------------------------------------------------------


def test_corpus_exercises_what_it_claims(sp) -> None:
    ids = [i for s in CORPUS for i in sp.encode(s)]
    assert any(sp.is_byte(i) for i in ids), "no line needed byte fallback"
    pieces = {sp.id_to_piece(i) for i in ids}
    assert {"▁▁▁", "▁▁▁▁"} & pieces, "no whitespace-only piece was used"
    assert sum(_leading(s) for s in CORPUS) >= 8
    assert any("\t" in s for s in CORPUS) and any("\n" in s for s in CORPUS)
    assert len(CORPUS) >= 80


def test_reader_equals_protobuf(tok_folder) -> None:
    from sentencepiece import sentencepiece_model_pb2 as pb

    data = (tok_folder / "tokenizer.model").read_bytes()
    proto = pb.ModelProto()
    proto.ParseFromString(data)
    m = _parse(data, "tokenizer.model")
    assert [(p.piece, p.score, p.type) for p in m.pieces] == [
        (p.piece, p.score, p.type) for p in proto.pieces
    ]
    t, n = proto.trainer_spec, proto.normalizer_spec
    assert (m.model_type, m.byte_fallback, m.unk_id, m.bos_id, m.eos_id) == (
        t.model_type,
        t.byte_fallback,
        t.unk_id,
        t.bos_id,
        t.eos_id,
    )
    assert (m.normalizer, m.add_dummy_prefix, m.remove_extra_whitespaces) == (
        n.name,
        n.add_dummy_prefix,
        n.remove_extra_whitespaces,
    )


def test_tokenizers_reads_every_field_as_written(tok_folder) -> None:
    """Round trip through the tokenizers library: nothing we write is dropped or re-read."""
    from tokenizers import Tokenizer

    ours = tokenizer_json_doc((tok_folder / "tokenizer.model").read_bytes())
    again = json.loads(Tokenizer.from_str(json.dumps(ours)).to_str())
    assert again["model"].pop("ignore_merges") is False
    again["model"]["merges"] = [" ".join(m) for m in again["model"]["merges"]]
    assert again == ours
    assert json.loads((tok_folder / "tokenizer.json").read_text()) == ours


@pytest.mark.peer
def test_same_tokenizer_json_beside_tokenizers_013(tok_folder) -> None:
    """LAVIS's environment (tokenizers 0.13, no protobuf) builds byte-identical tokenizer.json."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import tokenizers\n"
        "from weightprep.tokenizer import build_tokenizer_json\n"
        "data = open(sys.argv[2], 'rb').read()\n"
        "sys.stdout.write(tokenizers.__version__ + '\\n' + build_tokenizer_json(data))\n"
    )
    out = run_peer("transformers-4.33.2", code, str(REPO), str(tok_folder / "tokenizer.model"))
    version, text = out.split("\n", 1)
    assert version.startswith("0.13.")
    assert text.encode() == (tok_folder / "tokenizer.json").read_bytes()


def test_tokenizer_config_names_the_class_every_auto_tokenizer_runs_as_written(tok_folder) -> None:
    cfg = json.loads((tok_folder / "tokenizer_config.json").read_text())
    assert cfg["tokenizer_class"] == TOKENIZER_CLASS == "PreTrainedTokenizerFast"
    assert (cfg["bos_token"], cfg["eos_token"], cfg["unk_token"], cfg["pad_token"]) == (
        "<s>",
        "</s>",
        "<unk>",
        None,
    )


# --- ids in every loader ------------------------------------------------------------------------


def _check_equal(result: dict, names: list[str], sp) -> None:
    want = _expected(sp)
    for name in names:
        got = result["loaders"][name]
        bad = [CORPUS[i] for i, (g, w) in enumerate(zip(got["ids"], want, strict=True)) if g != w]
        assert not bad, f"{result['version']} {name}: {len(bad)} lines differ: {bad[:3]!r}"
        dec = got["decoded"]
        assert dec == [sp.decode(w[1:]) for w in want], f"{name}: decode differs"


def test_ids_in_current_transformers(new, sp) -> None:
    """AutoTokenizer (as PreTrainedTokenizerFast), PreTrainedTokenizerFast, tokenizers: all."""
    assert new["version"].startswith("5.")
    assert new["loaders"]["AutoTokenizer"]["class"] in ("TokenizersBackend", TOKENIZER_CLASS)
    tk = next(n for n in new["loaders"] if n.startswith("tokenizers "))
    _check_equal(new, ["AutoTokenizer", "PreTrainedTokenizerFast", tk], sp)
    # decoding round-trips: every line without a literal "▁" comes back as it was
    for s, d in zip(CORPUS, new["loaders"]["AutoTokenizer"]["decoded"], strict=True):
        assert d == s or "▁" in s, repr(s)


def test_llama_tokenizer_by_class_in_current_transformers(new, sp) -> None:
    """transformers 5.x `LlamaTokenizer.from_pretrained` (called by name) rebuilds its own
    pipeline (no normalizer; Metaspace adds "▁" only to text not already starting with one) and
    reads no file we could write to change that. The exact difference: a line starting with a
    space or "▁" is encoded as SentencePiece encodes it without that first character (a lone
    space: the piece "▁", where SentencePiece gives nothing); every other line is equal."""
    got = new["loaders"]["LlamaTokenizer"]["ids"]
    leading = 0
    for s, g, w in zip(CORPUS, got, _expected(sp), strict=True):
        if _leading(s):
            leading += 1
            rest = sp.encode(s[1:]) if s[1:] else [sp.piece_to_id("▁")]
            assert g == [sp.bos_id(), *rest], repr(s)
            assert g != w, repr(s)
        else:
            assert g == w, repr(s)
    assert leading >= 8


@pytest.mark.peer
def test_ids_in_lavis_transformers(old, sp) -> None:
    """transformers 4.33.2: LlamaTokenizer(use_fast=False) as LAVIS calls it, LlamaTokenizerFast,
    AutoTokenizer; tokenizers 0.13."""
    assert old["version"] == "4.33.2"
    tk = next(n for n in old["loaders"] if n.startswith("tokenizers "))
    assert tk.startswith("tokenizers 0.13.")
    _check_equal(old, ["LlamaTokenizerFast", "AutoTokenizer", tk], sp)
    slow = old["loaders"]["LlamaTokenizer(use_fast=False)"]
    assert slow["ids"] == _expected(sp)
    # 4.33.2's slow decode (its own code; it reads tokenizer.model only) drops the first "▁" of
    # the first piece before SentencePiece decodes the pieces: a line starting with a space loses
    # it, and a first piece of several "▁" ("    out") becomes a string that is no piece and comes
    # out literally. Every other line decodes as SentencePiece does.
    differ = 0
    for s, d, w in zip(CORPUS, slow["decoded"], _expected(sp), strict=True):
        pieces = [sp.id_to_piece(i) for i in w[1:]]
        if pieces and pieces[0].startswith("▁") and _leading(s):
            differ += 1
            assert d == sp.decode([pieces[0][1:], *pieces[1:]]) != s, repr(s)
        else:
            assert d == sp.decode(w[1:]), repr(s)
    assert differ >= 8


def _split_bos(row: list[int], pad: int) -> tuple[int, list[int]]:
    """(the first token after any left padding, the row without it)."""
    i = next(k for k, t in enumerate(row) if t != pad)
    return row[i], row[:i] + row[i + 1 :]


@pytest.mark.peer
def test_lavis_setup_old_and_new(old, new, tok_folder) -> None:
    """LAVIS's set-up (`[PAD]` added; `</s>` as BOS, EOS and UNK) on 4.33.2's slow loader is the
    reference. Every loader agrees on the vocabulary, the ids of pad/bos/eos/unk and every token
    after the first; fast loaders keep `<s>` (1) first because their post-processor is fixed at
    load (no file can change that); the smoke test's `lavis_tokenizer` re-applies it and then
    matches LAVIS exactly."""
    from transformers import AutoTokenizer

    from tests.tokenizer_loaders import lavis
    from weightprep.smoke.instructblip import lavis_tokenizer

    ref = old["loaders"]["LlamaTokenizer(use_fast=False)"]["lavis"]
    vocab = json.loads((tok_folder / "config.json").read_text())["vocab_size"]
    assert ref["ids"] == {"bos": 2, "eos": 2, "unk": 2, "pad": vocab}
    assert ref["len"] == vocab + 1
    assert {
        _split_bos(r, vocab)[0] for k in ("input", "output", "generate_input") for r in ref[k]
    } == {2}
    for result in (old, new):
        for name, got in result["loaders"].items():
            got = got["lavis"]
            if got is None or got is ref:
                continue
            assert (got["len"], got["ids"]) == (ref["len"], ref["ids"]), name
            for key in ("input", "output", "generate_input"):
                assert [_split_bos(r, vocab)[1] for r in got[key]] == [
                    _split_bos(r, vocab)[1] for r in ref[key]
                ], (name, key)
                assert {_split_bos(r, vocab)[0] for r in got[key]} == {1}, (name, key)
    smoke = lavis(lavis_tokenizer(AutoTokenizer.from_pretrained(tok_folder), "test"))
    for key in ("len", "ids", "input", "input_mask", "output", "generate_input", "decoded"):
        assert smoke[key] == ref[key], key


# --- bad input ----------------------------------------------------------------------------------


def test_not_a_sentencepiece_model(tmp_path: Path) -> None:
    bad = tmp_path / "tokenizer.model"
    bad.write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(InputError, match="tokenizer.model"):
        read_spm(bad)
    with pytest.raises(InputError, match="not a SentencePiece model"):
        build_tokenizer_json(bad.read_bytes(), str(bad))


def test_unigram_model_refused(tok_folder: Path) -> None:
    data = bytearray((tok_folder / "tokenizer.model").read_bytes())
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    proto.ParseFromString(bytes(data))
    proto.trainer_spec.model_type = 1
    with pytest.raises(InputError, match="is BPE; this one is not"):
        build_tokenizer_json(proto.SerializeToString())


def test_damaged_models_are_input_errors(tok_folder: Path) -> None:
    """Truncated or byte-flipped models: our reader says InputError (or reads a still-valid
    model), never another exception."""
    import random

    data = (tok_folder / "tokenizer.model").read_bytes()
    rng = random.Random(0)
    refused = 0
    for trial in range(200):
        b = bytearray(data[: rng.randrange(len(data))] if trial % 3 == 0 else data)
        for _ in range(rng.randint(0, 20) if trial % 3 else 0):
            b[rng.randrange(len(b))] = rng.randrange(256)
        try:
            build_tokenizer_json(bytes(b))
        except InputError:
            refused += 1
    assert refused > 100
