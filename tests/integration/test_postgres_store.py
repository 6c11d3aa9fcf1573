"""PostgreSQL store: what only a real server shows (commit order, outages, migrations)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from phalanx import ConfigError, FencedError, NewEvent, StoreUnavailableError
from phalanx.journal import Event, store_from_url
from tests.conftest import (
    PG_URL,
    PrivatePostgres,
    drop_schema,
    require_module,
    require_postgres,
)

require_module("asyncpg", "pip install 'phalanx[postgres]'")

import asyncpg  # noqa: E402  # after the check that reports it missing

from phalanx.journal._postgres import PostgresEventStore  # noqa: E402


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    """A fresh schema name, dropped (with everything in it) after the test."""
    require_postgres()
    name = f"t_{secrets.token_hex(6)}"
    try:
        yield name
    finally:
        await drop_schema(name)


@pytest.fixture
def url(schema: str) -> str:
    return f"{PG_URL}{'&' if '?' in PG_URL else '?'}schema={schema}"


async def schema_versions(schema: str) -> list[int]:
    conn = await asyncpg.connect(PG_URL)
    try:
        rows = await conn.fetch(f'SELECT version FROM "{schema}".schema_version ORDER BY version')
    finally:
        await conn.close()
    return [r[0] for r in rows]


def hold_before_commit(store: PostgresEventStore) -> tuple[asyncio.Event, asyncio.Event]:
    """Make the store's appends stop before COMMIT: (reached the hook, let it go)."""
    reached, release = asyncio.Event(), asyncio.Event()

    async def hook() -> None:
        reached.set()
        await release.wait()

    store._before_commit = hook
    return reached, release


# -- the commit-order gap ------------------------------------------------------------


@pytest.mark.postgres
async def test_a_later_commit_stays_unread_until_an_earlier_append_commits(url: str) -> None:
    """B commits while A (begun first, lower position) is open: readers see A, B; never B alone."""
    async with PostgresEventStore(url) as store, PostgresEventStore(url) as held:
        reached, release = hold_before_commit(held)
        seen: list[Event] = []

        async def subscribe() -> None:
            async for event in store.subscribe():
                seen.append(event)
                if len(seen) == 2:
                    return

        async with asyncio.timeout(20), asyncio.TaskGroup() as tg:
            subscriber = tg.create_task(subscribe())
            append_a = tg.create_task(held.append("stream-a", [NewEvent("A")]))
            await reached.wait()  # A has its position and has not committed
            # Not serialised store-wide: B, on another stream, commits at once...
            result_b = await store.append("stream-b", [NewEvent("B")])
            await asyncio.sleep(0.5)
            # ...but no reader passes A's position while A may still commit.
            assert seen == []
            assert await store.head_position() == 0
            assert await store.read_all() == []
            assert [e.type for e in await store.read_stream("stream-b")] == ["B"]
            release.set()
            result_a = await append_a
            await subscriber
        assert result_a.position < result_b.position
        assert [(e.type, e.position) for e in seen] == [
            ("A", result_a.position),
            ("B", result_b.position),
        ]
        assert await store.head_position() == result_b.position


@pytest.mark.postgres
async def test_appends_to_one_stream_still_take_turns(url: str) -> None:
    """A second append to a stream with one open waits for it, then sees its version."""
    async with PostgresEventStore(url) as store, PostgresEventStore(url) as held:
        reached, release = hold_before_commit(held)
        async with asyncio.timeout(20):
            first = asyncio.ensure_future(held.append("s", [NewEvent("A")], expected_version=0))
            await reached.wait()
            second = asyncio.ensure_future(store.append("s", [NewEvent("B")], expected_version=1))
            await asyncio.sleep(0.3)
            assert not second.done()
            release.set()
            await first
            assert (await second).version == 2


@pytest.mark.postgres
async def test_concurrent_appenders_are_seen_in_position_order_without_gaps(url: str) -> None:
    """Many stores appending at once: a subscriber sees positions 1..N, each exactly once."""
    writers = [PostgresEventStore(url) for _ in range(6)]
    async with PostgresEventStore(url) as reader:
        try:
            await asyncio.gather(*(writer.open() for writer in writers))
            # Batches of 1 to 3 events, so positions are also allocated n at a time.
            batches = [1 + i % 3 for i in range(30)]
            total = len(writers) * sum(batches)
            seen: list[int] = []

            async def consume() -> None:
                async for event in reader.subscribe():
                    seen.append(event.position)
                    if len(seen) == total:
                        return

            async def write(store: PostgresEventStore, w: int) -> None:
                for i, size in enumerate(batches):
                    events = [NewEvent("E", {"w": w, "i": i, "j": j}) for j in range(size)]
                    await store.append(f"w{w}-{i % 4}", events)

            async with asyncio.timeout(60), asyncio.TaskGroup() as tg:
                consumer = tg.create_task(consume())
                for w, store in enumerate(writers):
                    tg.create_task(write(store, w))
            await consumer
            # Every event once, in increasing position order (positions are sparse).
            assert len(seen) == total and seen == sorted(set(seen))
        finally:
            for writer in writers:
                await writer.close()


# -- leases against in-flight appends --------------------------------------------------


@pytest.mark.postgres
async def test_take_over_waits_for_an_in_flight_append_then_fences_its_epoch(url: str) -> None:
    """A take-over cannot slip between an append's epoch check and its commit."""
    async with PostgresEventStore(url) as store, PostgresEventStore(url) as held:
        lease = await store.acquire_lease("run", "old", 30)
        reached, release = hold_before_commit(held)
        async with asyncio.timeout(20):
            append = asyncio.ensure_future(held.append("run", [NewEvent("E")], epoch=lease.epoch))
            await reached.wait()
            take_over = asyncio.ensure_future(store.take_over_lease("run", "new", 30))
            await asyncio.sleep(0.3)
            assert not take_over.done()
            release.set()
            await append
            new = await take_over
        assert new.epoch == lease.epoch + 1
        held._before_commit = None
        with pytest.raises(FencedError) as info:
            await held.append("run", [NewEvent("Late")], epoch=lease.epoch)
        assert (info.value.epoch, info.value.current_epoch) == (lease.epoch, new.epoch)


@pytest.mark.postgres
async def test_first_lease_waits_for_an_in_flight_unleased_append(url: str) -> None:
    """The first acquire of a stream is ordered against appends like later ones."""
    async with PostgresEventStore(url) as store, PostgresEventStore(url) as held:
        reached, release = hold_before_commit(held)
        async with asyncio.timeout(20):
            append = asyncio.ensure_future(held.append("run", [NewEvent("E")]))
            await reached.wait()
            acquire = asyncio.ensure_future(store.acquire_lease("run", "me", 30))
            await asyncio.sleep(0.3)
            assert not acquire.done()
            release.set()
            await append
            lease = await acquire
        held._before_commit = None
        with pytest.raises(FencedError):
            await held.append("run", [NewEvent("Unleased")])
        await held.append("run", [NewEvent("Leased")], epoch=lease.epoch)


# -- subscriptions survive a lost LISTEN connection ------------------------------------


@pytest.mark.postgres
async def test_subscriber_keeps_delivering_when_its_listen_connection_dies(url: str) -> None:
    """Killing the LISTEN backend loses no events: tail polls, and LISTEN comes back."""
    async with PostgresEventStore(url) as reader, PostgresEventStore(url) as writer:
        events = reader.subscribe()
        try:
            async with asyncio.timeout(20):
                await writer.append("s", [NewEvent("First")])
                assert (await anext(events)).type == "First"
                listener = reader._listener._conn
                assert listener is not None
                lost = asyncio.Event()
                listener.add_termination_listener(lambda _conn: lost.set())
                admin = await asyncpg.connect(PG_URL)
                try:
                    await admin.execute(
                        "SELECT pg_terminate_backend($1)", listener.get_server_pid()
                    )
                finally:
                    await admin.close()
                await lost.wait()
                await writer.append("s", [NewEvent("Second")])
                assert (await anext(events)).type == "Second"
                await writer.append("s", [NewEvent("Third")])
                assert (await anext(events)).type == "Third"
            assert reader._listener.listening and reader._listener._conn is not listener
        finally:
            await events.aclose()  # type: ignore[attr-defined]  # tail is an async generator


# -- the server going away -------------------------------------------------------------


async def pg_ctl(cluster: PrivatePostgres, action: str) -> None:
    done = await asyncio.to_thread(cluster.ctl, action)
    if done.returncode != 0:
        raise RuntimeError(f"pg_ctlcluster {action} failed: {done.stdout}{done.stderr}")


async def ensure_started(cluster: PrivatePostgres) -> None:
    """Start the server if it is down and wait until it accepts connections."""
    try:
        await pg_ctl(cluster, "start")
    except RuntimeError as exc:
        if "already running" not in str(exc):
            raise
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = await asyncpg.connect(cluster.url, timeout=2)
        except (OSError, asyncpg.PostgresError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
        else:
            await conn.close()
            return


async def fails_fast(call: Callable[[], Awaitable[object]], bound: float = 15.0) -> float:
    """Assert `call` raises StoreUnavailableError within `bound` seconds; return the time."""
    start = time.monotonic()
    with pytest.raises(StoreUnavailableError):
        await asyncio.wait_for(call(), bound)
    return time.monotonic() - start


@pytest.mark.postgres
async def test_a_command_timeout_is_unavailable_and_leaves_the_pool_usable(url: str) -> None:
    """A call stuck past command_timeout raises StoreUnavailableError; the next call works."""
    async with (
        PostgresEventStore(url, command_timeout=0.5, max_pool=1) as store,
        PostgresEventStore(url) as held,
    ):
        reached, release = hold_before_commit(held)
        in_flight = asyncio.ensure_future(held.append("a", [NewEvent("Held")]))
        try:
            await reached.wait()
            # The same stream: it waits for the held append, past its command timeout.
            assert await fails_fast(lambda: store.append("a", [NewEvent("Stuck")]), 5) < 5
        finally:
            release.set()
            await in_flight
        await store.append("b", [NewEvent("Next")], expected_version=0)
        assert [e.type for e in await store.read_all()] == ["Held", "Next"]


@pytest.mark.postgres
@pytest.mark.slow
async def test_server_down_fails_fast_and_the_same_store_recovers(
    private_postgres: PrivatePostgres,
) -> None:
    """Stopped server: calls raise StoreUnavailableError in bounded time; restarted: they work."""
    cluster = private_postgres
    await ensure_started(cluster)
    url = f"{cluster.url}?schema=t_{secrets.token_hex(6)}"
    async with PostgresEventStore(url) as store, PostgresEventStore(url) as held:
        await store.append("s", [NewEvent("Before")], expected_version=0)
        reached, release = hold_before_commit(held)
        in_flight = asyncio.ensure_future(held.append("s", [NewEvent("InFlight")]))
        await reached.wait()
        try:
            await pg_ctl(cluster, "stop")
            release.set()
            assert await fails_fast(lambda: in_flight) < 15
            assert await fails_fast(store.head_position) < 15
            assert await fails_fast(lambda: store.append("s", [NewEvent("Lost")])) < 15
            assert await fails_fast(lambda: store.acquire_lease("s", "me", 10)) < 15
            fresh = PostgresEventStore(url)
            assert await fails_fast(fresh.open) < 15
            await fresh.close()
        finally:
            await ensure_started(cluster)
        held._before_commit = None
        await held.append("s", [NewEvent("After")], expected_version=1)
        assert [e.type for e in await store.read_stream("s")] == ["Before", "After"]
        assert (await store.acquire_lease("s", "me", 10)).epoch == 1


# -- migrations ------------------------------------------------------------------------


@pytest.mark.postgres
async def test_reopening_migrates_once_and_keeps_the_data(url: str, schema: str) -> None:
    """Opening twice, on one object and on a new one, runs each migration once."""
    store = PostgresEventStore(url)
    await store.open()
    await store.open()
    await store.append("s", [NewEvent("E")])
    await store.close()
    await store.close()
    async with PostgresEventStore(url) as again:
        (first,) = await again.read_stream("s")
        assert first.type == "E"
        assert (await again.append("s", [NewEvent("F")])).position > first.position
    assert await schema_versions(schema) == [1, 2]


@pytest.mark.postgres
async def test_concurrent_opens_of_a_fresh_schema_migrate_once(url: str, schema: str) -> None:
    """Stores opening a new schema at the same moment all succeed, and it is migrated once."""
    stores = [PostgresEventStore(url) for _ in range(6)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
        results = await asyncio.gather(*(s.append("s", [NewEvent("E")]) for s in stores))
        assert len({r.position for r in results}) == 6
    finally:
        for s in stores:
            await s.close()
    assert await schema_versions(schema) == [1, 2]


# -- configuration (no server needed) --------------------------------------------------


def test_url_masks_the_password_and_the_schema_is_checked() -> None:
    """`url` never shows the password; a schema that is not a plain identifier is refused."""
    store = PostgresEventStore("postgresql://app:s3cret@db:5432/x?schema=agents&sslmode=disable")
    assert "s3cret" not in store.url and "***" in store.url
    assert store.schema == "agents"
    assert isinstance(store_from_url("postgresql://app@db/x"), PostgresEventStore)
    for bad in ("Agents", "a-b", 'x"; DROP TABLE events; --', "1abc", "a" * 64, "pg_x"):
        with pytest.raises(ConfigError):
            PostgresEventStore(f"postgresql://app:s3cret@db/x?schema={bad}")


def test_the_store_is_exported_from_the_journal_package() -> None:
    """`phalanx.journal.PostgresEventStore` is the class, imported on first use."""
    import phalanx.journal

    assert phalanx.journal.PostgresEventStore is PostgresEventStore
