"""Shared CLI pieces: progress rendering, error -> message/exit-code, size parsing."""

from __future__ import annotations

import errno
import os
import re
import sys
from collections.abc import Callable
from typing import TypeVar

import typer

from weightprep.errors import WeightprepError, one_line

T = TypeVar("T")

_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


def parse_size(text: str) -> int:
    """'5GB' -> 5_000_000_000; '512MiB' -> 536_870_912 (decimal units as HF's max_shard_size)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]I?B|B)?\s*", text.upper())
    if not m:
        raise typer.BadParameter(f"{text!r}: expected a size like 5GB, 500MB or 2GiB")
    n = int(float(m.group(1)) * _UNITS[m.group(2) or ""])
    if n <= 0:
        raise typer.BadParameter(f"{text!r}: must be positive")
    return n


DTYPES = ("float16", "bfloat16", "float32")
DTYPE_ALIASES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


def parse_dtype(text: str, auto: bool = False) -> str:
    """`--dtype` in either spelling: 'fp16' -> 'float16', 'bf16' -> 'bfloat16', 'fp32' ->
    'float32' (the short names are what most tools print); 'auto' only where `auto`."""
    name = DTYPE_ALIASES.get(text.lower(), text.lower())
    allowed = (("auto",) if auto else ()) + DTYPES
    if name not in allowed:
        raise typer.BadParameter(f"{text!r}: one of {', '.join(allowed)} (or fp16, bf16, fp32)")
    return name


def hub_bars(show: bool) -> None:
    """huggingface_hub's own transfer bars (bytes and rate, on stderr), on or off."""
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    (enable_progress_bars if show else disable_progress_bars)()


def quiet_libraries(progress: bool) -> None:
    """transformers' warnings off; its loading bars and huggingface_hub's download bars only
    when `progress` (a terminal, not --quiet/--json). The core needs no transformers (it is the
    `smoke` extra): without it there is nothing of its to quiet."""
    hub_bars(progress)
    try:
        from transformers.utils import logging
    except ImportError:
        return
    logging.set_verbosity_error()
    (logging.enable_progress_bar if progress else logging.disable_progress_bar)()


INTERRUPTED = (
    "interrupted: temporary files were removed and nothing was left under an output name; "
    "run the same command again to start over (`weightprep run` resumes)"
)


def run_core(fn: Callable[[], T], interrupted: str = INTERRUPTED) -> T:
    """Run a core call; turn our errors (and the machine's) into one line on stderr and an exit
    code (the table in docs/reliability.md): 1 verification, 2 bad input, 3 environment, 130
    interrupted, when the line is `error: ` + `interrupted` (what was stopped, what was left,
    what next). `--debug` (or WEIGHTPREP_DEBUG=1) shows the traceback instead."""
    debug = os.environ.get("WEIGHTPREP_DEBUG") == "1"
    try:
        return fn()
    except WeightprepError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        if debug:
            raise
        if sys.stderr.isatty():  # the terminal echoed ^C where the cursor was: start afresh
            typer.echo("", err=True)
        typer.echo(f"error: {interrupted}", err=True)
        raise typer.Exit(130) from None
    except OSError as exc:  # the machine said no: full, read-only, forbidden, gone
        if debug:
            raise
        where = exc.filename or ""
        what = {
            errno.ENOSPC: "disk full",
            errno.EROFS: "read-only filesystem",
            errno.EACCES: "permission denied",
            errno.EPERM: "operation not permitted",
            errno.ENOENT: "no such file or folder",
            errno.ELOOP: "too many levels of symbolic links",
            errno.EDQUOT: "disk quota exceeded",
        }.get(exc.errno or 0, exc.strerror or one_line(exc))
        typer.echo(f"error: {where}: {what}" if where else f"error: {what}", err=True)
        raise typer.Exit(3) from None
