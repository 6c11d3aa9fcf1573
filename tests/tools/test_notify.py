"""Escalation: the log and an HTTP webhook hear about dead letters; their failures lose nothing."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import phalanx
from phalanx.testing import VirtualClock
from phalanx.tools import DeadLetterQueue, Escalation, WebhookNotifier
from phalanx.tools._notify import WEBHOOK_ENV
from tests.tools import workflows as wf


class _Hook(BaseHTTPRequestHandler):
    server: _HookServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(json.loads(body))
        self.send_response(self.server.status)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _HookServer(ThreadingHTTPServer):
    received: list[dict[str, Any]]
    status: int


@contextmanager
def webhook(status: int = 200) -> Iterator[_HookServer]:
    """A local webhook receiver answering `status`, in a thread this test owns."""
    server = _HookServer(("127.0.0.1", 0), _Hook)
    server.received, server.status = [], status
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port() -> int:
    """A local port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_webhook_receives_the_dead_letter_entry(
    runtime: phalanx.Runtime, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The default notifiers log the entry and POST it to PHALANX_ESCALATION_WEBHOOK."""
    with webhook() as server:
        monkeypatch.setenv(WEBHOOK_ENV, f"http://127.0.0.1:{server.server_port}/hook")
        with caplog.at_level(logging.WARNING, logger="phalanx"):
            outcome = await runtime.run(wf.picky_flow, {"x": -3}, run_id="p")
    assert outcome.ok, outcome.error
    [entry] = await DeadLetterQueue(runtime).entries()
    [posted] = server.received
    assert posted["kind"] == "dead_lettered" and posted["dead_letter_id"] == entry.id
    assert posted["run_id"] == "p" and posted["data"]["arguments"] == {"x": -3}
    assert f"dlq show {entry.id}" in posted["summary"]
    assert any(entry.id in r.getMessage() for r in caplog.records)
    escalations = (await DeadLetterQueue(runtime).get(entry.id)).escalations
    assert [d["ok"] for d in escalations[0]["deliveries"]] == [True, True]


async def test_a_webhook_that_is_down_does_not_lose_the_dead_letter_entry(
    runtime: phalanx.Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connection refused on every attempt: the entry is kept, the failed delivery recorded."""
    monkeypatch.setenv(WEBHOOK_ENV, f"http://127.0.0.1:{closed_port()}/hook")
    outcome = await runtime.run(wf.picky_flow, {"x": -3}, run_id="p")
    assert outcome.ok, outcome.error
    assert outcome.result["status"] == "unavailable"
    [entry] = await DeadLetterQueue(runtime).entries()
    [escalation] = (await DeadLetterQueue(runtime).get(entry.id)).escalations
    log, hook = escalation["deliveries"]
    assert log["ok"] is True
    assert hook["ok"] is False and "EscalationError" in hook["error"]
    assert "3 attempt(s)" in hook["error"]


async def test_webhook_retries_then_reports_a_typed_error() -> None:
    """A webhook answering 500 is tried `attempts` times, backing off on its clock."""
    clock = VirtualClock(start=0.0)
    notifier = WebhookNotifier("", attempts=3, backoff=1.0, clock=clock)
    escalation = Escalation("breaker_opened", "search", "breaker opened", 0.0, {"until": 30.0})
    with webhook(status=500) as server:
        notifier.url = f"http://127.0.0.1:{server.server_port}/"
        with pytest.raises(phalanx.EscalationError, match="HTTP 500"):
            await notifier.notify(escalation)
    assert len(server.received) == 3
    assert server.received[0]["kind"] == "breaker_opened"
    assert clock.now() == 3.0, "backed off 1 s, then 2 s"
