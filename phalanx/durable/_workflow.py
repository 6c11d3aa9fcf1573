"""Marking workflows and finding them again by name, so any process can resume a run."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import sys
import typing
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from .._errors import WorkflowImportError, WorkflowInputError

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

_MARK = "__phalanx_workflow__"
_REF = "__phalanx_ref__"


def workflow(fn: F) -> F:
    """Mark `async def fn(ctx, **inputs)` as a durable workflow.

    The run journals the workflow's `module:qualname`, which is how `phalanx resume`
    in another process finds the code again; so define workflows at module level.

    Raises:
        TypeError: `fn` is not an async function.
    """
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(f"@phalanx.workflow needs an async def, got {fn!r}")
    setattr(fn, _MARK, True)
    return fn  # type: ignore[return-value]  # iscoroutinefunction narrowed F; it is still fn


def is_workflow(fn: object) -> bool:
    """Whether `fn` was marked with `@workflow`."""
    return callable(fn) and getattr(fn, _MARK, False) is True


def workflow_ref(fn: Callable[..., Any]) -> str:
    """The `module:qualname` that loads `fn` again in another process."""
    if not is_workflow(fn):
        raise WorkflowImportError(ref=repr(fn), reason="it is not decorated with @phalanx.workflow")
    loaded_as = getattr(fn, _REF, None)
    if isinstance(loaded_as, str):
        return loaded_as  # loaded from a file path: that path finds it again
    module = fn.__module__
    if module == "__main__":
        main = sys.modules["__main__"]
        spec = getattr(main, "__spec__", None)
        if spec is not None and spec.name:
            module = spec.name
        elif getattr(main, "__file__", None):
            module = str(Path(main.__file__ or "").resolve())
    return f"{module}:{fn.__qualname__}"


def load_workflow(ref: str) -> Callable[..., Awaitable[Any]]:
    """Import the workflow a `MODULE:FUNCTION` (or `path/file.py:FUNCTION`) names.

    Raises:
        WorkflowImportError: the module cannot be imported, lacks the function, or
            the function is not a workflow; the message says which.
    """
    module_name, sep, qualname = ref.rpartition(":")
    if not sep or not module_name or not qualname:
        raise WorkflowImportError(ref=ref, reason="expected MODULE:FUNCTION")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            spec = importlib.util.spec_from_file_location(path.stem, path)
            if spec is None or spec.loader is None or not path.exists():
                raise WorkflowImportError(ref=ref, reason=f"no Python file at {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules.setdefault(path.stem, module)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except WorkflowImportError:
        raise
    except Exception as exc:
        raise WorkflowImportError(
            ref=ref, reason=f"importing {module_name!r} raised {type(exc).__name__}: {exc}"
        ) from exc
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise WorkflowImportError(ref=ref, reason=f"module {module_name!r} has no {qualname!r}")
    if not is_workflow(obj):
        raise WorkflowImportError(
            ref=ref, reason=f"{qualname!r} is not decorated with @phalanx.workflow"
        )
    if module_name.endswith(".py"):
        setattr(obj, _REF, f"{Path(module_name).resolve()}:{qualname}")
    return obj  # type: ignore[no-any-return]  # checked by is_workflow above


def check_inputs(fn: Callable[..., Any], inputs: Mapping[str, Any]) -> None:
    """Refuse `inputs` that the workflow's signature would not accept, before a run exists.

    Checked with pydantic in strict JSON mode against the annotations of the keyword
    arguments after `ctx`: unknown keys (unless the workflow takes `**kwargs`), missing
    required ones and values of the wrong type are refused, so a typo in `--input`
    does not start a run that can only fail. Values are not converted: the workflow
    receives the inputs as given (and journaled). Annotations that cannot be resolved
    or have no JSON form are not checked.

    Raises:
        WorkflowInputError: naming each offending key and what is wrong with it.
    """
    import pydantic  # here, not at the top: only starting a run pays for the import

    parameters = list(inspect.signature(fn).parameters.values())[1:]  # after ctx
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # an annotation naming something not importable: check names only
        hints = {}
    fields: dict[str, Any] = {}
    open_ended = False
    for param in parameters:
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            open_ended = True
            continue
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.POSITIONAL_ONLY):
            continue
        annotation: Any = hints.get(param.name, Any)
        try:
            pydantic.TypeAdapter(annotation)
        except Exception:  # no JSON form (an arbitrary class): accept any value
            annotation = Any
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (annotation, default)
    config = pydantic.ConfigDict(extra="allow" if open_ended else "forbid")
    model = pydantic.create_model("Inputs", __config__=config, **fields)
    try:
        model.model_validate_json(json.dumps(dict(inputs)), strict=True)
    except pydantic.ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            return  # data no JSON store can hold: the store refuses it, naming its path
        expected = ", ".join(fields) or "no inputs"
        problems = []
        for error in exc.errors(include_url=False):
            where = ".".join(str(p) for p in error["loc"]) or "(inputs)"
            if error["type"] == "extra_forbidden":
                problems.append(f"{where}: unknown input (it takes {expected})")
            elif error["type"] == "missing":
                problems.append(f"{where}: required")
            else:
                problems.append(f"{where}: {error['msg']} (got {json.dumps(error['input'])})")
        raise WorkflowInputError(workflow=workflow_ref(fn), errors="; ".join(problems)) from None
    except (TypeError, ValueError):
        return  # inputs that are not JSON: the store refuses them, with the path
