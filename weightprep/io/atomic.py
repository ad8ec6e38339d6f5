"""Outputs that appear whole or not at all, and the one temporary-name scheme of the package.

Work happens in `<out>.partial/` beside the final folder; only a complete, verified result is
renamed to `<out>`. A run killed midway leaves only `.partial`, which never looks finished and
which the next run removes. A finished output is replaced only with `force`, and only after the
new one is complete.

Temporary names: a folder being built is `<out>.partial` (visible: it may be resumed), a file
being written is `.<name>.partial` beside its final name (hidden). Nothing else is used, so
`is_partial` recognises every half-written thing weightprep can leave behind.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from weightprep.errors import DiskSpaceError, OutputExistsError

PARTIAL = ".partial"


def partial_path(final: Path) -> Path:
    """The staging folder of the output folder `final`: `<final>.partial`."""
    return final.with_name(final.name + PARTIAL)


def partial_file(final: Path) -> Path:
    """The temporary name of the file `final` while it is written: `.<name>.partial` beside it."""
    return final.with_name(f".{final.name}{PARTIAL}")


def is_partial(name: str) -> bool:
    """A name `partial_file` or `partial_path` gives: something half-written, never an output."""
    return name.endswith(PARTIAL)


def is_inside(path: Path, folder: Path) -> bool:
    """`path` is `folder` or lies inside it once both are resolved (symlinks, `..`): the one
    inside-the-folder check of the package."""
    p, root = Path(path).expanduser().resolve(), Path(folder).expanduser().resolve()
    return p == root or root in p.parents


def check_free_space(folder: Path, need: int) -> None:
    """Refuse before writing anything when `folder`'s filesystem visibly cannot hold `need` bytes."""
    probe = folder
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < need:
        raise DiskSpaceError(
            f"{folder}: not enough free disk: need {human_bytes(need)}, have {human_bytes(free)}"
        )


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable. Some network filesystems refuse fsync on folders:
    that is not an error (the files themselves were fsynced)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def replace_folder(stage: Path, final: Path) -> None:
    """Move a complete staging folder to `final`, replacing what is there only after the new
    one is in place (`final.old` for the moment between the two renames)."""
    fsync_dir(stage)
    if final.exists() or final.is_symlink():
        old = final.with_name(final.name + ".old")
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        elif old.exists() or old.is_symlink():
            old.unlink()
        final.rename(old)
        stage.rename(final)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()
    else:
        stage.rename(final)
    fsync_dir(final.parent)


@contextmanager
def staged_folder(final: Path, force: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder; on clean exit, move it to `final` atomically.

    Example:
        with staged_folder(Path("out")) as tmp:
            (tmp / "config.json").write_text("{}")
    """
    final = final.absolute()
    try:
        os.fsencode(final).decode("utf-8")
    except UnicodeDecodeError:
        from weightprep.errors import InputError

        raise InputError(
            f"{final!s}: the path is not valid UTF-8, which safetensors cannot open; choose "
            "another name"
        ) from None
    with output_lock(final):
        if final.exists() and not force:
            raise OutputExistsError(f"{final}: already exists; pass --force to replace it")
        stage = partial_path(final)
        if stage.exists():
            shutil.rmtree(stage)  # left by an interrupted run of ours
        stage.mkdir(parents=True)
        yield from _staged(final, stage)


def refuse_inside(output: Path, *inputs: Path) -> None:
    """An output equal to an input, inside one, or holding one could destroy it (or be mixed
    into it): refuse before anything is read or written."""
    for i in inputs:
        if is_inside(output, i) or is_inside(i, output):
            from weightprep.errors import InputError

            raise InputError(
                f"{output}: is the input {i}, inside it, or holds it; choose another output"
            )


def lock_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.weightprep-lock")


@contextmanager
def output_lock(final: Path) -> Iterator[None]:
    """Hold an exclusive lock on writing `final`: a second process refuses at once. The lock
    file is removed when done; one left by a killed run is simply taken over (a lock dies with
    its process)."""
    import fcntl

    final.parent.mkdir(parents=True, exist_ok=True)
    path = lock_path(final)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        from weightprep.errors import BusyError

        raise BusyError(
            f"{final}: another weightprep process is writing it right now ({path.name} is "
            "locked); wait for it to finish"
        ) from None
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def _staged(final: Path, stage: Path) -> Iterator[Path]:
    try:
        yield stage
        replace_folder(stage, final)
    except OSError as exc:
        shutil.rmtree(stage, ignore_errors=True)
        if exc.errno == errno.ENOSPC:
            raise DiskSpaceError(f"{final.parent}: disk full while writing {final.name}") from exc
        raise
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def write_atomic(path: Path, data: bytes, *, mode: int | None = None, fault: str = "") -> None:
    """Write a file under its temporary name (`partial_file`), fsync, then rename over `path`.

    `mode` sets the new file's permissions (a config edited in place keeps its own); `fault`
    names the test fault point reached just before the rename (weightprep.io.faults)."""
    path = path.absolute()
    tmp = partial_file(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        if fault:
            from weightprep.io import faults

            faults.reached(fault, 1)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
