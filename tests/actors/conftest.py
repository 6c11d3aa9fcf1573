"""The actor tests run every runtime on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.conftest import PG_URL, drop_schema, require_postgres

T = TypeVar("T")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The store every runtime (and spawned process) of one test shares, per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/j.db"
        return
    require_postgres()
    schema = f"t_{secrets.token_hex(6)}"
    yield f"{PG_URL}?schema={schema}"
    await drop_schema(schema)


@pytest.fixture
async def background(runtime: Any) -> AsyncIterator[Callable[[Awaitable[T]], asyncio.Task[T]]]:
    """Start actor runs as tasks that are cancelled (before the runtime closes) if left."""
    tasks: list[asyncio.Task[Any]] = []

    def start(awaitable: Awaitable[T]) -> asyncio.Task[T]:
        task = asyncio.ensure_future(awaitable)
        tasks.append(task)
        return task

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
