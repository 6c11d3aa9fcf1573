"""A tiny MCP server for the MCP tool tests: stdio, or streamable HTTP given a port.

Run as `python mcp_server.py STATE_DIR [PORT]`. Every tool call appends its name to
`STATE_DIR/calls`, so a test can see what reached the server. Faults are counters
in files: `flaky` answers with a retryable error result while `STATE_DIR/flaky`
holds a number above 0, and `crash` exits the process mid-call while
`STATE_DIR/crash` does (each call takes one off). With a PORT it serves streamable
HTTP at http://127.0.0.1:PORT/mcp.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
from mcp.types import CallToolResult, TextContent

try:  # mcp 2.x
    from mcp.server.mcpserver import MCPServer as Server
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.shared.exceptions import MCPError

    def rpc_error(code: int, message: str) -> Exception:
        return MCPError(code=code, message=message)

except ImportError:  # mcp 1.x
    from mcp.server.fastmcp import FastMCP as Server
    from mcp.server.fastmcp.exceptions import ToolError
    from mcp.shared.exceptions import McpError
    from mcp.types import ErrorData

    def rpc_error(code: int, message: str) -> Exception:
        return McpError(ErrorData(code=code, message=message))


STATE = Path(sys.argv[1])
server = Server("phalanx-test", log_level="ERROR")


def _count(name: str) -> None:
    with (STATE / "calls").open("a") as calls:
        calls.write(name + "\n")


def _take(fault: str) -> bool:
    """True (and one fewer left) while the fault file holds a number above 0."""
    path = STATE / fault
    left = int(path.read_text()) if path.exists() else 0
    if left > 0:
        path.write_text(str(left - 1))
    return left > 0


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    _count("add")
    return a + b


@server.tool()
def echo(text: str, times: int = 1) -> str:
    """Repeat text."""
    _count("echo")
    return text * times


@server.tool()
def flaky(x: int) -> CallToolResult:
    """Double x; while the flaky counter is above 0, answer with a retryable error."""
    _count("flaky")
    if _take("flaky"):
        return CallToolResult(
            content=[TextContent(type="text", text="flaky is failing on purpose")],
            isError=True,
            _meta={"retryable": True},
        )
    return CallToolResult(
        content=[TextContent(type="text", text=str(2 * x))],
        structuredContent={"doubled": 2 * x},
    )


@server.tool()
def divide(a: float, b: float) -> float:
    """Divide a by b; dividing by zero is an error result, not worth retrying."""
    _count("divide")
    if b == 0:
        raise ToolError("cannot divide by zero")
    return a / b


@server.tool()
def refuse(code: int) -> str:
    """Answer with a JSON-RPC error of this code."""
    _count("refuse")
    raise rpc_error(code, f"refused with code {code}")


@server.tool()
async def hang(seconds: float = 60.0) -> str:
    """Sleep, to be timed out."""
    _count("hang")
    await anyio.sleep(seconds)
    return "woke up"


@server.tool()
def crash() -> int:
    """Exit the process mid-call while the crash counter is above 0; else the pid."""
    _count("crash")
    if _take("crash"):
        os._exit(3)
    return os.getpid()


@server.tool()
def pid() -> int:
    """This server's process id."""
    return os.getpid()


if __name__ == "__main__":
    if len(sys.argv) > 2:
        port = int(sys.argv[2])
        settings = getattr(server, "settings", None)
        if hasattr(settings, "port"):  # mcp 1.x
            settings.port = port
            server.run("streamable-http")
        else:
            server.run("streamable-http", port=port)
    else:
        server.run()
