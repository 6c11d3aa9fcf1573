"""Fixtures for the tool-reliability tests: a fresh SQLite journal and runtimes on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

import phalanx
from tests.tools import workflows as wf

LEASE_TTL = 1.0
INBOX_POLL = 0.02


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


@pytest.fixture
def url(tmp_path: Path) -> str:
    """The store every runtime of one test shares."""
    return f"sqlite:///{tmp_path}/j.db"


@pytest.fixture
def open_rt(url: str) -> Callable[..., AbstractAsyncContextManager[phalanx.Runtime]]:
    """Open another runtime (its own connection) on the test's store."""

    def opener(**options: Any) -> AbstractAsyncContextManager[phalanx.Runtime]:
        options.setdefault("lease_ttl", LEASE_TTL)
        options.setdefault("inbox_poll", INBOX_POLL)
        return phalanx.open_runtime(url, **options)

    return opener


@pytest.fixture
async def runtime(
    open_rt: Callable[..., AbstractAsyncContextManager[phalanx.Runtime]],
) -> AsyncIterator[phalanx.Runtime]:
    """A runtime on the test's store, on the system clock."""
    async with open_rt() as rt:
        yield rt
