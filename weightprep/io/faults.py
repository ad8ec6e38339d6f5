"""A fault hook for the tests: kill, interrupt or starve this process at a chosen point.

Switched on only by `WEIGHTPREP_FAULT=LABEL:BYTES[:ACTION]` (tests set it for a subprocess);
otherwise `reached` is one string comparison. When the bytes counted under LABEL reach BYTES:
- `kill` (default): SIGKILL, no cleanup, no `finally`, exactly an OOM kill or a Colab disconnect;
- `int`: SIGINT, what Ctrl-C sends;
- `stop`: SIGSTOP, frozen mid-write until the test sends SIGCONT (to hold a lock);
- `fill=PATH`: write zeros to PATH until its filesystem is full, then carry on: another process
  filling the disk under us.
Labels: `write` (tensor bytes written by convert-llama / apply-delta / make-delta), `hash`
(bytes hashed), `publish-copy`, `drive-upload`, `fetch-download`, `run-stage` (stages finished).
"""

from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("WEIGHTPREP_FAULT", "")
_LABEL, _, _REST = _SPEC.partition(":")
_AT, _, _ACTION = _REST.partition(":")
_DONE: dict[str, int] = {}
_FIRED: list[bool] = []


def _fill(path: str) -> None:
    block = b"\0" * 2**16
    try:
        with open(path, "ab") as f:
            while True:
                f.write(block)
                f.flush()
    except OSError:
        pass


def reached(label: str, nbytes: int) -> None:
    """Count `nbytes` more under `label`; act if the test asked for it here."""
    if not _SPEC or label != _LABEL or _FIRED:
        return
    _DONE[label] = _DONE.get(label, 0) + nbytes
    if _DONE[label] < int(_AT):
        return
    _FIRED.append(True)
    if _ACTION.startswith("fill="):
        _fill(_ACTION.removeprefix("fill="))
    elif _ACTION == "int":
        os.kill(os.getpid(), signal.SIGINT)
    elif _ACTION == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
    else:
        os.kill(os.getpid(), signal.SIGKILL)
