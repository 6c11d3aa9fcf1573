"""Every phalanx error: declared in phalanx/_errors.py, survives pickle and the journal."""

from __future__ import annotations

import dataclasses
import importlib
import json
import pickle
import pkgutil
import types
import typing
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import phalanx
from phalanx.durable._serde import error_from_json, error_to_json


def _subclasses(cls: type[BaseException]) -> set[type[BaseException]]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


#: Every error class phalanx defines, found by walking the hierarchy (not listed by
#: hand), so an error added later is tested here without anyone remembering to.
ERROR_CLASSES = sorted(
    (c for c in _subclasses(phalanx.PhalanxError) if c.__module__.startswith("phalanx")),
    key=lambda c: c.__name__,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)


#: Exceptions raised and caught inside one module, never seen by a caller.
INTERNAL = {
    "phalanx.journal._json.Unjournalable",  # becomes EventDataError in journal/_events.py
    "phalanx.testing._sim_world.ProcessCrash",  # a simulated SIGKILL, never leaves simulate()
}


def _values(hint: Any) -> st.SearchStrategy[Any]:
    """Values of a field's declared type (JSON-safe, so the journal can hold them)."""
    if hint is str:
        return st.text(max_size=30)
    if hint is int:
        return st.integers(-(10**9), 10**9)
    if hint is float:
        return st.floats(-1e9, 1e9, allow_nan=False)
    if hint is bool:
        return st.booleans()
    if hint is object or hint is Any:
        return json_values
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return st.one_of(*(_values(arg) for arg in typing.get_args(hint)))
    if hint is type(None):
        return st.none()
    if typing.get_origin(hint) is list:
        return st.lists(_values(typing.get_args(hint)[0]), max_size=3)
    if typing.get_origin(hint) is dict:
        keys, values = typing.get_args(hint)
        return st.dictionaries(_values(keys), _values(values), max_size=3)
    raise AssertionError(f"no strategy for a field of type {hint!r}: add one here")


def _errors_of(cls: type[BaseException]) -> st.SearchStrategy[BaseException]:
    """Instances of one error class, built through its constructor from typed fields."""
    if not dataclasses.is_dataclass(cls):
        return st.builds(cls, st.text(max_size=30))  # a base that takes a plain message
    hints = typing.get_type_hints(cls)
    kwargs = {f.name: _values(hints[f.name]) for f in dataclasses.fields(cls) if f.init}
    return st.builds(cls, **kwargs)


def _state(error: BaseException) -> dict[str, Any]:
    return {"type": type(error), "str": str(error), "vars": vars(error), "args": error.args}


def test_every_exception_class_lives_in_the_errors_module() -> None:
    """No module of phalanx but _errors.py defines an exception class."""
    for info in pkgutil.walk_packages(phalanx.__path__, "phalanx."):
        if not info.name.endswith(".__main__"):  # runs the CLI
            importlib.import_module(info.name)
    elsewhere = {
        f"{c.__module__}.{c.__qualname__}"
        for c in _subclasses(BaseException)
        if c.__module__.startswith("phalanx") and c.__module__ != "phalanx._errors"
    }
    assert elsewhere == INTERNAL
    assert len(ERROR_CLASSES) > 50  # the walk found the hierarchy


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_errors_with_fields_are_keyword_dataclasses_with_their_own_message(
    cls: type[BaseException],
) -> None:
    """A leaf with fields builds its message from them and keeps identity equality."""
    if not dataclasses.is_dataclass(cls):
        return  # a base that takes a plain message, as Exception does
    assert cls.__str__ is not BaseException.__str__, "the message would be empty"
    assert cls.__eq__ is BaseException.__eq__, "eq=True would make errors unhashable"
    assert cls.__hash__ is BaseException.__hash__


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_every_error_pickles(cls: type[BaseException]) -> None:
    """Any instance of every error class comes back from pickle as it went in."""

    @settings(max_examples=30)
    @given(_errors_of(cls))
    def round_trip(error: BaseException) -> None:
        copy = pickle.loads(pickle.dumps(error))
        assert _state(copy) == _state(error)
        assert isinstance(copy, phalanx.PhalanxError) and isinstance(error, phalanx.PhalanxError)
        assert copy.retryable == error.retryable

    round_trip()


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_every_error_survives_the_journal(cls: type[BaseException]) -> None:
    """Any instance of every error class comes back from its JSON journal form intact."""

    @settings(max_examples=30)
    @given(_errors_of(cls))
    def round_trip(error: BaseException) -> None:
        record = json.loads(json.dumps(error_to_json(error), allow_nan=False))
        rebuilt = error_from_json(record, step="s")
        assert _state(rebuilt) == _state(error)
        assert isinstance(rebuilt, phalanx.PhalanxError) and isinstance(error, phalanx.PhalanxError)
        assert rebuilt.retryable == error.retryable

    round_trip()
