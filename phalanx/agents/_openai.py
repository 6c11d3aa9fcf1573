"""Any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp server, ...).

Built on the official `openai` SDK. Two choices shape it:

- It always streams, `complete` included: time to first token can only be seen on
  a stream, and a stream that stalls is caught by the per-call deadline.
- The SDK's own retries are off (`max_retries=0`). Retrying is the runtime's job,
  done as journaled step retries; the adapter's job is to say precisely what failed
  and whether a retry can help (`ModelError.retryable`, `retry_after`).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

import openai
from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import (
    ChatCompletionChunk,
    ChatCompletionMessageParam,
    ChatCompletionMessageToolCallParam,
    ChatCompletionToolParam,
)

from .._clock import Clock, SystemClock
from .._errors import (
    ConfigError,
    ModelError,
    ModelResponseError,
)
from ._http import (
    PLACEHOLDER_API_KEY,
    SdkVocabulary,
    finish_reason_for,
    redact,
    relay,
    status_error,
    translate_sdk_error,
)
from ._messages import (
    Message,
    ModelRequest,
    ModelResponse,
    StreamChunk,
    ToolCall,
    ToolSpec,
    Usage,
)
from ._model import complete_from_stream

OPENAI_BASE_URL = "https://api.openai.com/v1"
API_KEY_ENV = "OPENAI_API_KEY"
BASE_URL_ENV = "OPENAI_BASE_URL"


class OpenAICompatibleModel:
    """A chat model behind an OpenAI-compatible `/chat/completions` endpoint.

    Example::

        model = OpenAICompatibleModel("gpt-4o-mini")  # key from OPENAI_API_KEY
        local = OpenAICompatibleModel(
            "llama3.1", base_url="http://localhost:11434/v1", provider="ollama"
        )
        response = await model.complete(ModelRequest(messages=(Message.user("hi"),)))

    `base_url` and `api_key` default to `OPENAI_BASE_URL` and `OPENAI_API_KEY`. A
    server other than api.openai.com may run without a key (a placeholder is sent).
    `timeout` bounds each whole call, stalls mid-stream included. The SDK client is
    made on first use in each event loop; `aclose()` releases its connections.

    Raises:
        ConfigError: at construction, for api.openai.com without a key, or a
            timeout that is not positive.
    """

    provider: str
    name: str

    def __init__(
        self,
        name: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        provider: str = "openai",
        timeout: float = 60.0,
        clock: Clock | None = None,
    ) -> None:
        self.name = name
        self.provider = provider
        self.timeout = timeout
        self.base_url = (base_url or os.environ.get(BASE_URL_ENV) or OPENAI_BASE_URL).rstrip("/")
        self._clock: Clock = clock or SystemClock()
        if timeout <= 0:
            raise ConfigError(
                setting="model",
                value=f"{provider}:{name}",
                reason=f"timeout must be positive, got {timeout}",
            )
        key = api_key or os.environ.get(API_KEY_ENV)
        if not key:
            if _is_official(self.base_url):
                raise ConfigError(
                    setting="model",
                    value=f"{provider}:{name}",
                    reason=f"no API key: set {API_KEY_ENV} (or pass api_key=...)",
                )
            key = PLACEHOLDER_API_KEY
        self._api_key = key
        # The official API wants max_completion_tokens (newer models reject
        # max_tokens); most compatible servers only know max_tokens.
        self._max_tokens_param = (
            "max_completion_tokens" if _is_official(self.base_url) else "max_tokens"
        )
        # Usage arrives in a last chunk only if asked for with stream_options, which
        # some servers reject; the first rejection turns it off for this instance.
        self._send_stream_options = True
        self._client: AsyncOpenAI | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return (
            f"OpenAICompatibleModel({self.name!r}, provider={self.provider!r}, "
            f"base_url={self.base_url!r})"
        )

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
        sdk_stream = await self._open_stream(request, deadline)
        async for chunk in relay(
            sdk_stream,
            _Answer(),
            model=self,
            deadline=deadline,
            started=started,
            clock=self._clock,
            translate=self._translate,
            shape="a chunk that is not a chat completion chunk",
            api_key=self._api_key,
        ):
            yield chunk

    async def aclose(self) -> None:
        """Close the SDK client and its connections; the model can still be used after."""
        client, self._client, self._client_loop = self._client, None, None
        if client is not None:
            await client.close()

    async def _open_stream(
        self, request: ModelRequest, deadline: float
    ) -> AsyncStream[ChatCompletionChunk]:
        client = self._client_for_loop()
        kwargs = self._request_kwargs(request)
        try:
            async with asyncio.timeout_at(deadline):
                try:
                    return await self._create(client, kwargs)
                except openai.APIStatusError as exc:
                    if not self._stream_options_rejected(exc):
                        raise
                    self._send_stream_options = False
                    kwargs.pop("stream_options", None)
                    return await self._create(client, kwargs)
        except Exception as exc:
            raise self._translate(exc) from exc

    async def _create(
        self, client: AsyncOpenAI, kwargs: dict[str, Any]
    ) -> AsyncStream[ChatCompletionChunk]:
        # Keyword arguments go through a dict so that parameters a server does not
        # know are left out entirely (some reject even `null`), on every SDK version.
        return cast(
            AsyncStream[ChatCompletionChunk],
            await client.chat.completions.create(**kwargs),
        )

    def _stream_options_rejected(self, exc: openai.APIStatusError) -> bool:
        return (
            self._send_stream_options
            and exc.status_code in (400, 422)
            and "stream_options" in str(exc.message)
        )

    def _client_for_loop(self) -> AsyncOpenAI:
        # An httpx connection pool belongs to the loop that opened it, so a model
        # used from a second loop (say, two asyncio.run calls) gets its own client.
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = AsyncOpenAI(
                api_key=self._api_key,
                base_url=self.base_url,
                timeout=self.timeout,
                max_retries=0,
            )
            self._client_loop = loop
        return self._client

    def _request_kwargs(self, request: ModelRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self.name,
            "messages": [self._message_param(m) for m in request.messages],
            "stream": True,
        }
        if self._send_stream_options:
            kwargs["stream_options"] = {"include_usage": True}
        if request.tools:
            kwargs["tools"] = [_tool_param(t) for t in request.tools]
        if request.output_schema is not None:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": _schema_name(request.output_schema),
                    "schema": request.output_schema,
                    "strict": True,
                },
            }
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        if request.max_tokens is not None:
            kwargs[self._max_tokens_param] = request.max_tokens
        return kwargs

    def _message_param(self, message: Message) -> ChatCompletionMessageParam:
        content = message.content or ""
        match message.role:
            case "system":
                return {"role": "system", "content": content}
            case "user":
                if message.name:
                    return {"role": "user", "content": content, "name": message.name}
                return {"role": "user", "content": content}
            case "assistant":
                if not message.tool_calls:
                    return {"role": "assistant", "content": content}
                calls: list[ChatCompletionMessageToolCallParam] = [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    }
                    for call in message.tool_calls
                ]
                return {"role": "assistant", "content": message.content, "tool_calls": calls}
            case "tool":
                if message.tool_call_id is None:
                    raise ModelError(
                        provider=self.provider,
                        status=None,
                        detail="a tool message has no tool_call_id; build it with "
                        "Message.tool_result(call, text)",
                    )
                return {"role": "tool", "content": content, "tool_call_id": message.tool_call_id}

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
        return translate_sdk_error(exc, self, _OPENAI_WORDS, self._translate_status)

    def _translate_status(self, exc: openai.APIStatusError) -> ModelError:
        detail = redact(_server_message(exc.body, exc.message), self._api_key)
        return status_error(
            self, exc.status_code, detail, exc.response.headers, api_key_env=API_KEY_ENV
        )


_OPENAI_WORDS = SdkVocabulary(
    sdk=openai,
    base_url_env=BASE_URL_ENV,
    answer="a chat completion",
    # An error event in the middle of a stream (vLLM, OpenAI).
    stream_error="the server reported an error mid-answer",
)


@dataclass
class _ToolCallParts:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class _Answer:
    """A response assembled from stream chunks."""

    text: list[str] = field(default_factory=list)
    tool_calls: dict[int, _ToolCallParts] = field(default_factory=dict)
    finish_reason: str | None = None
    refused: bool = False
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    chunks: int = 0
    first_chunk_s: float | None = None
    first_token_s: float | None = None

    def add(self, chunk: ChatCompletionChunk, elapsed: float) -> str:
        """Fold one chunk in; returns its text (empty if it carried none)."""
        self.chunks += 1
        if self.first_chunk_s is None:
            self.first_chunk_s = elapsed
        if chunk.model and not self.model:
            self.model = chunk.model
        if chunk.usage is not None:
            self.usage = Usage(
                input_tokens=chunk.usage.prompt_tokens or 0,
                output_tokens=chunk.usage.completion_tokens or 0,
            )
        text = ""
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            delta = choice.delta
            if delta.content:
                text += delta.content
            if delta.refusal:
                text += delta.refusal
                self.refused = True
            for call in delta.tool_calls or ():
                parts = self.tool_calls.setdefault(call.index, _ToolCallParts())
                if call.id and not parts.id:
                    parts.id = call.id
                if call.function is not None:
                    if call.function.name and not parts.name:
                        parts.name = call.function.name
                    if call.function.arguments:
                        parts.arguments.append(call.function.arguments)
                if self.first_token_s is None:
                    self.first_token_s = elapsed
            if choice.finish_reason is not None:
                self.finish_reason = choice.finish_reason
        if text:
            self.text.append(text)
            if self.first_token_s is None:
                self.first_token_s = elapsed
        return text

    def response(self, *, provider: str, model: str, latency_s: float) -> ModelResponse:
        """The whole answer, or `ModelResponseError` if the stream was empty or cut short."""
        if self.chunks == 0:
            raise ModelResponseError(
                provider=provider, detail="the server closed the stream without sending a chunk"
            )
        if self.finish_reason is None:
            raise ModelResponseError(
                provider=provider,
                detail="the stream ended before the model finished (no finish_reason); "
                "the connection may have dropped",
            )
        calls: list[ToolCall] = []
        for index in sorted(self.tool_calls):
            parts = self.tool_calls[index]
            if not parts.name:
                raise ModelResponseError(
                    provider=provider, detail=f"tool call #{index} in the stream has no name"
                )
            calls.append(
                ToolCall(
                    id=parts.id or f"call_{index}",
                    name=parts.name,
                    # Kept raw, valid JSON or not: the agent decides what to do about it.
                    arguments="".join(parts.arguments),
                )
            )
        finish = finish_reason_for(self.finish_reason, has_tool_calls=bool(calls))
        if self.refused and finish == "stop":
            finish = "content_filter"
        return ModelResponse(
            text="".join(self.text) if self.text else None,
            tool_calls=tuple(calls),
            finish_reason=finish,
            usage=self.usage,
            model=self.model or model,
            provider=provider,
            latency_s=latency_s,
            time_to_first_token_s=(
                self.first_token_s if self.first_token_s is not None else self.first_chunk_s
            ),
        )


def _tool_param(tool: ToolSpec) -> ChatCompletionToolParam:
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.parameters}
    if tool.description:
        function["description"] = tool.description
    return cast(ChatCompletionToolParam, {"type": "function", "function": function})


def _schema_name(schema: dict[str, Any]) -> str:
    """A response_format name (a-z, A-Z, 0-9, _ and -; at most 64) from the schema's title."""
    title = schema.get("title")
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", title) if isinstance(title, str) else ""
    return name[:64] or "output"


def _server_message(body: object, fallback: str) -> str:
    """The human part of an error body (`{"message": ...}` or a string), else `fallback`."""
    if isinstance(body, dict):
        message = body.get("message")
        if isinstance(message, str) and message:
            return message
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str) and error:
            return error
    if isinstance(body, str) and body:
        return body
    return fallback


def _is_official(base_url: str) -> bool:
    return urlsplit(base_url).hostname == "api.openai.com"
