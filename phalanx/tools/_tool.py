"""Declaring a tool: a typed Python function whose JSON schema comes from its signature.

Arguments a model proposes are validated against that schema (through pydantic)
before the function runs; invalid ones never reach it.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, get_type_hints, overload

import pydantic

from .._errors import ToolArgumentsError
from ..agents._messages import ToolSpec
from ..durable import RetryPolicy

#: A parameter with this name receives the step's idempotency key; it is not in the schema.
IDEMPOTENCY_PARAMETER = "idempotency_key"


@dataclass(frozen=True)
class Tool:
    """A function an agent can call, with its schema and how to call it reliably.

    Build one with the `@tool` decorator. `timeout` bounds one attempt; `retry` says
    how failures are retried (each attempt journaled); `idempotent` tools receive the
    step's idempotency key in an `idempotency_key` parameter so they can deduplicate.
    """

    name: str
    description: str
    fn: Callable[..., Any]
    arguments_model: type[pydantic.BaseModel]
    timeout: float | None = None
    retry: RetryPolicy | None = None
    idempotent: bool = False
    secrets: frozenset[str] = field(default_factory=frozenset)

    @property
    def parameters(self) -> dict[str, Any]:
        """The JSON schema of the arguments."""
        schema = self.arguments_model.model_json_schema()
        schema.pop("title", None)
        return schema

    def spec(self) -> ToolSpec:
        """The tool as a model sees it."""
        return ToolSpec(name=self.name, description=self.description, parameters=self.parameters)

    def validate(self, arguments: str | Mapping[str, Any]) -> dict[str, Any]:
        """Parse and validate arguments, returning them as plain JSON values.

        Raises:
            ToolArgumentsError: not a JSON object, or the schema is violated; the
                message is written for the model to correct itself.
        """
        try:
            if isinstance(arguments, str):
                parsed = self.arguments_model.model_validate_json(arguments or "{}")
            else:
                parsed = self.arguments_model.model_validate(dict(arguments))
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(arguments)'}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
            raise ToolArgumentsError(tool=self.name, errors=problems) from exc
        return parsed.model_dump(mode="json")

    async def invoke(self, arguments: Mapping[str, Any], idempotency_key: str | None = None) -> Any:
        """Call the function with validated arguments (sync functions in a thread)."""
        kwargs = dict(self.arguments_model.model_validate(dict(arguments)))
        if self.idempotent:
            kwargs[IDEMPOTENCY_PARAMETER] = idempotency_key
        if inspect.iscoroutinefunction(self.fn):
            return await self.fn(**kwargs)
        return await asyncio.to_thread(self.fn, **kwargs)

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
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Declare a typed function as a tool; its docstring is the description.

    Example::

        @phalanx.tool(timeout=10, retry=phalanx.RetryPolicy(max_attempts=3))
        async def search(query: str, limit: int = 5) -> list[str]:
            "Search the web for `query`."
    """

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
        )

    return build(fn) if fn is not None else build


def encode_result(value: Any) -> str:
    """A tool's result as the text fed back to the model."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
