"""One remote file as a backend lists it, and the one comparison of expected with listed.

Every place that asks "is this remote (or local, or downloaded) file the one we expect?" -
publish's skip-or-send plan and its check after sending, fetch's check of what arrived,
`verify hf://|gdrive://` - calls `mismatch`, so the rule is the same everywhere: the size, then
the strongest digest both sides have (sha256, then the Hub's git blob id, then md5).
"""

from __future__ import annotations

from dataclasses import dataclass

DIGESTS = (("sha256", "sha256"), ("blob_id", "git blob id"), ("md5", "md5"))


@dataclass(frozen=True)
class Listed:
    size: int | None
    sha256: str | None = None
    md5: str | None = None
    blob_id: str | None = None  # the Hub's git blob id (every file; the only one of small ones)
    id: str | None = None  # Drive's file id


def mismatch(want: Listed, got: Listed | None) -> str | None:
    """Why `got` is not `want`, in a few words, or None when it is.

    Example: `mismatch(Listed(4, sha256="ab.."), Listed(5, sha256="ab.."))` -> "size 5,
    expected 4"; with no digest in common the answer is "no checksum in common"."""
    if got is None:
        return "missing"
    if want.size is not None and got.size is not None and got.size != want.size:
        return f"size {got.size}, expected {want.size}"
    for attr, label in DIGESTS:
        a, b = getattr(want, attr), getattr(got, attr)
        if a and b:
            return None if a == b else f"{label} {b}, expected {a}"
    return "no checksum in common"
