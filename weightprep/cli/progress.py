"""How weightprep's own progress bars look where they are watched: rich's on a terminal, one
redrawn line for a notebook's `!weightprep`, one updated display inside a kernel; none with
--quiet or in scripts. The core only calls the `weightprep.progress.Progress` protocol."""

from __future__ import annotations

import os
import sys
import time

from weightprep.progress import NullProgress, Progress


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


# --- progress in notebooks -----------------------------------------------------------------------
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
        secs = time.monotonic() - self._t0
        text = _bar_text(self._label, self._done, self._total, secs, self._item)
        self._out.write("\r" + text.ljust(self._width) + end)
        self._out.flush()
        self._width = len(text)
        self._shown = time.monotonic()

    def start(self, total_bytes: int, label: str) -> None:
        self._label, self._total, self._done, self._item = label, total_bytes, 0, ""
        self._t0 = time.monotonic()
        self._draw()

    def advance(self, nbytes: int, item: str | None = None) -> None:
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
        from IPython.display import display

        self._label, self._total, self._done, self._item = label, total_bytes, 0, ""
        self._t0 = self._shown = time.monotonic()
        self._handle = display(self._text(), display_id=True)

    def _text(self):
        from IPython.display import Pretty

        secs = time.monotonic() - self._t0
        return Pretty(_bar_text(self._label, self._done, self._total, secs, self._item))

    def advance(self, nbytes: int, item: str | None = None) -> None:
        self._done += nbytes
        self._item = item or self._item
        if time.monotonic() - self._shown >= REDRAW_SECONDS:
            self._shown = time.monotonic()
            self._handle.update(self._text())

    def finish(self) -> None:
        self._item = ""
        self._handle.update(self._text())


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
