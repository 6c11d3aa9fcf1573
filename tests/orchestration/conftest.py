"""Fixtures for the orchestration tests: a fresh SQLite journal and runtimes on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

import phalanx
from tests.orchestration import workflows

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
def open_rt(url: str) -> Callable[..., AbstractAsyncContextManager[phalanx.Runtime]]:
    """Open another runtime (its own owner, its own connection) on the test's store."""

    def opener(**options: Any) -> AbstractAsyncContextManager[phalanx.Runtime]:
        options.setdefault("lease_ttl", LEASE_TTL)
        options.setdefault("inbox_poll", INBOX_POLL)
        return phalanx.open_runtime(url, **options)

    return opener


@pytest.fixture
async def runtime(
    open_rt: Callable[..., AbstractAsyncContextManager[phalanx.Runtime]],
) -> AsyncIterator[phalanx.Runtime]:
    """A runtime on the test's store."""
    async with open_rt() as rt:
        yield rt
