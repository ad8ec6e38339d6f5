"""One error family. Each message says what went wrong, where, and what to do next.

The CLI maps these to exit codes: `VerificationError` -> 1, everything else -> 2.
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


class DiskSpaceError(WeightprepError):
    """Not enough free space for the output, found before or during writing."""


class VerificationError(WeightprepError):
    """What was written (or downloaded) does not match what it should be."""

    exit_code = 1
