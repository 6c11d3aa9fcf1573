"""Opening a store from a URL: `sqlite:///path`, `postgresql://...`, `memory://`, or the default."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

from .._clock import Clock
from .._errors import ConfigError
from ._events import DEFAULT_MAX_PAYLOAD_BYTES
from ._store import EventStore

#: Where the embedded store lives when nothing else is chosen.
DEFAULT_STORE_URL = "sqlite:///.phalanx/phalanx.db"

#: The environment variable that chooses the store when no URL is passed.
STORE_ENV = "PHALANX_STORE"

_SYNCHRONOUS = ("off", "normal", "full", "extra")

_SUPPORTED = (
    "Supported: sqlite:///path/to/file.db (default ./.phalanx/phalanx.db), "
    "postgresql://user@host:port/database and memory:// (in-memory, not durable)"
)


def url_error(url: str, reason: str) -> ConfigError:
    """The error for a store URL phalanx cannot use, with the forms it can."""
    return ConfigError(setting="store URL", value=url, reason=f"{reason}. {_SUPPORTED}")


def resolve_store_url(url: str | None = None) -> str:
    """The URL to use: the argument, else `$PHALANX_STORE`, else the default."""
    return url or os.environ.get(STORE_ENV) or DEFAULT_STORE_URL


def store_from_url(
    url: str | None = None,
    *,
    clock: Clock | None = None,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> EventStore:
    """Build (but do not open) the store a URL names.

    `sqlite:///relative/path.db` and `sqlite:////absolute/path.db` take an optional
    `?synchronous=normal|full|extra|off`. `postgresql://` URLs are passed to the
    driver, with an optional `?schema=NAME` that keeps phalanx's tables in a schema.
    `memory://` is a fresh in-memory store and `memory://NAME` one shared by name
    within this process: NOT durable, gone when the process exits (tests,
    simulations, throw-away runs). All take `?max_payload_bytes=N`, the largest
    encoded event data the store accepts (default 1 MiB); it overrides the
    `max_payload_bytes` argument.

    Raises:
        ConfigError: an unknown scheme or a malformed URL.
    """
    url = resolve_store_url(url)
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    limits = [v for k, v in query if k == "max_payload_bytes"]
    if limits:
        max_payload_bytes = _payload_limit(url, limits[-1])
        rest = urlencode([(k, v) for k, v in query if k != "max_payload_bytes"])
        parts = parts._replace(query=rest)
    if parts.scheme == "sqlite":
        if parts.netloc or not parts.path.startswith("/") or parts.path == "/":
            raise url_error(url, "a SQLite URL is sqlite:///PATH")
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        synchronous = options.pop("synchronous", "normal").lower()
        if synchronous not in _SYNCHRONOUS:
            raise url_error(url, f"synchronous must be one of {', '.join(_SYNCHRONOUS)}")
        if options:
            raise url_error(url, f"unknown options {sorted(options)}")
        from ._sqlite import SqliteEventStore

        return SqliteEventStore(
            Path(parts.path[1:]),
            synchronous=synchronous,  # type: ignore[arg-type]  # checked against _SYNCHRONOUS above
            max_payload_bytes=max_payload_bytes,
            clock=clock,
        )
    if parts.scheme in ("postgresql", "postgres"):
        from ._postgres import PostgresEventStore

        return PostgresEventStore(
            urlunsplit(parts), max_payload_bytes=max_payload_bytes, clock=clock
        )
    if parts.scheme == "memory":
        return _memory_store(url, parts.netloc, parts.path, parts.query, max_payload_bytes, clock)
    raise url_error(url, f"unknown scheme {parts.scheme or '(none)'!r}")


def _memory_store(
    url: str, name: str, path: str, query: str, max_payload_bytes: int, clock: Clock | None
) -> EventStore:
    if path not in ("", "/"):
        raise url_error(url, "an in-memory store URL is memory:// or memory://NAME")
    if query:
        options = sorted({k for k, _ in parse_qsl(query, keep_blank_values=True)})
        raise url_error(url, f"unknown options {options}")
    from ._memory import MemoryDatabase, MemoryEventStore, named_database

    database = named_database(name) if name else MemoryDatabase()
    return MemoryEventStore(database, name=name, max_payload_bytes=max_payload_bytes, clock=clock)


def _payload_limit(url: str, text: str) -> int:
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if limit < 1:
        raise url_error(
            url, f"max_payload_bytes must be a whole number of bytes >= 1, not {text!r}"
        )
    return limit
