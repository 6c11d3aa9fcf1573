"""A real agent loop on a real HTTP model endpoint survives SIGKILL without re-asking the model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.models.fake_openai_server import start_fake_openai_server

ROOT = Path(__file__).resolve().parents[2]


def phalanx_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phalanx.cli", *args],
        cwd=ROOT,
        env=env,
        text=True,
        capture_output=True,
        timeout=60,
        check=False,
    )


@pytest.mark.slow
def test_sigkill_mid_agent_loop_resumes_without_repeating_model_calls(
    tmp_path: Path, url: str
) -> None:
    """Turns answered before a SIGKILL are not requested again from the server on resume."""
    ledger = tmp_path / "tools.jsonl"
    ledger.touch()
    with start_fake_openai_server() as server:
        server.queue(
            {
                "kind": "tool_calls",
                "calls": [{"name": "slow_lookup", "arguments": '{"city": "Oslo"}'}],
            },
            {
                "kind": "tool_calls",
                "calls": [{"name": "slow_lookup", "arguments": '{"city": "Rome"}'}],
            },
            {"kind": "text", "text": "Sunny in Oslo and Rome."},
        )
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_"))},
            "PHALANX_MODEL": "openai-compatible:test-model",
            "OPENAI_BASE_URL": server.base_url,
            "PHALANX_STORE": url,
            "AGENT_LEDGER": str(ledger),
            "PYTHONPATH": str(ROOT),
        }
        log = (tmp_path / "runner.log").open("w")
        runner = subprocess.Popen(
            [
                sys.executable, "-m", "phalanx.cli", "run",
                "tests.agents.live_workflows:ask_server",
                "--input", json.dumps({"prompt": "Weather in Oslo and Rome?"}),
                "--run-id", "agent-1",
            ],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while len(ledger.read_text().splitlines()) < 2:
                assert runner.poll() is None, (tmp_path / "runner.log").read_text()
                assert time.monotonic() < deadline, "the second tool call never started"
                time.sleep(0.02)
            runner.send_signal(signal.SIGKILL)  # mid second tool call, turn 2 answered
        finally:
            runner.wait(timeout=10)
            log.close()
        assert runner.returncode == -signal.SIGKILL
        assert server.stats()["requests"] == 2

        resumed = phalanx_cli("resume", "agent-1", "--force", "--json", env=env)
        assert resumed.returncode == 0, resumed.stderr
        outcome = json.loads(resumed.stdout)
        assert outcome["status"] == "completed"
        assert outcome["result"]["output"] == "Sunny in Oslo and Rome."
        # Only the third turn reached the server after the crash.
        stats = server.stats()
        assert stats["requests"] == 3
        last = stats["bodies"][-1]["messages"]
        assert [m["role"] for m in last] == [
            "system",
            "user",
            "assistant",
            "tool",
            "assistant",
            "tool",
        ]
    # The finished tool ran once; the one in flight at the kill ran again.
    cities = [json.loads(line)["city"] for line in ledger.read_text().splitlines()]
    assert cities == ["Oslo", "Rome", "Rome"]
