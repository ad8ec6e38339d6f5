"""The one retry loop for every remote call, with one budget.

A call that fails for a reason the backend's classifier calls transient (5xx, 429, a dropped
or refused connection, a host name that does not resolve, a timeout) is tried again after an
exponential, jittered wait (0.5 s, 1 s, 2 s, ... at most 30 s), up to `ATTEMPTS` tries and
never past the budget: `WEIGHTPREP_RETRY_BUDGET` seconds (default 60) from the first failure.
Then it fails as a `NetworkError` (exit 3) in one line naming the place, what was tried and the
last cause. Anything the classifier calls permanent (401, 404, a full disk) fails at once.
A wait is an ordinary `time.sleep`, so Ctrl-C ends it at once.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from typing import TypeVar

from weightprep.errors import InputError, NetworkError, WeightprepError

T = TypeVar("T")
ATTEMPTS = 8
DEFAULT_BUDGET_S = 60.0
BUDGET_ENV = "WEIGHTPREP_RETRY_BUDGET"

# classify(exc, what) -> a short cause when `exc` is transient (try again); None when it is no
# remote failure at all (raised as it is); or it raises the typed error of a permanent failure
Classifier = Callable[[BaseException, str], str | None]


def budget_seconds() -> float:
    """`WEIGHTPREP_RETRY_BUDGET` (seconds, >= 0; 0 tries once), else 60."""
    text = os.environ.get(BUDGET_ENV, "").strip()
    if not text:
        return DEFAULT_BUDGET_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise InputError(f"{BUDGET_ENV}={text!r}: expected a number of seconds (default 60)")
    return value


class Retry:
    """The state of one retried operation: `failed(cause)` waits before the next try, or
    raises NetworkError when the tries or the budget are spent; `progressed()` (a resumable
    transfer moved on) starts the count again."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.budget = budget_seconds()
        self.tries = 0
        self.first: float | None = None

    def progressed(self) -> None:
        self.tries, self.first = 0, None

    def failed(self, cause: str, hint: str = "check the network and run the command again") -> None:
        now = time.monotonic()
        self.first = now if self.first is None else self.first
        self.tries += 1
        wait = min(30.0, 0.5 * 2 ** (self.tries - 1)) * (0.5 + random.random() / 2)
        spent = now - self.first
        if self.tries >= ATTEMPTS or spent + wait > self.budget:
            raise NetworkError(
                f"{self.what}: {cause}; gave up after {self.tries} "
                f"{'try' if self.tries == 1 else 'tries'} in {spent:.1f} s "
                f"({BUDGET_ENV}={self.budget:g}); {hint}"
            )
        time.sleep(wait)


def retrying(
    what: str,
    fn: Callable[[], T],
    classify: Classifier,
    hint: str = "check the network and run the command again",
) -> T:
    """`fn()`, tried again on what `classify` calls transient, within the budget.

    Example: `retrying("hf://me/x: list files", lambda: api.list_repo_tree("me/x"), hub.classify)`
    """
    retry = Retry(what)
    while True:
        try:
            return fn()
        except WeightprepError:
            raise  # already decided
        except Exception as exc:
            cause = classify(exc, what)
            if cause is None:
                raise
            retry.failed(cause, hint)
