"""OpenAICompatibleModel against a real local HTTP server, through the real openai SDK."""

from __future__ import annotations

import asyncio
import json
import pickle
import socket
import time
from collections.abc import AsyncIterator
from email.utils import formatdate
from typing import Any

import pytest

from phalanx import (
    ConfigError,
    ModelConnectionError,
    ModelError,
    ModelRateLimitedError,
    ModelResponseError,
    ModelTimeoutError,
)
from phalanx.agents import Message, Model, ModelRequest, ToolCall, ToolSpec
from phalanx.agents._openai import OpenAICompatibleModel
from phalanx.testing import VirtualClock

from .fake_openai_server import FakeModelServer

API_KEY = "sk-test-SECRET-0123456789abcdef"

WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather for a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)


def ask(text: str = "hello there", **fields: Any) -> ModelRequest:
    return ModelRequest(messages=(Message.system("You are terse."), Message.user(text)), **fields)


def free_port() -> int:
    """A port nothing listens on (bound, read, released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def model(fake_server: FakeModelServer) -> AsyncIterator[OpenAICompatibleModel]:
    adapter = OpenAICompatibleModel(
        "gpt-test", base_url=fake_server.base_url, api_key=API_KEY, timeout=5.0
    )
    yield adapter
    await adapter.aclose()


async def failure(model: OpenAICompatibleModel, request: ModelRequest | None = None) -> ModelError:
    with pytest.raises(ModelError) as info:
        await model.complete(request or ask())
    return info.value


# -- answers


async def test_text_answer_reports_usage_model_and_timing(
    model: OpenAICompatibleModel,
) -> None:
    """A plain answer carries its text, token usage, model, provider and timings."""
    response = await model.complete(ask("hello there"))

    assert response.text == "echo: hello there"
    assert response.tool_calls == ()
    assert response.finish_reason == "stop"
    assert response.usage.input_tokens > 0
    assert response.usage.output_tokens > 0
    assert response.model == "gpt-test"
    assert response.provider == "openai"
    assert response.time_to_first_token_s is not None
    assert 0 < response.time_to_first_token_s <= response.latency_s


async def test_adapter_satisfies_the_model_protocol(model: OpenAICompatibleModel) -> None:
    """The adapter is a `Model`."""
    assert isinstance(model, Model)


async def test_model_name_is_the_one_the_server_reports(
    model: OpenAICompatibleModel, fake_server: FakeModelServer
) -> None:
    """The response names the model the server says it ran, not the alias asked for."""
    fake_server.queue({"kind": "text", "text": "ok", "model": "gpt-test-2024-08-06"})

    response = await model.complete(ask())

    assert response.model == "gpt-test-2024-08-06"


async def test_request_carries_system_prompt_tools_and_parameters(
    model: OpenAICompatibleModel, fake_server: FakeModelServer
) -> None:
    """The wire request starts with the system prompt and carries tools and sampling."""
    await model.complete(ask("hi", tools=(WEATHER,), temperature=0.2, max_tokens=50))

    stats = fake_server.stats()
    assert stats["requests"] == 1
    body = stats["bodies"][0]
    assert body["messages"][0] == {"role": "system", "content": "You are terse."}
    assert body["messages"][1] == {"role": "user", "content": "hi"}
    assert body["model"] == "gpt-test"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": WEATHER.parameters,
            },
        }
    ]
    assert body["temperature"] == 0.2
    assert body["max_tokens"] == 50
    assert "response_format" not in body
    assert stats["headers"][0]["authorization"] == f"Bearer {API_KEY}"


async def test_tool_conversation_is_sent_in_openai_shape(
    model: OpenAICompatibleModel, fake_server: FakeModelServer
) -> None:
    """Assistant tool calls and tool results go out with their ids."""
    call = ToolCall(id="call_7", name="get_weather", arguments='{"city": "Oslo"}')
    request = ModelRequest(
        messages=(
            Message.system("s"),
            Message.user("weather?"),
            Message(role="assistant", content=None, tool_calls=(call,)),
            Message.tool_result(call, "rainy"),
        ),
        tools=(WEATHER,),
    )

    await model.complete(request)

    messages = fake_server.stats()["bodies"][0]["messages"]
    assert messages[2] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_7",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
            }
        ],
    }
    assert messages[3] == {"role": "tool", "content": "rainy", "tool_call_id": "call_7"}


async def test_stream_yields_text_then_the_full_response(model: OpenAICompatibleModel) -> None:
    """`stream` yields text pieces as they come and ends with the whole response."""
    chunks = [chunk async for chunk in model.stream(ask("one two three four"))]

    texts = [chunk.text for chunk in chunks[:-1]]
    final = chunks[-1].response
    assert len(texts) > 1
    assert all(chunk.response is None for chunk in chunks[:-1])
    assert final is not None
    assert "".join(texts) == final.text == "echo: one two three four"
    assert final.time_to_first_token_s is not None


async def test_tool_calls_are_assembled_from_split_deltas(
    model: OpenAICompatibleModel, fake_server: FakeModelServer
) -> None:
    """Tool-call deltas spread over many chunks become whole calls, in order."""
    fake_server.queue(
        {
            "kind": "tool_calls",
            "calls": [
                {"id": "call_a", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
                {"id": "call_b", "name": "get_weather", "arguments": '{"city": "Lima"}'},
            ],
        }
    )

    response = await model.complete(ask(tools=(WEATHER,)))

    assert response.finish_reason == "tool_calls"
    assert response.tool_calls == (
        ToolCall(id="call_a", name="get_weather", arguments='{"city": "Oslo"}'),
        ToolCall(id="call_b", name="get_weather", arguments='{"city": "Lima"}'),
    )
    assert response.text is None


async def test_malformed_tool_arguments_are_kept_raw(
    model: OpenAICompatibleModel, fake_server: FakeModelServer
) -> None:
    """Arguments that are not valid JSON reach the caller unchanged, not as an error."""
    fake_server.queue(
        {"kind": "tool_calls", "calls": [{"name": "get_weather", "arguments": '{"city": Osl'}]}
    )

    response = await model.complete(ask(tools=(WEATHER,)))

    assert response.tool_calls[0].arguments == '{"city": Osl'


async def test_structured_output_sends_a_strict_json_schema(
    model: OpenAICompatibleModel, fake_server: FakeModelServer
) -> None:
    """`output_schema` becomes a strict json_schema response_format."""
    schema = {
        "title": "Verdict report",
        "type": "object",
        "properties": {"verdict": {"type": "string"}},
        "required": ["verdict"],
        "additionalProperties": False,
    }
    fake_server.queue({"kind": "text", "text": '{"verdict": "ok"}'})

    response = await model.complete(ask(output_schema=schema))

    assert json.loads(response.text or "") == {"verdict": "ok"}
    assert fake_server.stats()["bodies"][0]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Verdict_report", "schema": schema, "strict": True},
    }


async def test_missing_usage_is_reported_as_zero(
    model: OpenAICompatibleModel, fake_server: FakeModelServer
) -> None:
    """A server that sends no usage gives zero tokens, not an error."""
    fake_server.queue({"kind": "text", "text": "fine", "usage": False})

    response = await model.complete(ask())

    assert response.text == "fine"
    assert response.usage.total_tokens == 0


async def test_server_rejecting_stream_options_is_asked_again_without_them(
    model: OpenAICompatibleModel, fake_server: FakeModelServer
) -> None:
    """A 400 about stream_options retries once without it, and later calls leave it out."""
    fake_server.queue(
        {"kind": "status", "status": 400, "message": "Unrecognized argument: stream_options"}
    )

    first = await model.complete(ask("a"))
    await model.complete(ask("b"))

    bodies = fake_server.stats()["bodies"]
    assert first.text == "echo: a"
    assert "stream_options" in bodies[0]
    assert "stream_options" not in bodies[1]
    assert "stream_options" not in bodies[2]


async def test_slow_server_shows_in_time_to_first_token(
    model: OpenAICompatibleModel, fake_server: FakeModelServer
) -> None:
    """Time to first token measures the wait before the first token arrives."""
    fake_server.queue({"kind": "slow", "delay": 0.3, "text": "finally"})

    response = await model.complete(ask())

    assert response.text == "finally"
    assert response.time_to_first_token_s is not None
    assert response.time_to_first_token_s >= 0.3


async def test_a_compatible_server_needs_no_key(fake_server: FakeModelServer) -> None:
    """Without a key, a non-OpenAI server gets a placeholder instead of a config error."""
    adapter = OpenAICompatibleModel("llama", base_url=fake_server.base_url, provider="vllm")
    try:
        response = await adapter.complete(ask("x"))
    finally:
        await adapter.aclose()

    assert response.provider == "vllm"
    assert fake_server.stats()["headers"][0]["authorization"] == "Bearer not-needed"


def test_api_openai_com_without_a_key_names_the_variable() -> None:
    """The official endpoint without a key fails at construction, naming OPENAI_API_KEY."""
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAICompatibleModel("gpt-4o-mini")


def test_one_model_serves_two_event_loops(fake_server: FakeModelServer) -> None:
    """The same model instance works from successive event loops (e.g. two asyncio.run)."""
    adapter = OpenAICompatibleModel("gpt-test", base_url=fake_server.base_url, api_key=API_KEY)

    async def once(text: str) -> str | None:
        try:
            return (await adapter.complete(ask(text))).text
        finally:
            await adapter.aclose()

    assert asyncio.run(once("a")) == "echo: a"
    assert asyncio.run(once("b")) == "echo: b"


# -- failures


async def test_rate_limit_carries_retry_after(
    model: OpenAICompatibleModel, fake_server: FakeModelServer
) -> None:
    """429 becomes a retryable ModelRateLimitedError with the server's Retry-After."""
    fake_server.queue({"kind": "status", "status": 429, "retry_after": "1"})

    error = await failure(model)

    assert isinstance(error, ModelRateLimitedError)
    assert error.retry_after == 1.0
    assert error.retryable
    assert error.status == 429
    assert fake_server.stats()["requests"] == 1  # the SDK did not retry on its own


async def test_retry_after_ms_wins_over_retry_after(
    model: OpenAICompatibleModel, fake_server: FakeModelServer
) -> None:
    """The finer `retry-after-ms` header is preferred when both are sent."""
    fake_server.queue(
        {"kind": "status", "status": 429, "retry_after": "3", "retry_after_ms": "1500"}
    )

    error = await failure(model)

    assert isinstance(error, ModelRateLimitedError)
    assert error.retry_after == 1.5


async def test_retry_after_as_an_http_date_is_measured_on_the_clock(
    fake_server: FakeModelServer,
) -> None:
    """An HTTP-date Retry-After is turned into seconds from the clock's now."""
    clock = VirtualClock(start=1_700_000_000.0)
    adapter = OpenAICompatibleModel(
        "gpt-test", base_url=fake_server.base_url, api_key=API_KEY, clock=clock
    )
    fake_server.queue(
        {"kind": "status", "status": 429, "retry_after": formatdate(clock.now() + 30, usegmt=True)}
    )
    try:
        error = await failure(adapter)
    finally:
        await adapter.aclose()

    assert isinstance(error, ModelRateLimitedError)
    assert error.retry_after == 30.0


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_retryable(
    model: OpenAICompatibleModel, fake_server: FakeModelServer, status: int
) -> None:
    """5xx becomes a retryable ModelError carrying the status."""
    fake_server.queue({"kind": "status", "status": status, "message": "upstream exploded"})

    error = await failure(model)

    assert type(error) is ModelError
    assert error.status == status
    assert error.retryable
    assert "upstream exploded" in str(error)


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_client_errors_are_not_retryable(
    model: OpenAICompatibleModel, fake_server: FakeModelServer, status: int
) -> None:
    """Other 4xx become a non-retryable ModelError: the same call would fail again."""
    fake_server.queue({"kind": "status", "status": status, "message": "bad request body"})

    error = await failure(model)

    assert type(error) is ModelError
    assert error.status == status
    assert not error.retryable


async def test_not_found_names_the_model(
    model: OpenAICompatibleModel, fake_server: FakeModelServer
) -> None:
    """404 says which model name and base URL to check."""
    fake_server.queue({"kind": "status", "status": 404, "message": "model not found"})

    error = await failure(model)

    assert "'gpt-test'" in str(error)
    assert fake_server.base_url in str(error)


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_errors_name_the_key_variable_but_never_the_key(
    model: OpenAICompatibleModel, fake_server: FakeModelServer, status: int
) -> None:
    """401/403 point at OPENAI_API_KEY and redact a key the server echoes back."""
    fake_server.queue(
        {"kind": "status", "status": status, "message": f"Incorrect API key provided: {API_KEY}"}
    )

    error = await failure(model)

    assert not error.retryable
    assert "OPENAI_API_KEY" in str(error)
    assert API_KEY not in str(error)
    assert API_KEY not in repr(pickle.loads(pickle.dumps(error)).__dict__)


async def test_hang_after_headers_times_out_within_the_deadline(
    fake_server: FakeModelServer,
) -> None:
    """A server that sends headers and then stalls is cut off at `timeout`."""
    adapter = OpenAICompatibleModel(
        "gpt-test", base_url=fake_server.base_url, api_key=API_KEY, timeout=1.0
    )
    fake_server.queue({"kind": "hang", "after_headers": True})
    started = time.monotonic()
    try:
        error = await failure(adapter)
    finally:
        await adapter.aclose()

    assert isinstance(error, ModelTimeoutError)
    assert error.retryable
    assert 0.9 <= time.monotonic() - started < 2.0


async def test_hang_before_headers_times_out_within_the_deadline(
    fake_server: FakeModelServer,
) -> None:
    """A server that never answers at all is cut off at `timeout`."""
    adapter = OpenAICompatibleModel(
        "gpt-test", base_url=fake_server.base_url, api_key=API_KEY, timeout=0.5
    )
    fake_server.queue({"kind": "hang", "after_headers": False})
    started = time.monotonic()
    try:
        error = await failure(adapter)
    finally:
        await adapter.aclose()

    assert isinstance(error, ModelTimeoutError)
    assert time.monotonic() - started < 1.5


async def test_timeout_covers_a_stream_that_trickles(fake_server: FakeModelServer) -> None:
    """`timeout` bounds the whole call, even when every chunk arrives in time."""
    adapter = OpenAICompatibleModel(
        "gpt-test", base_url=fake_server.base_url, api_key=API_KEY, timeout=0.6
    )
    fake_server.queue({"kind": "text", "text": "a b c d e f g h i j", "chunk_delay": 0.2})
    started = time.monotonic()
    try:
        error = await failure(adapter)
    finally:
        await adapter.aclose()

    assert isinstance(error, ModelTimeoutError)
    assert time.monotonic() - started < 1.5


async def test_connection_refused_names_the_url() -> None:
    """Nothing listening gives a retryable ModelConnectionError naming the base URL."""
    url = f"http://127.0.0.1:{free_port()}/v1"
    adapter = OpenAICompatibleModel("gpt-test", base_url=url, api_key=API_KEY, timeout=5.0)
    try:
        error = await failure(adapter)
    finally:
        await adapter.aclose()

    assert isinstance(error, ModelConnectionError)
    assert error.retryable
    assert url in str(error)
    assert "not reachable" in str(error)
    assert API_KEY not in str(error)


@pytest.mark.parametrize(
    ("behaviour", "words"),
    [
        ({"kind": "malformed"}, "not a chat completion"),
        ({"kind": "empty"}, "without sending a chunk"),
        ({"kind": "truncated", "text": "half an ans"}, "no finish_reason"),
        ({"kind": "error_event", "message": "CUDA out of memory"}, "CUDA out of memory"),
    ],
)
async def test_broken_streams_are_response_errors(
    model: OpenAICompatibleModel,
    fake_server: FakeModelServer,
    behaviour: dict[str, Any],
    words: str,
) -> None:
    """Malformed, empty, cut-short or failing streams become ModelResponseError."""
    fake_server.queue(behaviour)

    error = await failure(model)

    assert isinstance(error, ModelResponseError)
    assert words in str(error)


async def test_errors_survive_pickling(
    model: OpenAICompatibleModel, fake_server: FakeModelServer
) -> None:
    """Adapter errors round-trip through pickle with their fields (they get journaled)."""
    fake_server.queue({"kind": "status", "status": 429, "retry_after": "2"})

    error = await failure(model)
    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is ModelRateLimitedError
    assert (copy.retry_after, copy.status, copy.retryable) == (2.0, 429, True)
    assert str(copy) == str(error)


async def test_a_chunk_of_the_wrong_shape_is_a_response_error(
    model: OpenAICompatibleModel, fake_server: FakeModelServer
) -> None:
    """Valid JSON that is not a chat completion chunk becomes ModelResponseError."""
    fake_server.queue(
        {
            "kind": "raw",
            "events": [
                {
                    "data": json.dumps(
                        {
                            "id": "x",
                            "object": "chat.completion.chunk",
                            "model": "m",
                            "created": 0,
                            "choices": [{"index": 0}],
                        }
                    )
                },
                {"data": "[DONE]"},
            ],
        }
    )

    error = await failure(model)

    assert isinstance(error, ModelResponseError)
    assert "not a chat completion chunk" in str(error)
