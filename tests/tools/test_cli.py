"""`phalanx dlq ...`, `phalanx tools stats` and `phalanx show`, run as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import phalanx
from tests.tools import workflows as wf

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PHALANX = str(Path(sys.executable).with_name("phalanx"))

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
async def cli(url: str) -> Cli:
    """A store holding two dead-letter entries (runs `b` and `p`), and a CLI on it."""
    async with phalanx.open_runtime(url) as runtime:
        assert (await runtime.run(wf.broken_flow, {}, run_id="b")).ok
        assert (await runtime.run(wf.picky_flow, {"x": -1}, run_id="p")).ok
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHALANX_")}
    env["PYTHONPATH"] = str(ROOT)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PHALANX, *args, "--store", url],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    return run


def ok_json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_dlq_list_and_show_print_the_entries_as_json(cli: Cli) -> None:
    """`dlq list --json` lists open entries (filterable); `dlq show --json` has every attempt."""
    listed = ok_json(cli("dlq", "list", "--json"))
    assert {e["tool"] for e in listed} == {"broken", "picky"}
    assert all(e["status"] == "open" and not e["waiting"] for e in listed)
    [broken] = ok_json(cli("dlq", "list", "--tool", "broken", "--json"))
    assert broken["run_id"] == "b" and broken["attempts"] == 3
    assert ok_json(cli("dlq", "list", "--run", "p", "--json"))[0]["tool"] == "picky"
    shown = ok_json(cli("dlq", "show", broken["id"], "--json"))
    assert shown["arguments"] == {"query": "leases", "api_key": "[redacted]"}
    assert [a["attempt"] for a in shown["attempts"]] == [1, 2, 3]
    assert shown["attempts"][0]["traceback"].startswith("Traceback")
    text = cli("dlq", "show", broken["id"])
    assert text.returncode == 0 and "RuntimeError" in text.stdout
    missing = cli("dlq", "show", "nope")
    assert missing.returncode == 2 and "no dead-letter entry 'nope'" in missing.stderr
    assert cli("dlq", "list", "--status", "maybe").returncode == 2


def test_dlq_retry_resolve_discard_are_journaled_with_who_and_why(cli: Cli) -> None:
    """Each action's JSON shows the new state; closed entries refuse further actions."""
    broken = ok_json(cli("dlq", "list", "--tool", "broken", "--json"))[0]["id"]
    picky = ok_json(cli("dlq", "list", "--tool", "picky", "--json"))[0]["id"]

    secret = cli("dlq", "retry", broken)
    assert secret.returncode == 2 and "api_key" in secret.stderr and "--arguments" in secret.stderr
    failed = cli("dlq", "retry", broken, "--arguments", '{"api_key": "sk-other"}', "--by", "ci")
    assert failed.returncode == 1 and "backend exploded" in failed.stderr
    assert "sk-other" not in failed.stderr, "the secret is scrubbed from the error"

    resolved = ok_json(
        cli("dlq", "resolve", broken, "--result", '"done by hand"', "--by", "ann", "--json")
    )
    assert resolved["status"] == "resolved"
    assert [a["action"] for a in resolved["actions"]] == ["retry_failed", "resolved"]
    assert resolved["resolution"]["result"] == "done by hand"
    again = cli("dlq", "resolve", broken, "--result", "1")
    assert again.returncode == 1 and "already resolved (by ann)" in again.stderr

    bad = cli("dlq", "resolve", picky, "--result", "{oops")
    assert bad.returncode == 2 and "--result is not valid JSON" in bad.stderr
    discarded = ok_json(
        cli("dlq", "discard", picky, "--reason", "caller bug, fixed", "--by", "bo", "--json")
    )
    assert discarded["status"] == "discarded"
    assert discarded["resolution"] == {
        **discarded["resolution"],
        "by": "bo",
        "reason": "caller bug, fixed",
    }
    assert ok_json(cli("dlq", "list", "--json")) == []
    every = ok_json(cli("dlq", "list", "--status", "all", "--json"))
    assert sorted(e["status"] for e in every) == ["discarded", "resolved"]


def test_tools_stats_json(cli: Cli) -> None:
    """`tools stats --json` gives every tool's figures; --tool narrows it."""
    stats = ok_json(cli("tools", "stats", "--json"))
    broken = stats["tools"]["broken"]
    assert broken["calls"] == 1 and broken["attempt_failures"] == {"RuntimeError": 3}
    assert broken["dlq_depth"] == 1 and broken["latency_s"]["p99"] is not None
    assert stats["tools"]["picky"]["attempt_failures"] == {"phalanx._errors.ToolFailed": 1}
    only = ok_json(cli("tools", "stats", "--tool", "picky", "--json"))
    assert list(only["tools"]) == ["picky"]
    table = cli("tools", "stats")
    assert table.returncode == 0 and "broken" in table.stdout


def test_show_lists_failed_and_dead_lettered_tool_calls(cli: Cli) -> None:
    """`phalanx show RUN` names every tool call that failed, with its DLQ entry."""
    [call] = ok_json(cli("show", "b", "--json"))["tool_calls"]
    assert call["tool"] == "broken" and call["status"] == "failed" and call["attempts"] == 3
    assert [e["type"] for e in call["errors"]] == ["RuntimeError"] * 3
    assert call["dead_letter"]["outcome"] == "continued"
    text = cli("show", "b")
    assert f"dead-lettered {call['dead_letter']['id']}" in text.stdout
