"""What the HTTP model adapters share at the edge: deadlines, Retry-After, redaction.

Both SDKs (`openai`, `anthropic`) fail in similar ways, and the adapters must turn
every failure into a precise `ModelError` without leaking the API key, so the small
pieces they have in common live here rather than in either adapter.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Protocol, TypeVar

from .._clock import Clock
from .._errors import (
    ModelConnectionError,
    ModelError,
    ModelRateLimitedError,
    ModelResponseError,
    ModelTimeoutError,
)
from ._messages import FinishReason, ModelResponse, StreamChunk

T = TypeVar("T")

#: Sent as the API key to OpenAI-compatible servers that ignore it (vLLM, Ollama, ...).
PLACEHOLDER_API_KEY = "not-needed"

#: Longest piece of a server's error text that goes into an error message.
MAX_DETAIL_CHARS = 500


async def next_before(iterator: AsyncIterator[T], deadline: float) -> T:
    """The iterator's next item, or `TimeoutError` once the loop time passes `deadline`.

    A stream is read under one deadline for the whole call, re-armed around each read
    instead of held open across `yield`: a timeout scope that spans a `yield` would
    cancel the *consumer's* code, where it cannot be told apart from a real
    cancellation.
    """
    async with asyncio.timeout_at(deadline):
        return await anext(iterator)


def parse_retry_after(headers: Mapping[str, str], *, now: float) -> float | None:
    """Seconds the server asks us to wait, from `retry-after-ms` or `retry-after`.

    `retry-after` may be seconds or an HTTP date (RFC 9110); a date is measured from
    `now` (wall-clock seconds, from the clock seam) and never gives less than zero.
    Unparseable values give None rather than an error: the hint is optional.
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None and (seconds := _seconds(raw_ms, scale=1000.0)) is not None:
        return seconds
    raw = headers.get("retry-after")
    if raw is None:
        return None
    if (seconds := _seconds(raw, scale=1.0)) is not None:
        return seconds
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when.timestamp() - now)


def _seconds(raw: str, *, scale: float) -> float | None:
    try:
        value = float(raw) / scale
    except ValueError:
        return None
    return max(0.0, value) if math.isfinite(value) else None


def redact(text: str, secret: str | None) -> str:
    """`text` with `secret` (an API key) cut out, and kept short enough to read.

    Servers sometimes echo the key they rejected; it must never reach an error
    message, a log or the journal.
    """
    if secret and secret != PLACEHOLDER_API_KEY:
        text = text.replace(secret, "***")
    if len(text) > MAX_DETAIL_CHARS:
        text = text[:MAX_DETAIL_CHARS] + "..."
    return text


def transport_failure(exc: BaseException) -> Literal["timeout", "connection"] | None:
    """Whether `exc` is a network timeout or a broken connection, else None.

    The SDKs wrap transport errors from the request, but not always those raised
    while a stream's body is read. They are recognised by module rather than by
    class so the adapters work whether the SDK sits on `httpx` or `httpx2`.
    """
    if isinstance(exc, TimeoutError):
        return "timeout"
    module = type(exc).__module__
    if module.startswith(("httpx", "httpcore")):
        return "timeout" if "Timeout" in type(exc).__name__ else "connection"
    if isinstance(exc, ConnectionError | EOFError):
        return "connection"
    return None


def finish_reason_for(raw: str | None, *, has_tool_calls: bool) -> FinishReason:
    """A provider's stop reason as a `FinishReason`.

    Some servers (Ollama, older vLLM) say "stop" even when they called tools, so a
    response with tool calls reports "tool_calls" unless it was cut off.
    """
    mapped: FinishReason
    match raw:
        case "length" | "max_tokens" | "model_context_window_exceeded":
            mapped = "length"
        case "tool_calls" | "function_call" | "tool_use":
            mapped = "tool_calls"
        case "content_filter" | "refusal":
            mapped = "content_filter"
        case _:
            mapped = "stop"
    if has_tool_calls and mapped == "stop":
        return "tool_calls"
    return mapped


def innermost_cause(exc: BaseException) -> str:
    """The innermost cause's text, e.g. "[Errno 111] Connection refused"."""
    inner = exc
    while inner.__cause__ is not None:
        inner = inner.__cause__
    return str(inner) or type(inner).__name__


class StreamAnswer(Protocol):
    """What an adapter accumulates from a provider's stream."""

    def add(self, item: Any, elapsed: float) -> str:
        """Fold one stream item; return the text it added."""
        ...

    def response(self, *, provider: str, model: str, latency_s: float) -> ModelResponse:
        """The whole answer, once the stream has ended."""
        ...


class SdkStream(Protocol):
    """A provider SDK's async stream: iterable, and closable to free its connection."""

    def __aiter__(self) -> AsyncIterator[Any]: ...

    async def close(self) -> None:
        """Release the connection."""
        ...


async def relay(
    sdk_stream: SdkStream,
    answer: StreamAnswer,
    *,
    model: Any,
    deadline: float,
    started: float,
    clock: Clock,
    translate: Callable[[Exception], ModelError],
    shape: str,
    api_key: str | None,
) -> AsyncIterator[StreamChunk]:
    """Relay a provider stream as `StreamChunk`s, then the whole response.

    Shared by the adapters: every read is bounded by `deadline`, SDK errors become
    `ModelError`s through `translate`, an item of the wrong shape is a
    `ModelResponseError` naming `shape`, and the connection is released even when the
    consumer stops early.
    """
    iterator = sdk_stream.__aiter__()
    try:
        while True:
            try:
                item = await next_before(iterator, deadline)
            except StopAsyncIteration:
                break
            except Exception as exc:
                raise translate(exc) from exc
            try:
                text = answer.add(item, clock.monotonic() - started)
            except (AttributeError, TypeError, ValueError) as exc:
                # The SDKs build items without validation, so an item of the wrong
                # shape only fails when its fields are read.
                raise ModelResponseError(
                    provider=model.provider,
                    detail=f"the server sent {shape} "
                    f"({type(exc).__name__}: {redact(str(exc), api_key)})",
                ) from exc
            if text:
                yield StreamChunk(text=text)
    finally:
        # Shielded so a cancellation arriving now cannot leak the socket.
        await asyncio.shield(sdk_stream.close())
    yield StreamChunk(
        response=answer.response(
            provider=model.provider, model=model.name, latency_s=clock.monotonic() - started
        )
    )


class Endpoint(Protocol):
    """What error translation needs to know about an adapter."""

    provider: str
    name: str
    base_url: str
    timeout: float

    @property
    def api_key(self) -> str | None:
        """The key to keep out of every message."""
        ...

    @property
    def clock(self) -> Clock:
        """For turning an HTTP-date Retry-After into seconds."""
        ...


@dataclass(frozen=True)
class SdkVocabulary:
    """How one provider SDK names its errors, and how its answers are described.

    Both official SDKs share one exception hierarchy (the same class names, generated
    from one template), so one translation serves both, given the SDK module.
    """

    sdk: Any
    base_url_env: str
    answer: str  # what a valid answer is, e.g. "a chat completion"
    stream_error: str  # how an error event inside a stream is introduced


def translate_sdk_error(
    exc: BaseException,
    endpoint: Endpoint,
    words: SdkVocabulary,
    status: Callable[[Any], ModelError],
) -> ModelError:
    """The `ModelError` that says what an SDK's `exc` means and whether a retry helps."""
    sdk, provider, api_key = words.sdk, endpoint.provider, endpoint.api_key
    if isinstance(exc, ModelError):
        return exc
    if isinstance(exc, sdk.APITimeoutError):
        return ModelTimeoutError(
            provider=provider,
            detail=f"the server at {endpoint.base_url} did not answer within {endpoint.timeout:g}s",
        )
    if isinstance(exc, sdk.APIConnectionError):
        return ModelConnectionError(
            provider=provider,
            detail=f"the server at {endpoint.base_url} is not reachable "
            f"({innermost_cause(exc)}); check that it is running and that "
            f"{words.base_url_env} is right",
        )
    if isinstance(exc, sdk.APIStatusError):
        return status(exc)
    if isinstance(exc, sdk.APIResponseValidationError | json.JSONDecodeError):
        return ModelResponseError(
            provider=provider,
            detail=f"the server sent data that is not {words.answer}: {redact(str(exc), api_key)}",
        )
    if isinstance(exc, sdk.APIError):
        return ModelResponseError(
            provider=provider,
            detail=f"{words.stream_error}: {redact(exc.message, api_key)}",
        )
    match transport_failure(exc):
        case "timeout":
            return ModelTimeoutError(
                provider=provider,
                detail=f"no complete answer from {endpoint.base_url} within {endpoint.timeout:g}s",
            )
        case "connection":
            return ModelConnectionError(
                provider=provider,
                detail=f"the connection to {endpoint.base_url} broke ({innermost_cause(exc)})",
            )
        case None:
            pass
    return ModelError(
        provider=provider, status=None, detail=f"{type(exc).__name__}: {redact(str(exc), api_key)}"
    )


def status_error(
    endpoint: Endpoint,
    status: int,
    detail: str,
    headers: Mapping[str, str],
    *,
    api_key_env: str,
) -> ModelError:
    """The `ModelError` for an HTTP error status, with the fix in its message.

    Like the SDKs' own retry policies: 409 (a conflict) and 5xx (529 "overloaded"
    included) are transient; 429 carries the server's Retry-After; other 4xx are not.
    """
    provider = endpoint.provider
    if status == 429:
        return ModelRateLimitedError(
            provider=provider,
            detail=detail,
            retry_after=parse_retry_after(headers, now=endpoint.clock.now()),
        )
    if status in (401, 403):
        detail += f"; check the API key in {api_key_env}"
        if status == 403:
            detail += f" and that it may use model {endpoint.name!r}"
    elif status == 404:
        detail += f"; check the model name {endpoint.name!r} and the base URL {endpoint.base_url}"
    elif status == 408:
        return ModelTimeoutError(provider=provider, detail=detail, status=status)
    retryable = status == 409 or status >= 500
    return ModelError(provider=provider, status=status, detail=detail, retryable=retryable)
