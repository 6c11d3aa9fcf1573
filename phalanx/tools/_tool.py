"""Declaring a tool: a typed Python function whose JSON schema comes from its signature.

Arguments a model proposes are validated against that schema (through pydantic)
before the function runs; invalid ones never reach it. The declaration also says how
the tool is called reliably (see `_call`): a timeout per attempt, a retry policy and
which HTTP statuses it retries, a circuit breaker, and what happens to a call that
fails for good (its dead-letter policy).
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_type_hints, overload

import pydantic

from .._errors import ToolArgumentsError
from .._executor import run_sync
from ..durable import RetryPolicy
from ._breaker import CircuitBreaker

if TYPE_CHECKING:
    from ..durable import WorkflowContext
    from ._notify import Notifier

#: A parameter with this name receives the step's idempotency key; it is not in the schema.
IDEMPOTENCY_PARAMETER = "idempotency_key"

#: What a call that failed for good (retries exhausted, or an error that is never
#: retried) does once it is in the dead-letter queue: `fail` raises
#: `ToolDeadLetteredError`; `continue` returns a typed `ToolUnavailable` result the
#: agent can reason about; `wait` makes the run wait (status `waiting`) for a person to
#: retry, resolve or discard the entry.
DeadLetterPolicy = Literal["fail", "continue", "wait"]

#: What a call refused by an open circuit breaker does: `fail_fast` applies the
#: dead-letter policy's outcome (raise, or unavailable) without a dead-letter entry;
#: `dead_letter` makes an entry as for an exhausted call. Under `wait` a refused call
#: is always dead-lettered, since a person has to act on something.
OpenCircuitPolicy = Literal["fail_fast", "dead_letter"]

#: HTTP statuses worth trying again: timeouts, too early, rate limits, server errors.
#: An error that carries any other status (400, 404, 422...) is the caller's fault
#: and is never retried, whatever its exception type.
DEFAULT_RETRY_STATUSES: frozenset[int] = frozenset({408, 425, 429, 500, 502, 503, 504})


class ToolSpec(pydantic.BaseModel):
    """A tool as the model sees it: a name, what it is for, a JSON schema of arguments."""

    model_config = pydantic.ConfigDict(frozen=True)

    name: str
    description: str = ""
    parameters: dict[str, Any] = pydantic.Field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )


@dataclass(frozen=True)
class Tool:
    """A function an agent can call, with its schema and how to call it reliably.

    Build one with the `@tool` decorator. `timeout` bounds one attempt; `retry` says
    how failures are retried (each attempt journaled), `retry_statuses` which HTTP
    statuses may be; `idempotent` tools receive the step's idempotency key in an
    `idempotency_key` parameter so they can deduplicate; `breaker` stops calling a
    tool that keeps failing; `dead_letter` and `on_open` say what a call that failed
    for good, or was refused by the breaker, gives its caller; `notifiers` are told
    when a call is dead-lettered or the breaker opens (default: the log, plus the
    webhook in `PHALANX_ESCALATION_WEBHOOK` if set). `secrets` name arguments that
    are redacted wherever the call is recorded.
    """

    name: str
    description: str
    fn: Callable[..., Any]
    arguments_model: type[pydantic.BaseModel]
    timeout: float | None = None
    retry: RetryPolicy | None = None
    idempotent: bool = False
    secrets: frozenset[str] = field(default_factory=frozenset)
    breaker: CircuitBreaker | None = None
    dead_letter: DeadLetterPolicy = "continue"
    on_open: OpenCircuitPolicy = "fail_fast"
    retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES
    notifiers: tuple[Notifier, ...] | None = None
    #: `module:qualname` where the tool can be imported (for `phalanx dlq retry`).
    ref: str | None = None

    @property
    def parameters(self) -> dict[str, Any]:
        """The JSON schema of the arguments."""
        schema = self.arguments_model.model_json_schema()
        schema.pop("title", None)
        return schema

    def spec(self) -> ToolSpec:
        """The tool as a model sees it (built once: a JSON schema takes ~1 ms to make)."""
        return self._spec

    @functools.cached_property
    def _spec(self) -> ToolSpec:
        return ToolSpec(name=self.name, description=self.description, parameters=self.parameters)

    def parse(self, arguments: str | Mapping[str, Any]) -> pydantic.BaseModel:
        """Parse and validate arguments into the arguments model.

        Raises:
            ToolArgumentsError: not a JSON object, or the schema is violated; the
                message is written for the model to correct itself.
        """
        try:
            if isinstance(arguments, str):
                return self.arguments_model.model_validate_json(arguments or "{}")
            return self.arguments_model.model_validate(
                arguments if isinstance(arguments, dict) else dict(arguments)
            )
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(arguments)'}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
            raise ToolArgumentsError(tool=self.name, errors=problems) from exc

    def validate(self, arguments: str | Mapping[str, Any]) -> dict[str, Any]:
        """Parse and validate arguments, returning them as plain JSON values.

        Raises:
            ToolArgumentsError: not a JSON object, or the schema is violated; the
                message is written for the model to correct itself.
        """
        return self.parse(arguments).model_dump(mode="json")

    async def call(
        self,
        ctx: WorkflowContext | None,
        arguments: str | Mapping[str, Any] | None = None,
        /,
        *,
        step: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Call the tool reliably; the same as `phalanx.call_tool(ctx, self, ...)`."""
        from ._call import call_tool

        return await call_tool(ctx, self, arguments, step=step, **kwargs)

    async def invoke(self, arguments: Mapping[str, Any], idempotency_key: str | None = None) -> Any:
        """Call the function with validated arguments (sync functions in a thread)."""
        kwargs = dict(self.arguments_model.model_validate(dict(arguments)))
        if self.idempotent:
            kwargs[IDEMPOTENCY_PARAMETER] = idempotency_key
        if inspect.iscoroutinefunction(self.fn):
            return await self.fn(**kwargs)
        return await run_sync(self.fn, **kwargs)

    def redact(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments with declared secrets replaced, for journals and traces."""
        return {k: ("[redacted]" if k in self.secrets else v) for k, v in arguments.items()}


def _arguments_model(fn: Callable[..., Any], name: str) -> type[pydantic.BaseModel]:
    signature = inspect.signature(fn)
    hints = get_type_hints(fn)
    fields: dict[str, Any] = {}
    for parameter in signature.parameters.values():
        if parameter.name == IDEMPOTENCY_PARAMETER:
            continue
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise TypeError(f"tool {name!r}: *args/**kwargs cannot be described by a schema")
        annotation = hints.get(parameter.name, Any)
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (annotation, default)
    config = pydantic.ConfigDict(extra="forbid")
    return pydantic.create_model(f"{name}_arguments", __config__=config, **fields)


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    retry: RetryPolicy | None = None,
    idempotent: bool = False,
    secrets: tuple[str, ...] = (),
    breaker: CircuitBreaker | None = None,
    dead_letter: DeadLetterPolicy = "continue",
    on_open: OpenCircuitPolicy = "fail_fast",
    retry_statuses: Collection[int] = DEFAULT_RETRY_STATUSES,
    notifiers: Sequence[Notifier] | None = None,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    retry: RetryPolicy | None = None,
    idempotent: bool = False,
    secrets: tuple[str, ...] = (),
    breaker: CircuitBreaker | None = None,
    dead_letter: DeadLetterPolicy = "continue",
    on_open: OpenCircuitPolicy = "fail_fast",
    retry_statuses: Collection[int] = DEFAULT_RETRY_STATUSES,
    notifiers: Sequence[Notifier] | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Declare a typed function as a tool; its docstring is the description.

    Example::

        @phalanx.tool(
            timeout=10,
            retry=phalanx.RetryPolicy(max_attempts=3),
            breaker=phalanx.CircuitBreaker(failure_threshold=5, open_for=30),
            dead_letter="wait",
        )
        async def search(query: str, limit: int = 5) -> list[str]:
            "Search the web for `query`."

    Raises:
        TypeError: the signature cannot be described by a schema, `secrets` names
            no parameter, an idempotent tool lacks `idempotency_key`, or a policy is
            not one of the allowed values.
    """
    if dead_letter not in ("fail", "continue", "wait"):
        raise TypeError(f"dead_letter must be 'fail', 'continue' or 'wait', not {dead_letter!r}")
    if on_open not in ("fail_fast", "dead_letter"):
        raise TypeError(f"on_open must be 'fail_fast' or 'dead_letter', not {on_open!r}")

    def build(target: Callable[..., Any]) -> Tool:
        tool_name = name or target.__name__
        doc = description if description is not None else inspect.getdoc(target) or ""
        model = _arguments_model(target, tool_name)
        unknown = set(secrets) - set(model.model_fields)
        if unknown:
            raise TypeError(f"tool {tool_name!r}: secrets {sorted(unknown)} are not parameters")
        if idempotent and IDEMPOTENCY_PARAMETER not in inspect.signature(target).parameters:
            raise TypeError(
                f"tool {tool_name!r} is idempotent, so it needs an "
                f"`{IDEMPOTENCY_PARAMETER}` parameter to receive the key"
            )
        return Tool(
            name=tool_name,
            description=doc,
            fn=target,
            arguments_model=model,
            timeout=timeout,
            retry=retry,
            idempotent=idempotent,
            secrets=frozenset(secrets),
            breaker=breaker,
            dead_letter=dead_letter,
            on_open=on_open,
            retry_statuses=frozenset(retry_statuses),
            notifiers=None if notifiers is None else tuple(notifiers),
            ref=_ref(target),
        )

    return build(fn) if fn is not None else build


def _ref(fn: Callable[..., Any]) -> str | None:
    """Where the tool made from `fn` can be imported again, if it can be."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not module or not qualname or "<locals>" in qualname or module == "__main__":
        return None
    return f"{module}:{qualname}"


def encode_result(value: Any) -> str:
    """A tool's result as the text fed back to the model."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
