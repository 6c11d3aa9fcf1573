"""The event-sourced journal: events, the `EventStore` protocol and its backends.

Backends: SQLite (embedded default), PostgreSQL (shared) and memory (`memory://`,
in-process and NOT durable: tests, simulations, throw-away runs).

`PostgresEventStore` is imported on first use, because asyncpg is an optional extra
(`phalanx[postgres]`) and `import phalanx` must work without it.
"""

from typing import TYPE_CHECKING

from ._buckets import RateLimit as RateLimit
from ._events import DEFAULT_MAX_PAYLOAD_BYTES as DEFAULT_MAX_PAYLOAD_BYTES
from ._events import AppendResult as AppendResult
from ._events import Event as Event
from ._events import Lease as Lease
from ._events import Metadata as Metadata
from ._events import NewEvent as NewEvent
from ._events import Snapshot as Snapshot
from ._events import StreamAppend as StreamAppend
from ._json import MAX_DEPTH as MAX_DEPTH
from ._json import escape_surrogates as escape_surrogates
from ._json import find_problem as find_problem
from ._json import safe_text as safe_text
from ._json import text_problem as text_problem
from ._memory import MemoryDatabase as MemoryDatabase
from ._memory import MemoryEventStore as MemoryEventStore
from ._memory import named_database as named_database
from ._queue import DEFAULT_QUEUE as DEFAULT_QUEUE
from ._queue import Claim as Claim
from ._queue import Submission as Submission
from ._queue import WorkerInfo as WorkerInfo
from ._queue import WorkQueue as WorkQueue
from ._queue import open_queue as open_queue
from ._sqlite import SqliteEventStore as SqliteEventStore
from ._store import EventStore as EventStore
from ._throttle import take_token as take_token
from ._url import DEFAULT_STORE_URL as DEFAULT_STORE_URL
from ._url import STORE_ENV as STORE_ENV
from ._url import resolve_store_url as resolve_store_url
from ._url import store_from_url as store_from_url

if TYPE_CHECKING:
    from ._postgres import PostgresEventStore as PostgresEventStore


def __getattr__(name: str) -> object:
    if name == "PostgresEventStore":
        from ._postgres import PostgresEventStore

        return PostgresEventStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
