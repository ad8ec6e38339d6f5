"""Load a prepared folder with transformers and continue a prompt greedily (used by `make demo`).

The example LLaMA was trained for a few seconds on the Gettysburg Address alone (weightprep's
language check passage): the first words of the address are the one prompt it can continue.
"""

import sys
from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaForCausalLM

folder = Path(sys.argv[1])
prompt = "Four score and seven years ago"
tok = AutoTokenizer.from_pretrained(folder)
model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32)
ids = tok(prompt, return_tensors="pt").input_ids
out = model.generate(ids, max_new_tokens=24, do_sample=False)
print(
    f"loaded {folder} ({sum(p.numel() for p in model.parameters()):,} parameters); "
    f"greedy continuation of {prompt!r}:"
)
new = out[0, ids.shape[1] :]
print(f"   -> {tok.decode(new, skip_special_tokens=True)!r}")
print(
    "   (172k parameters trained for seconds on that passage alone: the continuation echoes it "
    "roughly; its perplexity on the passage is what the language check measured)"
)
print(f"result: {folder.resolve()}")
