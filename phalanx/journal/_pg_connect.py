"""Reaching the PostgreSQL server: the DSN, pooled connections and outages.

Kept apart from the store class (`_postgres.py`) so that what "the server is gone"
means is decided in one place: every way asyncpg reports an unreachable, timed-out or
broken server becomes `StoreUnavailableError`, damaged data `StoreCorruptError`, and
the DSN's `?schema=` option is parsed (and the password masked for messages) here.
The store class then deals only in SQL and the `EventStore` contract.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import TypeAlias, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from .._errors import PhalanxError, StoreCorruptError, StoreUnavailableError
from ._url import url_error

logger = logging.getLogger("phalanx")

T = TypeVar("T")

Conn: TypeAlias = "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"

# A plain identifier, so quoting it is the only escaping needed; PostgreSQL reserves pg_*.
_SCHEMA = re.compile(r"^(?!pg_)[a-z_][a-z0-9_]{0,62}$")

# SQLSTATEs of damaged data (data_corrupted, index_corrupted): StoreCorruptError.
_CORRUPT = ("XX001", "XX002")


def split_dsn(dsn: str) -> tuple[str, str | None, str]:
    """Split `?schema=` off a DSN: (DSN for asyncpg, schema or None, printable URL).

    Raises:
        ConfigError: a schema name that is not a plain lower-case identifier.
    """
    parts = urlsplit(dsn)
    query = parse_qsl(parts.query, keep_blank_values=True)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostinfo = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hostinfo}"
    masked = [(k, "***" if k == "password" else v) for k, v in query]
    url = urlunsplit(parts._replace(netloc=netloc, query=urlencode(masked)))
    schemas = [v for k, v in query if k == "schema"]
    if not schemas:
        return dsn, None, url
    schema = schemas[-1]
    if not _SCHEMA.match(schema):
        raise url_error(
            url,
            f"schema {schema!r} must be 1-63 lower-case letters, digits and underscores, "
            "not starting with a digit or pg_",
        )
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema, url


async def keep_session(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """Skip asyncpg's reset query on release; the store leaves no session state.

    asyncpg still rolls back an open transaction first. Its default reset (unlock
    advisory locks, CLOSE ALL, UNLISTEN, RESET ALL) adds a round trip to every call
    (reads took 1.7x as long with it), and undoes nothing this store does: it takes
    only transaction-scoped locks and settings and listens on a connection of its own.
    """


def unavailable(url: str, exc: BaseException) -> StoreUnavailableError:
    """The error for a server that could not be reached or did not answer in time."""
    if isinstance(exc, TimeoutError) and not str(exc):
        reason = "no answer in time (connect_timeout / command_timeout)"
    else:
        reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
    return StoreUnavailableError(store=url, reason=reason)


async def with_connection(
    pool: asyncpg.Pool[asyncpg.Record],
    op: Callable[[Conn], Awaitable[T]],
    *,
    url: str,
    connect_timeout: float,
    command_timeout: float,
    acquire_timeout: float,
) -> T:
    """Run `op` on a pooled connection, turning "server gone" into our error.

    A failed call cannot poison the pool: asyncpg discards a connection that
    died or failed its release, and the next acquire connects afresh.
    """
    try:
        try:
            async with asyncio.timeout(acquire_timeout):
                conn = await pool.acquire()
        except TimeoutError as exc:
            reason = (
                f"no connection within the {connect_timeout:g}s connect timeout"
                f" (or no free pooled one within {acquire_timeout:g}s)"
            )
            raise StoreUnavailableError(store=url, reason=reason) from exc
        try:
            return await op(conn)
        except asyncpg.InternalClientError as exc:
            # The connection's protocol state broke (seen as the server shut down
            # mid-call): drop it, and report the store unavailable like any outage.
            conn.terminate()
            raise unavailable(url, exc) from exc
        finally:
            try:
                await pool.release(conn, timeout=command_timeout)
            except Exception as exc:
                # The pool has already terminated the connection; what the caller
                # needs is the operation's own outcome, not the cleanup's.
                logger.debug("dropped a broken connection to %s: %s", url, exc)
    except PhalanxError:
        raise
    except asyncpg.PostgresError as exc:
        if exc.sqlstate in _CORRUPT:
            raise StoreCorruptError(store=url, reason=str(exc)) from exc
        raise unavailable(url, exc) from exc
    except OSError as exc:  # TimeoutError is an OSError
        raise unavailable(url, exc) from exc
    except asyncpg.InterfaceError as exc:
        if "closed" not in str(exc) and "closing" not in str(exc):
            raise
        raise unavailable(url, exc) from exc
