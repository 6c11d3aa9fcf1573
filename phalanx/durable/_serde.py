"""Errors to and from the journal: a failed step re-raises on replay as it first did."""

from __future__ import annotations

import dataclasses
import importlib
import traceback
from typing import Any

from .._errors import PhalanxError, StepError
from ..journal import escape_surrogates, find_problem


def _json_safe(value: Any) -> bool:
    return find_problem(value) is None


def _fields(error: BaseException) -> dict[str, Any] | None:
    """A phalanx error's constructor arguments; None for errors built from a message."""
    if not isinstance(error, PhalanxError) or not dataclasses.is_dataclass(error):
        return None
    return {f.name: getattr(error, f.name) for f in dataclasses.fields(error) if f.init}


def error_to_json(error: BaseException) -> dict[str, Any]:
    """The journal form of an exception: type, message, rebuild arguments, traceback.

    Text the journal cannot hold (a lone surrogate echoed in a message) is escaped,
    and fields or arguments it cannot hold are left out: the failure is journaled
    whatever the error carries.
    """
    cls = type(error)
    record: dict[str, Any] = {
        "type": f"{cls.__module__}.{cls.__qualname__}",
        "message": escape_surrogates(str(error)),
        "traceback": escape_surrogates("".join(traceback.format_exception(error))),
    }
    fields = _fields(error)
    if fields is not None and _json_safe(fields):
        record["fields"] = fields
    elif _json_safe(list(error.args)):
        record["args"] = list(error.args)
    return record


def error_from_json(record: dict[str, Any], *, step: str) -> BaseException:
    """Rebuild the journaled exception, or a `StepError` naming its type if we cannot."""
    type_name = str(record.get("type", "Exception"))
    message = str(record.get("message", ""))
    module_name, _, qualname = type_name.rpartition(".")
    try:
        obj: Any = importlib.import_module(module_name or "builtins")
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        obj = None
    if isinstance(obj, type) and issubclass(obj, Exception):
        if "fields" in record and dataclasses.is_dataclass(obj):
            # Through the constructor, so what comes back is checked like any raise;
            # fields the class no longer takes (an older journal) are left out, and
            # fields it now requires make it a StepError.
            takes = {f.name for f in dataclasses.fields(obj) if f.init}
            try:
                return obj(**{k: v for k, v in record["fields"].items() if k in takes})
            except Exception:  # any constructor failure means: it cannot be rebuilt
                return StepError(step=step, error_type=type_name, message=message)
        for args in (record.get("args"), [message]):
            if args is None:
                continue
            try:
                rebuilt = obj(*args)
            except Exception:  # any constructor failure means: try the next form
                continue
            if str(rebuilt) == message:
                return rebuilt
    return StepError(step=step, error_type=type_name, message=message)
