"""Where to publish: `hf://NAMESPACE/NAME`, `gdrive://FOLDER_ID[/SUB/PATH]`, or a folder."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from weightprep.errors import InputError

REPO_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


@dataclass(frozen=True)
class Dest:
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


def parse_dest(text: str) -> Dest:
    if text.startswith("hf://"):
        parts = text.removeprefix("hf://").strip("/").split("/")
        if len(parts) != 2 or not all(REPO_PART.match(p) for p in parts):
            raise InputError(f"{text}: expected hf://NAMESPACE/NAME")
        return Dest("hf", "/".join(parts))
    if text.startswith("gdrive://"):
        parts = [p for p in text.removeprefix("gdrive://").split("/") if p]
        if not parts:
            raise InputError(f"{text}: expected gdrive://FOLDER_ID[/SUB/PATH] (root = My Drive)")
        for p in parts[1:]:
            if p in (".", ".."):
                raise InputError(f"{text}: '{p}' is not a folder name")
        return Dest("gdrive", parts[0], tuple(parts[1:]))
    if "://" in text:
        raise InputError(f"{text}: unknown destination; use hf://, gdrive:// or a folder path")
    return Dest("folder", text)
