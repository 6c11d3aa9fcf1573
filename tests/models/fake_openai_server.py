"""A real HTTP server that speaks OpenAI's chat completions (and Anthropic's Messages) API.

Tests run it as a subprocess and talk to it through the real SDKs, so the adapters'
HTTP, SSE parsing, timeouts and error mapping are exercised for real, offline.
Standard library only: it runs as a plain script (``python fake_openai_server.py``),
binds 127.0.0.1 on a free port and prints the port on stdout.

Endpoints:

- ``POST /v1/chat/completions``: JSON, or SSE (``data: {...}`` chunks, tool-call
  deltas split across chunks, a usage chunk when ``stream_options.include_usage``,
  then ``data: [DONE]``).
- ``POST /v1/messages``: Anthropic's Messages API, JSON or SSE events.
- ``POST /_control``: a JSON list of behaviours to queue (or ``{"queue": [...],
  "reset": true}``); each model request takes the next one that applies to it.
- ``POST /_reset``: clear the queue and the counters.
- ``GET /_stats``: ``{"requests": n, "bodies": [...], "paths": [...], "headers": [...],
  "served": [kind, ...], "queued": n}``.

Matching: a behaviour with ``"match": REGEX`` applies only to requests whose system
message (OpenAI: the first ``system`` message; Anthropic: ``system``) the regex
searches successfully; one without ``match`` applies to any request. A request takes
the first applicable behaviour in queue order, so concurrent agents can each get their
own script (``"match": "^You are web_search"``). ``"sticky": true`` leaves the
behaviour queued, answering every request it applies to.

Behaviours (``kind``)::

    {"kind": "text", "text": "hi", "model": "served-name", "usage": true,
     "finish_reason": "stop", "chunk_delay": 0.0}
    {"kind": "tool_calls", "calls": [{"name": "f", "arguments": "{...}", "id": "call_1"}],
     "text": "optional text before the calls"}
    {"kind": "status", "status": 429, "retry_after": "1", "retry_after_ms": "1500",
     "message": "...", "error_type": "..."}
    {"kind": "hang", "after_headers": true}       # stalls (after the SSE headers)
    {"kind": "slow", "delay": 0.5, "text": "..."}  # waits, then answers
    {"kind": "malformed"}                         # a chunk (or body) that is not JSON
    {"kind": "empty"}                             # a stream with no chunks
    {"kind": "truncated", "text": "..."}          # text chunks, then the connection ends
    {"kind": "error_event", "message": "...", "error_type": "overloaded_error"}
    {"kind": "raw", "events": [{"data": "...", "event": "optional name"}]}  # verbatim SSE

With an empty queue the answer is ``echo: <last user message>``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------- server


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queue: list[dict[str, Any]] = []
        self.bodies: list[Any] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.served: list[str] = []
        self.counter = 0

    def reset(self) -> None:
        with self.lock:
            self.queue.clear()
            self.bodies.clear()
            self.paths.clear()
            self.headers.clear()
            self.served.clear()

    def record(self, path: str, body: Any, headers: dict[str, str]) -> dict[str, Any]:
        system = _system_text(body)
        with self.lock:
            self.bodies.append(body)
            self.paths.append(path)
            self.headers.append(headers)
            self.counter += 1
            behaviour: dict[str, Any] = {"kind": "default"}
            for index, queued in enumerate(self.queue):
                pattern = queued.get("match")
                if pattern is None or re.search(pattern, system):
                    behaviour = queued if queued.get("sticky") else self.queue.pop(index)
                    break
            self.served.append(str(behaviour.get("kind", "default")))
            return behaviour

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": len(self.bodies),
                "bodies": list(self.bodies),
                "paths": list(self.paths),
                "headers": list(self.headers),
                "served": list(self.served),
                "queued": len(self.queue),
            }


STATE = _State()

_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def _pieces(text: str) -> list[str]:
    """Text split into word-sized pieces, as a model streams it."""
    return re.findall(r"\S+\s*|\s+", text) or [text]


def _thirds(text: str) -> list[str]:
    """Arguments split in three, so deltas must be joined to be whole."""
    if len(text) < 3:
        return [text]
    a, b = len(text) // 3, 2 * len(text) // 3
    return [text[:a], text[a:b], text[b:]]


def _rough_tokens(value: Any) -> int:
    return max(1, len(json.dumps(value)) // 4)


def _system_text(body: Any) -> str:
    """The request's system message: what a behaviour's ``match`` is checked against."""
    if not isinstance(body, dict):
        return ""
    system = body.get("system")  # Anthropic
    if system is None:
        system = next(
            (m.get("content") for m in body.get("messages") or [] if m.get("role") == "system"),
            "",
        )
    if isinstance(system, list):
        return " ".join(b.get("text", "") for b in system if isinstance(b, dict))
    return system if isinstance(system, str) else ""


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            texts = [b.get("text", "") for b in content if b.get("type") == "text"]
            if texts:
                return " ".join(texts)
    return ""


def _calls(behaviour: dict[str, Any]) -> list[dict[str, str]]:
    calls = []
    for i, call in enumerate(behaviour.get("calls", [])):
        arguments = call.get("arguments", "{}")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        calls.append(
            {"id": call.get("id", f"call_{i}"), "name": call["name"], "arguments": arguments}
        )
    return calls


class _Handler(BaseHTTPRequestHandler):
    server_version = "FakeModelServer/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the tests' output is what matters

    # -- plumbing

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _start_sse(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.flush()

    def _sse(self, data: str, event: str | None = None, delay: float = 0.0) -> None:
        if delay:
            time.sleep(delay)
        frame = (f"event: {event}\n" if event else "") + f"data: {data}\n\n"
        self.wfile.write(frame.encode())
        self.wfile.flush()

    def _raw(self, behaviour: dict[str, Any]) -> None:
        self._start_sse()
        for frame in behaviour.get("events", []):
            self._sse(frame["data"], event=frame.get("event"))

    def _hang(self) -> None:
        # Sleep well past any test's timeout; the process is killed at teardown.
        time.sleep(600)

    # -- routes

    def do_GET(self) -> None:
        if self.path == "/_stats":
            self._send_json(200, STATE.stats())
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            self._send_json(400, {"error": {"message": "request body is not JSON"}})
            return
        try:
            if self.path == "/_control":
                self._control(body)
            elif self.path == "/_reset":
                STATE.reset()
                self._send_json(200, {"ok": True})
            elif self.path in ("/v1/chat/completions", "/chat/completions"):
                self._chat(body)
            elif self.path == "/v1/messages":
                self._messages(body)
            else:
                self._send_json(404, {"error": {"message": f"no route {self.path}"}})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. its timeout fired): nothing to answer

    def _control(self, body: Any) -> None:
        if isinstance(body, dict):
            if body.get("reset"):
                STATE.reset()
            behaviours = body.get("queue", [])
        else:
            behaviours = body or []
        with STATE.lock:
            STATE.queue.extend(behaviours)
            queued = len(STATE.queue)
        self._send_json(200, {"queued": queued})

    def _recorded(self, body: Any) -> dict[str, Any]:
        headers = {
            k.lower(): v
            for k, v in self.headers.items()
            if k.lower() not in ("host", "content-length", "accept-encoding", "connection")
        }
        return STATE.record(self.path, body, headers)

    # -- OpenAI chat completions

    def _chat(self, body: dict[str, Any]) -> None:
        behaviour = self._recorded(body)
        kind = behaviour.get("kind", "default")
        stream = bool(body.get("stream"))
        model = behaviour.get("model") or body.get("model", "fake")
        if kind == "status":
            self._status(behaviour, anthropic=False)
            return
        if kind == "hang":
            if stream and behaviour.get("after_headers", True):
                self._start_sse()
            self._hang()
            return
        if kind == "slow":
            time.sleep(float(behaviour.get("delay", 0.5)))
        if kind == "malformed":
            if stream:
                self._start_sse()
                self._sse('{"id": "chatcmpl-bad", "choices": [ {not json')
            else:
                data = b"{this is not json"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            return
        if kind == "empty":
            if stream:
                self._start_sse()
                self._sse("[DONE]")
            else:
                self._send_json(200, {})
            return
        if kind == "raw":
            self._raw(behaviour)
            return
        if kind == "error_event":
            self._start_sse()
            error = {
                "message": behaviour.get("message", "the model crashed"),
                "type": behaviour.get("error_type", "server_error"),
            }
            self._sse(json.dumps({"error": error}))
            return

        text = behaviour.get("text")
        if kind == "default":
            text = f"echo: {_last_user_text(body.get('messages', []))}"
        calls = _calls(behaviour)
        finish = behaviour.get("finish_reason") or ("tool_calls" if calls else "stop")
        usage = {
            "prompt_tokens": _rough_tokens(body.get("messages")),
            "completion_tokens": _rough_tokens([text, calls]),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if not stream:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if calls:
                message["tool_calls"] = [
                    {
                        "id": c["id"],
                        "type": "function",
                        "function": {"name": c["name"], "arguments": c["arguments"]},
                    }
                    for c in calls
                ]
            answer: dict[str, Any] = {
                "id": f"chatcmpl-fake-{STATE.counter}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            }
            if behaviour.get("usage", True):
                answer["usage"] = usage
            self._send_json(200, answer)
            return

        delay = float(behaviour.get("chunk_delay", 0.0))
        base = {
            "id": f"chatcmpl-fake-{STATE.counter}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
            return json.dumps({**base, "choices": [choice]})

        self._start_sse()
        self._sse(chunk({"role": "assistant", "content": ""}))
        for piece in _pieces(text) if text else []:
            self._sse(chunk({"content": piece}), delay=delay)
        for i, call in enumerate(calls):
            head = {"index": i, "id": call["id"], "type": "function"}
            head["function"] = {"name": call["name"], "arguments": ""}
            self._sse(chunk({"tool_calls": [head]}), delay=delay)
            for part in _thirds(call["arguments"]):
                self._sse(
                    chunk({"tool_calls": [{"index": i, "function": {"arguments": part}}]}),
                    delay=delay,
                )
        if kind == "truncated":
            return  # the connection closes without finish_reason or [DONE]
        self._sse(chunk({}, finish))
        include_usage = (body.get("stream_options") or {}).get("include_usage")
        if include_usage and behaviour.get("usage", True):
            self._sse(json.dumps({**base, "choices": [], "usage": usage}))
        self._sse("[DONE]")

    def _status(self, behaviour: dict[str, Any], *, anthropic: bool) -> None:
        status = int(behaviour.get("status", 500))
        message = behaviour.get("message", f"fake error {status}")
        headers: dict[str, str] = dict(behaviour.get("headers", {}))
        if "retry_after" in behaviour:
            headers["Retry-After"] = str(behaviour["retry_after"])
        if "retry_after_ms" in behaviour:
            headers["retry-after-ms"] = str(behaviour["retry_after_ms"])
        if anthropic:
            error_type = behaviour.get("error_type") or _ANTHROPIC_ERROR_TYPES.get(
                status, "api_error"
            )
            payload: Any = {"type": "error", "error": {"type": error_type, "message": message}}
        else:
            payload = {
                "error": {
                    "message": message,
                    "type": behaviour.get("error_type", "fake_error"),
                    "code": behaviour.get("code"),
                }
            }
        self._send_json(status, payload, headers)

    # -- Anthropic messages

    def _messages(self, body: dict[str, Any]) -> None:
        behaviour = self._recorded(body)
        kind = behaviour.get("kind", "default")
        stream = bool(body.get("stream"))
        model = behaviour.get("model") or body.get("model", "fake")
        if kind == "status":
            self._status(behaviour, anthropic=True)
            return
        if kind == "hang":
            if stream and behaviour.get("after_headers", True):
                self._start_sse()
            self._hang()
            return
        if kind == "slow":
            time.sleep(float(behaviour.get("delay", 0.5)))
        if kind == "malformed":
            self._start_sse()
            self._sse("{not json", event="message_start")
            return
        if kind == "empty":
            self._start_sse()
            return
        if kind == "raw":
            self._raw(behaviour)
            return
        if kind == "error_event":
            self._start_sse()
            error = {
                "type": behaviour.get("error_type", "overloaded_error"),
                "message": behaviour.get("message", "Overloaded"),
            }
            self._sse(json.dumps({"type": "error", "error": error}), event="error")
            return

        text = behaviour.get("text")
        if kind == "default":
            text = f"echo: {_last_user_text(body.get('messages', []))}"
        calls = _calls(behaviour)
        stop = behaviour.get("finish_reason") or ("tool_use" if calls else "end_turn")
        input_tokens = _rough_tokens([body.get("system"), body.get("messages")])
        output_tokens = _rough_tokens([text, calls])
        if not stream:
            content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
            for c in calls:
                content.append(
                    {
                        "type": "tool_use",
                        "id": c["id"],
                        "name": c["name"],
                        "input": json.loads(c["arguments"]),
                    }
                )
            self._send_json(
                200,
                {
                    "id": f"msg_fake_{STATE.counter}",
                    "type": "message",
                    "role": "assistant",
                    "content": content,
                    "model": model,
                    "stop_reason": stop,
                    "stop_sequence": None,
                    "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
                },
            )
            return

        delay = float(behaviour.get("chunk_delay", 0.0))

        def send(event: str, payload: dict[str, Any]) -> None:
            self._sse(json.dumps({"type": event, **payload}), event=event, delay=delay)

        self._start_sse()
        send(
            "message_start",
            {
                "message": {
                    "id": f"msg_fake_{STATE.counter}",
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": model,
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": input_tokens, "output_tokens": 1},
                }
            },
        )
        index = 0
        if text:
            send("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
            self._sse(json.dumps({"type": "ping"}), event="ping")
            for piece in _pieces(text):
                send(
                    "content_block_delta",
                    {"index": 0, "delta": {"type": "text_delta", "text": piece}},
                )
            send("content_block_stop", {"index": 0})
            index = 1
        for c in calls:
            send(
                "content_block_start",
                {
                    "index": index,
                    "content_block": {
                        "type": "tool_use",
                        "id": c["id"],
                        "name": c["name"],
                        "input": {},
                    },
                },
            )
            for part in _thirds(c["arguments"]):
                send(
                    "content_block_delta",
                    {"index": index, "delta": {"type": "input_json_delta", "partial_json": part}},
                )
            send("content_block_stop", {"index": index})
            index += 1
        if kind == "truncated":
            return
        send(
            "message_delta",
            {
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            },
        )
        send("message_stop", {})


def serve(port: int = 0) -> None:
    """Serve on 127.0.0.1:`port` (0: any free port), printing the port first."""
    server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever(poll_interval=0.1)


# --------------------------------------------------------------------------- client


class FakeModelServer:
    """A handle on a running fake server: its URLs, its queue and its counters."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        #: For OpenAICompatibleModel(base_url=...).
        self.base_url = f"{self.url}/v1"
        #: For AnthropicModel(base_url=...) (the SDK appends /v1/messages).
        self.anthropic_base_url = self.url

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def queue(self, *behaviours: dict[str, Any]) -> None:
        """Queue behaviours; each model request takes the next one that applies to it."""
        self._call("POST", "/_control", list(behaviours))

    def reset(self) -> None:
        """Forget queued behaviours and recorded requests."""
        self._call("POST", "/_reset", {})

    def stats(self) -> dict[str, Any]:
        """`{"requests": n, "bodies": [...], "paths": [...], "headers": [...], "served": [...]}`."""
        result: dict[str, Any] = self._call("GET", "/_stats")
        return result


@contextlib.contextmanager
def start_fake_openai_server(startup_timeout: float = 10.0) -> Iterator[FakeModelServer]:
    """Run the fake server in a subprocess for the duration of the block."""
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port_line: list[str] = []
        reader = threading.Thread(target=lambda: port_line.append(process.stdout.readline()))
        reader.start()
        reader.join(startup_timeout)
        if not port_line or not port_line[0].strip().isdigit():
            raise RuntimeError(f"the fake model server did not start (got {port_line!r})")
        yield FakeModelServer(int(port_line[0]))
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    serve(parser.parse_args().port)


if __name__ == "__main__":
    main()
