"""Full-text recall indexes: SQLite FTS5 and PostgreSQL text search (`RecallIndex`).

Both match a query's words with OR and rank by relevance (bm25 in FTS5, `ts_rank` in
PostgreSQL), so a document with more of the words comes first and one with any of
them still counts: what an agent recalling "what do we know about X" needs. Words
are the query's runs of letters and digits, quoted, so nothing in a query is syntax.

The SQLite index lives in a file of its own, beside the journal: a search over
100,000 entries must not hold the journal's connection. Statements run inline (as
the journal's do, see `journal._sqlite`): a search is milliseconds, and a lock held
by another process is waited for with an asyncio sleep, never a blocking wait.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._errors import StoreUnavailableError
from ._recall import SNIPPET, Document, Hit, words

T = TypeVar("T")

_SQLITE_SCHEMA = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS recall USING fts5("
    "memory UNINDEXED, key UNINDEXED, version UNINDEXED, text, tokenize='unicode61')",
    "CREATE TABLE IF NOT EXISTS recall_keys (memory TEXT, key TEXT, rowid_ INTEGER, "
    "PRIMARY KEY (memory, key))",
    "CREATE TABLE IF NOT EXISTS recall_positions (memory TEXT PRIMARY KEY, position INTEGER)",
)


def _fts_query(query: str) -> str:
    return " OR ".join(f'"{w}"' for w in words(query))


class SqliteFullText:
    """A `RecallIndex` in an SQLite file, searched with FTS5 (bm25 ranking).

    `busy_timeout` bounds how long a write waits for another process's lock.
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=0")
            for statement in _SQLITE_SCHEMA:
                conn.execute(statement)
            self._conn = conn
        return self._conn

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.busy_timeout
        pause = 0.001
        while True:
            try:
                return work(self._connection())
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise StoreUnavailableError(store=str(self.path), reason=str(exc)) from exc
                if loop.time() >= deadline:
                    raise StoreUnavailableError(
                        store=str(self.path), reason=f"locked for {self.busy_timeout:g}s"
                    ) from exc
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.05)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def indexed_position(self, memory: str) -> int:
        """See `RecallIndex`."""

        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT position FROM recall_positions WHERE memory = ?", (memory,)
            ).fetchone()
            return 0 if row is None else int(row[0])

        return await self._run(read)

    async def upsert(self, memory: str, documents: Sequence[Document], position: int) -> None:
        """See `RecallIndex`."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for doc in documents:
                    old = conn.execute(
                        "SELECT rowid_ FROM recall_keys WHERE memory = ? AND key = ?",
                        (memory, doc.key),
                    ).fetchone()
                    if old is not None:
                        conn.execute("DELETE FROM recall WHERE rowid = ?", (old[0],))
                    cursor = conn.execute(
                        "INSERT INTO recall (memory, key, version, text) VALUES (?, ?, ?, ?)",
                        (memory, doc.key, doc.version, doc.text),
                    )
                    conn.execute(
                        "INSERT OR REPLACE INTO recall_keys VALUES (?, ?, ?)",
                        (memory, doc.key, cursor.lastrowid),
                    )
                conn.execute(
                    "INSERT OR REPLACE INTO recall_positions VALUES (?, ?)", (memory, position)
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        await self._run(write)

    async def search(self, memory: str, query: str, *, limit: int) -> list[Hit]:
        """See `RecallIndex`."""

        def read(conn: sqlite3.Connection) -> list[Hit]:
            rows = conn.execute(
                # `rank` is bm25 by default, and ordering by it lets FTS5 rank inside
                # the index scan (about twice as fast as ORDER BY bm25(recall) here).
                "SELECT key, version, rank, substr(text, 1, ?) FROM recall "
                "WHERE recall MATCH ? AND memory = ? ORDER BY rank LIMIT ?",
                (SNIPPET, _fts_query(query), memory, limit),
            ).fetchall()
            return [Hit(str(k), int(v), -float(score), str(s)) for k, v, score, s in rows]

        return await self._run(read)


class PostgresFullText:
    """A `RecallIndex` in PostgreSQL tables, searched with a GIN-indexed tsvector.

    `url` is a `postgresql://` URL; a `schema=NAME` option keeps the tables in that
    schema (as the journal's store URL does), other options are server settings.
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        options = dict(parse_qsl(parts.query))
        self.schema = options.pop("schema", None)
        self.settings = options
        self.dsn = urlunsplit(parts._replace(query=urlencode({})))
        self._pool: Any = None

    async def _acquire(self) -> Any:
        if self._pool is None:
            import asyncpg

            settings = dict(self.settings)
            if self.schema:
                settings["search_path"] = self.schema
            pool = await asyncpg.create_pool(
                self.dsn, min_size=1, max_size=4, server_settings=settings
            )
            async with pool.acquire() as conn:
                if self.schema:
                    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS memory_recall (memory TEXT, key TEXT, "
                    "version INTEGER, text TEXT, tsv tsvector GENERATED ALWAYS AS "
                    "(to_tsvector('simple', text)) STORED, PRIMARY KEY (memory, key))"
                )
                await conn.execute(
                    "CREATE INDEX IF NOT EXISTS memory_recall_tsv ON memory_recall USING GIN (tsv)"
                )
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS memory_recall_positions "
                    "(memory TEXT PRIMARY KEY, position BIGINT)"
                )
            self._pool = pool
        return self._pool

    async def close(self) -> None:
        """Close the connections (idempotent)."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def indexed_position(self, memory: str) -> int:
        """See `RecallIndex`."""
        pool = await self._acquire()
        value = await pool.fetchval(
            "SELECT position FROM memory_recall_positions WHERE memory = $1", memory
        )
        return 0 if value is None else int(value)

    async def upsert(self, memory: str, documents: Sequence[Document], position: int) -> None:
        """See `RecallIndex`."""
        pool = await self._acquire()
        async with pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                "INSERT INTO memory_recall (memory, key, version, text) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (memory, key) DO UPDATE SET version = EXCLUDED.version, "
                "text = EXCLUDED.text",
                [(memory, d.key, d.version, d.text) for d in documents],
            )
            await conn.execute(
                "INSERT INTO memory_recall_positions VALUES ($1, $2) ON CONFLICT (memory) "
                "DO UPDATE SET position = EXCLUDED.position",
                memory,
                position,
            )

    async def search(self, memory: str, query: str, *, limit: int) -> list[Hit]:
        """See `RecallIndex`."""
        pool = await self._acquire()
        terms = " | ".join(words(query))
        rows = await pool.fetch(
            "SELECT key, version, ts_rank(tsv, q) AS score, left(text, $4) AS snippet "
            "FROM memory_recall, to_tsquery('simple', $2) q "
            "WHERE memory = $1 AND tsv @@ q ORDER BY score DESC, key LIMIT $3",
            memory,
            terms,
            limit,
            SNIPPET,
        )
        return [Hit(r["key"], int(r["version"]), float(r["score"]), r["snippet"]) for r in rows]
