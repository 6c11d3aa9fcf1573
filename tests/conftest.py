"""Shared fixtures: every store backend, really started, one fresh namespace per test."""

from __future__ import annotations

import importlib
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import pytest

import phalanx
from phalanx._clock import Clock
from phalanx.journal import EventStore, store_from_url

#: The repository root (scripts/ lives there).
ROOT = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("PHALANX_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def postgres_reachable() -> bool:
    parts = urlsplit(PG_URL)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), 2):
            return True
    except OSError:
        return False


def missing(message: str, *, module_level: bool = False) -> NoReturn:
    """Skip outside CI, fail loudly in CI, when a component a test needs is missing.

    In CI a skip would hide exactly what CI is there to find: a service that did not
    start, a package the dev extra no longer installs, a tool the image lacks.
    """
    if IN_CI:
        pytest.fail(message + " (CI=true: tests that need a component must not skip)")
    pytest.skip(message, allow_module_level=module_level)


def require_module(name: str, install: str) -> None:
    """Import `name` or report it missing (see `missing`); for a test module's top."""
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:
        missing(f"{name} is not installed: {install}", module_level=True)


def require_postgres() -> None:
    """Skip outside CI, fail loudly in CI, when PostgreSQL is not running."""
    if not postgres_reachable():
        missing(f"PostgreSQL is not reachable at {PG_URL}: run scripts/services")


@dataclass
class StoreFactory:
    """Opens stores of one backend that all share one fresh database namespace."""

    backend: str
    url: str
    opened: list[EventStore] = field(default_factory=list)

    async def __call__(self, *, clock: Clock | None = None, **options: Any) -> EventStore:
        store = store_from_url(self.url, clock=clock, **options)
        await store.open()
        self.opened.append(store)
        return store

    async def raw_execute(self, sql: str, *args: Any) -> None:
        """Run SQL straight against the backend, bypassing phalanx (to corrupt rows)."""
        if self.backend == "sqlite":
            import sqlite3

            conn = sqlite3.connect(urlsplit(self.url).path[1:], isolation_level=None)
            try:
                conn.execute(sql.replace("$1", "?").replace("$2", "?"), args)
            finally:
                conn.close()
        else:
            import asyncpg

            schema = self.url.rsplit("schema=", 1)[1]
            conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
            try:
                await conn.execute(sql, *args)
            finally:
                await conn.close()


async def drop_schema(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    """A factory of stores on one backend, parametrised over every backend."""
    backend: str = request.param
    schema = ""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'journal.db'}"
    else:
        require_postgres()
        schema = f"t_{secrets.token_hex(6)}"
        url = f"{PG_URL}?schema={schema}"
    factory = StoreFactory(backend, url)
    try:
        yield factory
    finally:
        for store in factory.opened:
            await store.close()
        if schema:
            await drop_schema(schema)


@pytest.fixture
async def store(store_factory: StoreFactory) -> EventStore:
    """One open store per backend."""
    return await store_factory()


# -- runtimes for the tests of everything above the journal --------------------------

#: Small enough that suites are fast, large enough that a busy CI box renews in time.
LEASE_TTL = 1.0
INBOX_POLL = 0.02

OpenRuntime = Callable[..., AbstractAsyncContextManager[phalanx.Runtime]]


@pytest.fixture
def url(tmp_path: Path) -> str:
    """The SQLite store every runtime of one test shares."""
    return f"sqlite:///{tmp_path}/j.db"


@pytest.fixture
def runtime_options() -> dict[str, Any]:
    """Defaults for the runtimes a test opens; a test package may override it."""
    return {"lease_ttl": LEASE_TTL, "inbox_poll": INBOX_POLL}


@pytest.fixture
def open_rt(url: str, runtime_options: dict[str, Any]) -> OpenRuntime:
    """Open another runtime (its own owner, its own connection) on the test's store."""

    def opener(store: Any = None, **options: Any) -> AbstractAsyncContextManager[phalanx.Runtime]:
        return phalanx.open_runtime(store or url, **{**runtime_options, **options})

    return opener


@pytest.fixture
async def runtime(open_rt: OpenRuntime) -> AsyncIterator[phalanx.Runtime]:
    """A runtime on the test's store."""
    async with open_rt() as rt:
        yield rt
