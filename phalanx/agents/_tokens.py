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
from typing import Any

from ._messages import ModelRequest

#: How estimates are made; reported next to every estimate (never called exact).
TOKEN_ESTIMATE_METHOD = "approx: 1 token per 4 characters (no tokenizer)"


def estimate_tokens(text: str) -> int:
    """Approximate BPE token count: one token per four characters, rounded up."""
    return math.ceil(len(text) / 4)


def estimate_request(request: ModelRequest) -> int:
    """Approximate input tokens of `request`: its messages, tool calls and tool schemas."""
    tokens = sum(4 + estimate_tokens(m.content or "") for m in request.messages)
    tokens += sum(estimate_tokens(c.arguments) for m in request.messages for c in m.tool_calls)
    tokens += sum(estimate_tokens(json.dumps(t.parameters)) + 8 for t in request.tools)
    return tokens


def estimate_json(value: Any) -> tuple[int, int]:
    """(bytes, tokens) of `value` as compact UTF-8 JSON: a message's payload size."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return len(text.encode("utf-8")), estimate_tokens(text)
