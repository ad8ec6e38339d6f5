"""Run by tests/test_tokenizer.py in a subprocess, under the main venv or a peer's python.

    python tokenizer_loaders.py FOLDER STRINGS.json  -> one JSON line on stdout

For each loader users call on FOLDER: the ids of every string (add_special_tokens on), the decoded
text of those ids without special tokens, and LAVIS's set-up from blip2_vicuna_instruct.py
(`[PAD]` added; `</s>` as BOS, EOS and UNK) applied to that loader's tokenizer. No assertions
here: the test compares. Written for transformers 4.33 and 5.x alike.
"""

import json
import sys
import warnings

warnings.filterwarnings("ignore")

# LAVIS's calls: a batch of prompts (input) and of answers with EOS appended (output)
PROMPTS = [
    "Write a short description for the image.",
    "What is unusual about this image?",
    "Beschreibe das Bild auf Deutsch.",
]
OUTPUTS = ["a dog on the street", "日本語の説明", "two cats 42"]


def lavis(tok, prompts: list[str] = PROMPTS, outputs: list[str] = OUTPUTS) -> dict:
    tok.add_special_tokens({"pad_token": "[PAD]"})
    tok.add_special_tokens({"bos_token": "</s>"})
    tok.add_special_tokens({"eos_token": "</s>"})
    tok.add_special_tokens({"unk_token": "</s>"})
    tok.padding_side = "right"
    tok.truncation_side = "left"
    inp = tok(prompts, padding="longest", truncation=True, max_length=12)
    tok.truncation_side = "right"
    out = tok(
        [t + tok.eos_token for t in outputs], padding="longest", truncation=True, max_length=8
    )
    tok.padding_side = "left"
    gen = tok(prompts, padding="longest")
    return {
        "len": len(tok),
        "ids": {r: getattr(tok, f"{r}_token_id") for r in ("bos", "eos", "unk", "pad")},
        "input": inp["input_ids"],
        "input_mask": inp["attention_mask"],
        "output": out["input_ids"],
        "generate_input": gen["input_ids"],
        "decoded": tok.batch_decode(inp["input_ids"], skip_special_tokens=True),
    }


def main() -> None:
    folder, strings_file = sys.argv[1], sys.argv[2]
    with open(strings_file, encoding="utf-8") as fh:
        strings = json.load(fh)
    import transformers
    from tokenizers import Tokenizer

    new = int(transformers.__version__.split(".")[0]) >= 5
    T = transformers
    if new:
        loaders = {
            "AutoTokenizer": lambda: T.AutoTokenizer.from_pretrained(folder),
            "LlamaTokenizer": lambda: T.LlamaTokenizer.from_pretrained(folder),
            "PreTrainedTokenizerFast": lambda: T.PreTrainedTokenizerFast.from_pretrained(folder),
        }
    else:
        loaders = {
            "LlamaTokenizer(use_fast=False)": lambda: T.LlamaTokenizer.from_pretrained(
                folder, use_fast=False, truncation_side="left"
            ),
            "LlamaTokenizerFast": lambda: T.LlamaTokenizerFast.from_pretrained(folder),
            "AutoTokenizer": lambda: T.AutoTokenizer.from_pretrained(folder),
        }
    res: dict = {"version": transformers.__version__, "loaders": {}}
    for name, load in loaders.items():
        tok = load()
        ids = [tok(s)["input_ids"] for s in strings]
        res["loaders"][name] = {
            "class": type(tok).__name__,
            "ids": ids,
            "decoded": [tok.decode(i, skip_special_tokens=True) for i in ids],
            "lavis": lavis(load()),
        }
    tok = Tokenizer.from_file(f"{folder}/tokenizer.json")
    ids = [tok.encode(s).ids for s in strings]
    res["loaders"]["tokenizers " + __import__("tokenizers").__version__] = {
        "class": "Tokenizer",
        "ids": ids,
        "decoded": [tok.decode(i, skip_special_tokens=True) for i in ids],
        "lavis": None,
    }
    print(json.dumps(res, ensure_ascii=False))


if __name__ == "__main__":
    main()
