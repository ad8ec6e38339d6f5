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
from weightprep.progress import NullProgress, Progress

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


class RichProgress:
    """Bytes, rate and the current item on stderr, via rich (imported only when shown)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import (
            Progress as RP,
        )

        self._p = RP(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            TextColumn("[dim]{task.fields[item]}"),
            console=Console(stderr=True),
            transient=True,
        )
        self._task = None

    def start(self, total_bytes: int, label: str) -> None:
        self._p.start()
        self._task = self._p.add_task(label, total=total_bytes, item="")

    def advance(self, nbytes: int, item: str | None = None) -> None:
        self._p.update(self._task, advance=nbytes, item=item or "")

    def finish(self) -> None:
        self._p.stop()


# --- progress in notebooks (issue 19) -----------------------------------------------------------
# A notebook shows a command's output in a cell that understands `\r` (redraw the line) but not
# the cursor movements rich's live display uses, so rich there prints a new copy of its bars on
# every refresh. Two cases:
# - `!weightprep ...` in Jupyter or Colab: the command runs under a pseudo-terminal, a child of the
#   kernel; its bar is one line redrawn with `\r` (as pip's and tqdm's are), ending as one line.
# - weightprep called inside the kernel itself: one display, updated in place.
REDRAW_SECONDS = 0.5


def in_kernel() -> bool:
    """Running inside a Jupyter (or Colab) kernel's own process."""
    shell = sys.modules.get("IPython")
    if shell is None or "ipykernel" not in sys.modules:
        return False
    ip = shell.get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


def under_notebook() -> bool:
    """A child of a notebook kernel (a `!` command): what a kernel leaves in its environment.
    jupyter_client sets JPY_PARENT_PID, Colab COLAB_RELEASE_TAG, and ipykernel's shell sets
    TERM=xterm-color with PAGER=cat for the commands it runs."""
    env = os.environ
    return (
        "JPY_PARENT_PID" in env
        or "COLAB_RELEASE_TAG" in env
        or (env.get("TERM") == "xterm-color" and env.get("PAGER") == "cat")
    )


def _bar_text(label: str, done: int, total: int, seconds: float, item: str) -> str:
    from weightprep.io.atomic import human_bytes

    frac = done / total if total else 1.0
    bar = "#" * int(frac * 20)
    rate = human_bytes(done / seconds) + "/s" if seconds > 0 else ""
    text = f"{label} [{bar:<20}] {frac:4.0%} {human_bytes(done)}/{human_bytes(total)} {rate}"
    return f"{text} {item}".rstrip()


class LineProgress:
    """One line on stderr, redrawn with `\r` at most every REDRAW_SECONDS and ended with a
    newline: for `!weightprep` in a notebook, where it shows as one line per task."""

    def __init__(self, stream=None) -> None:
        self._out = stream or sys.stderr
        self._width = 0

    def _draw(self, end: str = "") -> None:
        import time

        secs = time.monotonic() - self._t0
        text = _bar_text(self._label, self._done, self._total, secs, self._item)
        self._out.write("\r" + text.ljust(self._width) + end)
        self._out.flush()
        self._width = len(text)
        self._shown = time.monotonic()

    def start(self, total_bytes: int, label: str) -> None:
        import time

        self._label, self._total, self._done, self._item = label, total_bytes, 0, ""
        self._t0 = time.monotonic()
        self._draw()

    def advance(self, nbytes: int, item: str | None = None) -> None:
        import time

        self._done += nbytes
        self._item = item or self._item
        if time.monotonic() - self._shown >= REDRAW_SECONDS:
            self._draw()

    def finish(self) -> None:
        self._item = ""
        self._draw(end="\n")


class KernelProgress:
    """One display in the notebook cell, updated in place (IPython's display ids), at most every
    REDRAW_SECONDS: for weightprep called from Python inside a kernel."""

    def start(self, total_bytes: int, label: str) -> None:
        import time

        from IPython.display import display

        self._label, self._total, self._done, self._item = label, total_bytes, 0, ""
        self._t0 = self._shown = time.monotonic()
        self._handle = display(self._text(), display_id=True)

    def _text(self):
        import time

        from IPython.display import Pretty

        secs = time.monotonic() - self._t0
        return Pretty(_bar_text(self._label, self._done, self._total, secs, self._item))

    def advance(self, nbytes: int, item: str | None = None) -> None:
        import time

        self._done += nbytes
        self._item = item or self._item
        if time.monotonic() - self._shown >= REDRAW_SECONDS:
            self._shown = time.monotonic()
            self._handle.update(self._text())

    def finish(self) -> None:
        self._item = ""
        self._handle.update(self._text())


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


def make_progress(quiet: bool) -> Progress:
    """Bars for a person watching: rich's on a terminal; one `\\r`-redrawn line for a notebook's
    `!` command; one updated display inside a kernel. None with --quiet or in scripts."""
    if quiet:
        return NullProgress()
    if in_kernel():
        return KernelProgress()
    if not sys.stderr.isatty():
        return NullProgress()
    return LineProgress() if under_notebook() else RichProgress()


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
