"""`phalanx demo` end to end: real processes, a real journal, the JSON contract of DESIGN.md.

Every test spawns the `phalanx` command with its own SQLite store in a temporary
directory and reads back what it printed and what it journaled (`runs`, `events`,
`show`). The demo runs offline with the scripted model, except the last test, which
points it at the fake OpenAI-compatible server of the model tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from phalanx.demo._scenario import DEMO_MAX_TOKENS, INSTRUCTIONS
from phalanx.journal import store_from_url
from tests.conftest import BACKENDS, drop_schema_sync, fresh_store_url, one_backend
from tests.models.fake_openai_server import FakeModelServer, start_fake_openai_server

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
#: The `phalanx` console script of the interpreter running the tests.
PHALANX = str(Path(sys.executable).with_name("phalanx"))
AGENTS = ["vector_db", "web_search", "synthesis"]
#: The scripted demo's sub-agent deadline (seconds).
DEADLINE = 4.0
#: The sub-agent deadline the test against a real model endpoint sets (seconds). The
#: demo imports the model's SDK (seconds on a loaded machine) before the run starts.
REAL_DEADLINE = 3.0


def hermetic_env(**extra: str) -> dict[str, str]:
    """The environment of a spawned `phalanx`: no stray store, model or provider key."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PHALANX_", "OPENAI_", "ANTHROPIC_"))
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


@dataclass
class Cli:
    """Runs `phalanx` commands against one store, from one directory."""

    cwd: Path
    store: str

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run `phalanx ARGS --store STORE` to its end."""
        return subprocess.run(
            [PHALANX, *args, "--store", self.store],
            cwd=self.cwd,
            env=env or hermetic_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def json(self, *args: str, env: dict[str, str] | None = None) -> Any:
        """Run a command that must succeed and print one JSON document."""
        done = self(*args, env=env)
        assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stderr}"
        return json.loads(done.stdout)

    def events(self, run_id: str) -> list[dict[str, Any]]:
        """`phalanx events RUN --json`: one JSON object a line."""
        done = self("events", run_id, "--json")
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


@pytest.fixture
def cli(tmp_path: Path, url: str) -> Cli:
    """`phalanx` on a fresh store of this test (each backend in turn)."""
    return Cli(tmp_path, url)


@pytest.fixture(scope="module", params=BACKENDS)
def default_demo(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Cli, dict[str, Any]]]:
    """One `phalanx demo --json` with the default fault per backend, shared by its readers."""
    root = tmp_path_factory.mktemp("default-demo")
    url, schema = fresh_store_url(request.param, root)
    try:
        cli = Cli(root, url)
        yield cli, cli.json("demo", "--json")
    finally:
        if schema:
            drop_schema_sync(schema)


def types(events: list[dict[str, Any]]) -> list[str]:
    """The event types, in journal order."""
    return [e["type"] for e in events]


# -- the JSON contract ----------------------------------------------------------------


def test_the_default_demo_answers_visibly_partial_when_web_search_hangs(
    default_demo: tuple[Cli, dict[str, Any]],
) -> None:
    """By default web_search hangs: it times out, the others succeed, the answer says partial."""
    _, summary = default_demo

    assert summary["status"] == "completed"
    assert summary["run_id"]
    assert summary["partial"] is True
    assert summary["missing"] == ["web_search"]
    assert isinstance(summary["policy"], str) and summary["policy"].startswith("all within 4s")
    assert list(summary["branches"]) == AGENTS
    web = summary["branches"]["web_search"]
    assert web["status"] == "timed_out"
    assert web["duration_s"] == pytest.approx(DEADLINE, abs=0.5)
    assert "deadline" in web["error"]
    for name in ("vector_db", "synthesis"):
        branch = summary["branches"][name]
        assert branch["status"] == "succeeded", name
        assert branch["error"] is None
        assert 0 < branch["duration_s"] < DEADLINE
    assert summary["answer"].startswith("[PARTIAL ANSWER: no result from web_search]")
    assert "scripted" in summary["model"]


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("none", {"vector_db": "succeeded", "web_search": "succeeded", "synthesis": "succeeded"}),
        (
            # `all` is out of reach once web_search fails: the others are cancelled then.
            "web_search=error",
            {"vector_db": "cancelled", "web_search": "failed", "synthesis": "cancelled"},
        ),
        (
            "vector_db=slow",
            {"vector_db": "succeeded", "web_search": "succeeded", "synthesis": "succeeded"},
        ),
    ],
)
def test_each_fault_shows_up_as_its_own_branch_outcome(
    cli: Cli, fault: str, expected: dict[str, str]
) -> None:
    """none: whole; web_search=error: it failed, ending `all`; vector_db=slow: slow but on time."""
    summary = cli.json("demo", "--json", "--fault", fault)

    assert summary["status"] == "completed"
    assert {n: b["status"] for n, b in summary["branches"].items()} == expected
    partial = fault == "web_search=error"
    assert summary["partial"] is partial
    assert summary["answer"].startswith("[PARTIAL ANSWER") is partial
    if fault == "web_search=error":
        assert summary["missing"] == AGENTS
        assert "503" in summary["branches"]["web_search"]["error"]
        for name in ("vector_db", "synthesis"):
            branch = summary["branches"][name]
            assert branch["error"] == (
                "Cancelled: fan-out 'research' can no longer meet its policy (all)"
            )
            # Ended at the failure, long before the deadline (their work alone takes
            # under a second on an idle machine, so the status says cancelled).
            assert branch["duration_s"] < DEADLINE / 2
    if fault == "vector_db=slow":
        assert 2.0 <= summary["branches"]["vector_db"]["duration_s"] < DEADLINE
    for branch in summary["branches"].values():
        if branch["status"] == "succeeded":
            assert branch["error"] is None


def test_a_hung_branch_is_not_waited_for_once_the_others_failed(cli: Cli) -> None:
    """web_search hangs, the other two fail: the demo ends at the failures, not at the deadline."""
    summary = cli.json(
        "demo", "--json", "--fault", "web_search=hang,vector_db=error,synthesis=error"
    )

    assert summary["status"] == "completed"
    statuses = {n: b["status"] for n, b in summary["branches"].items()}
    # The first failure ends `all`: the other failing agent failed too, or was cancelled.
    assert "failed" in (statuses["vector_db"], statuses["synthesis"])
    assert {statuses["vector_db"], statuses["synthesis"]} <= {"failed", "cancelled"}
    assert statuses["web_search"] == "cancelled"
    web = summary["branches"]["web_search"]
    assert web["error"] == "Cancelled: fan-out 'research' can no longer meet its policy (all)"
    assert web["duration_s"] < DEADLINE / 2
    assert summary["missing"] == AGENTS
    assert summary["answer"].startswith("[PARTIAL ANSWER: no result from vector_db, web_search")


@one_backend
@pytest.mark.parametrize(
    "fault", ["web_search=explode", "nobody=hang", "web_search", "web_search=hang,oops=slow"]
)
def test_a_bad_fault_is_a_usage_error(cli: Cli, fault: str) -> None:
    """An unknown agent or fault kind exits 2 and names the valid choices; no run starts."""
    done = cli("demo", "--json", "--fault", fault)

    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert "bad fault" in done.stderr and "vector_db, web_search, synthesis" in done.stderr


@one_backend
def test_a_bad_deadline_override_is_a_usage_error(cli: Cli) -> None:
    """PHALANX_DEMO_DEADLINE must be a positive number below the demo's own limit (exit 2)."""
    done = cli("demo", "--json", env=hermetic_env(PHALANX_DEMO_DEADLINE="0"))
    assert done.returncode == 2 and "PHALANX_DEMO_DEADLINE" in done.stderr
    done = cli("demo", "--json", env=hermetic_env(PHALANX_DEMO_DEADLINE="soon"))
    assert done.returncode == 2


# -- an ordinary durable run ----------------------------------------------------------


def test_the_demo_run_is_listed_with_its_three_branch_runs(
    default_demo: tuple[Cli, dict[str, Any]],
) -> None:
    """`phalanx runs --json` lists the demo run and one child run per branch, all ended."""
    cli, summary = default_demo
    run_id = summary["run_id"]
    runs = {r["run_id"]: r for r in cli.json("runs", "--json")}

    assert runs[run_id]["status"] == "completed"
    assert runs[run_id]["parent_run_id"] is None
    children = {r["run_id"]: r for r in runs.values() if r["parent_run_id"] == run_id}
    assert set(children) == {b["run_id"] for b in summary["branches"].values()}
    assert children[summary["branches"]["web_search"]["run_id"]]["status"] == "cancelled"
    assert children[summary["branches"]["vector_db"]["run_id"]]["status"] == "completed"
    assert children[summary["branches"]["synthesis"]["run_id"]]["status"] == "completed"


def test_the_demo_journal_holds_the_fan_out_and_the_decision(
    default_demo: tuple[Cli, dict[str, Any]],
) -> None:
    """`events --json` shows GatherStarted, a BranchFinished per branch, the stall, the decision."""
    cli, summary = default_demo
    events = cli.events(summary["run_id"])

    for event in events:
        assert {"seq", "type", "data", "epoch"} <= set(event)
        assert any("time" in key or key.endswith("_at") for key in event)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    kinds = types(events)
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunCompleted"
    assert kinds.index("GatherStarted") < kinds.index("GatherCompleted")
    assert kinds.index("GatherCompleted") < kinds.index("DecisionRecorded")
    started = events[kinds.index("GatherStarted")]["data"]
    assert started["policy"] == "all" and list(started["branches"]) == AGENTS
    finished = {e["data"]["branch"]: e["data"] for e in events if e["type"] == "BranchFinished"}
    assert {n: d["status"] for n, d in finished.items()} == {
        n: b["status"] for n, b in summary["branches"].items()
    }
    stalls = [e for e in events if e["type"] == "BranchStalled"]
    assert [e["data"]["branch"] for e in stalls] == ["web_search"]
    decision = events[kinds.index("DecisionRecorded")]["data"]
    assert decision["name"] == "accept_partial:research"
    assert decision["missing"] == ["web_search"]
    assert "web_search (timed_out)" in decision["reason"]


def test_show_describes_the_demo_run(default_demo: tuple[Cli, dict[str, Any]]) -> None:
    """`phalanx show RUN` prints the run, its status and its partial result; --json agrees."""
    cli, summary = default_demo
    run_id = summary["run_id"]

    done = cli("show", run_id)
    assert done.returncode == 0, done.stderr
    assert f"run {run_id} completed" in done.stdout
    assert "PARTIAL ANSWER" in done.stdout
    info = cli.json("show", run_id, "--json")
    assert info["status"] == "completed" and info["parent_run_id"] is None
    assert info["result"]["partial"] is True
    assert info["result"]["branches"]["web_search"]["status"] == "timed_out"
    assert [s["name"] for s in info["steps"]] == ["orchestrator/model/1"]


# -- killed and resumed ---------------------------------------------------------------


async def finished_branches(
    url: str, run_id: str, branches: set[str], demo: subprocess.Popen[bytes], timeout: float
) -> list[dict[str, Any]]:
    """The demo's BranchFinished events, read from its journal once `branches` all finished.

    Read in this process, every 20 ms: a `phalanx events` process per look takes seconds
    on a loaded machine, longer than the window between the branches finishing and the
    demo ending at its deadline. An empty list if the demo ended or `timeout` passed first.
    """
    store = store_from_url(url)
    await store.open()
    try:
        limit = time.monotonic() + timeout
        while demo.poll() is None and time.monotonic() < limit:
            events = await store.read_stream(f"run:{run_id}")
            finished = [e for e in events if e.type == "BranchFinished"]
            if {e.data["branch"] for e in finished} >= branches:
                return [{"type": e.type, "data": dict(e.data)} for e in finished]
            await asyncio.sleep(0.02)
        return []
    finally:
        await store.close()


def test_a_killed_demo_is_finished_by_resume_without_rerunning_finished_branches(
    cli: Cli,
) -> None:
    """SIGKILL once the answering branches finished; `resume --force` ends it; none re-ran."""
    run_id = "killed-demo"
    with (cli.cwd / "demo.out").open("w") as out, (cli.cwd / "demo.err").open("w") as err:
        demo = subprocess.Popen(
            [PHALANX, "demo", "--json", "--run-id", run_id, "--store", cli.store],
            cwd=cli.cwd,
            env=hermetic_env(),
            stdout=out,
            stderr=err,
        )
        try:
            answering = {"vector_db", "synthesis"}  # web_search hangs
            finished = asyncio.run(finished_branches(cli.store, run_id, answering, demo, 20.0))
            assert demo.poll() is None, "the demo ended before it could be killed"
            assert finished, "vector_db and synthesis did not both finish within 20 s"
            os.kill(demo.pid, signal.SIGKILL)
        finally:
            if demo.poll() is None:
                demo.kill()
            demo.wait()
    assert demo.returncode == -signal.SIGKILL
    runs = {r["run_id"]: r for r in cli.json("runs", "--json")}
    assert runs[run_id]["status"] == "running"
    done_before = {e["data"]["branch"]: e["data"]["run_id"] for e in finished}
    journals_before = {b: cli.events(child) for b, child in done_before.items()}

    resumed = cli.json("resume", run_id, "--force", "--json")

    assert resumed["status"] == "completed"
    result = resumed["result"]
    assert result["partial"] is True and result["missing"] == ["web_search"]
    web = result["branches"]["web_search"]
    assert web["status"] == "timed_out"
    assert web["duration_s"] == pytest.approx(DEADLINE, abs=0.5)  # counted from the first start
    assert {n: b["status"] for n, b in result["branches"].items()} == {
        "vector_db": "succeeded",
        "web_search": "timed_out",
        "synthesis": "succeeded",
    }
    events = cli.events(run_id)
    assert types(events).count("GatherStarted") == 1
    assert sorted(e["data"]["branch"] for e in events if e["type"] == "BranchFinished") == sorted(
        AGENTS
    )
    for branch, child in done_before.items():
        child_events = cli.events(child)
        assert child_events == journals_before[branch], f"{branch} was run again"
        kinds = Counter(types(child_events))
        assert kinds["RunStarted"] == 1 and kinds["RunCompleted"] == 1
        steps = [e["data"]["name"] for e in child_events if e["type"] == "StepStarted"]
        assert any("/model/" in s for s in steps)
        assert len(steps) == len(set(steps)), f"{branch} repeated a step: {steps}"
    runs = {r["run_id"]: r for r in cli.json("runs", "--json")}
    family = [r for r in runs.values() if r["run_id"] == run_id or r["parent_run_id"] == run_id]
    assert len(family) == 4
    assert all(r["status"] in ("completed", "cancelled") for r in family)


# -- against a real OpenAI-compatible server ------------------------------------------


@pytest.fixture
def fake_server() -> Iterator[FakeModelServer]:
    """The fake OpenAI-compatible server, in its own process."""
    with start_fake_openai_server() as server:
        yield server


def test_with_a_real_model_endpoint_a_hung_agent_is_reported_timed_out(
    cli: Cli, fake_server: FakeModelServer
) -> None:
    """Over HTTP: web_search never answered, so timed out; each agent sent its own instructions."""
    fake_server.queue(
        {"match": "^You are web_search", "kind": "hang", "sticky": True},
        {
            "match": "^You are vector_db",
            "kind": "tool_calls",
            "calls": [{"name": "search_vectors", "arguments": {"query": "deadline", "k": 2}}],
        },
        {
            "match": "^You are vector_db",
            "kind": "text",
            "text": "Deadlines bound fan-outs [doc-1].",
        },
        {
            "match": "^You are synthesis",
            "kind": "tool_calls",
            "calls": [{"name": "load_context", "arguments": {"topic": "failures"}}],
        },
        {"match": "^You are synthesis", "kind": "text", "text": "The user wants visible gaps."},
        {
            "match": "^You are the orchestrator",
            "kind": "text",
            "text": "Incomplete: web_search is missing.",
        },
    )
    env = hermetic_env(
        PHALANX_MODEL="openai-compatible:test-model",
        OPENAI_BASE_URL=fake_server.base_url,
        PHALANX_DEMO_DEADLINE=str(REAL_DEADLINE),
    )

    summary = cli.json("demo", "--json", "--fault", "none", env=env)

    assert summary["status"] == "completed"
    assert summary["model"] == "openai-compatible:test-model"
    assert summary["partial"] is True and summary["missing"] == ["web_search"]
    assert summary["policy"].startswith(f"all within {REAL_DEADLINE:g}s")
    assert {n: b["status"] for n, b in summary["branches"].items()} == {
        "vector_db": "succeeded",
        "web_search": "timed_out",
        "synthesis": "succeeded",
    }
    assert summary["branches"]["web_search"]["duration_s"] == pytest.approx(REAL_DEADLINE, abs=0.5)
    assert summary["answer"] == (
        "[PARTIAL ANSWER: no result from web_search] Incomplete: web_search is missing."
    )

    stats = fake_server.stats()
    assert set(stats["paths"]) == {"/v1/chat/completions"}
    first: dict[str, dict[str, Any]] = {}
    for body in stats["bodies"]:
        system = body["messages"][0]
        assert system["role"] == "system", body["messages"][0]
        [agent] = [a for a, text in INSTRUCTIONS.items() if system["content"] == text]
        first.setdefault(agent, body)
    assert set(first) == {"vector_db", "web_search", "synthesis", "orchestrator"}
    for agent, body in first.items():
        assert body["model"] == "test-model"
        assert body["messages"][0] == {"role": "system", "content": INSTRUCTIONS[agent]}
        assert body["messages"][1]["role"] == "user"
    # Every request bounds its generation: none is sent without an output-token limit.
    assert {body.get("max_tokens") for body in stats["bodies"]} == {DEMO_MAX_TOKENS}
    # web_search's one request reached the server and was never answered.
    web_requests = [
        kind
        for kind, body in zip(stats["served"], stats["bodies"], strict=True)
        if body["messages"][0]["content"] == INSTRUCTIONS["web_search"]
    ]
    assert web_requests == ["hang"]
