"""Shared agent memory with a declared consistency model: linearizable, snapshot, eventual.

A memory is a set of keyed JSON documents written as events; every version is kept
(`history`). Each reader and writer picks its model per handle: `linearizable()`
(compare-and-set through the memory's single-writer manager, fenced by its lease
epoch), `snapshot()` (the whole memory pinned at one position) or `eventual(...)`
(this process's projection, each read saying how stale it is). Inside a workflow,
`memory(ctx, name)` journals every read and write, so a replay sees what was seen.
"""

from .._errors import MemoryConflictError as MemoryConflictError
from .._errors import MemoryStaleError as MemoryStaleError
from .._errors import MemoryUnavailableError as MemoryUnavailableError
from .._errors import MemoryVersionError as MemoryVersionError
from .._errors import UnknownMemoryKeyError as UnknownMemoryKeyError
from ._actor import memory_manager as memory_manager
from ._client import Memory as Memory
from ._fulltext import PostgresFullText as PostgresFullText
from ._fulltext import SqliteFullText as SqliteFullText
from ._handles import Eventual as Eventual
from ._handles import Linearizable as Linearizable
from ._handles import Read as Read
from ._handles import Snapshot as Snapshot
from ._handles import Written as Written
from ._manager import MemoryManager as MemoryManager
from ._manager import Request as Request
from ._manager import decide as decide
from ._manager import open_memory_manager as open_memory_manager
from ._projection import Staleness as Staleness
from ._recall import Document as Document
from ._recall import HashedVectors as HashedVectors
from ._recall import Hit as Hit
from ._recall import Recall as Recall
from ._recall import RecallIndex as RecallIndex
from ._state import Author as Author
from ._state import MemoryState as MemoryState
from ._state import Outcome as Outcome
from ._state import Version as Version
from ._state import memory_stream as memory_stream
from ._state import request_stream as request_stream
from ._tools import memory_tools as memory_tools
from ._workflow import memory as memory
