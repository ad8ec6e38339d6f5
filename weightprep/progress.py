"""A tiny progress protocol the core calls. Rendering lives in the CLI."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Receives progress from long-running core functions.

    `start` announces the total work (bytes) and a label; `advance` reports bytes done since the
    last call and, optionally, the item just finished.
    """

    def start(self, total_bytes: int, label: str) -> None: ...

    def advance(self, nbytes: int, item: str | None = None) -> None: ...

    def finish(self) -> None: ...


class NullProgress:
    """Progress that goes nowhere: scripts, tests, `--quiet`."""

    def start(self, total_bytes: int, label: str) -> None:
        pass

    def advance(self, nbytes: int, item: str | None = None) -> None:
        pass

    def finish(self) -> None:
        pass
