"""What of a conversation may reach telemetry: hashes by default, content on opt-in.

Prompts, completions and tool arguments can hold personal data and credentials, so by
default spans carry only a hash of an agent's input context. Content is captured when
`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`, and even then the arguments
a tool declares as `secrets` are redacted, and their values are scrubbed from every
captured string (a tool that echoes its API key into its result does not leak it
either). The GenAI message format is the agents layer's (`agents/_spans.py`); this
module knows only tool names and the argument names they declare secret.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping
from typing import Any

from .semconv import CAPTURE_CONTENT_ENV

REDACTED = "[redacted]"
#: Shorter secret values are redacted where declared but not scrubbed from free text:
#: replacing every "ok" or "1" in a transcript would destroy it and protect nothing.
_MIN_SCRUB_LENGTH = 4


def capture_content() -> bool:
    """Whether message content may be recorded (read per call: tests and CLIs flip it)."""
    return os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower() == "true"


def dumps(value: Any) -> str:
    """`value` as the JSON text a content attribute holds."""
    return json.dumps(value, ensure_ascii=False, default=str)


class Redactor:
    """Redacts declared secrets in tool arguments and scrubs their values from text.

    Args:
        secrets: For each tool name, the names of the arguments it declares secret.
    """

    def __init__(self, secrets: Mapping[str, Collection[str]]) -> None:
        self._secrets = secrets
        self._values: set[str] = set()

    def arguments(self, tool_name: str, raw: str | Mapping[str, Any]) -> Any:
        """The arguments as JSON values with declared secrets replaced (and remembered)."""
        secrets = self._secrets.get(tool_name, ())
        parsed: Any = raw
        if isinstance(raw, str):
            try:
                parsed = json.loads(raw or "{}")
            except ValueError:
                # Not JSON: nothing can be matched to a declared secret, so none of
                # it may be shown.
                return REDACTED if secrets else raw
        if not isinstance(parsed, Mapping):
            return parsed
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
