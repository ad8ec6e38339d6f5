"""The smoke extra's check: quiet where transformers 5 is installed (this virtualenv), one line
naming the version elsewhere (tests/test_lavis_env.py runs it under 4.33.2 and without
transformers)."""

from __future__ import annotations

import transformers

from weightprep.extras import SMOKE_TRANSFORMERS, _parse, require_smoke, smoke_unavailable


def test_this_virtualenv_has_the_smoke_extra():
    assert _parse(transformers.__version__) >= SMOKE_TRANSFORMERS
    assert smoke_unavailable() is None
    require_smoke("smoke-test")  # raises nothing


def test_versions_compare_as_numbers():
    assert _parse("4.33.2") < SMOKE_TRANSFORMERS <= _parse("5.0.0.dev0") < _parse("10.1")
