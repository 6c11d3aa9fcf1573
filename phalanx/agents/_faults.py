"""Injecting model faults on purpose, in front of any model.

The demo and the chaos tests make one agent's model hang, slow down, fail or answer
garbage, whatever the model behind it (the scripted one or a real endpoint), to show
what the runtime does about it. Faults are chosen per agent by a regex over the
request's system message, which holds the agent's own instructions.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Literal

from .._clock import Clock, SystemClock
from .._errors import ModelError, ModelRateLimitedError
from ._messages import ModelRequest, ModelResponse, StreamChunk, ToolCall
from ._model import Model

FaultKind = Literal["hang", "slow", "error", "rate_limit", "malformed_json", "bad_tool_args"]


@dataclass(frozen=True)
class Fault:
    """A failure produced on purpose.

    `hang` never answers; `slow` adds `delay` seconds; `error` raises a `ModelError`
    with `status`; `rate_limit` a 429 with `retry_after`; `malformed_json` answers
    text that is not JSON; `bad_tool_args` replaces tool-call arguments with ones
    that break the tool's schema.
    """

    kind: FaultKind
    delay: float = 5.0
    status: int = 500
    retry_after: float | None = 1.0


async def before_call(fault: Fault | None, provider: str, clock: Clock) -> None:
    """Apply the part of a fault that happens before any answer."""
    if fault is None:
        return
    if fault.kind == "hang":
        await asyncio.Event().wait()  # never set: a model that silently hangs
    if fault.kind == "slow":
        await clock.sleep(fault.delay)
    if fault.kind == "error":
        raise ModelError(
            provider=provider,
            status=fault.status,
            detail="injected fault",
            retryable=fault.status >= 500,
        )
    if fault.kind == "rate_limit":
        raise ModelRateLimitedError(
            provider=provider, detail="injected fault", retry_after=fault.retry_after
        )


def after_call(fault: Fault | None, response: ModelResponse) -> ModelResponse:
    """Apply the part of a fault that corrupts an answer."""
    if fault is None:
        return response
    if fault.kind == "malformed_json":
        return response.model_copy(
            update={"text": '{"answer": "truncated', "tool_calls": (), "finish_reason": "stop"}
        )
    if fault.kind == "bad_tool_args" and response.tool_calls:
        broken = tuple(
            ToolCall(id=c.id, name=c.name, arguments=json.dumps({"unexpected": True}))
            for c in response.tool_calls
        )
        return response.model_copy(update={"tool_calls": broken})
    return response


class FaultyModel:
    """Wraps a model and injects `faults` into the calls of matching agents.

    Example::

        model = FaultyModel(model_from_env(), {"You are web_search": Fault("hang")})
    """

    def __init__(
        self, inner: Model, faults: Mapping[str, Fault], *, clock: Clock | None = None
    ) -> None:
        self.inner = inner
        self.provider = inner.provider
        self.name = inner.name
        self.faults = dict(faults)
        self._clock: Clock = clock or SystemClock()

    def fault_for(self, request: ModelRequest) -> Fault | None:
        """The fault this request gets, if any."""
        system = " ".join(m.content or "" for m in request.messages if m.role == "system")
        for pattern, fault in self.faults.items():
            if re.search(pattern, system):
                return fault
        return None

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Answer, with the matching fault applied."""
        fault = self.fault_for(request)
        await before_call(fault, self.provider, self._clock)
        return after_call(fault, await self.inner.complete(request))

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        """Stream, with the matching fault applied."""
        fault = self.fault_for(request)
        await before_call(fault, self.provider, self._clock)
        async for chunk in self.inner.stream(request):
            if chunk.response is not None:
                yield StreamChunk(text=chunk.text, response=after_call(fault, chunk.response))
            else:
                yield chunk
