"""Chaos: a real `phalanx run` of a three-agent conversation is SIGKILLed mid-conversation.

The agents (scripted model, each message journaled in an external ledger from inside
its handler step) pass two topics round a ring. The test kills the process once the
peers have journaled some `MessageReceived` events, then `phalanx resume --force`
must finish the conversation, with each message reaching each agent's logic exactly
once: one handler step per message, and no ledger line repeated for a handler step
that had completed before the kill (only a step in flight at the kill may run again,
under the same idempotency key).
"""

from __future__ import annotations

import json
import signal
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.harness import Workspace, poll_until, wait_exit, workspace
from tests.chaos.workflows import read_ledger
from tests.peers.workflows import NEXT

pytestmark = pytest.mark.slow

RUN = "desk"
HOPS = 8
PEERS = {name: f"{RUN}.1.{name}" for name in NEXT}


def received(events: list[dict[str, Any]]) -> list[str]:
    """Ids of the peer messages a journal (`events --json` shape) shows as received."""
    return [
        e["data"]["message"]["message_id"]
        for e in events
        if e["type"] == "MessageReceived" and e["data"]["message"]["kind"] == "message"
    ]


def ledger_done(events: list[dict[str, Any]]) -> set[str]:
    """Message ids whose ledger step the journal shows as completed."""
    return {
        e["data"]["result"]
        for e in events
        if e["type"] == "StepCompleted" and e["data"]["name"] == "ledger"
    }


def total_received(ws: Workspace) -> int:
    return sum(len(received(ws.peek(run_id))) for run_id in PEERS.values())


def test_sigkill_mid_conversation_then_resume(tmp_path: Path) -> None:
    """Killed mid-conversation and resumed, every message reaches each agent's logic once."""
    ledger = str(tmp_path / "ledger.jsonl")
    inputs = json.dumps({"ledger": ledger, "hops": HOPS})
    with workspace(tmp_path) as ws:
        first = ws.spawn_cli(
            "run",
            "tests.peers.workflows:agent_conversation",
            "--input",
            inputs,
            "--run-id",
            RUN,
            "--lease-ttl",
            "2",
            label="first",
        )
        seen = poll_until(lambda: total_received(ws) >= 6, 30, "six messages received")
        first.popen.send_signal(signal.SIGKILL)
        assert wait_exit(first, 10) == -signal.SIGKILL
        assert seen < 2 * (HOPS + 1), "the conversation finished before the kill"
        done_before = {name: ledger_done(ws.peek(run_id)) for name, run_id in PEERS.items()}

        resumed = ws.cli("resume", RUN, "--force", "--json", timeout=60)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        outcome = json.loads(resumed.stdout)
        assert outcome["status"] == "completed", outcome
        assert outcome["result"]["messages"] == 2 * (HOPS + 1)

        journals = {name: ws.events(run_id) for name, run_id in PEERS.items()}
    lines: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for line in read_ledger(ledger):
        lines[(line["agent"], line["message_id"])].append(line)
    expected = {(name, m) for name, events in journals.items() for m in received(events)}
    for name, events in journals.items():
        ids = received(events)
        assert len(ids) == len(set(ids)), f"{name} took a message twice: {ids}"
    # Every message received went through its agent's logic, and nothing else did.
    assert set(lines) == expected
    assert len(expected) == 2 * (HOPS + 1)
    for (name, message_id), entries in lines.items():
        # One handler step per message: a re-run (in flight at the kill) has the same key.
        assert len({entry["key"] for entry in entries}) == 1, entries
        if message_id in done_before[name]:
            assert len(entries) == 1, f"completed before the kill, yet ran again: {entries}"
        else:
            assert len(entries) <= 2, entries
    assert len({line["pid"] for entries in lines.values() for line in entries}) == 2
