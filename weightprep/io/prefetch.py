"""Build the next item on a worker thread while the caller consumes the current one."""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def prefetch_map(fn: Callable[[T], R], items: Sequence[T]) -> Generator[R, None, None]:
    """`map(fn, items)`, computing item i+1 while item i is being used (one in flight).

    torch's copies and casts release the GIL, so building the next tensor overlaps writing and
    hashing the current one; memory grows by one tensor, not with the model.
    """
    if not items:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as pool:
        nxt: Future[R] = pool.submit(fn, items[0])
        for i in range(len(items)):
            cur = nxt.result()
            if i + 1 < len(items):
                nxt = pool.submit(fn, items[i + 1])
            yield cur
            del cur
