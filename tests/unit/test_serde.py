"""Journaled errors: error_to_json / error_from_json round-trip through JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import phalanx
from phalanx._errors import ModelRateLimitedError
from phalanx.durable._serde import error_from_json, error_to_json


def _through_the_journal(error: BaseException) -> BaseException:
    record = json.loads(json.dumps(error_to_json(error), allow_nan=False))
    return error_from_json(record, step="s")


BUILTINS: list[type[Exception]] = [
    Exception,
    ValueError,
    TypeError,
    RuntimeError,
    KeyError,
    LookupError,
    IndexError,
    ZeroDivisionError,
    TimeoutError,
    ConnectionError,
    PermissionError,
    NotImplementedError,
    AssertionError,
]

texts = st.text(max_size=40)


@given(st.sampled_from(BUILTINS), texts)
def test_builtin_exceptions_round_trip(cls: type[Exception], message: str) -> None:
    """A builtin exception comes back as the same type with the same message and args."""
    error = cls(message)
    rebuilt = _through_the_journal(error)
    assert type(rebuilt) is cls
    assert str(rebuilt) == str(error)
    assert rebuilt.args == error.args


@given(st.integers(1, 40), texts)
def test_os_errors_round_trip_with_their_errno(errno: int, message: str) -> None:
    """OSError(errno, text) comes back as the same (errno-chosen) subclass with its errno."""
    error = OSError(errno, message)
    rebuilt = _through_the_journal(error)
    assert type(rebuilt) is type(error)
    assert isinstance(rebuilt, OSError) and rebuilt.errno == errno
    assert str(rebuilt) == str(error)


PHALANX_ERRORS = st.one_of(
    st.builds(phalanx.UserError, texts),
    st.builds(phalanx.UnknownRunError, run_id=texts, store=texts),
    st.builds(phalanx.RunExistsError, run_id=texts),
    st.builds(phalanx.WorkflowImportError, ref=texts, reason=texts),
    st.builds(phalanx.InvalidStoreURLError, url=texts, reason=texts),
    st.builds(phalanx.EventDataError, stream_id=texts, event_type=texts, reason=texts),
    st.builds(
        phalanx.PayloadTooLargeError,
        stream_id=texts,
        event_type=texts,
        size=st.integers(0, 10**9),
        limit=st.integers(0, 10**9),
    ),
    st.builds(
        phalanx.NonDeterminismError,
        run_id=texts,
        position=st.integers(1, 10**6),
        expected=texts,
        actual=texts,
    ),
    st.builds(phalanx.StepError, step=texts, error_type=texts, message=texts),
    st.builds(
        phalanx.SignalTimeoutError,
        run_id=texts,
        name=texts,
        timeout=st.floats(0, 1e6, allow_nan=False),
    ),
    st.builds(phalanx.RunFailedError, run_id=texts, status=texts, error_type=texts, message=texts),
    st.builds(phalanx.StoreUnavailableError, store=texts, reason=texts),
    st.builds(
        ModelRateLimitedError,
        provider=texts,
        detail=texts,
        retry_after=st.none() | st.floats(0, 1e4, allow_nan=False),
    ),
    st.builds(
        phalanx.FencedError,
        stream_id=texts,
        epoch=st.none() | st.integers(1, 10**6),
        current_epoch=st.none() | st.integers(1, 10**6),
    ),
    st.builds(
        phalanx.ConcurrencyError,
        stream_id=texts,
        expected_version=st.integers(0, 10**6),
        actual_version=st.integers(0, 10**6),
    ),
    st.builds(
        phalanx.LeaseHeldError,
        stream_id=texts,
        owner=texts,
        epoch=st.integers(1, 10**6),
        expires_at=st.floats(0, 1e10, allow_nan=False),
    ),
)


@given(PHALANX_ERRORS)
def test_phalanx_errors_round_trip_with_their_fields(error: phalanx.PhalanxError) -> None:
    """A phalanx error comes back as the same type, message, fields and retryability."""
    rebuilt = _through_the_journal(error)
    assert type(rebuilt) is type(error)
    assert str(rebuilt) == str(error)
    assert isinstance(rebuilt, phalanx.PhalanxError)
    assert rebuilt.retryable == error.retryable
    fields: dict[str, Any] = error._fields
    for name, value in fields.items():
        assert getattr(rebuilt, name) == value


def test_the_journal_form_names_type_message_and_traceback() -> None:
    """error_to_json records the qualified type, the message and a traceback."""
    try:
        raise ValueError("boom")
    except ValueError as exc:
        record = error_to_json(exc)
    assert record["type"] == "builtins.ValueError"
    assert record["message"] == "boom"
    assert record["args"] == ["boom"]
    assert "Traceback" in record["traceback"] and "boom" in record["traceback"]


class _NeedsTwo(Exception):
    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")


@pytest.mark.parametrize(
    ("record", "error_type"),
    [
        (error_to_json(_NeedsTwo(7, "odd")), f"{__name__}._NeedsTwo"),
        ({"type": "no_such_module.Gone", "message": "m"}, "no_such_module.Gone"),
        ({"type": "builtins.NoSuchError", "message": "m"}, "builtins.NoSuchError"),
        ({"type": "builtins.KeyboardInterrupt", "message": "m"}, "builtins.KeyboardInterrupt"),
        (error_to_json(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad")), None),
    ],
)
def test_what_cannot_be_rebuilt_comes_back_as_step_error(
    record: dict[str, Any], error_type: str | None
) -> None:
    """A type that cannot be imported or constructed comes back as StepError naming it."""
    rebuilt = error_from_json(record, step="fetch")
    assert isinstance(rebuilt, phalanx.StepError)
    assert rebuilt.step == "fetch"
    assert rebuilt.error_type == (error_type or record["type"])
    assert rebuilt.message == record["message"]
