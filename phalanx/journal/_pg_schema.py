"""The PostgreSQL store's SQL: its tables, its append function and what their refusals mean.

Kept apart from the store class (`_postgres.py`) because it is a different concern: the
DDL and the PL/pgSQL of `phalanx_append` define the data's layout and the append rules
on the server, versioned by `MIGRATIONS`, while the store class is about pools,
timeouts and outages. The SQLSTATEs `phalanx_append` raises and the translation of
them into `ConcurrencyError` / `FencedError` live here, next to the function that
raises them, so the two cannot drift apart. The reasoning behind positions and the
readers' watermark is in `_postgres.py`'s docstring.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from .._errors import ConcurrencyError, FencedError
from ._leases import check_append_epoch
from ._rows import EVENT_COLUMNS

if TYPE_CHECKING:
    import asyncpg

    Conn = asyncpg.pool.PoolConnectionProxy[asyncpg.Record]

#: The NOTIFY channel appends wake subscribers on; the payload is the schema name.
CHANNEL = "phalanx_events"

# SQLSTATEs raised by phalanx_append; class "PX" is unused by PostgreSQL.
_CONFLICT = "PX001"
_FENCED = "PX002"

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE events (
        position    BIGINT PRIMARY KEY,
        stream_id   TEXT NOT NULL,
        seq         BIGINT NOT NULL,
        type        TEXT NOT NULL,
        data        TEXT NOT NULL,
        epoch       BIGINT,
        recorded_at DOUBLE PRECISION NOT NULL,
        run_id      TEXT,
        agent_id    TEXT,
        parent_id   TEXT,
        trace_id    TEXT,
        span_id     TEXT,
        indexed     BOOLEAN NOT NULL DEFAULT FALSE,
        UNIQUE (stream_id, seq)
    );
    CREATE TABLE leases (
        stream_id  TEXT PRIMARY KEY,
        owner      TEXT NOT NULL,
        epoch      BIGINT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE snapshots (
        stream_id   TEXT PRIMARY KEY,
        version     BIGINT NOT NULL,
        state       TEXT NOT NULL,
        recorded_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE phalanx_position (
        id    BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
        value BIGINT NOT NULL
    );
    INSERT INTO phalanx_position (id, value) VALUES (TRUE, 0);
    CREATE INDEX events_indexed ON events (type, position) WHERE indexed;

    -- One round trip per append. The rules mirror _leases.check_append_epoch and the
    -- expected-version check of the SQLite store; refusals carry the current number
    -- in DETAIL so Python can raise the same errors with the same fields.
    CREATE FUNCTION phalanx_append(
        p_stream_id text,
        p_expected_version bigint,
        p_epoch bigint,
        p_recorded_at double precision,
        p_types text[],
        p_datas text[],
        p_run_ids text[],
        p_agent_ids text[],
        p_parent_ids text[],
        p_trace_ids text[],
        p_span_ids text[],
        p_indexed boolean[],
        OUT new_version bigint,
        OUT last_position bigint
    ) LANGUAGE plpgsql AS $fn$
    DECLARE
        n integer := cardinality(p_types);
        lease_epoch bigint;
        old_version bigint;
    BEGIN
        -- The counter's row lock, held until COMMIT, is what makes commit order
        -- equal position order (see the module docstring of _postgres.py).
        UPDATE phalanx_position SET value = value + n RETURNING value INTO last_position;
        SELECT l.epoch INTO lease_epoch FROM leases AS l
            WHERE l.stream_id = p_stream_id FOR KEY SHARE;
        IF lease_epoch IS DISTINCT FROM p_epoch THEN
            RAISE EXCEPTION 'fenced out of stream %', p_stream_id
                USING ERRCODE = 'PX002', DETAIL = coalesce(lease_epoch::text, '');
        END IF;
        SELECT coalesce(max(e.seq), 0) INTO old_version FROM events AS e
            WHERE e.stream_id = p_stream_id;
        IF p_expected_version IS NOT NULL AND p_expected_version <> old_version THEN
            RAISE EXCEPTION 'stream % is at another version', p_stream_id
                USING ERRCODE = 'PX001', DETAIL = old_version::text;
        END IF;
        INSERT INTO events (position, stream_id, seq, type, data, epoch, recorded_at,
                            run_id, agent_id, parent_id, trace_id, span_id, indexed)
        SELECT last_position - n + i, p_stream_id, old_version + i, p_types[i], p_datas[i],
               p_epoch, p_recorded_at, p_run_ids[i], p_agent_ids[i], p_parent_ids[i],
               p_trace_ids[i], p_span_ids[i], p_indexed[i]
        FROM generate_series(1, n) AS i;
        PERFORM pg_notify('phalanx_events', coalesce(current_schema(), ''));
        new_version := old_version + n;
    END
    $fn$;
    """,
    # 2: appends no longer serialised store-wide (see `_postgres.py`): positions are
    # (xid << 20) + k, readers stop below the oldest in-flight appender's xid, and the
    # NOTIFY leaves the append's transaction (its commit lock is cluster-wide).
    """
    CREATE OR REPLACE FUNCTION phalanx_append(
        p_stream_id text,
        p_expected_version bigint,
        p_epoch bigint,
        p_recorded_at double precision,
        p_types text[],
        p_datas text[],
        p_run_ids text[],
        p_agent_ids text[],
        p_parent_ids text[],
        p_trace_ids text[],
        p_span_ids text[],
        p_indexed boolean[],
        OUT new_version bigint,
        OUT last_position bigint
    ) LANGUAGE plpgsql AS $fn$
    DECLARE
        n integer := cardinality(p_types);
        lease_epoch bigint;
        old_version bigint;
        base bigint;
        done bigint;
    BEGIN
        -- One appender per stream at a time (the version check and seq numbers need
        -- it); a first lease takes the same lock, as there is no lease row to lock.
        PERFORM pg_advisory_xact_lock(hashtextextended(current_schema() || '/' || p_stream_id, 0));
        -- A take-over (FOR UPDATE on this row) and an append are strictly ordered.
        SELECT l.epoch INTO lease_epoch FROM leases AS l
            WHERE l.stream_id = p_stream_id FOR KEY SHARE;
        IF lease_epoch IS DISTINCT FROM p_epoch THEN
            RAISE EXCEPTION 'fenced out of stream %', p_stream_id
                USING ERRCODE = 'PX002', DETAIL = coalesce(lease_epoch::text, '');
        END IF;
        SELECT coalesce(max(e.seq), 0) INTO old_version FROM events AS e
            WHERE e.stream_id = p_stream_id;
        IF p_expected_version IS NOT NULL AND p_expected_version <> old_version THEN
            RAISE EXCEPTION 'stream % is at another version', p_stream_id
                USING ERRCODE = 'PX001', DETAIL = old_version::text;
        END IF;
        -- Positions: this transaction's id, then a counter local to the transaction
        -- (several appends in one transaction: append_many).
        base := pg_current_xact_id()::text::bigint << 20;
        done := coalesce(nullif(current_setting('phalanx.appended', true), ''), '0')::bigint;
        IF done + n >= 1048576 THEN
            RAISE EXCEPTION 'more than 1048575 events in one transaction';
        END IF;
        PERFORM set_config('phalanx.appended', (done + n)::text, true);
        INSERT INTO events (position, stream_id, seq, type, data, epoch, recorded_at,
                            run_id, agent_id, parent_id, trace_id, span_id, indexed)
        SELECT base + done + i, p_stream_id, old_version + i, p_types[i], p_datas[i],
               p_epoch, p_recorded_at, p_run_ids[i], p_agent_ids[i], p_parent_ids[i],
               p_trace_ids[i], p_span_ids[i], p_indexed[i]
        FROM generate_series(1, n) AS i;
        new_version := old_version + n;
        last_position := base + done + n;
    END
    $fn$;

    -- The first position no reader may pass yet: below every xid still in flight in
    -- this schema's sessions (their application_name), and below the next xid.
    -- A 32-bit backend_xid is widened with the epoch of the snapshot's xmax (one
    -- assigned since that snapshot may be at or past xmax: least() then ignores it).
    CREATE FUNCTION phalanx_watermark() RETURNS bigint LANGUAGE sql VOLATILE AS $w$
        WITH s AS (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax)
        SELECT least(s.xmax, coalesce(min(
                   CASE WHEN ((s.xmax >> 32) << 32) + a.backend_xid::text::bigint
                             > s.xmax + 2147483648
                        THEN ((s.xmax >> 32) << 32) + a.backend_xid::text::bigint - 4294967296
                        ELSE ((s.xmax >> 32) << 32) + a.backend_xid::text::bigint END),
                   s.xmax)) << 20
        FROM s LEFT JOIN pg_stat_activity AS a
            ON a.application_name = current_setting('application_name')
           AND a.backend_xid IS NOT NULL
        GROUP BY s.xmax
    $w$;

    -- Readers: the watermark first, then the rows, each statement with a snapshot of
    -- its own (VOLATILE plpgsql), so the rows' snapshot is taken after the watermark.
    CREATE FUNCTION phalanx_read_all(p_after bigint, p_limit integer)
    RETURNS SETOF events LANGUAGE plpgsql VOLATILE AS $r$
    DECLARE w bigint;
    BEGIN
        w := phalanx_watermark();
        RETURN QUERY SELECT * FROM events AS e
            WHERE e.position > p_after AND e.position < w ORDER BY e.position LIMIT p_limit;
    END
    $r$;

    CREATE FUNCTION phalanx_read_indexed(p_types text[], p_after bigint, p_limit integer)
    RETURNS SETOF events LANGUAGE plpgsql VOLATILE AS $r$
    DECLARE w bigint;
    BEGIN
        w := phalanx_watermark();
        RETURN QUERY SELECT * FROM events AS e
            WHERE e.indexed AND e.type = ANY(p_types) AND e.position > p_after
              AND e.position < w ORDER BY e.position LIMIT p_limit;
    END
    $r$;

    CREATE FUNCTION phalanx_head() RETURNS bigint LANGUAGE plpgsql VOLATILE AS $h$
    DECLARE w bigint;
    BEGIN
        w := phalanx_watermark();
        RETURN (SELECT coalesce(max(e.position), 0) FROM events AS e WHERE e.position < w);
    END
    $h$;
    """,
)

SELECT = f"SELECT {EVENT_COLUMNS} FROM events"
READ_ALL = f"SELECT {EVENT_COLUMNS} FROM phalanx_read_all($1, $2)"
READ_INDEXED = f"SELECT {EVENT_COLUMNS} FROM phalanx_read_indexed($1::text[], $2, $3)"
HEAD = "SELECT phalanx_head()"
#: The lock `phalanx_append` takes per stream, for a first lease acquisition to take too.
STREAM_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || '/' || $1, 0))"
NOTIFY = "SELECT pg_notify($1, $2)"
APPEND = (
    "SELECT new_version, last_position"
    " FROM phalanx_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
)
LEASE = "SELECT owner, epoch, expires_at FROM leases WHERE stream_id = $1"
#: The server's clock in Unix seconds: the one clock every worker's leases agree on.
NOW = "extract(epoch FROM clock_timestamp())::float8"
SERVER_NOW = f"SELECT {NOW}"


async def migrate(conn: Conn, schema: str | None) -> None:
    """Create `schema` if missing, then apply the migrations it has not had yet."""
    # The advisory lock makes concurrent openers (many workers starting at once)
    # take turns; each later one finds the schema current and does nothing.
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _migration_key(schema))
        if schema is not None:
            quoted = f'"{schema}"'
            # Look before creating: CREATE SCHEMA IF NOT EXISTS still demands the
            # CREATE privilege on the database, which a deployed role may lack.
            found = await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema)
            if not found:
                await conn.execute(f"CREATE SCHEMA {quoted}")
            await conn.execute(f"SET LOCAL search_path TO {quoted}")
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        current = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
        for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
            await conn.execute(script)
            await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)


def _migration_key(schema: str | None) -> int:
    digest = hashlib.blake2b(f"phalanx-migrate:{schema or ''}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def refuse(
    exc: asyncpg.PostgresError,
    stream_id: str,
    expected_version: int | None,
    epoch: int | None,
) -> None:
    """Raise the domain error for an append `phalanx_append` refused, if it is one."""
    if exc.sqlstate == _FENCED:
        try:
            check_append_epoch(stream_id, int(exc.detail) if exc.detail else None, epoch)
        except FencedError as fenced:
            raise fenced from exc
    if exc.sqlstate == _CONFLICT and expected_version is not None:
        actual = int(exc.detail or 0)
        raise ConcurrencyError(
            stream_id=stream_id, expected_version=expected_version, actual_version=actual
        ) from exc
