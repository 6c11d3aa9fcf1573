"""Shared fixtures: every store backend, really started, one fresh namespace per test."""

from __future__ import annotations

import asyncio
import importlib
import os
import secrets
import shutil
import socket
import subprocess
import threading
from collections.abc import AsyncIterator, Callable, Iterator
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


#: Every test that touches the store runs once per backend (`-m "not postgres"` or
#: `-k sqlite` for a quick loop).
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def fresh_store_url(backend: str, tmp_path: Path) -> tuple[str, str]:
    """A store URL nobody else uses on `backend`: (URL, PostgreSQL schema to drop or "")."""
    if backend == "memory":
        return f"memory://t_{secrets.token_hex(6)}", ""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'journal.db'}", ""
    require_postgres()
    schema = f"t_{secrets.token_hex(6)}"
    # synchronous_commit=off (a per-connection server setting): a commit returns before
    # its WAL reaches the disk, which a server crash could lose but no client crash can.
    # The tests kill clients, not the server, and only stop it cleanly; waiting for
    # fsyncs on a busy CI disk made commits 5-20 ms and timing tests miss by seconds.
    options = f"synchronous_commit=off&schema={schema}"
    return f"{PG_URL}{'&' if '?' in PG_URL else '?'}{options}", schema


def drop_schema_sync(schema: str) -> None:
    """`drop_schema` from synchronous code, whether or not an event loop is running here."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(drop_schema(schema))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


#: Overrides `backend` for a test that only passes through the store on its way to what
#: it checks (help text, usage errors before a store is opened): one backend is enough.
one_backend = pytest.mark.parametrize("backend", ["sqlite"])


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The store backend of this test: "sqlite" or "postgres"."""
    param: str = request.param
    return param


@pytest.fixture
def url(backend: str, tmp_path: Path) -> Iterator[str]:
    """The store every runtime and process of one test shares, on each backend."""
    url, schema = fresh_store_url(backend, tmp_path)
    try:
        yield url
    finally:
        if schema:
            drop_schema_sync(schema)


@pytest.fixture
async def store_factory(backend: str, url: str) -> AsyncIterator[StoreFactory]:
    """A factory of stores on the test's backend, all on the test's store URL."""
    factory = StoreFactory(backend, url)
    try:
        yield factory
    finally:
        for store in factory.opened:
            await store.close()


@pytest.fixture
async def store(store_factory: StoreFactory) -> EventStore:
    """One open store per backend."""
    return await store_factory()


# -- a PostgreSQL server of one's own, for tests that stop and restart it ---------------


@dataclass(frozen=True)
class PrivatePostgres:
    """A throwaway cluster (trust login, free port) that a test may stop and restart.

    Stopping the shared server at PG_URL would fail every other test using it at that
    moment: other xdist workers, other checkouts running their suites. The cluster has
    the version of the one scripts/services runs (scripts/pg-cluster decides both).
    """

    version: str
    name: str
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def ctl(self, action: str) -> subprocess.CompletedProcess[str]:
        """`pg_ctlcluster VERSION NAME ACTION`; the caller checks the outcome."""
        return subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, action],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL cluster of this session's own, started; dropped at the end."""
    if shutil.which("pg_createcluster") is None or os.geteuid() != 0:
        missing("a private PostgreSQL cluster needs pg_createcluster (postgresql-common) as root")
    port = str(urlsplit(PG_URL).port or 5432)
    found = subprocess.run(
        ["bash", str(ROOT / "scripts" / "pg-cluster"), port],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        missing(found.stderr.strip())
    version = found.stdout.split()[0]
    cluster = PrivatePostgres(version, f"phalanx_{secrets.token_hex(4)}", _free_port())
    create = ["pg_createcluster", version, cluster.name, "--port", str(cluster.port)]
    subprocess.run(
        [*create, "--", "--auth=trust"],
        capture_output=True,
        check=True,
        timeout=120,
    )
    try:
        started = cluster.ctl("start")
        assert started.returncode == 0, started.stdout + started.stderr
        yield cluster
    finally:
        subprocess.run(
            ["pg_dropcluster", "--stop", version, cluster.name], capture_output=True, timeout=120
        )


# -- runtimes for the tests of everything above the journal --------------------------

#: Small enough that suites are fast, large enough that a busy CI box renews in time.
LEASE_TTL = 1.0
INBOX_POLL = 0.02

OpenRuntime = Callable[..., AbstractAsyncContextManager[phalanx.Runtime]]


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
