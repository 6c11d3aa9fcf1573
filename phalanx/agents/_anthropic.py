"""Anthropic's Messages API, through the `anthropic` SDK (an optional extra).

The SDK is imported only when an `AnthropicModel` is made, so `import phalanx`
works without it. Like the OpenAI adapter it always streams (time to first token),
turns the SDK's retries off (retries are journaled step retries) and translates
every failure into a precise `ModelError`.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from .._clock import Clock, SystemClock
from .._errors import (
    ConfigError,
    ModelError,
    ModelResponseError,
)
from ._http import (
    SdkVocabulary,
    finish_reason_for,
    redact,
    relay,
    status_error,
    translate_sdk_error,
)
from ._messages import Message, ModelRequest, ModelResponse, StreamChunk, ToolCall, Usage
from ._model import complete_from_stream

if TYPE_CHECKING:
    import anthropic
    from anthropic.types import RawMessageStreamEvent

API_KEY_ENV = "ANTHROPIC_API_KEY"
BASE_URL_ENV = "ANTHROPIC_BASE_URL"
ANTHROPIC_BASE_URL = "https://api.anthropic.com"
#: Anthropic requires max_tokens; used when the request leaves it unset.
DEFAULT_MAX_TOKENS = 4096


class AnthropicModel:
    """A Claude model behind Anthropic's Messages API.

    Example::

        model = AnthropicModel("claude-sonnet-4-5")  # key from ANTHROPIC_API_KEY
        response = await model.complete(ModelRequest(messages=(Message.user("hi"),)))

    System messages become the `system` parameter; tool results become
    `tool_result` blocks. `timeout` bounds each whole call, stalls mid-stream
    included. `aclose()` releases the SDK client's connections.

    Raises:
        ConfigError: at construction, if the `anthropic` package is missing, no
            API key is given or set in ANTHROPIC_API_KEY, or the timeout is not positive.
    """

    provider: str
    name: str

    def __init__(
        self,
        name: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        clock: Clock | None = None,
    ) -> None:
        self.name = name
        self.provider = "anthropic"
        self.timeout = timeout
        self.base_url = (base_url or os.environ.get(BASE_URL_ENV) or ANTHROPIC_BASE_URL).rstrip("/")
        self._clock: Clock = clock or SystemClock()
        spec = f"anthropic:{name}"
        try:
            import anthropic  # noqa: F401  (only to fail early and clearly)
        except ImportError as exc:
            raise ConfigError(
                setting="model",
                value=spec,
                reason="the anthropic SDK is not installed: pip install 'phalanx[anthropic]'",
            ) from exc
        if timeout <= 0:
            raise ConfigError(
                setting="model",
                value=spec,
                reason=f"timeout must be positive, got {timeout}",
            )
        key = api_key or os.environ.get(API_KEY_ENV)
        if not key:
            # Checked here rather than left to the SDK, which would otherwise go
            # looking for credential profiles on disk.
            raise ConfigError(
                setting="model",
                value=spec,
                reason=f"no API key: set {API_KEY_ENV} (or pass api_key=...)",
            )
        self._api_key = key
        self._client: anthropic.AsyncAnthropic | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"AnthropicModel({self.name!r}, base_url={self.base_url!r})"

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Answer `request` in one piece (streamed underneath, for time to first token)."""
        return await complete_from_stream(self, request)

    async def stream(self, request: ModelRequest) -> AsyncGenerator[StreamChunk, None]:
        """Answer `request` incrementally; the last chunk carries the full response.

        Raises:
            ModelError: one of its subclasses, saying what failed and if a retry helps.
        """
        started = self._clock.monotonic()
        deadline = asyncio.get_running_loop().time() + self.timeout
        client = self._client_for_loop()
        kwargs = self._request_kwargs(request)
        try:
            async with asyncio.timeout_at(deadline):
                sdk_stream = cast(
                    "anthropic.AsyncStream[RawMessageStreamEvent]",
                    await client.messages.create(**kwargs),
                )
        except Exception as exc:
            raise self._translate(exc) from exc
        async for chunk in relay(
            sdk_stream,
            _Answer(),
            model=self,
            deadline=deadline,
            started=started,
            clock=self._clock,
            translate=self._translate,
            shape="an event that does not fit the Messages API",
            api_key=self._api_key,
        ):
            yield chunk

    async def aclose(self) -> None:
        """Close the SDK client and its connections; the model can still be used after."""
        client, self._client, self._client_loop = self._client, None, None
        if client is not None:
            await client.close()

    def _client_for_loop(self) -> anthropic.AsyncAnthropic:
        # A connection pool belongs to the loop that opened it (see the OpenAI adapter).
        import anthropic

        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = anthropic.AsyncAnthropic(
                api_key=self._api_key,
                base_url=self.base_url,
                timeout=self.timeout,
                max_retries=0,
            )
            self._client_loop = loop
        return self._client

    def _request_kwargs(self, request: ModelRequest) -> dict[str, Any]:
        system, messages = to_anthropic_messages(request.messages, provider=self.provider)
        kwargs: dict[str, Any] = {
            "model": self.name,
            "messages": messages,
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
            "stream": True,
        }
        if system:
            kwargs["system"] = system
        if request.tools:
            kwargs["tools"] = [
                {"name": tool.name, "input_schema": tool.parameters}
                | ({"description": tool.description} if tool.description else {})
                for tool in request.tools
            ]
        # Sent as raw body fields: `output_config` is unknown to older SDKs and newer
        # ones dropped the `temperature` keyword, but the API takes both.
        extra_body: dict[str, Any] = {}
        if request.output_schema is not None:
            extra_body["output_config"] = {
                "format": {"type": "json_schema", "schema": request.output_schema}
            }
        if request.temperature is not None:
            extra_body["temperature"] = request.temperature
        if extra_body:
            kwargs["extra_body"] = extra_body
        return kwargs

    @property
    def api_key(self) -> str | None:
        """The API key (kept out of every message)."""
        return self._api_key

    @property
    def clock(self) -> Clock:
        """The clock timings are measured on."""
        return self._clock

    def _translate(self, exc: BaseException) -> ModelError:
        """The `ModelError` that says what `exc` means and whether a retry can help."""
        import anthropic

        words = SdkVocabulary(
            sdk=anthropic,
            base_url_env=BASE_URL_ENV,
            answer="a Messages API answer",
            stream_error="the server reported an error",
        )
        return translate_sdk_error(exc, self, words, self._translate_status)

    def _translate_status(self, exc: anthropic.APIStatusError) -> ModelError:
        status = exc.status_code
        provider = self.provider
        error_type = _error_type(exc.body)
        detail = redact(_server_message(exc.body, exc.message), self._api_key)
        if status < 400:
            # An `error` event in the middle of a 200 stream: only its type says
            # what happened, so map the type to the status it stands for.
            status = _STATUS_FOR_ERROR_TYPE.get(error_type or "", 0)
            if status == 0:
                return ModelResponseError(
                    provider=provider, detail=f"the server reported an error mid-answer: {detail}"
                )
        return status_error(self, status, detail, exc.response.headers, api_key_env=API_KEY_ENV)


_STATUS_FOR_ERROR_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


def to_anthropic_messages(
    messages: tuple[Message, ...], *, provider: str = "anthropic"
) -> tuple[str, list[dict[str, Any]]]:
    """Our messages as Anthropic's: the joined system text, then alternating turns.

    System messages, wherever they are, go into the `system` parameter. Tool results
    are `tool_result` blocks in a user turn, and consecutive messages of the same
    side are merged, because the API wants user and assistant turns to alternate.
    """
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        blocks: list[dict[str, Any]] = []
        if message.role == "system":
            if message.content:
                system.append(message.content)
            continue
        if message.role == "tool":
            if message.tool_call_id is None:
                raise ModelError(
                    provider=provider,
                    status=None,
                    detail="a tool message has no tool_call_id; build it with "
                    "Message.tool_result(call, text)",
                )
            blocks.append(
                {
                    "type": "tool_result",
                    "tool_use_id": message.tool_call_id,
                    "content": message.content or "",
                }
            )
        elif message.content:
            # Empty text blocks are rejected by the API, so they are left out.
            blocks.append({"type": "text", "text": message.content})
        for call in message.tool_calls:
            blocks.append(
                {"type": "tool_use", "id": call.id, "name": call.name, "input": _tool_input(call)}
            )
        if not blocks:
            continue
        role = "assistant" if message.role == "assistant" else "user"
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return "\n\n".join(system), turns


def _tool_input(call: ToolCall) -> dict[str, Any]:
    """A past tool call's arguments as the JSON object Anthropic requires.

    Arguments that were not a JSON object are passed as `{"_raw": text}`, so the
    model still sees what it sent instead of a silently emptied call.
    """
    try:
        parsed = json.loads(call.arguments) if call.arguments.strip() else {}
    except ValueError:
        return {"_raw": call.arguments}
    return parsed if isinstance(parsed, dict) else {"_raw": call.arguments}


@dataclass
class _ToolUse:
    id: str
    name: str
    initial_input: dict[str, object]
    partial_json: list[str] = field(default_factory=list)


@dataclass
class _Answer:
    """A response assembled from Messages API stream events."""

    text: list[str] = field(default_factory=list)
    tool_uses: dict[int, _ToolUse] = field(default_factory=dict)
    stop_reason: str | None = None
    stopped: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    model: str = ""
    first_event_s: float | None = None
    first_token_s: float | None = None

    def add(self, event: RawMessageStreamEvent, elapsed: float) -> str:
        """Fold one event in; returns its text (empty if it carried none)."""
        from anthropic.types import (
            InputJSONDelta,
            RawContentBlockDeltaEvent,
            RawContentBlockStartEvent,
            RawMessageDeltaEvent,
            RawMessageStartEvent,
            RawMessageStopEvent,
            TextDelta,
            ToolUseBlock,
        )

        if self.first_event_s is None:
            self.first_event_s = elapsed
        text = ""
        if isinstance(event, RawMessageStartEvent):
            self.model = event.message.model
            usage = event.message.usage
            self.input_tokens = _input_tokens(
                usage.input_tokens, usage.cache_creation_input_tokens, usage.cache_read_input_tokens
            )
            self.output_tokens = usage.output_tokens or 0
        elif isinstance(event, RawContentBlockStartEvent):
            block = event.content_block
            if isinstance(block, ToolUseBlock):
                self.tool_uses[event.index] = _ToolUse(block.id, block.name, dict(block.input))
                self._token_at(elapsed)
        elif isinstance(event, RawContentBlockDeltaEvent):
            delta = event.delta
            if isinstance(delta, TextDelta):
                text = delta.text
            elif isinstance(delta, InputJSONDelta):
                tool_use = self.tool_uses.get(event.index)
                if tool_use is None:
                    raise ValueError(f"input_json_delta for block {event.index}, not a tool_use")
                tool_use.partial_json.append(delta.partial_json)
                self._token_at(elapsed)
        elif isinstance(event, RawMessageDeltaEvent):
            if event.delta.stop_reason is not None:
                self.stop_reason = event.delta.stop_reason
            delta_usage = event.usage
            if delta_usage.input_tokens is not None:
                self.input_tokens = _input_tokens(
                    delta_usage.input_tokens,
                    delta_usage.cache_creation_input_tokens,
                    delta_usage.cache_read_input_tokens,
                )
            self.output_tokens = delta_usage.output_tokens or self.output_tokens
        elif isinstance(event, RawMessageStopEvent):
            self.stopped = True
        if text:
            self.text.append(text)
            self._token_at(elapsed)
        return text

    def _token_at(self, elapsed: float) -> None:
        if self.first_token_s is None:
            self.first_token_s = elapsed

    def response(self, *, provider: str, model: str, latency_s: float) -> ModelResponse:
        """The whole answer, or `ModelResponseError` if the stream was empty or cut short."""
        if self.first_event_s is None:
            raise ModelResponseError(
                provider=provider, detail="the server closed the stream without sending an event"
            )
        if not self.stopped or self.stop_reason is None:
            raise ModelResponseError(
                provider=provider,
                detail="the stream ended before the model finished (no message_stop or "
                "stop_reason); the connection may have dropped",
            )
        calls = tuple(
            ToolCall(
                id=use.id,
                name=use.name,
                # Kept raw, valid JSON or not: the agent decides what to do about it.
                arguments="".join(use.partial_json)
                if use.partial_json
                else json.dumps(use.initial_input),
            )
            for _, use in sorted(self.tool_uses.items())
        )
        return ModelResponse(
            text="".join(self.text) if self.text else None,
            tool_calls=calls,
            finish_reason=finish_reason_for(self.stop_reason, has_tool_calls=bool(calls)),
            usage=Usage(input_tokens=self.input_tokens, output_tokens=self.output_tokens),
            model=self.model or model,
            provider=provider,
            latency_s=latency_s,
            time_to_first_token_s=(
                self.first_token_s if self.first_token_s is not None else self.first_event_s
            ),
        )


def _input_tokens(base: int | None, cache_creation: int | None, cache_read: int | None) -> int:
    """All input tokens: Anthropic counts cached prompt parts separately."""
    return (base or 0) + (cache_creation or 0) + (cache_read or 0)


def _error_type(body: object) -> str | None:
    """`error.type` from an Anthropic error body (`{"type": "error", "error": {...}}`)."""
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("type"), str):
            return str(error["type"])
    return None


def _server_message(body: object, fallback: str) -> str:
    """The human part of an error body, else `fallback`."""
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    if isinstance(body, str) and body:
        return body
    return fallback
