"""MCP tools: a real MCP server's tools, called through the reliability layer."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import os
import pickle
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

import phalanx
from phalanx import RetryPolicy
from phalanx.agents import Agent, Rule, Script, ScriptedModel, Turn
from phalanx.tools import (
    DeadLetterQueue,
    MCPHttpServer,
    MCPStdioServer,
    MCPTools,
    Tool,
    ToolUnavailable,
    call_tool,
    open_mcp_tools,
)
from tests.conftest import require_module
from tests.tools.helpers import of_type

require_module("mcp", "pip install -e '.[dev]'")

SERVER = Path(__file__).with_name("mcp_server.py")
FAST = RetryPolicy(max_attempts=3, initial_interval=0.01, jitter=0.0)
CONNECTION_ERROR = "phalanx._errors.MCPConnectionError"
TOOL_ERROR = "phalanx._errors.MCPToolError"
PROTOCOL_ERROR = "phalanx._errors.MCPProtocolError"

#: The open MCP tools the workflows below call (an application opens them at start-up).
TOOLS: dict[str, Tool] = {}


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """The server's state directory: its call log and fault counters."""
    path = tmp_path / "mcp"
    path.mkdir()
    return path


def calls(state: Path) -> list[str]:
    """The tool calls that reached the server, in order."""
    log = state / "calls"
    return log.read_text().split() if log.exists() else []


def stdio(state: Path) -> MCPStdioServer:
    return MCPStdioServer(command=sys.executable, args=[str(SERVER), str(state)])


@asynccontextmanager
async def serving(state: Path, **options: Any) -> AsyncIterator[MCPTools]:
    """The test server's tools, registered for the workflows below."""
    async with open_mcp_tools(stdio(state), **options) as tools:
        TOOLS.clear()
        TOOLS.update({t.name: t for t in tools})
        try:
            yield tools
        finally:
            TOOLS.clear()


def failing(tool: Tool) -> Tool:
    """`tool` with the `fail` dead-letter policy, so a failure raises."""
    return dataclasses.replace(tool, dead_letter="fail")


def gone(pid: int, within: float = 10.0) -> bool:
    """Whether process `pid` is gone (exited and reaped) within `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    return False


# -- workflows ---------------------------------------------------------------------


@phalanx.workflow
async def call_flow(ctx: phalanx.WorkflowContext, tool: str, arguments: dict[str, Any]) -> Any:
    try:
        result = await call_tool(ctx, TOOLS[tool], arguments)
    except phalanx.ToolArgumentsError as exc:
        return {"invalid": exc.errors}
    return result.to_json() if isinstance(result, ToolUnavailable) else result


MODEL = ScriptedModel(
    Script(
        rules=(
            Rule(
                "sum",
                (
                    Turn(tool_calls=(("add", {"a": "two", "b": 3}),)),
                    Turn(tool_calls=(("add", {"a": 2, "b": 3}),)),
                    Turn(text="the sum is {tool_results}"),
                ),
            ),
        )
    ),
    latency=0.0,
    seconds_per_token=0.0,
)


@phalanx.workflow
async def agent_flow(ctx: phalanx.WorkflowContext, prompt: str) -> dict[str, Any]:
    agent = Agent("calc", model=MODEL, tools=list(TOOLS.values()))
    return (await agent.run(ctx, prompt)).to_json()


# -- tests -------------------------------------------------------------------------


async def test_lists_the_server_tools_with_their_schemas(state: Path) -> None:
    """Every server tool becomes a phalanx tool with the server's schema and description."""
    async with open_mcp_tools(stdio(state)) as tools:
        assert {"add", "echo", "flaky", "hang", "crash", "pid"} <= {t.name for t in tools}
        add = tools["add"]
        assert add.description == "Add two integers."
        assert add.parameters["required"] == ["a", "b"]
        assert add.parameters["properties"]["a"]["type"] == "integer"
        assert add.spec().parameters == add.parameters
        assert tools["echo"].parameters["properties"]["times"]["default"] == 1
    async with open_mcp_tools(stdio(state), include=["echo"], prefix="srv_") as only:
        assert [t.name for t in only] == ["srv_echo"]
        assert await call_tool(None, only["srv_echo"], text="ab", times=2) == "abab"


async def test_agent_calls_an_mcp_tool_in_a_workflow_with_its_attempt_journaled(
    state: Path, runtime: phalanx.Runtime
) -> None:
    """A scripted agent's MCP call runs end to end as a journaled step; bad args are fed back."""
    async with serving(state):
        outcome = await runtime.run(agent_flow, {"prompt": "sum please"}, run_id="a")
    assert outcome.ok, outcome.error
    result = outcome.result
    assert result["output"].endswith("; 5")
    assert [c["outcome"] for c in result["tool_calls"]] == ["invalid_arguments", "ok"]
    assert "a: Input should be a valid integer" in result["tool_calls"][0]["error"]
    assert calls(state) == ["add"], "the invalid call never reached the server"
    events = (await runtime.history("a")).events
    [started] = of_type(events, "StepStarted", "calc/tool/add/2.0")
    [completed] = of_type(events, "StepCompleted", "calc/tool/add/2.0")
    assert started.data["attempt"] == 1
    assert completed.data["result"] == {"tool": "add", "attempt": 1, "result": 5}


async def test_invalid_arguments_never_reach_the_server(
    state: Path, runtime: phalanx.Runtime
) -> None:
    """Arguments breaking the tool's schema are refused before the call: the server sees none."""
    async with serving(state) as tools:
        for n, bad in enumerate([{"a": 1}, {"a": "x", "b": 2}, {"a": 1.5, "b": 2}]):
            outcome = await runtime.run(
                call_flow, {"tool": "add", "arguments": bad}, run_id=f"bad{n}"
            )
            assert outcome.ok, outcome.error
            assert "invalid" in outcome.result
        with pytest.raises(phalanx.ToolArgumentsError, match="text: Field required"):
            await call_tool(None, tools["echo"], times=2)
        assert calls(state) == []
        outcome = await runtime.run(call_flow, {"tool": "add", "arguments": {"a": 2, "b": "3"}})
    assert outcome.result == 5, "lenient coercion, as for Python tools"
    assert calls(state) == ["add"]


async def test_flaky_tool_succeeds_on_its_third_attempt_under_the_retry_policy(
    state: Path, runtime: phalanx.Runtime
) -> None:
    """An error result the tool marks retryable is retried; each attempt is journaled."""
    (state / "flaky").write_text("2")
    async with serving(state, retry=FAST):
        outcome = await runtime.run(
            call_flow, {"tool": "flaky", "arguments": {"x": 21}}, run_id="f"
        )
    assert outcome.ok, outcome.error
    assert outcome.result == {"doubled": 42}
    assert calls(state) == ["flaky"] * 3
    events = (await runtime.history("f")).events
    assert [e.data["attempt"] for e in of_type(events, "StepStarted", "tool/flaky")] == [1, 2, 3]
    for failed in of_type(events, "StepFailed", "tool/flaky"):
        fields = failed.data["error"]["fields"]
        assert fields["error_type"] == TOOL_ERROR and fields["retryable"] is True
        assert "flaky is failing on purpose" in fields["message"]


async def test_an_error_result_is_typed_and_not_retried(state: Path) -> None:
    """An isError result the tool does not mark retryable is tried once, as MCPToolError."""
    async with open_mcp_tools(stdio(state), retry=FAST, dead_letter="fail") as tools:
        with pytest.raises(phalanx.ToolAttemptError) as divided:
            await call_tool(None, tools["divide"], a=1, b=0)
    assert divided.value.error_type == TOOL_ERROR and not divided.value.retryable
    assert "cannot divide by zero" in divided.value.message
    assert calls(state) == ["divide"]


@pytest.mark.skipif(
    importlib.util.find_spec("mcp.server.mcpserver") is None,
    reason="mcp 1.x's FastMCP turns every error a tool raises into an error result",
)
async def test_jsonrpc_errors_are_typed_and_only_internal_errors_retried(state: Path) -> None:
    """A JSON-RPC invalid-params error is not retried; an internal error is."""
    async with open_mcp_tools(stdio(state), retry=FAST, dead_letter="fail") as tools:
        with pytest.raises(phalanx.ToolAttemptError) as invalid:
            await call_tool(None, tools["refuse"], code=-32602)
        assert invalid.value.error_type == PROTOCOL_ERROR and not invalid.value.retryable
        assert "JSON-RPC error -32602" in invalid.value.message
        with pytest.raises(phalanx.ToolAttemptError) as internal:
            await call_tool(None, tools["refuse"], code=-32603)
        assert internal.value.error_type == PROTOCOL_ERROR and internal.value.retryable
        assert internal.value.attempt == 3
    assert calls(state) == ["refuse"] * 4


async def test_a_hanging_tool_times_out_with_a_typed_error(state: Path) -> None:
    """A call past the tool's timeout is cancelled as ToolTimeoutError; the session stays up."""
    async with open_mcp_tools(stdio(state), timeout=0.5) as tools:
        began = time.monotonic()
        with pytest.raises(phalanx.ToolTimeoutError, match=r"timeout of 0\.5s"):
            await call_tool(None, failing(tools["hang"]), seconds=2)
        assert time.monotonic() - began < 1.5
        assert await call_tool(None, tools["add"], a=1, b=1) == 2
        assert tools.connections == 1


async def test_a_crash_mid_call_is_typed_and_the_next_call_reconnects(state: Path) -> None:
    """The server exiting mid-call is a retryable MCPConnectionError; then a new process answers."""
    async with open_mcp_tools(stdio(state)) as tools:
        first = await call_tool(None, tools["pid"])
        (state / "crash").write_text("1")
        with pytest.raises(phalanx.ToolAttemptError) as crashed:
            await call_tool(None, failing(tools["crash"]))
        assert crashed.value.error_type == CONNECTION_ERROR and crashed.value.retryable
        assert "connection closed during the call" in crashed.value.message
        second = await call_tool(None, tools["pid"])
        assert second != first and tools.connections == 2
        assert gone(first)
    assert gone(second), "closing the toolset stops the server"


async def test_a_crash_mid_call_in_a_workflow_is_retried_by_policy_and_the_run_completes(
    state: Path, runtime: phalanx.Runtime
) -> None:
    """The attempt cut off by the crash is journaled; the retry reconnects and succeeds."""
    (state / "crash").write_text("1")
    async with serving(state, retry=FAST) as tools:
        outcome = await runtime.run(call_flow, {"tool": "crash", "arguments": {}}, run_id="c")
        assert tools.connections == 2
    assert outcome.ok, outcome.error
    assert isinstance(outcome.result, int) and outcome.result != os.getpid()
    events = (await runtime.history("c")).events
    [failed] = of_type(events, "StepFailed", "tool/crash")
    assert failed.data["error"]["fields"]["error_type"] == CONNECTION_ERROR
    [completed] = of_type(events, "StepCompleted", "tool/crash")
    assert completed.data["result"]["attempt"] == 2


async def test_exhausted_retries_land_in_the_dlq_with_every_attempt(
    state: Path, runtime: phalanx.Runtime
) -> None:
    """A call failing on every attempt becomes one dead-letter entry; the run goes on."""
    (state / "flaky").write_text("5")
    async with serving(state, retry=FAST, dead_letter="continue"):
        outcome = await runtime.run(call_flow, {"tool": "flaky", "arguments": {"x": 1}}, run_id="d")
    assert outcome.ok, outcome.error
    assert outcome.result["status"] == "unavailable"
    assert outcome.result["reason"] == "dead_lettered"
    [entry] = await DeadLetterQueue(runtime).entries()
    info = entry.to_json()
    assert (info["tool"], info["run_id"], info["arguments"]) == ("flaky", "d", {"x": 1})
    assert [a["attempt"] for a in info["attempts"]] == [1, 2, 3]
    assert {a["error_type"] for a in info["attempts"]} == {TOOL_ERROR}
    assert calls(state) == ["flaky"] * 3
    (state / "flaky").write_text("0")  # the fault is fixed: a person retries the call
    async with serving(state) as tools:
        with pytest.raises(phalanx.DeadLetterRetryError, match="cannot be imported"):
            await DeadLetterQueue(runtime).retry(entry.id)
        retried = await DeadLetterQueue(runtime).retry(entry.id, tool=tools["flaky"])
    assert retried.status == "resolved"
    assert retried.resolution is not None and retried.resolution["result"] == {"doubled": 2}


async def test_streamable_http_server_is_called_and_reconnected_after_a_restart(
    state: Path,
) -> None:
    """Over HTTP too: a call works, and after the server restarts the retry reconnects."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def start() -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(SERVER), str(state), str(port)
        )
        async with asyncio.timeout(20):
            while True:  # until it listens
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.05)
                    continue
                writer.close()
                await writer.wait_closed()
                return process

    process = await start()
    try:
        server = MCPHttpServer(url=f"http://127.0.0.1:{port}/mcp")
        async with open_mcp_tools(server, retry=FAST, timeout=5) as tools:
            assert await call_tool(None, tools["add"], a=2, b=2) == 4
            process.kill()
            await process.wait()
            process = await start()
            assert await call_tool(None, tools["add"], a=3, b=3) == 6
            assert tools.connections == 2
    finally:
        process.kill()
        await process.wait()


async def test_a_closed_toolset_refuses_calls_without_retrying(state: Path) -> None:
    """After the block, a call fails at once, not retryable: there is no server any more."""
    async with open_mcp_tools(stdio(state), retry=FAST, dead_letter="fail") as tools:
        add = tools["add"]
    with pytest.raises(phalanx.ToolAttemptError, match="toolset is closed") as closed:
        await call_tool(None, add, a=1, b=2)
    assert closed.value.attempt == 1 and not closed.value.retryable


async def test_a_server_that_cannot_start_or_never_answers_fails_to_open(tmp_path: Path) -> None:
    """A server exiting at once, or silent past connect_timeout, is MCPConnectionError."""
    dead = MCPStdioServer(command=sys.executable, args=["-c", "import sys; sys.exit(1)"])
    with pytest.raises(phalanx.MCPConnectionError, match="connection failed") as exited:
        async with open_mcp_tools(dead):
            pass
    assert exited.value.retryable
    silent = MCPStdioServer(command=sys.executable, args=["-c", "import time; time.sleep(30)"])
    began = time.monotonic()
    with pytest.raises(phalanx.MCPConnectionError, match=r"connect timeout of 0\.5s"):
        async with open_mcp_tools(silent, connect_timeout=0.5):
            pass
    assert time.monotonic() - began < 5
    missing = MCPStdioServer(command=str(tmp_path / "no-such-server"))
    with pytest.raises(phalanx.MCPConnectionError):
        async with open_mcp_tools(missing):
            pass


async def test_an_error_inside_the_block_propagates_as_is_and_stops_the_server(
    state: Path,
) -> None:
    """Leaving the block by an exception re-raises it unwrapped, after the server is stopped."""
    with pytest.raises(LookupError, match="boom"):
        async with open_mcp_tools(stdio(state)) as tools:
            pid = await call_tool(None, tools["pid"])
            raise LookupError("boom")
    assert gone(pid)


def test_mcp_errors_survive_pickling() -> None:
    """MCP errors round-trip by their fields, as journaled errors must."""
    errors = [
        phalanx.MCPConnectionError(server="s", tool="t", reason="gone"),
        phalanx.MCPProtocolError(server="s", tool="t", error_code=-32603, detail="d", data=[1]),
        phalanx.MCPToolError(server="s", tool="t", detail="nope", retryable=True),
        phalanx.ConfigError(setting="MCP server", value="s", reason="r"),
    ]
    for error in errors:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
        assert copy.retryable == error.retryable
    assert [e.retryable for e in errors] == [True, True, True, False]


def test_phalanx_imports_without_the_mcp_sdk() -> None:
    """`import phalanx` works without `mcp`; opening MCP tools then says how to install it."""
    code = (
        "import sys, asyncio\n"
        "sys.modules['mcp'] = None\n"
        "import phalanx, phalanx.tools\n"
        "async def main():\n"
        "    server = phalanx.tools.MCPStdioServer(command='x')\n"
        "    async with phalanx.tools.open_mcp_tools(server):\n"
        "        pass\n"
        "try:\n"
        "    asyncio.run(main())\n"
        "except phalanx.ConfigError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "pip install 'phalanx[mcp]'" in out.stdout
