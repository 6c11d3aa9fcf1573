"""Fixtures for the tool-reliability tests (runtimes come from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.tools import workflows as wf


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    def reset() -> None:
        wf.reset()
        for tool in (wf.guarded,):
            assert tool.breaker is not None
            tool.breaker.reset_local()

    reset()
    yield
    reset()
