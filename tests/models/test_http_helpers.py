"""The edge helpers both adapters share: Retry-After parsing, redaction, finish reasons."""

from __future__ import annotations

from email.utils import formatdate

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phalanx.agents._http import finish_reason_for, parse_retry_after, redact

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "1"}, 1.0),
        ({"retry-after": "2.5"}, 2.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after": "9", "retry-after-ms": "250"}, 0.25),
        ({"retry-after": formatdate(NOW + 12, usegmt=True)}, 12.0),
        ({"retry-after": formatdate(NOW - 60, usegmt=True)}, 0.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after-ms": "x", "retry-after": "3"}, 3.0),
        ({}, None),
    ],
)
def test_retry_after_forms(headers: dict[str, str], expected: float | None) -> None:
    """Seconds, milliseconds and HTTP dates are understood; junk gives no hint."""
    assert parse_retry_after(headers, now=NOW) == expected


@given(st.text(max_size=40), st.text(max_size=40))
def test_retry_after_is_never_negative_and_never_raises(seconds: str, millis: str) -> None:
    """Whatever the server sends, the hint is None or a non-negative number."""
    hint = parse_retry_after({"retry-after": seconds, "retry-after-ms": millis}, now=NOW)

    assert hint is None or hint >= 0


def test_redact_removes_the_key_and_bounds_the_length() -> None:
    """A key echoed by a server is cut out, and long bodies are shortened."""
    key = "sk-live-abcdef123456"

    assert redact(f"bad key {key}!", key) == "bad key ***!"
    assert len(redact("x" * 5000, key)) < 600


@pytest.mark.parametrize(
    ("raw", "has_tool_calls", "expected"),
    [
        ("stop", False, "stop"),
        ("end_turn", False, "stop"),
        ("length", False, "length"),
        ("max_tokens", True, "length"),
        ("tool_calls", True, "tool_calls"),
        ("tool_use", True, "tool_calls"),
        ("stop", True, "tool_calls"),
        ("content_filter", False, "content_filter"),
        ("refusal", False, "content_filter"),
        ("eos_token", False, "stop"),
    ],
)
def test_finish_reasons_are_normalised(raw: str, has_tool_calls: bool, expected: str) -> None:
    """Provider stop reasons map onto the FinishReason literal."""
    assert finish_reason_for(raw, has_tool_calls=has_tool_calls) == expected
