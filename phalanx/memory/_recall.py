"""Recall: finding memory documents by what they say, behind one small interface.

A `RecallIndex` holds one entry per key of a memory (its latest version, as text)
and the memory position it has indexed up to; `Recall` keeps it in step with the
memory stream (`sync` folds what was written since) and searches it. Three indexes
implement the interface: SQLite FTS5 and PostgreSQL full-text search (`_fulltext`),
and `HashedVectors`, an in-process vector index (hashed term-frequency vectors, cosine
similarity) that shows what a vector store (sqlite-vec, pgvector, with real embeddings)
would implement: `upsert` the documents with their embeddings, `search` the nearest.

Rejected: indexing every version. Agents recall what memory says now; the history
of a key is `history(key)`.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..journal import EventStore
from ._state import WRITTEN, memory_stream

#: Events read at once while syncing an index.
PAGE = 5000
#: Characters of a document shown with a hit.
SNIPPET = 200

_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class Document:
    """A key's latest version, as the text an index searches."""

    key: str
    version: int
    text: str


@dataclass(frozen=True, slots=True)
class Hit:
    """A key that matched a search, how well (higher is better), and where it starts."""

    key: str
    version: int
    score: float
    snippet: str

    def to_json(self) -> dict[str, Any]:
        """The JSON form the search tool returns."""
        return {
            "key": self.key,
            "version": self.version,
            "score": self.score,
            "snippet": self.snippet,
        }


class RecallIndex(Protocol):
    """What a search index implements: full text or vectors, embedded or a server."""

    async def indexed_position(self, memory: str) -> int:
        """The memory position everything up to which is indexed (0: nothing yet)."""
        ...

    async def upsert(self, memory: str, documents: Sequence[Document], position: int) -> None:
        """Replace the documents' entries and record `position`, all or nothing."""
        ...

    async def search(self, memory: str, query: str, *, limit: int) -> list[Hit]:
        """The best `limit` keys for `query`, best first."""
        ...


def text_of(value: Any) -> str:
    """The searchable text of a JSON value: its strings, object keys and numbers."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return " ".join(f"{k} {text_of(v)}" for k, v in value.items())
    if isinstance(value, list):
        return " ".join(text_of(v) for v in value)
    return "" if value is None else str(value)


def words(text: str) -> list[str]:
    """The lower-cased words of `text` (what a query matches on, in every index)."""
    return [w.lower() for w in _WORD.findall(text)]


class Recall:
    """Searches memories through a `RecallIndex`, keeping it in step with the memory.

    Example::

        recall = Recall(SqliteFullText("recall.db"))
        await recall.sync(store, "findings")
        hits = await recall.search("findings", "lease fencing epoch")
    """

    def __init__(self, index: RecallIndex) -> None:
        self.index = index

    async def sync(self, store: EventStore, memory: str) -> int:
        """Index what memory `memory` wrote since the index last saw it; the position reached."""
        position = await self.index.indexed_position(memory)
        while events := await store.read_stream(
            memory_stream(memory), from_seq=position + 1, limit=PAGE
        ):
            latest: dict[str, Document] = {}
            for event in events:
                if event.type == WRITTEN:
                    data = event.data
                    key = str(data["key"])
                    latest[key] = Document(key, int(data["version"]), text_of(data["value"]))
            position = events[-1].seq
            await self.index.upsert(memory, list(latest.values()), position)
        return position

    async def search(self, memory: str, query: str, *, limit: int = 5) -> list[Hit]:
        """The keys of `memory` that best match `query`, best first (none for no words)."""
        if not words(query) or limit < 1:
            return []
        return await self.index.search(memory, query, limit=limit)


@dataclass
class HashedVectors:
    """An in-process vector index: hashed term-frequency vectors, nearest by cosine.

    A stand-in for an embedding model and a vector store, implementing `RecallIndex`
    as they would: each document becomes a vector (`embed`), a query the vector
    nearest to it. Brute force, for tests and small memories.
    """

    dimensions: int = 512
    _vectors: dict[str, dict[str, tuple[int, list[float], str]]] = field(default_factory=dict)
    _positions: dict[str, int] = field(default_factory=dict)

    def embed(self, text: str) -> list[float]:
        """The unit vector of `text`'s hashed word counts."""
        vector = [0.0] * self.dimensions
        for word in words(text):
            digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
            vector[int.from_bytes(digest, "big") % self.dimensions] += 1.0
        norm = math.sqrt(sum(x * x for x in vector)) or 1.0
        return [x / norm for x in vector]

    async def indexed_position(self, memory: str) -> int:
        """See `RecallIndex`."""
        return self._positions.get(memory, 0)

    async def upsert(self, memory: str, documents: Sequence[Document], position: int) -> None:
        """See `RecallIndex`."""
        entries = self._vectors.setdefault(memory, {})
        for document in documents:
            entries[document.key] = (document.version, self.embed(document.text), document.text)
        self._positions[memory] = position

    async def search(self, memory: str, query: str, *, limit: int) -> list[Hit]:
        """See `RecallIndex`."""
        target = self.embed(query)
        scored = [
            Hit(
                key,
                version,
                sum(a * b for a, b in zip(target, vector, strict=True)),
                text[:SNIPPET],
            )
            for key, (version, vector, text) in self._vectors.get(memory, {}).items()
        ]
        ranked = sorted((h for h in scored if h.score > 0), key=lambda h: (-h.score, h.key))
        return ranked[:limit]
