"""The `Model` protocol: one small interface in front of every provider.

Adapters translate a provider's API and its errors into these types at the edge, so
the agent loop, journaling and tracing never see a provider's own classes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Protocol, runtime_checkable

from .._errors import ModelResponseError
from ._messages import ModelRequest, ModelResponse, StreamChunk


@runtime_checkable
class Model(Protocol):
    """A chat model that can call tools.

    `complete` returns the whole answer; `stream` yields text as it arrives and ends
    with a chunk carrying the full `ModelResponse` (with time to first token). Both
    raise only `ModelError` subclasses (rate limits, timeouts, connection failures,
    malformed answers), each saying whether a retry can help.
    """

    #: Who serves it, e.g. "openai", "anthropic", "scripted".
    provider: str
    #: The model's name as the provider knows it.
    name: str

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Answer `request` in one piece."""
        ...

    def stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        """Answer `request` incrementally; the last chunk holds the full response."""
        ...


async def complete_from_stream(model: Model, request: ModelRequest) -> ModelResponse:
    """`model.complete` for a model that always streams: the stream's final response.

    Streaming underneath is what measures time to first token, so adapters answer
    `complete` this way.
    """
    async with aclosing(model.stream(request)) as chunks:  # type: ignore[type-var]  # stream() is an async generator in every adapter
        async for chunk in chunks:
            if chunk.response is not None:
                return chunk.response
    # Unreachable while stream() keeps its contract; a clear error if it ever breaks.
    raise ModelResponseError(provider=model.provider, detail="the stream ended without a response")
