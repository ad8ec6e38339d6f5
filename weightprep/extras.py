"""Whether the `smoke` extra's transformers is here, said before any work that needs it starts.

Why: the core (convert, delta, hash/verify, inspect, patch-lavis-config, publish, fetch, run)
needs no transformers, so weightprep installs beside LAVIS's `transformers==4.33.2`. The native
smoke test and the tiny example InstructBLIP it runs on need transformers 5: 4.33.2 has no
processor-side `<image>` tokens (`InstructBlipProcessor(..., num_query_tokens=...)`), and under
4.47.1 `make-example-vlm` fails (5.x's `BertTokenizer(vocab=...)`) and `smoke-test` cannot read
the processor files 5.x saves (both tried; the tests run the smoke test with 5.24). Without this
check that environment fails deep inside transformers with a TypeError; with it, the smoke test
says in one line what is missing, and `weightprep run` plans those stages as off, saying why.
"""

from __future__ import annotations

import re

from weightprep.errors import EnvironmentProblem

# The oldest transformers the native smoke test (and make-example-vlm) runs with (see above).
SMOKE_TRANSFORMERS = (5, 0)
SMOKE_PIP = "pip install 'weightprep[smoke]'"


def _parse(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:2])


def smoke_unavailable() -> str | None:
    """None when the native smoke test's transformers imports here; else one line saying
    what is missing and what to do. Example: in LAVIS's environment ->
    "transformers 4.33.2 is installed here; the native smoke test needs >= 5.0 (...)"."""
    floor = ".".join(map(str, SMOKE_TRANSFORMERS))
    try:
        import transformers
    except ImportError:
        return f"transformers is not installed: the native smoke test needs the smoke extra ({SMOKE_PIP})"
    have = getattr(transformers, "__version__", "")
    if _parse(have) < SMOKE_TRANSFORMERS:
        return (
            f"transformers {have} is installed here; the native smoke test needs >= {floor} "
            f"(tested with 5.24). In LAVIS's environment (which pins "
            f"4.33.2) use `--backend lavis`, or run it from another environment with "
            f"{SMOKE_PIP} (docs/smoke-test.md)"
        )
    return None


def require_smoke(what: str) -> None:
    """Raise EnvironmentProblem (exit 3) naming `what` when the smoke extra is missing."""
    why = smoke_unavailable()
    if why is not None:
        raise EnvironmentProblem(f"{what}: {why}")
