"""A fault hook for the tests: kill this process at a chosen point of a long write.

Switched on only by the environment variable `WEIGHTPREP_FAULT=LABEL:BYTES` (tests set it for a
subprocess); otherwise `reached` is one dictionary lookup. When the bytes counted under LABEL
reach BYTES, the process sends itself SIGKILL: no cleanup, no `finally`, exactly what an OOM
kill or a Colab disconnect does.
"""

from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("WEIGHTPREP_FAULT", "")
_LABEL, _, _AT = _SPEC.partition(":")
_DONE: dict[str, int] = {}


def reached(label: str, nbytes: int) -> None:
    """Count `nbytes` more under `label`; die if the test asked for it here."""
    if not _SPEC or label != _LABEL:
        return
    _DONE[label] = _DONE.get(label, 0) + nbytes
    if _DONE[label] >= int(_AT):
        os.kill(os.getpid(), signal.SIGKILL)
