"""Fixtures for the fan-out tests (runtimes come from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.patterns import workflows


@pytest.fixture(autouse=True)
def _fresh_workflow_state() -> Iterator[None]:
    workflows.reset()
    yield
    workflows.reset()
