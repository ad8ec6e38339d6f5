"""Where weights live: `hf://NAMESPACE/NAME`, `gdrive://FOLDER_ID[/SUB/PATH]`, or a folder."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from weightprep.errors import InputError

REPO_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
SCHEMES = ("hf://", "gdrive://")


@dataclass(frozen=True)
class Location:
    kind: str  # "hf" | "gdrive" | "folder"
    target: str  # repo id, Drive folder id, or the folder path
    subpath: tuple[str, ...] = ()  # Drive folders under the id, created as needed

    def __str__(self) -> str:
        if self.kind == "hf":
            return f"hf://{self.target}"
        if self.kind == "gdrive":
            return "gdrive://" + "/".join((self.target, *self.subpath))
        return self.target

    @property
    def path(self) -> Path:
        return Path(self.target)

    @property
    def remote(self) -> bool:
        return self.kind != "folder"


def is_remote(text: str) -> bool:
    """`text` names a remote location (hf:// or gdrive://), not a folder."""
    return text.startswith(SCHEMES)


def looks_like_hub_id(text: str) -> bool:
    """NAMESPACE/NAME as the Hub allows repo ids: letters, digits, '-', '_', '.', one slash,
    neither part starting with '.' or '-', no '--' or '..', not ending in '.git'."""
    parts = text.split("/")
    return (
        len(parts) == 2
        and all(REPO_PART.match(p) for p in parts)
        and "--" not in text
        and ".." not in text
        and not text.endswith(".git")
    )


def parse_location(text: str) -> Location:
    """`parse_location("hf://me/vicuna-7b")` -> Location("hf", "me/vicuna-7b"); a text without
    a scheme is a folder; an unknown scheme or a malformed id is an InputError."""
    if text.startswith("hf://"):
        parts = text.removeprefix("hf://").strip("/").split("/")
        if len(parts) != 2 or not all(REPO_PART.match(p) for p in parts):
            raise InputError(f"{text}: expected hf://NAMESPACE/NAME")
        return Location("hf", "/".join(parts))
    if text.startswith("gdrive://"):
        parts = [p for p in text.removeprefix("gdrive://").split("/") if p]
        if not parts:
            raise InputError(f"{text}: expected gdrive://FOLDER_ID[/SUB/PATH] (root = My Drive)")
        for p in parts[1:]:
            if p in (".", ".."):
                raise InputError(f"{text}: '{p}' is not a folder name")
        return Location("gdrive", parts[0], tuple(parts[1:]))
    if "://" in text:
        raise InputError(f"{text}: unknown location; use hf://, gdrive:// or a folder path")
    return Location("folder", text)
