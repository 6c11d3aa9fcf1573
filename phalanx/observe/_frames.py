"""The wire between a traced process and its exporter process: length-prefixed frames.

A frame is a 4-byte big-endian length and a `marshal`-encoded tuple whose first item
says what it is: `("config", {...})` once, first; `("scope", index, name, version,
schema_url)` before the first span of a tracer; `("spans", [record, ...])`; and
`("flush", seq)`, which the exporter answers by exporting what it holds and writing
`seq` and a newline on its stdout. `marshal` is the fastest encoder of plain values in
the standard library and both ends are the same interpreter; nothing else writes here.

A span record is the tuple `_lightspan.Span.record` builds (see there).
"""

from __future__ import annotations

import marshal
import os
import struct
from collections.abc import Callable
from typing import Any

_LENGTH = struct.Struct(">I")

#: Where a recorded span or measurement goes to be shipped (a `Shipper`'s `span` or
#: `measure`): one plain tuple.
Sink = Callable[[tuple[Any, ...]], None]


def encode(frame: tuple[Any, ...]) -> bytes:
    """`frame` as bytes on the wire.

    Raises:
        ValueError: the frame holds a value `marshal` cannot encode.
    """
    payload = marshal.dumps(frame)
    return _LENGTH.pack(len(payload)) + payload


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks: list[bytes] = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read(fd: int) -> tuple[Any, ...] | None:
    """The next frame on `fd`, or None at the end of the stream (the writer is gone)."""
    header = _read_exactly(fd, _LENGTH.size)
    if header is None:
        return None
    payload = _read_exactly(fd, _LENGTH.unpack(header)[0])
    if payload is None:
        return None
    frame: tuple[Any, ...] = marshal.loads(payload)
    return frame
