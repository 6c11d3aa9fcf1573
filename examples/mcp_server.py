"""A small MCP server over stdio, for the README's MCP example: `add` and `echo`.

Run by `MCPStdioServer(command=sys.executable, args=["examples/mcp_server.py"])`.
Needs the `mcp` SDK (`pip install 'phalanx[mcp]'`).
"""

from __future__ import annotations

try:  # mcp 2.x
    from mcp.server.mcpserver import MCPServer as Server
except ImportError:  # mcp 1.x
    from mcp.server.fastmcp import FastMCP as Server

server = Server("phalanx-example", log_level="ERROR")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def echo(text: str, times: int = 1) -> str:
    """Repeat text."""
    return text * times


if __name__ == "__main__":
    server.run()
