"""Fixtures for the fan-out tests: a fresh SQLite journal and a runtime on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import phalanx
from tests.patterns import workflows

#: Small enough that the suite is fast, large enough that a busy CI box renews in time.
LEASE_TTL = 1.0
INBOX_POLL = 0.02


@pytest.fixture(autouse=True)
def _fresh_workflow_state() -> Iterator[None]:
    workflows.reset()
    yield
    workflows.reset()


@pytest.fixture
def url(tmp_path: Path) -> str:
    """The store every runtime of one test shares."""
    return f"sqlite:///{tmp_path}/j.db"


@pytest.fixture
async def runtime(url: str) -> AsyncIterator[phalanx.Runtime]:
    """A runtime on the test's store."""
    async with phalanx.open_runtime(url, lease_ttl=LEASE_TTL, inbox_poll=INBOX_POLL) as rt:
        yield rt
