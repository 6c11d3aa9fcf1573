"""MCP tools: the tools of a Model Context Protocol server, called like any phalanx tool.

`open_mcp_tools(server)` connects to an MCP server through the official `mcp` SDK,
over stdio (a command phalanx starts) or streamable HTTP (a URL), lists its tools and
wraps each one as a `Tool`:

- its arguments model is built from the tool's JSON input schema (`_schema`), so the
  arguments are validated before any call, and invalid ones never reach the server;
- its function calls the server's tool, so every attempt runs under the tool's timeout,
  retry policy, circuit breaker and dead-letter policy, in an `execute_tool` span, is
  counted in the tool's metrics and, inside a workflow, journaled, as for a Python tool;
- failures become typed errors at this edge: a connection that cannot be made or broke
  (the server exited, crashed, or cannot be reached) is `MCPConnectionError`, which is
  retryable, and the next attempt reconnects; a JSON-RPC error answer is
  `MCPProtocolError`; an error result (`isError`) is `MCPToolError`, not retried unless
  the tool marks it so. A tool that does not answer in time is cancelled by the tool's
  timeout (`ToolTimeoutError`), and the SDK tells the server to stop.

A tool's result is its structured content if it has some (unwrapped from the SDK's
`{"result": ...}` when the tool's output schema is that wrapper), else its text, else
its content blocks as JSON.

The connection to the server (one session at a time, reopened when the server
goes away) is in `_mcp_connection.py`, the transports and the SDK's surface in
`_mcp_transport.py`; this module adapts a server's tools to phalanx tools.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio

from .._errors import ConfigError
from ._mcp_connection import Connection
from ._mcp_transport import MCPHttpServer as MCPHttpServer
from ._mcp_transport import MCPServerParameters as MCPServerParameters
from ._mcp_transport import MCPStdioServer as MCPStdioServer
from ._schema import schema_model
from ._tool import DEFAULT_RETRY_STATUSES, DeadLetterPolicy, OpenCircuitPolicy, Tool

if TYPE_CHECKING:
    from ..durable import RetryPolicy
    from ._breaker import CircuitBreaker
    from ._notify import Notifier


class MCPTools:
    """The tools of one MCP server, open for calls; made by `open_mcp_tools`.

    Iterate it (or take `.tools`) to hand the tools to an agent; `mcp_tools["name"]`
    is one tool by its phalanx name. Each is a plain `Tool`: change its policy with
    `dataclasses.replace(tool, retry=...)`.
    """

    def __init__(self, server: str, tools: Sequence[Tool], connection: Connection) -> None:
        self.server = server
        self.tools = tuple(tools)
        self._by_name = {t.name: t for t in self.tools}
        self._connection = connection

    @property
    def connections(self) -> int:
        """How many sessions were opened so far: 1, plus one per reconnect."""
        return self._connection.opened

    def __iter__(self) -> Iterator[Tool]:
        return iter(self.tools)

    def __len__(self) -> int:
        return len(self.tools)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> Tool:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(
                f"MCP server {self.server} has no tool {name!r}; it has {sorted(self._by_name)}"
            ) from None

    def __repr__(self) -> str:
        return f"MCPTools({self.server!r}, {sorted(self._by_name)})"


@asynccontextmanager
async def open_mcp_tools(
    server: MCPServerParameters,
    *,
    timeout: float | None = 30.0,
    retry: RetryPolicy | None = None,
    breaker: CircuitBreaker | None = None,
    dead_letter: DeadLetterPolicy = "continue",
    on_open: OpenCircuitPolicy = "fail_fast",
    notifiers: Sequence[Notifier] | None = None,
    secrets: Collection[str] = (),
    include: Collection[str] | None = None,
    prefix: str = "",
    connect_timeout: float = 30.0,
) -> AsyncIterator[MCPTools]:
    """Connect to an MCP server and give its tools as phalanx tools, until the block ends.

    Every tool gets the same policies (see `phalanx.tool`): `timeout` per attempt,
    `retry`, `breaker`, `dead_letter`, `on_open`, `notifiers`; `secrets` names
    arguments redacted wherever a call is recorded. `include` keeps only these server
    tools; `prefix` is put before each tool's name (to tell servers apart).
    `connect_timeout` bounds starting the server and its `initialize` handshake.

    Example::

        server = MCPStdioServer(command="python", args=["weather_server.py"])
        async with open_mcp_tools(server, retry=RetryPolicy(max_attempts=3)) as weather:
            agent = Agent("forecaster", model=model, tools=weather.tools)
            async with phalanx.open_runtime() as runtime:
                await runtime.run(forecast, {"city": "Oslo"})

    Cancellation: leaving the block, normally or not, closes the session and stops a
    stdio server (the SDK shields that shutdown, which is bounded).

    Raises:
        ConfigError: the `mcp` SDK is not installed, or `include` names tools the
            server does not have, or two tools end up with one name.
        MCPConnectionError: the server cannot be started or reached, or did not
            complete the handshake within `connect_timeout`.
    """
    connection = Connection(server, connect_timeout)
    failure: BaseException | None = None
    async with anyio.create_task_group() as group:
        connection.group = group
        try:
            listing = await connection.open()
            tools = _wrap(
                connection,
                listing,
                include=include,
                prefix=prefix,
                secrets=frozenset(secrets),
                policy={
                    "timeout": timeout,
                    "retry": retry,
                    "breaker": breaker,
                    "dead_letter": dead_letter,
                    "on_open": on_open,
                    "notifiers": None if notifiers is None else tuple(notifiers),
                },
            )
            yield MCPTools(server.label, tools, connection)
        except GeneratorExit:
            raise
        except BaseException as exc:
            # Raised again below as it is: through the task group it would come out
            # wrapped in an ExceptionGroup.
            failure = exc
        finally:
            # Ask the holder to close gracefully, so the group's exit waits for a clean
            # shutdown (the SDK shields it) rather than cancelling it half-way.
            connection.close()
    if failure is not None:
        raise failure


def _wrap(
    connection: Connection,
    listing: list[dict[str, Any]],
    *,
    include: Collection[str] | None,
    prefix: str,
    secrets: frozenset[str],
    policy: dict[str, Any],
) -> list[Tool]:
    server = connection.label
    names = [str(t.get("name")) for t in listing]
    if include is not None:
        missing = sorted(set(include) - set(names))
        if missing:
            raise ConfigError(
                setting="MCP server",
                value=server,
                reason=f"it has no tools {missing} (it has {sorted(names)}); fix `include`",
            )
    tools: list[Tool] = []
    for listed in listing:
        remote = str(listed.get("name"))
        if include is not None and remote not in include:
            continue
        name = prefix + remote
        schema = listed.get("inputSchema") or {"type": "object"}
        try:
            model = schema_model(name, schema)
        except TypeError as exc:
            raise ConfigError(
                setting="MCP server",
                value=server,
                reason=str(exc),
            ) from exc
        connection.note_output_schema(remote, listed.get("outputSchema"))
        tools.append(
            Tool(
                name=name,
                description=str(listed.get("description") or listed.get("title") or ""),
                fn=connection.caller(remote),
                arguments_model=model,
                secrets=secrets & set(_properties(schema)),
                retry_statuses=DEFAULT_RETRY_STATUSES,
                # An MCP tool cannot be re-imported by `phalanx dlq retry`: resolve or
                # discard its dead-letter entries, or retry the run's call in code.
                ref=None,
                **policy,
            )
        )
    taken = [t.name for t in tools]
    clashes = sorted({n for n in taken if taken.count(n) > 1})
    if clashes:
        raise ConfigError(
            setting="MCP server", value=server, reason=f"duplicate tool names {clashes}"
        )
    return tools


def _properties(schema: Mapping[str, Any]) -> Collection[str]:
    properties = schema.get("properties")
    return properties.keys() if isinstance(properties, dict) else ()
