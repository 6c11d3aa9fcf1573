r"""What the journal can hold: JSON that every store stores and every reader reads back.

Python's `json` module accepts more than a journal can keep. A string may hold a lone
surrogate (`"\ud800"`, which JSON's `\ud800` escape decodes to and UTF-8 cannot
encode, so neither SQLite nor PostgreSQL can store it); NaN and Infinity are not
JSON; an int longer than `sys.get_int_max_str_digits()` digits cannot be written; and
nesting deep enough to nearly reach the recursion limit writes from a shallow stack
but fails to read back from a deeper one, which would make a run unreadable for good.
`encode_json` refuses all of these before anything is written, naming the JSONPath of
the first bad value (`$.result.items[3].text`) so the error says what to fix.

NUL is valid JSON (written `\u0000`) and round-trips through both stores, so data
may hold it; stream ids, types and metadata are stored as text columns, where
PostgreSQL refuses NUL, so `text_problem` refuses it there on every store alike.

The happy path costs one `json.dumps`, an O(1) `isascii()` test, a UTF-8 encode only
for non-ASCII text, and a depth walk only for text with more than `MAX_DEPTH`
brackets. Finding the path walks the value, but only once something was refused.
"""

from __future__ import annotations

import json
import math
import sys
from _json import encode_basestring, make_encoder
from collections.abc import Iterator, Mapping
from typing import Any

#: The deepest nesting of arrays and objects the journal accepts. Far beyond any
#: real data, and far enough below the recursion limit (1000) that a value written
#: from one stack reads back from any other.
MAX_DEPTH = 128


class Unjournalable(ValueError):
    """A value the journal cannot hold: where (a JSONPath) and why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


#: One encoder for every event: `json.dumps` with options builds a new one per call,
#: which costs about as much as encoding a step's event.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _encode(value: Any) -> str:
    """`_ENCODER.encode(value)`; for a dict (every event's data), its C encoder directly.

    `encode` reaches the C encoder through two Python frames and a closure made per
    call, about as long as the C encoder takes on a step's event; the same C encoder
    with the same settings writes the same text. Its markers (the ids of containers
    being encoded, which find a circular reference) are fresh per call, as `encode`
    makes them: a refused value leaves its ids in them.
    """
    if type(value) is not dict:
        return _ENCODER.encode(value)
    encoder = make_encoder(
        {}, _ENCODER.default, encode_basestring, None, ":", ",", False, False, False
    )
    return "".join(encoder(value, 0))


def encode_json(value: Any) -> tuple[str, int]:
    """Encode `value` as compact JSON text and its UTF-8 size in bytes.

    Raises:
        Unjournalable: the first value that cannot be journaled, with its path.
    """
    try:
        text = _encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise _located(value, f"not JSON-serialisable: {exc}") from exc
    if text.isascii():
        size = len(text)
    else:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise _located(value, "cannot be encoded as UTF-8") from exc
    if len(text) > 2 * MAX_DEPTH and text.count("[") + text.count("{") > MAX_DEPTH:
        _check_depth(value)
    return text, size


def text_problem(text: object) -> str | None:
    """Why `text` cannot be a stream id, type or metadata value, or None if it can."""
    if not isinstance(text, str):
        return f"must be a string, not {type(text).__name__}"
    if "\x00" in text:
        return "holds a NUL character"
    return _surrogate(text)


def escape_surrogates(text: str) -> str:
    r"""`text` with lone surrogates written as `\udXXX`: what data can hold of it."""
    if _surrogate(text) is None:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def safe_text(text: str) -> str:
    """`text` with NUL and lone surrogates escaped: fit for an id in an error message."""
    return escape_surrogates(text).replace("\x00", "\\x00")


def find_problem(value: Any, root: str = "$") -> tuple[str, str] | None:
    """The path and reason of the first value under `value` the journal cannot hold."""
    for path, item, depth in _walk(value, root):
        if depth > MAX_DEPTH:
            return path, f"nested more than {MAX_DEPTH} arrays/objects deep"
        reason = _problem(item)
        if reason is not None:
            return path, reason
    return None


def _surrogate(text: str) -> str | None:
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"holds a lone surrogate (U+{ord(text[exc.start]):04X}) that UTF-8 cannot encode"
    return None


def _located(value: Any, fallback: str) -> Unjournalable:
    found = find_problem(value)
    return Unjournalable(*found) if found is not None else Unjournalable("$", fallback)


def _check_depth(value: Any) -> None:
    for path, _, depth in _walk(value, "$"):
        if depth > MAX_DEPTH:
            raise Unjournalable(path, f"nested more than {MAX_DEPTH} arrays/objects deep")


class _BadKey:
    """An object key JSON cannot have (a tuple, say), as `_walk` reports it."""

    def __init__(self, key: object) -> None:
        self.key = key


def _problem(item: Any) -> str | None:
    if item is None or isinstance(item, bool | Mapping | list | tuple):
        return None
    if isinstance(item, str):
        surrogate = _surrogate(item)  # NUL is fine inside data: JSON escapes it
        return None if surrogate is None else f"a string that {surrogate}"
    if isinstance(item, int):
        if item.bit_length() > 1000:
            try:
                str(item)
            except ValueError:
                return f"an int over {sys.get_int_max_str_digits()} digits long"
        return None
    if isinstance(item, float):
        return None if math.isfinite(item) else f"{item} is not a JSON number"
    if isinstance(item, _BadKey):
        return f"an object key of type {type(item.key).__name__}; JSON keys are strings"
    return f"a {type(item).__name__}, which is not a JSON value"


def _walk(value: Any, root: str) -> Iterator[tuple[str, Any, int]]:
    """Every value under `value` (itself first) with its path and nesting depth.

    A string key is yielded (as a value) before its value, so a bad key is found too.
    """
    stack: list[tuple[str, Any, int]] = [(root, value, 0)]
    while stack:
        path, item, depth = stack.pop()
        yield path, item, depth
        if depth > MAX_DEPTH:
            return  # reported by the caller; never walk a 100,000-deep value
        children: list[tuple[str, Any, int]] = []
        if isinstance(item, Mapping):
            for key, child in item.items():
                if key is not None and not isinstance(key, str | int | float | bool):
                    children.append((path, _BadKey(key), depth + 1))
                    continue
                child_path = _key_path(path, key)
                if isinstance(key, str):
                    children.append((child_path, key, depth + 1))
                children.append((child_path, child, depth + 1))
        elif isinstance(item, list | tuple):
            children = [(f"{path}[{i}]", c, depth + 1) for i, c in enumerate(item)]
        stack.extend(reversed(children))


def _key_path(path: str, key: object) -> str:
    if isinstance(key, str) and key.isidentifier():
        return f"{path}.{key}"
    # ASCII-escaped, so a bad key's path can itself be journaled and printed.
    return f"{path}[{json.dumps(key if isinstance(key, str) else str(key))}]"
