"""AnthropicModel against a real local Messages endpoint, through the real anthropic SDK."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import AsyncIterator
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
from phalanx.agents import Message, Model, ModelRequest, ToolCall
from phalanx.agents._anthropic import AnthropicModel, to_anthropic_messages

from .fake_openai_server import FakeModelServer
from .test_openai_adapter import WEATHER, free_port

API_KEY = "sk-ant-test-SECRET-0123456789"
MODEL = "claude-test-1"


def ask(text: str = "hello there", **fields: Any) -> ModelRequest:
    return ModelRequest(messages=(Message.system("You are terse."), Message.user(text)), **fields)


@pytest.fixture
async def model(fake_server: FakeModelServer) -> AsyncIterator[AnthropicModel]:
    adapter = AnthropicModel(
        MODEL, base_url=fake_server.anthropic_base_url, api_key=API_KEY, timeout=5.0
    )
    yield adapter
    await adapter.aclose()


async def failure(model: AnthropicModel) -> ModelError:
    with pytest.raises(ModelError) as info:
        await model.complete(ask())
    return info.value


# -- conversion


def test_system_messages_become_the_system_parameter() -> None:
    """System messages leave the turn list and are joined into `system`."""
    system, turns = to_anthropic_messages(
        (Message.system("Be brief."), Message.user("hi"), Message.system("Use SI units."))
    )

    assert system == "Be brief.\n\nUse SI units."
    assert turns == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]


def test_tool_calls_and_results_become_blocks_in_alternating_turns() -> None:
    """Tool calls are tool_use blocks; results are tool_result blocks merged into one turn."""
    a = ToolCall(id="toolu_a", name="get_weather", arguments='{"city": "Oslo"}')
    b = ToolCall(id="toolu_b", name="get_weather", arguments='{"city": Lim')
    _, turns = to_anthropic_messages(
        (
            Message.user("weather?"),
            Message(role="assistant", content="Checking.", tool_calls=(a, b)),
            Message.tool_result(a, "rainy"),
            Message.tool_result(b, "sunny"),
        )
    )

    assert turns == [
        {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_a",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                },
                # Anthropic needs an object: malformed arguments are passed raw inside one.
                {
                    "type": "tool_use",
                    "id": "toolu_b",
                    "name": "get_weather",
                    "input": {"_raw": '{"city": Lim'},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": "rainy"},
                {"type": "tool_result", "tool_use_id": "toolu_b", "content": "sunny"},
            ],
        },
    ]


# -- answers


async def test_text_answer_reports_usage_model_and_timing(model: AnthropicModel) -> None:
    """A plain answer carries its text, token usage, model, provider and timings."""
    response = await model.complete(ask("hello there"))

    assert isinstance(model, Model)
    assert response.text == "echo: hello there"
    assert response.finish_reason == "stop"
    assert response.usage.input_tokens > 0
    assert response.usage.output_tokens > 1  # from message_delta, not message_start
    assert response.model == MODEL
    assert response.provider == "anthropic"
    assert response.time_to_first_token_s is not None
    assert 0 < response.time_to_first_token_s <= response.latency_s


async def test_request_uses_the_messages_api_shape(
    model: AnthropicModel, fake_server: FakeModelServer
) -> None:
    """The wire request has `system`, tools with input_schema, max_tokens and the key header."""
    await model.complete(ask("hi", tools=(WEATHER,), temperature=0.3))

    stats = fake_server.stats()
    body = stats["bodies"][0]
    assert stats["paths"] == ["/v1/messages"]
    assert body["system"] == "You are terse."
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "input_schema": WEATHER.parameters,
        }
    ]
    assert body["max_tokens"] == 4096
    assert body["temperature"] == 0.3
    assert body["stream"] is True
    # Older SDKs send the key as x-api-key, newer ones as a bearer token.
    headers = stats["headers"][0]
    assert API_KEY in (headers.get("x-api-key"), headers.get("authorization", "")[7:])


async def test_structured_output_sends_the_schema(
    model: AnthropicModel, fake_server: FakeModelServer
) -> None:
    """`output_schema` becomes output_config.format json_schema."""
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    fake_server.queue({"kind": "text", "text": '{"ok": true}'})

    await model.complete(ask(output_schema=schema))

    body = fake_server.stats()["bodies"][0]
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}


async def test_stream_yields_text_then_the_full_response(model: AnthropicModel) -> None:
    """`stream` yields text pieces and ends with the whole response."""
    chunks = [chunk async for chunk in model.stream(ask("one two three"))]

    final = chunks[-1].response
    assert final is not None
    assert len(chunks) > 2
    assert "".join(c.text for c in chunks[:-1]) == final.text == "echo: one two three"


async def test_tool_use_is_assembled_and_kept_raw(
    model: AnthropicModel, fake_server: FakeModelServer
) -> None:
    """input_json_delta pieces are joined into raw arguments, malformed or not."""
    fake_server.queue(
        {
            "kind": "tool_calls",
            "text": "Let me check.",
            "calls": [
                {"id": "toolu_1", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
                {"id": "toolu_2", "name": "get_weather", "arguments": '{"city": Lim'},
            ],
        }
    )

    response = await model.complete(ask(tools=(WEATHER,)))

    assert response.finish_reason == "tool_calls"
    assert response.text == "Let me check."
    assert response.tool_calls == (
        ToolCall(id="toolu_1", name="get_weather", arguments='{"city": "Oslo"}'),
        ToolCall(id="toolu_2", name="get_weather", arguments='{"city": Lim'),
    )


async def test_max_tokens_stop_is_length(
    model: AnthropicModel, fake_server: FakeModelServer
) -> None:
    """stop_reason max_tokens is reported as finish_reason "length"."""
    fake_server.queue({"kind": "text", "text": "cut", "finish_reason": "max_tokens"})

    response = await model.complete(ask())

    assert response.finish_reason == "length"


# -- failures


async def test_rate_limit_carries_retry_after(
    model: AnthropicModel, fake_server: FakeModelServer
) -> None:
    """429 becomes a retryable ModelRateLimitedError with the server's Retry-After."""
    fake_server.queue({"kind": "status", "status": 429, "retry_after": "1"})

    error = await failure(model)

    assert isinstance(error, ModelRateLimitedError)
    assert error.retry_after == 1.0
    assert error.retryable
    assert fake_server.stats()["requests"] == 1


@pytest.mark.parametrize("status", [500, 529])
async def test_server_errors_and_overload_are_retryable(
    model: AnthropicModel, fake_server: FakeModelServer, status: int
) -> None:
    """5xx and 529 (overloaded) become a retryable ModelError with the status."""
    fake_server.queue({"kind": "status", "status": status})

    error = await failure(model)

    assert type(error) is ModelError
    assert (error.status, error.retryable) == (status, True)


async def test_bad_request_is_not_retryable(
    model: AnthropicModel, fake_server: FakeModelServer
) -> None:
    """400 becomes a non-retryable ModelError."""
    fake_server.queue(
        {"kind": "status", "status": 400, "message": "messages: roles must alternate"}
    )

    error = await failure(model)

    assert (error.status, error.retryable) == (400, False)
    assert "roles must alternate" in str(error)


async def test_auth_error_names_the_key_variable_but_never_the_key(
    model: AnthropicModel, fake_server: FakeModelServer
) -> None:
    """401 points at ANTHROPIC_API_KEY and redacts a key the server echoes back."""
    fake_server.queue({"kind": "status", "status": 401, "message": f"invalid x-api-key {API_KEY}"})

    error = await failure(model)

    assert "ANTHROPIC_API_KEY" in str(error)
    assert API_KEY not in str(error)


@pytest.mark.parametrize(
    ("error_type", "kind", "status"),
    [
        ("overloaded_error", ModelError, 529),
        ("rate_limit_error", ModelRateLimitedError, 429),
        ("api_error", ModelError, 500),
    ],
)
async def test_error_events_mid_stream_are_classified_by_type(
    model: AnthropicModel,
    fake_server: FakeModelServer,
    error_type: str,
    kind: type[ModelError],
    status: int,
) -> None:
    """An `error` event inside a 200 stream is mapped by its type to a retryable error."""
    fake_server.queue({"kind": "error_event", "error_type": error_type})

    error = await failure(model)

    assert type(error) is kind
    assert (error.status, error.retryable) == (status, True)


@pytest.mark.parametrize(
    ("behaviour", "words"),
    [
        ({"kind": "malformed"}, "not a Messages API answer"),
        ({"kind": "empty"}, "without sending an event"),
        ({"kind": "truncated", "text": "half an ans"}, "before the model finished"),
    ],
)
async def test_broken_streams_are_response_errors(
    model: AnthropicModel, fake_server: FakeModelServer, behaviour: dict[str, Any], words: str
) -> None:
    """Malformed, empty or cut-short streams become ModelResponseError."""
    fake_server.queue(behaviour)

    error = await failure(model)

    assert isinstance(error, ModelResponseError)
    assert words in str(error)


async def test_hang_times_out_within_the_deadline(fake_server: FakeModelServer) -> None:
    """A stalled stream is cut off at `timeout`."""
    adapter = AnthropicModel(
        MODEL, base_url=fake_server.anthropic_base_url, api_key=API_KEY, timeout=0.8
    )
    fake_server.queue({"kind": "hang"})
    started = time.monotonic()
    try:
        error = await failure(adapter)
    finally:
        await adapter.aclose()

    assert isinstance(error, ModelTimeoutError)
    assert time.monotonic() - started < 1.8


async def test_connection_refused_names_the_url() -> None:
    """Nothing listening gives a retryable ModelConnectionError naming the base URL."""
    url = f"http://127.0.0.1:{free_port()}"
    adapter = AnthropicModel(MODEL, base_url=url, api_key=API_KEY)
    try:
        error = await failure(adapter)
    finally:
        await adapter.aclose()

    assert isinstance(error, ModelConnectionError)
    assert url in str(error)
    assert API_KEY not in str(error)


# -- configuration


def test_missing_key_names_the_variable() -> None:
    """No key given or in ANTHROPIC_API_KEY is a config error naming the variable."""
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        AnthropicModel(MODEL)


def test_missing_sdk_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the anthropic package the error says which extra to install."""
    monkeypatch.setitem(sys.modules, "anthropic", None)

    with pytest.raises(ConfigError, match=r"pip install 'phalanx\[anthropic\]'"):
        AnthropicModel(MODEL, api_key=API_KEY)


async def test_an_event_of_the_wrong_shape_is_a_response_error(
    model: AnthropicModel, fake_server: FakeModelServer
) -> None:
    """A tool-input delta for a block that is not a tool_use becomes ModelResponseError."""
    delta = {"type": "input_json_delta", "partial_json": "{}"}
    fake_server.queue(
        {
            "kind": "raw",
            "events": [
                {
                    "event": "content_block_delta",
                    "data": json.dumps({"type": "content_block_delta", "index": 3, "delta": delta}),
                }
            ],
        }
    )

    error = await failure(model)

    assert isinstance(error, ModelResponseError)
    assert "does not fit the Messages API" in str(error)
