"""Read a small JSON object a user gave us (a config.json, a params.json), or say why not."""

from __future__ import annotations

import json
from pathlib import Path

from weightprep.errors import InputError

MAX_JSON_BYTES = 16 * 2**20  # configs are a few KB; a tokenizer.json is read elsewhere


def read_object(path: Path, max_bytes: int = MAX_JSON_BYTES) -> dict:
    """The JSON object in `path`; InputError naming the file when it is too large, not UTF-8,
    not JSON, or not an object."""
    size = path.stat().st_size
    if size > max_bytes:
        raise InputError(f"{path}: {size} bytes is too large for a {path.name}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InputError(f"{path}: not valid JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a JSON object, got a {type(doc).__name__}")
    return doc
