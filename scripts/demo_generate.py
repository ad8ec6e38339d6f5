"""Load a converted folder with transformers and generate a few tokens (used by `make demo`)."""

import sys
from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaForCausalLM

folder = Path(sys.argv[1])
tok = AutoTokenizer.from_pretrained(folder)
model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float16)
ids = tok("The image shows a dog", return_tensors="pt").input_ids
out = model.generate(ids, max_new_tokens=8, do_sample=False)
print(
    f"loaded {folder} ({sum(p.numel() for p in model.parameters()):,} parameters, "
    f"{next(model.parameters()).dtype}); greedy continuation of 'The image shows a dog':"
)
new = out[0, ids.shape[1] :]
print(f"   ids {new.tolist()} -> {tok.decode(new)!r}")
print("   (the example's weights are random, so the text is noise: what counts is that it runs)")
print(f"result: {folder.resolve()}")
