"""Quickstart: a durable workflow is SIGKILLed mid-run and resumes without redoing work.

Run it from the repository root:  .venv/bin/python examples/quickstart.py

It starts `phalanx run examples.quickstart:research` in a real subprocess, which kills
itself (SIGKILL, no cleanup) in the middle of its third search; then `phalanx resume`
finishes the run. The ledger of side effects shows each completed search ran once;
only the one in flight at the crash ran again, with the same idempotency key.
Offline: the "searches" are local functions with a little latency.

The workflow also runs on its own (`phalanx run examples.quickstart:research --input
'{"topic": "leases"}'` from the repository root); the ledger is then
`.phalanx/quickstart-ledger.jsonl` unless `QUICKSTART_LEDGER` names another file.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import phalanx

LEDGER_ENV = "QUICKSTART_LEDGER"
CRASH_ENV = "QUICKSTART_CRASH_AT"
DEFAULT_LEDGER = Path(".phalanx") / "quickstart-ledger.jsonl"


def _record(effect: str, key: str) -> int:
    """Append one side effect to the ledger file; return how many there are now."""
    path = Path(os.environ.get(LEDGER_ENV) or DEFAULT_LEDGER)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as ledger:
        ledger.write(json.dumps({"effect": effect, "key": key}) + "\n")
    return len(path.read_text(encoding="utf-8").splitlines())


def make_plan(topic: str) -> list[str]:
    """Split a topic into questions (a stand-in for a planning model call)."""
    return [f"{topic}: {aspect}" for aspect in ("history", "failure modes", "fixes", "costs")]


async def search(question: str, key: str) -> str:
    """A slow, side-effecting "tool": it writes to the ledger before answering."""
    count = _record(f"search {question}", key)
    if os.environ.get(CRASH_ENV) == str(count):
        os.kill(os.getpid(), signal.SIGKILL)  # a real crash: no finally, no flush
    await asyncio.sleep(0.2)
    return f"notes on {question}"


@phalanx.workflow
async def research(ctx: phalanx.WorkflowContext, topic: str) -> dict[str, Any]:
    """Plan, search each question durably, and summarise."""
    questions = await ctx.step("plan", make_plan, topic)
    notes = []
    for number, question in enumerate(questions, start=1):
        notes.append(await ctx.step(f"search {number}", _search_step, ctx, question))
    return {"topic": topic, "notes": notes}


async def _search_step(ctx: phalanx.WorkflowContext, question: str) -> str:
    return await search(question, ctx.idempotency_key)


def _phalanx(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "phalanx.cli", *args]
    print(f"$ phalanx {' '.join(args)}")
    return subprocess.run(command, env=env, text=True, capture_output=True, check=False)


def main() -> int:
    """Run, crash, resume, and show what happened."""
    root = Path(__file__).resolve().parent.parent
    work = Path(tempfile.mkdtemp(prefix="phalanx-quickstart-"))
    ledger = work / "ledger.jsonl"
    env = {
        **os.environ,
        "PHALANX_STORE": f"sqlite:///{work / 'journal.db'}",
        LEDGER_ENV: str(ledger),
        "PYTHONPATH": str(root),
    }
    run_id = f"quickstart-{os.getpid()}"
    crashed = _phalanx(
        "run",
        "examples.quickstart:research",
        "--input",
        json.dumps({"topic": "agent timeouts"}),
        "--run-id",
        run_id,
        env={**env, CRASH_ENV: "3"},
    )
    print(f"  exit status {crashed.returncode} (-9 = killed by SIGKILL mid-step)\n")
    events = _phalanx("events", run_id, env=env)
    print(events.stdout)
    resumed = _phalanx("resume", run_id, "--force", env=env)
    print(resumed.stdout + resumed.stderr)
    print("side effects in the ledger:")
    entries = [json.loads(line) for line in ledger.read_text(encoding="utf-8").splitlines()]
    for entry in entries:
        print(f"  {entry['effect']:<40} idempotency key {entry['key']}")
    print()
    print(summarize(entries))
    store = env["PHALANX_STORE"]
    print(f"journal: {work / 'journal.db'}  (try: phalanx show {run_id} --store {store})")
    return 0 if resumed.returncode == 0 and crashed.returncode == -signal.SIGKILL else 1


def summarize(entries: list[dict[str, str]]) -> str:
    """Say, from the ledger alone, how often each search ran and under which keys."""
    runs: dict[str, list[str]] = {}
    for entry in entries:
        runs.setdefault(entry["effect"], []).append(entry["key"])
    lines = []
    for effect, keys in runs.items():
        if len(keys) == 1:
            lines.append(f"{effect}: ran once")
        elif len(set(keys)) == 1:
            lines.append(f"{effect}: ran {len(keys)} times, with the same idempotency key")
        else:
            lines.append(f"{effect}: ran {len(keys)} times, with DIFFERENT keys (a bug)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
