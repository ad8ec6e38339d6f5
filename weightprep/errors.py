"""One error family. Each message says what went wrong, where, and what to do next.

The CLI maps these to exit codes (docs/reliability.md): `VerificationError` -> 1; bad input or
usage -> 2; the environment (disk full, permissions, a remote failing after retries) -> 3;
interrupted (Ctrl-C) -> 130.
"""

from __future__ import annotations


class WeightprepError(Exception):
    """Base of every error weightprep raises on purpose."""

    exit_code = 2


class InputError(WeightprepError):
    """A file or folder the user gave us is missing, malformed or inconsistent."""


class CheckpointError(InputError):
    """A checkpoint file is truncated, corrupt, or holds something other than tensors."""


class OutputExistsError(WeightprepError):
    """The output already exists and `--force` was not given."""


class EnvironmentProblem(WeightprepError):
    """The machine, not the input: a full disk, a read-only or forbidden place, a network that
    kept failing after retries."""

    exit_code = 3


class DiskSpaceError(EnvironmentProblem):
    """Not enough free space for the output, found before or during writing."""


class NetworkError(EnvironmentProblem):
    """A remote kept failing after retries."""


class BusyError(WeightprepError):
    """Another weightprep process is writing the same output right now."""


class VerificationError(WeightprepError):
    """What was written (or downloaded) does not match what it should be."""

    exit_code = 1


def one_line(exc: BaseException, limit: int = 300) -> str:
    """A library's error message as one short line: its first line, control characters
    escaped (a message may quote names from the file), cut at `limit` characters."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    first = "".join(c if c.isprintable() else repr(c)[1:-1] for c in first)
    return first if len(first) <= limit else first[: limit - 3] + "..."
