"""Arize Phoenix as the OTLP backend: the demo's trace arrives and reads back through its API.

Phoenix lives in its own virtualenv, `.venv-phoenix` (`scripts/phoenix-setup`, which
`.ci/run` calls), so its many pinned dependencies never decide what phalanx is tested
against. The test starts `phoenix serve` offline on free ports with a throwaway working
directory, runs `phalanx demo --json` exporting to it (OTLP/HTTP and OTLP/gRPC, each into
its own Phoenix project), then reads the spans back from Phoenix's REST API
(`GET /v1/projects/{project}/spans`), polling, since Phoenix ingests in the background.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from phalanx.demo import AGENTS
from tests.conftest import missing

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PHOENIX = ROOT / ".venv-phoenix" / "bin" / "phoenix"
#: Migrations on a fresh SQLite take ~10 s; a loaded CI machine gets some slack.
STARTUP_S = 60.0
#: Phoenix queues spans and inserts them in batches: how long to wait for them to show.
INGEST_S = 30.0

Span = dict[str, Any]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env() -> dict[str, str]:
    """This process's environment without anything that would redirect either program."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "PHOENIX_", "PHALANX_", "OPENAI_", "ANTHROPIC_"))
    }


@dataclass
class Phoenix:
    """A running `phoenix serve`: where to send OTLP, and its spans read back."""

    port: int
    grpc_port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def endpoint(self, protocol: str) -> str:
        """The OTLP base endpoint for `OTEL_EXPORTER_OTLP_ENDPOINT`."""
        return f"http://127.0.0.1:{self.grpc_port}" if protocol == "grpc" else self.url

    def spans(self, project: str) -> list[Span]:
        """Every span of a project (none if the project does not exist yet)."""
        spans: list[Span] = []
        query: dict[str, str | int] = {"limit": 1000}
        while True:
            url = f"{self.url}/v1/projects/{project}/spans?{urllib.parse.urlencode(query)}"
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    body = json.load(response)
            except urllib.error.HTTPError as exc:
                exc.close()
                if exc.code == 404:  # the project appears with its first span
                    return []
                raise
            spans.extend(body["data"])
            if not body.get("next_cursor"):
                return spans
            query["cursor"] = body["next_cursor"]

    def wait_for(self, project: str, done: Callable[[list[Span]], bool]) -> list[Span]:
        """The project's spans once `done` holds of them (or what there is at the bound)."""
        deadline = time.monotonic() + INGEST_S
        while True:
            spans = self.spans(project)
            if done(spans) or time.monotonic() > deadline:
                return spans
            time.sleep(0.5)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def require_phoenix() -> None:
    """Skip outside CI, fail loudly in CI, when Phoenix is not installed."""
    if PHOENIX.exists():
        return
    missing(f"Arize Phoenix is not installed at {PHOENIX}: run scripts/phoenix-setup")


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phoenix]:
    """`phoenix serve`, offline, on free ports, with a fresh working directory."""
    require_phoenix()
    workdir = tmp_path_factory.mktemp("phoenix")
    server = Phoenix(port=free_port(), grpc_port=free_port(), log=workdir / "phoenix.log")
    env = clean_env() | {
        "PHOENIX_TELEMETRY_ENABLED": "false",
        # No web fonts, no sandbox download: nothing may need the internet.
        "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
        "PHOENIX_WORKING_DIR": str(workdir),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(server.port),
        "PHOENIX_GRPC_PORT": str(server.grpc_port),
    }
    with (
        server.log.open("wb") as log,
        subprocess.Popen(
            [str(PHOENIX), "serve"],
            env=env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        ) as process,
    ):
        try:
            wait_until_ready(server, process)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until_ready(server: Phoenix, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"phoenix serve exited with {process.returncode}:\n{server.log_tail()}")
        # Connection refused until it listens; an HTTPError (an OSError) until it is ready.
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{server.url}/healthz", timeout=2) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.25)
    pytest.fail(f"phoenix serve was not ready within {STARTUP_S:g} s:\n{server.log_tail()}")


def run_demo(tmp_path: Path, phoenix: Phoenix, protocol: str, project: str) -> dict[str, Any]:
    """`phalanx demo --json` exporting to Phoenix; its summary (asserts it completed)."""
    env = clean_env() | {
        "OTEL_EXPORTER_OTLP_ENDPOINT": phoenix.endpoint(protocol),
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_SERVICE_NAME": "phalanx-demo",
        # Phoenix files spans under the project this resource attribute names.
        "OTEL_RESOURCE_ATTRIBUTES": f"openinference.project.name={project}",
        # Phoenix takes traces only (metrics get HTTP 405 / gRPC UNIMPLEMENTED).
        "OTEL_METRICS_EXPORTER": "none",
    }
    store = f"sqlite:///{tmp_path / 'journal.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "phalanx.cli", "demo", "--json", "--store", store],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Failed to export" not in done.stderr, done.stderr
    summary: dict[str, Any] = json.loads(done.stdout)
    assert summary["status"] == "completed"
    return summary


def sub_run_id(run_id: str, agent: str) -> str:
    return f"{run_id}.1.{agent}"


def is_run(span: Span) -> bool:
    return str(span["name"]).startswith("phalanx.run ")


def ancestors(span: Span, spans: list[Span]) -> Iterator[Span]:
    """The span's parent, its parent's parent, ... as far as they arrived."""
    by_id = {s["context"]["span_id"]: s for s in spans}
    while span["parent_id"] in by_id:
        span = by_id[span["parent_id"]]
        yield span


def callers(spans: list[Span]) -> set[str]:
    """The agents whose invoke_agent span holds a chat span."""
    return {
        a["attributes"]["gen_ai.agent.name"]
        for chat in spans
        if chat["name"].startswith("chat ")
        for a in ancestors(chat, spans)
        if a["name"].startswith("invoke_agent ")
    }


def demo_arrived(run_id: str) -> Callable[[list[Span]], bool]:
    """Whether the run span, the fan-out, every sub-agent and its model calls are in."""

    def done(spans: list[Span]) -> bool:
        names = {s["name"] for s in spans}
        return (
            any(is_run(s) and s["attributes"].get("phalanx.run.id") == run_id for s in spans)
            and "phalanx.fanout research" in names
            and all(f"invoke_agent {agent}" in names for agent in AGENTS)
            # web_search hangs (the demo's default fault) before its model answers.
            and {"vector_db", "synthesis"} <= callers(spans)
        )

    return done


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_the_demos_trace_arrives_in_phoenix_and_reads_back_through_its_api(
    phoenix: Phoenix, tmp_path: Path, protocol: str
) -> None:
    """One trace: run, fan-out, three invoke_agent and GenAI chat spans, read from Phoenix."""
    project = f"phalanx-demo-{protocol.split('/')[0]}"
    summary = run_demo(tmp_path, phoenix, protocol, project)
    run_id = summary["run_id"]
    spans = phoenix.wait_for(project, demo_arrived(run_id))
    assert demo_arrived(run_id)(spans), (
        f"the demo's spans did not all arrive within {INGEST_S:g} s; got "
        f"{sorted(s['name'] for s in spans)}\n{phoenix.log_tail()}"
    )
    by_id = {s["context"]["span_id"]: s for s in spans}

    def parent(span: Span) -> Span:
        return by_id[span["parent_id"]]

    # The demo's run is the root, and everything in the project is in its trace.
    (run,) = [s for s in spans if is_run(s) and s["attributes"]["phalanx.run.id"] == run_id]
    assert run["parent_id"] is None
    assert run["attributes"]["phalanx.run.status"] == "completed"
    trace_id = run["context"]["trace_id"]
    assert {s["context"]["trace_id"] for s in spans} == {trace_id}
    # phalanx's own spans name their run: the demo's, or a child run of it.
    ours = [s for s in spans if "phalanx.run.id" in s["attributes"]]
    assert all(s["attributes"]["phalanx.run.id"].startswith(run_id) for s in ours)

    # The fan-out under it names its policy and the branch that never answered.
    (fanout,) = [s for s in spans if s["name"] == "phalanx.fanout research"]
    assert parent(fanout) is run
    assert fanout["attributes"]["phalanx.fanout.branches"] == list(AGENTS)
    assert fanout["attributes"]["phalanx.fanout.missing"] == ["web_search"]
    assert fanout["attributes"]["phalanx.fanout.partial"] is True
    branches = {
        e["attributes"]["phalanx.branch.name"]: e["attributes"]["phalanx.branch.status"]
        for e in fanout["events"]
        if e["name"] == "phalanx.fanout.branch"
    }
    assert branches == {
        "vector_db": "succeeded",
        "synthesis": "succeeded",
        "web_search": "timed_out",
    }

    # Each sub-agent: a child run of the fan-out, and an invoke_agent span in it.
    for agent in AGENTS:
        (invoke,) = [s for s in spans if s["name"] == f"invoke_agent {agent}"]
        child_run = parent(invoke)
        assert is_run(child_run)
        assert parent(child_run) is fanout
        assert child_run["attributes"]["phalanx.run.id"] == sub_run_id(run_id, agent)
        assert invoke["attributes"]["gen_ai.operation.name"] == "invoke_agent"
        assert invoke["attributes"]["gen_ai.agent.name"] == agent
        assert invoke["attributes"]["gen_ai.agent.id"] == f"{sub_run_id(run_id, agent)}/{agent}"
        assert invoke["span_kind"] == "AGENT"  # Phoenix read it as an agent

    # Model calls carry the GenAI attributes, under the agent that made them; the
    # hung web_search's one call was cancelled at the deadline, without a response.
    assert {"vector_db", "synthesis"} <= callers(spans)
    for chat in [s for s in spans if s["name"].startswith("chat ")]:
        attributes = chat["attributes"]
        assert chat["name"] == f"chat {attributes['gen_ai.request.model']}"
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.provider.name"] == "scripted"
        assert chat["span_kind"] == "LLM"  # Phoenix read it as a model call
        caller = next(a for a in ancestors(chat, spans) if a["name"].startswith("invoke_agent "))
        if caller["name"] == "invoke_agent web_search":
            assert attributes["error.type"] == "cancelled"
            continue
        assert attributes["gen_ai.response.model"] == attributes["gen_ai.request.model"]
        assert attributes["gen_ai.usage.input_tokens"] > 0
        assert attributes["gen_ai.usage.output_tokens"] > 0
        assert attributes["gen_ai.response.finish_reasons"] in (["stop"], ["tool_calls"])
    tools = [s for s in spans if s["name"].startswith("execute_tool ")]
    assert tools and all(s["attributes"]["gen_ai.tool.name"] for s in tools)
