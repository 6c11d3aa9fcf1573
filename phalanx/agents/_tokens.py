"""Counting tokens before a request is sent, to keep it within its budget.

After a call the provider's reported usage is the truth, and budgets are charged with
it. Before a call there is only an estimate, and this module makes it: one token per
four characters of text (rounded up), four per message and the tool schemas' length.
That is close to what BPE tokenizers give for English prose, and it is labelled as an
approximation (`TOKEN_ESTIMATE_METHOD`) wherever it is reported.

Why not tiktoken for OpenAI-family models: its encodings are not in the package, they
are downloaded on first use, and phalanx downloads nothing at run time (an offline
worker would fail its first budget check). The scripted model counts its usage with
these same functions, so offline the estimate and the "provider's" count agree exactly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from ._messages import Message, ModelRequest, ToolSpec

#: How estimates are made; reported next to every estimate (never called exact).
TOKEN_ESTIMATE_METHOD = "approx: 1 token per 4 characters (no tokenizer)"


def estimate_tokens(text: str) -> int:
    """Approximate BPE token count: one token per four characters, rounded up."""
    return math.ceil(len(text) / 4)


def estimate_message(message: Message) -> int:
    """Approximate tokens of one message: its text, its tool calls' arguments, 4 of framing."""
    tokens = 4 + estimate_tokens(message.content or "")
    for call in message.tool_calls:
        tokens += estimate_tokens(call.arguments)
    return tokens


def estimate_tools(tools: Sequence[ToolSpec]) -> int:
    """Approximate tokens of tool schemas sent with a request."""
    return sum(estimate_tokens(json.dumps(t.parameters)) + 8 for t in tools)


def estimate_request(request: ModelRequest) -> int:
    """Approximate input tokens of `request`: its messages, tool calls and tool schemas."""
    return sum(estimate_message(m) for m in request.messages) + estimate_tools(request.tools)


class TokenCache:
    """Estimates of the same messages and tools, made once each (they are immutable).

    An agent's conversation grows by a message or two per turn and is estimated before
    every call: caching each message's count (by identity, holding the message so its
    id is never reused) keeps the check linear in what is new, not in the whole context.
    """

    def __init__(self) -> None:
        self._messages: dict[int, tuple[Message, int]] = {}
        self._tools: dict[int, tuple[Sequence[ToolSpec], int]] = {}

    def request(self, messages: Sequence[Message], tools: Sequence[ToolSpec]) -> int:
        """`estimate_request` of a request with these messages and tools."""
        total = 0
        cache = self._messages
        for message in messages:
            hit = cache.get(id(message))
            if hit is None:
                hit = cache[id(message)] = (message, estimate_message(message))
            total += hit[1]
        tools_hit = self._tools.get(id(tools))
        if tools_hit is None:
            tools_hit = self._tools[id(tools)] = (tools, estimate_tools(tools))
        return total + tools_hit[1]


def estimate_json(value: Any) -> tuple[int, int]:
    """(bytes, tokens) of `value` as compact UTF-8 JSON: a message's payload size."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return len(text.encode("utf-8")), estimate_tokens(text)
