"""Hypothesis strategies shared by the suites: hostile JSON-able values.

`hostile_values()` draws what a user, a tool or a model can hand phalanx that JSON
(or Python's `json`) accepts but a journal may not hold: lone surrogates, NUL, deep
nesting, huge ints, NaN and Infinity, 1 MiB strings, mixed into ordinary JSON.
`journalable(value)` is the oracle: whether the journal must accept the value (and give
it back unchanged) or refuse it with `EventDataError`. It is written independently of
phalanx's own checks, from the rules in `phalanx/journal/_json.py`'s docstring.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from hypothesis import strategies as st

from phalanx.journal import MAX_DEPTH

LONE_SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)

#: One MiB of text: above the default payload limit once it sits in an event.
MIB = 1 << 20


def _text_with(bad: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(st.text(max_size=5), bad, st.text(max_size=5)).map("".join)


def nested(depth: int, leaf: Any = 0) -> Any:
    """`leaf` inside `depth` alternating lists and objects."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"n": value}
    return value


HOSTILE_TEXT = st.one_of(
    _text_with(LONE_SURROGATES),
    _text_with(st.just("\x00")),
    st.text(),  # any valid Unicode, emoji and control characters included
    st.just("x" * MIB),
)

HOSTILE_NUMBERS = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=2**63, max_value=2**200) | st.integers(max_value=-(2**63)),
    # More digits than Python will print (drawn by a map: such an int has no repr)...
    st.integers(min_value=4400, max_value=6000).map(lambda digits: 10**digits),
    st.just(10**4000),  # ...and fewer: journaled, and read back exactly
)

DEEP = st.sampled_from([MAX_DEPTH - 2, MAX_DEPTH + 5, 990, 5000]).map(nested)

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=10), HOSTILE_TEXT
)


def hostile_values() -> st.SearchStrategy[Any]:
    """Ordinary JSON with hostile values mixed in, at any depth, in keys too."""
    keys = st.text(max_size=6) | _text_with(LONE_SURROGATES) | _text_with(st.just("\x00"))
    ordinary = st.recursive(
        SCALARS | HOSTILE_NUMBERS,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
        max_leaves=6,
    )
    return st.one_of(ordinary, DEEP, HOSTILE_TEXT, HOSTILE_NUMBERS)


def journalable(value: Any, limit: int = MIB - 256, depth: int = 0) -> bool:
    """Whether a journal must accept `value` (in an event with some room to spare)."""
    return _fits(value, depth) and _size(value) <= limit


def _fits(value: Any, depth: int) -> bool:
    if depth > MAX_DEPTH:
        return False
    if isinstance(value, str):
        return not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int):
        digits = int(abs(value).bit_length() * math.log10(2)) + 1  # off by at most one
        return digits <= sys.get_int_max_str_digits()
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_fits(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(_fits(k, depth + 1) and _fits(v, depth + 1) for k, v in value.items())
    return False


def _size(value: Any) -> int:
    """A generous estimate of the encoded size (escapes can only make text longer)."""
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass")) + 2
    if isinstance(value, list):
        return sum(_size(v) + 1 for v in value) + 2
    if isinstance(value, dict):
        return sum(_size(k) + _size(v) + 2 for k, v in value.items()) + 2
    return len(repr(value))
