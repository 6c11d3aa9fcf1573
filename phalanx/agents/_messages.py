"""What goes into and comes out of a model: messages, tool specs, responses, usage.

Pydantic models, because every response crosses a step boundary and is journaled as
JSON: `ModelResponse.model_dump(mode="json")` in, `ModelResponse.model_validate` out,
identical on replay.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ..tools import ToolSpec as ToolSpec

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "tool_calls", "length", "content_filter", "error"]


class ToolCall(BaseModel):
    """A model's request to run a tool.

    `arguments` is the raw JSON text the model produced: it may be malformed, and the
    agent, not the adapter, decides what to do about it. `recovered_from_text` marks a
    call the model wrote as text, recognised by `LenientToolCalls`.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    arguments: str
    recovered_from_text: bool = False


class Message(BaseModel):
    """One chat message; assistant messages may carry tool calls, tool messages answer one."""

    model_config = ConfigDict(frozen=True)

    role: Role
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    @classmethod
    def system(cls, text: str) -> Message:
        """A system message (an agent's instructions)."""
        return cls(role="system", content=text)

    @classmethod
    def user(cls, text: str) -> Message:
        """A user message."""
        return cls(role="user", content=text)

    @classmethod
    def tool_result(cls, call: ToolCall, text: str) -> Message:
        """The answer to `call`, fed back to the model."""
        return cls(role="tool", content=text, tool_call_id=call.id, name=call.name)


class ModelRequest(BaseModel):
    """Everything a model call needs; the same request gives the same journaled step."""

    model_config = ConfigDict(frozen=True)

    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()
    output_schema: dict[str, Any] | None = None
    temperature: float | None = None
    max_tokens: int | None = None


class Usage(BaseModel):
    """Tokens a call consumed, as the provider counted them (or estimated, if scripted)."""

    model_config = ConfigDict(frozen=True)

    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens


class ModelResponse(BaseModel):
    """A model's answer: text and/or tool calls, why it stopped, cost and timing."""

    model_config = ConfigDict(frozen=True)

    text: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: FinishReason = "stop"
    usage: Usage = Usage()
    model: str
    provider: str
    latency_s: float = 0.0
    time_to_first_token_s: float | None = None

    def as_message(self) -> Message:
        """The assistant message to append to the conversation."""
        return Message(role="assistant", content=self.text, tool_calls=self.tool_calls)


class StreamChunk(BaseModel):
    """One piece of a streamed answer; the last chunk carries the whole response."""

    model_config = ConfigDict(frozen=True)

    text: str = ""
    response: ModelResponse | None = None
