"""What of a conversation may reach telemetry: hashes by default, content on opt-in.

Prompts, completions and tool arguments can hold personal data and credentials, so by
default spans carry only a hash of an agent's input context. Content is captured when
`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`, in the GenAI JSON message
format, and even then the arguments a tool declares as `secrets` are redacted, and
their values are scrubbed from every captured string (a tool that echoes its API key
into its result does not leak it either).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._semconv import CAPTURE_CONTENT_ENV

if TYPE_CHECKING:
    from ..agents._messages import Message, ModelResponse, ToolCall
    from ..tools import Tool

REDACTED = "[redacted]"
#: Shorter secret values are redacted where declared but not scrubbed from free text:
#: replacing every "ok" or "1" in a transcript would destroy it and protect nothing.
_MIN_SCRUB_LENGTH = 4


def capture_content() -> bool:
    """Whether message content may be recorded (read per call: tests and CLIs flip it)."""
    return os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower() == "true"


def input_hash(messages: Sequence[Message]) -> str:
    """A stable hash of an agent's input context, to compare inputs without content."""
    canonical = json.dumps(
        [m.model_dump(mode="json") for m in messages],
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class Redactor:
    """Redacts declared secrets in tool arguments and scrubs their values from text."""

    def __init__(self, tools: Mapping[str, Tool]) -> None:
        self._tools = tools
        self._values: set[str] = set()

    def arguments(self, tool_name: str, raw: str | Mapping[str, Any]) -> Any:
        """The arguments as JSON values with declared secrets replaced (and remembered)."""
        parsed: Any = raw
        if isinstance(raw, str):
            try:
                parsed = json.loads(raw or "{}")
            except ValueError:
                # Not JSON: nothing can be matched to a declared secret, so none of
                # it may be shown.
                return REDACTED if self._secrets(tool_name) else raw
        if not isinstance(parsed, Mapping):
            return parsed
        secrets = self._secrets(tool_name)
        for key in secrets:
            value = parsed.get(key)
            if value is not None:
                self.remember(value)
        return {k: (REDACTED if k in secrets else v) for k, v in parsed.items()}

    def remember(self, value: Any) -> None:
        """Scrub `value` (a secret) from every string this redactor later cleans."""
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        if len(text) >= _MIN_SCRUB_LENGTH:
            self._values.add(text)
            escaped = json.dumps(text, ensure_ascii=False)[1:-1]
            if escaped != text:
                self._values.add(escaped)

    def scrub(self, text: str) -> str:
        """`text` with every remembered secret value replaced."""
        for value in sorted(self._values, key=len, reverse=True):
            text = text.replace(value, REDACTED)
        return text

    def _secrets(self, tool_name: str) -> frozenset[str]:
        tool = self._tools.get(tool_name)
        return frozenset() if tool is None else tool.secrets

    # -- the GenAI message format ------------------------------------------------------

    def _tool_call_part(self, call: ToolCall) -> dict[str, Any]:
        return {
            "type": "tool_call",
            "id": call.id,
            "name": call.name,
            "arguments": self.arguments(call.name, call.arguments),
        }

    def messages(self, messages: Iterable[Message]) -> tuple[str | None, str]:
        """System instructions and input messages as GenAI JSON strings, redacted."""
        system: list[dict[str, Any]] = []
        chat: list[dict[str, Any]] = []
        for message in messages:
            if message.role == "system":
                system.append({"type": "text", "content": message.content or ""})
                continue
            parts: list[dict[str, Any]] = []
            if message.role == "tool":
                parts.append(
                    {
                        "type": "tool_call_response",
                        "id": message.tool_call_id,
                        "response": message.content or "",
                    }
                )
            elif message.content:
                parts.append({"type": "text", "content": message.content})
            parts.extend(self._tool_call_part(c) for c in message.tool_calls)
            chat.append({"role": message.role, "parts": parts})
        # Serialise first, scrub after: every secret of every call is known by then.
        encoded_chat = self.scrub(_dumps(chat))
        return (self.scrub(_dumps(system)) if system else None), encoded_chat

    def output(self, response: ModelResponse) -> str:
        """A response as GenAI output messages JSON, redacted."""
        parts: list[dict[str, Any]] = []
        if response.text:
            parts.append({"type": "text", "content": response.text})
        parts.extend(self._tool_call_part(c) for c in response.tool_calls)
        message = {"role": "assistant", "parts": parts, "finish_reason": response.finish_reason}
        return self.scrub(_dumps([message]))


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
