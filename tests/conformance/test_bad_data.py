"""Bad data at the journal: refused before anything is written, alike on every store."""

from __future__ import annotations

import asyncio
import math
import secrets
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from phalanx import (
    ConfigError,
    EventDataError,
    NewEvent,
    PayloadTooLargeError,
    StoreCorruptError,
)
from phalanx.journal import MAX_DEPTH, EventStore, Metadata, store_from_url
from tests.conformance.conftest import durable_only
from tests.conftest import PG_URL, StoreFactory, drop_schema, require_postgres
from tests.strategies import hostile_values, journalable, nested


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"result": {"items": [{"t": 1}] * 3 + [{"text": "a\ud800"}]}}, "$.result.items[3].text"),
        ({"topic": "\udfff"}, "$.topic"),
        ({"a": {"\ud800": 1}}, '$.a["\\ud800"]'),
        ({"x": [1, math.nan]}, "$.x[1]"),
        ({"x": {"y": -math.inf}}, "$.x.y"),
        ({"n": 10**5000}, "$.n"),
        ({"s": {1, 2}}, "$.s"),
        ({"deep": nested(MAX_DEPTH + 5)}, "$.deep" + ".n[0]" * 64),
        ({"deep": nested(5001)}, "$.deep" + ".n[0]" * 64),
    ],
)
async def test_the_error_names_the_path_of_the_bad_value(
    store: EventStore, data: dict[str, Any], path: str
) -> None:
    """EventDataError names the JSONPath of the first value no store can hold."""
    with pytest.raises(EventDataError) as info:
        await store.append("bad", [NewEvent("Good"), NewEvent("E", data)])
    assert info.value.path is not None and info.value.path.startswith(path)
    assert f"{info.value.path}: " in str(info.value)
    assert "nothing was written" in str(info.value)
    assert await store.read_stream("bad") == []


async def test_a_value_that_contains_itself_is_refused_and_the_next_append_is_not(
    store: EventStore,
) -> None:
    """Data holding itself is refused; the same containers, untangled, then append."""
    items: list[Any] = [1]
    items.append(items)
    shared = {"k": "v"}
    with pytest.raises(EventDataError, match="nested more than"):
        await store.append("loop", [NewEvent("E", {"items": items, "shared": shared})])
    items.pop()
    await store.append("loop", [NewEvent("E", {"items": items, "shared": shared})])
    assert [e.data for e in await store.read_stream("loop")] == [
        {"items": [1], "shared": {"k": "v"}}
    ]


async def test_nul_and_a_surrogate_round_trip_where_json_can_carry_them(store: EventStore) -> None:
    """NUL is JSON (an escape) and is kept in data; only lone surrogates are refused."""
    data = {"nul": "a\x00b", "pair": "\U0001f680", "\x00key": ["\x00"]}
    await store.append("ok", [NewEvent("E", data)])
    assert (await store.read_stream("ok"))[0].data == data


@pytest.mark.parametrize(
    ("stream", "event"),
    [
        ("s\x00", NewEvent("E")),
        ("s\ud800", NewEvent("E")),
        ("s", NewEvent("E\x00")),
        ("s", NewEvent("E\udc80")),
        ("s", NewEvent("E", {}, Metadata(run_id="r\x00"))),
        ("s", NewEvent("E", {}, Metadata(agent_id="\ud800"))),
    ],
)
async def test_nul_or_a_surrogate_in_a_name_is_refused_alike(
    store: EventStore, stream: str, event: NewEvent
) -> None:
    """A stream id, type or metadata value with NUL or a lone surrogate: EventDataError."""
    with pytest.raises(EventDataError) as info:
        await store.append(stream, [event])
    assert "nothing was written" in str(info.value)
    str(info.value).encode("utf-8")  # the message itself can be printed and journaled
    assert await store.head_position() == 0


async def test_max_payload_bytes_is_a_store_url_option(store_factory: StoreFactory) -> None:
    """`?max_payload_bytes=N` sets the store's payload limit, on every store."""
    sep = "&" if "?" in store_factory.url else "?"
    small = store_from_url(f"{store_factory.url}{sep}max_payload_bytes=64")
    await small.open()
    try:
        await small.append("s", [NewEvent("E", {"x": "y" * 50})])
        with pytest.raises(PayloadTooLargeError) as info:
            await small.append("s", [NewEvent("E", {"x": "y" * 60})])
        assert info.value.limit == 64
        assert "max_payload_bytes" in str(info.value)
    finally:
        await small.close()
    for bad in ("0", "-1", "lots"):
        with pytest.raises(ConfigError, match="max_payload_bytes"):
            store_from_url(f"{store_factory.url}{sep}max_payload_bytes={bad}")


# -- hostile values, through both stores at once --------------------------------------


class Both:
    """A SQLite and a PostgreSQL store, open on one event loop for a hypothesis test."""

    def __init__(self, sqlite_url: str, pg_url: str) -> None:
        self.runner = asyncio.Runner()
        self.stores = [store_from_url(sqlite_url), store_from_url(pg_url)]
        for store in self.stores:
            self.runner.run(store.open())

    def append(self, stream: str, data: dict[str, Any]) -> list[object]:
        """Append to each store; what each said (a result, or its error's type and path)."""
        outcomes: list[object] = []
        for store in self.stores:
            try:
                self.runner.run(store.append(stream, [NewEvent("E", data)]))
            except EventDataError as exc:
                outcomes.append((type(exc).__name__, exc.path))
            else:
                outcomes.append("stored")
        return outcomes

    def read(self, stream: str) -> list[list[dict[str, Any]]]:
        return [[e.data for e in self.runner.run(s.read_stream(stream))] for s in self.stores]

    def close(self) -> None:
        for store in self.stores:
            self.runner.run(store.close())
        self.runner.close()


@pytest.fixture
def both(tmp_path: Any) -> Iterator[Both]:
    require_postgres()
    schema = f"t_{secrets.token_hex(6)}"
    stores = Both(f"sqlite:///{tmp_path}/j.db", f"{PG_URL}?schema={schema}")
    try:
        yield stores
    finally:
        stores.close()
        asyncio.run(drop_schema(schema))


@pytest.mark.postgres
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(value=hostile_values())
def test_hostile_values_are_kept_exactly_or_refused_alike(both: Both, value: Any) -> None:
    """Each hostile value is stored and read back unchanged, or refused, the same on both."""
    stream = secrets.token_hex(6)
    outcomes = both.append(stream, {"v": value})
    assert outcomes[0] == outcomes[1], outcomes
    if journalable(value):
        assert outcomes[0] == "stored"
        assert both.read(stream) == [[{"v": value}]] * 2
    else:
        assert outcomes[0] != "stored"
        assert both.read(stream) == [[], []]


@durable_only
async def test_damaged_data_is_store_corrupt_not_unavailable(store_factory: StoreFactory) -> None:
    """A read the engine reports as damaged raises StoreCorruptError, on every store."""
    store = await store_factory()
    await store.append("s", [NewEvent("E", {"ok": 1})])
    if store_factory.backend == "sqlite":
        # Garbage over the table's pages, as a disk fault would leave them.
        await store.close()
        _overwrite_pages(store_factory.url.removeprefix("sqlite:///"))
        with pytest.raises(StoreCorruptError, match="is corrupt"):
            await store_factory()
        return
    # PostgreSQL reports damage as SQLSTATE XX001 (data_corrupted); raise it where a
    # damaged page would.
    await store_factory.raw_execute(
        "CREATE FUNCTION damaged() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " RAISE EXCEPTION 'invalid page in block 7' USING ERRCODE = 'XX001'; END $$"
    )
    await store_factory.raw_execute(
        "CREATE TRIGGER damaged BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION damaged()"
    )
    with pytest.raises(StoreCorruptError, match="invalid page"):
        await store.append("s", [NewEvent("E", {"ok": 2})])


def _overwrite_pages(path: str) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    with open(path, "r+b") as f:
        f.seek(4096)  # page 2 onwards: the schema page (1) stays readable
        f.write(b"\xff" * 8192)
