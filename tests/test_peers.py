"""Against the real peers, each in its own virtualenv (built by `make peers`):
transformers 4.47.1's convert_llama_weights_to_hf (the last one shipped), and transformers 4.33.2
(LAVIS's pin), which must load and run what we write."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import SIZES, run_peer
from tests.test_convert import load_hf

pytestmark = pytest.mark.peer

# size folder -> the reference's own flags for it
REF_ARGS = {
    "7B": ["--model_size", "7B"],
    "13B": ["--model_size", "13B"],
    "30B": ["--model_size", "30B"],
    "65B": ["--model_size", "65B"],
    "llama-2-70b": ["--model_size", "70B", "--llama_version", "2"],
}


@pytest.fixture(scope="session")
def reference(meta_root: Path, tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("reference")

    def run(size: str) -> Path:
        out = base / f"{size}-out"
        if out.exists():
            return out
        # The reference reads tokenizer.model from the weights folder itself, so give it one.
        inp = base / size
        shutil.copytree(meta_root / size, inp)
        shutil.copy(meta_root / "tokenizer.model", inp)
        code = (
            "import sys, runpy\n"
            "sys.argv = ['convert'] + sys.argv[1:]\n"
            "runpy.run_module('transformers.models.llama.convert_llama_weights_to_hf', run_name='__main__')\n"
        )
        run_peer(
            "transformers-4.47.1",
            code,
            "--input_dir",
            str(inp),
            "--output_dir",
            str(out),
            *REF_ARGS[size],
        )
        return out

    return run


@pytest.mark.parametrize("size", SIZES)
def test_bfloat16_bit_identical_to_reference(size: str, reference, converted) -> None:
    ref, ours = reference(size), converted(size, "bfloat16")
    ref_t = {}
    for f in ref.glob("*.safetensors"):
        from safetensors import safe_open

        with safe_open(str(f), framework="pt") as h:
            ref_t.update({k: h.get_tensor(k) for k in h.keys()})
    our_t = load_hf(ours)
    assert our_t.keys() == ref_t.keys()
    for k in ref_t:
        assert our_t[k].dtype == ref_t[k].dtype == torch.bfloat16, k
        assert torch.equal(our_t[k].view(torch.int16), ref_t[k].view(torch.int16)), k
    a = json.loads((ours / "config.json").read_text())
    b = json.loads((ref / "config.json").read_text())
    shared = (a.keys() & b.keys()) - {"transformers_version"}
    assert len(shared) >= 20
    assert {k: a[k] for k in shared} == {k: b[k] for k in shared}


@pytest.mark.parametrize("size", ["7B", "llama-2-70b"])
def test_loads_and_generates_in_lavis_transformers(size: str, converted) -> None:
    """transformers 4.33.2 as LAVIS uses it: LlamaTokenizer(use_fast=False) + LlamaForCausalLM."""
    from transformers import LlamaForCausalLM

    out = converted(size)
    code = (
        "import json, sys, torch\n"
        "from transformers import LlamaForCausalLM, LlamaTokenizer\n"
        "tok = LlamaTokenizer.from_pretrained(sys.argv[1], use_fast=False)\n"
        "m = LlamaForCausalLM.from_pretrained(sys.argv[1], torch_dtype=torch.float32).eval()\n"
        "ids = tok('The image shows a dog', return_tensors='pt').input_ids\n"
        "with torch.no_grad():\n"
        "    logits = m(ids).logits[0]\n"
        "gen = m.generate(ids, max_new_tokens=6, min_new_tokens=6, do_sample=False)\n"
        "print(json.dumps({'ids': ids[0].tolist(), 'logits': logits.tolist(), 'gen': gen[0].tolist(),"
        " 'dtype': str(LlamaForCausalLM.from_pretrained(sys.argv[1], torch_dtype='auto').dtype)}))\n"
    )
    got = json.loads(run_peer("transformers-4.33.2", code, str(out)).splitlines()[-1])
    assert len(got["gen"]) == len(got["ids"]) + 6
    assert got["dtype"] == "torch.float16"
    # Same logits as current transformers on the same files.
    model = LlamaForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    with torch.no_grad():
        now = model(torch.tensor([got["ids"]])).logits[0]
    torch.testing.assert_close(now, torch.tensor(got["logits"]), atol=1e-4, rtol=1e-4)
