"""The checks a smoke test makes. Pure functions: values in, a `Check` out.

Each one catches a way prepared weights go wrong without crashing:
- non-finite logits: a corrupt or mis-converted tensor (or fp16 overflow) poisons everything;
- an empty answer: the model ends at once (wrong special tokens, a broken LM head);
- degenerate repetition: one token or phrase repeated to the end, what a wrong delta or a
  permuted q/k gives;
- the image must matter: the answer's logits must change when the image is replaced by a blank
  one. transformers 5.x scatters image features into the prompt's `<image>` placeholder tokens
  and, when a prompt has none, silently answers from text alone;
- expected keywords, for real weights on a known image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

# Logit differences at or below this (after casting to float32) count as "the image was ignored".
# An ignored image gives bit-identical logits; a used one moves them by far more.
IMAGE_ATOL = 1e-3


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def finite_logits(logits: torch.Tensor) -> Check:
    bad = int((~torch.isfinite(logits)).sum())
    if bad:
        return Check("finite logits", False, f"{bad} of {logits.numel()} logits are NaN or inf")
    return Check("finite logits", True, f"{logits.numel()} logits finite")


def non_empty(text: str, n_tokens: int) -> Check:
    if not text.strip():
        return Check("non-empty answer", False, f"empty answer ({n_tokens} tokens generated)")
    return Check("non-empty answer", True, f"{len(text.strip())} characters")


def longest_repeat(ids: Sequence[int], max_n: int = 4) -> tuple[int, int, int]:
    """(tokens covered, n, repeats) of the longest run of one n-gram repeated back to back."""
    best = (0, 0, 0)
    ids = list(ids)
    for n in range(1, max_n + 1):
        for start in range(len(ids) - n + 1):
            gram = ids[start : start + n]
            reps = 1
            while ids[start + reps * n : start + (reps + 1) * n] == gram:
                reps += 1
            if reps > 1 and reps * n > best[0]:
                best = (reps * n, n, reps)
    return best


def not_degenerate(ids: Sequence[int], min_repeats: int = 4) -> Check:
    """Fails when one 1- to 4-gram repeated >= `min_repeats` times back to back covers at least
    half of the answer (and at least 8 tokens)."""
    covered, n, reps = longest_repeat(ids)
    if reps >= min_repeats and covered >= max(8, len(ids) / 2):
        return Check(
            "not repetitive",
            False,
            f"degenerate: a {n}-token phrase repeated {reps} times covers {covered} of "
            f"{len(ids)} tokens",
        )
    return Check("not repetitive", True, f"longest repeat covers {covered} of {len(ids)} tokens")


def image_matters(with_image: torch.Tensor, blank: torch.Tensor, atol: float = IMAGE_ATOL) -> Check:
    diff = (with_image.float() - blank.float()).abs().max().item()
    if not diff > atol:  # also catches NaN
        return Check(
            "image matters",
            False,
            f"image ignored: logits with a blank image differ by {diff:.3g} (<= {atol}); the "
            "prompt probably lacks the model's image placeholder tokens",
        )
    return Check("image matters", True, f"max |Δlogit| {diff:.3g} against a blank image")


def expected_words(answers: Sequence[str], words: Sequence[str]) -> Check:
    text = "\n".join(answers).casefold()
    missing = [w for w in words if w.casefold() not in text]
    if missing:
        return Check("expected words", False, "missing from every answer: " + ", ".join(missing))
    return Check("expected words", True, "found: " + ", ".join(words))
