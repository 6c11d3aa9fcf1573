"""Journaled errors: error_to_json / error_from_json round-trip through JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import phalanx
from phalanx.durable._serde import error_from_json, error_to_json


def _through_the_journal(error: BaseException | dict[str, Any]) -> BaseException:
    record = error if isinstance(error, dict) else error_to_json(error)
    return error_from_json(json.loads(json.dumps(record, allow_nan=False)), step="s")


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


# Every phalanx error class round-trips through the journal: tests/unit/test_errors.py.


def test_an_older_journal_form_still_rebuilds_the_error() -> None:
    """Fields a class no longer takes are ignored; the error comes back from the rest."""
    record = error_to_json(phalanx.ToolTimeoutError(tool="t", step="s", attempt=2, timeout=1.5))
    record["fields"] |= {"error_type": "TimeoutError", "traceback": "", "status": None}
    rebuilt = _through_the_journal(record)
    assert isinstance(rebuilt, phalanx.ToolTimeoutError)
    assert (rebuilt.tool, rebuilt.attempt, rebuilt.timeout) == ("t", 2, 1.5)


def test_a_phalanx_error_that_cannot_be_rebuilt_comes_back_as_step_error() -> None:
    """A journaled error missing a field its class now requires is a StepError naming it."""
    record = error_to_json(phalanx.RunExistsError(run_id="r"))
    del record["fields"]["run_id"]
    rebuilt = _through_the_journal(record)
    assert isinstance(rebuilt, phalanx.StepError)
    assert rebuilt.error_type == "phalanx._errors.RunExistsError"
    assert (
        rebuilt.message
        == "run 'r' already exists; continue it with `phalanx resume r` or pick another --run-id"
    )


def test_fields_that_are_not_json_come_back_as_step_error() -> None:
    """An error whose fields JSON cannot hold is journaled by type and message only."""
    error = phalanx.ConfigError(setting="clock", value=object(), reason="not a Clock")
    rebuilt = _through_the_journal(error_to_json(error))
    assert isinstance(rebuilt, phalanx.StepError)
    assert rebuilt.error_type == "phalanx._errors.ConfigError"
    assert rebuilt.message == str(error)


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
