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

Lifecycle: one task in `open_mcp_tools`' task group holds the connection (the SDK
session and, for stdio, the server process), because the SDK's anyio cancel scopes
must be entered and left by one task while calls come from any task (workflows,
agents). When the server goes away, between calls or during one, that task closes the
session; the next call opens a new one. A call that finds the server gone before
sending reconnects without spending an attempt (nothing was sent); a call cut off
mid-way fails with `MCPConnectionError`, and whether it runs again is the retry
policy's decision, journaled like any retry, since the server may have acted on it.
Leaving the block closes the session and stops the process (the SDK closes its stdin,
then terminates, then kills it); calls after that fail, not retryable.
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import pydantic

from .._errors import (
    ConfigError,
    MCPCallError,
    MCPConnectionError,
    MCPProtocolError,
    MCPToolError,
)
from ._schema import schema_model
from ._tool import DEFAULT_RETRY_STATUSES, DeadLetterPolicy, OpenCircuitPolicy, Tool

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ..durable import RetryPolicy
    from ._breaker import CircuitBreaker
    from ._notify import Notifier

logger = logging.getLogger("phalanx")

#: JSON-RPC code the SDK gives a request whose connection closed (the server is gone).
_CONNECTION_CLOSED = -32000
#: JSON-RPC "invalid request", which the SDK also uses for a session the server dropped.
_INVALID_REQUEST = 32600

_CLOSED_DURING_CALL = (
    "the connection closed during the call: the server exited, crashed or dropped the session"
)


@dataclass(frozen=True, kw_only=True)
class MCPStdioServer:
    """An MCP server phalanx starts as a subprocess and talks to over stdin/stdout.

    `env` is added to the SDK's safe default environment (`PATH`, `HOME`, ...), not
    to this process's; `cwd` is its working directory; its stderr is this process's.

    Example::

        MCPStdioServer(command="npx", args=["-y", "@modelcontextprotocol/server-everything"])
    """

    command: str
    args: Sequence[str] = ()
    env: Mapping[str, str] | None = None
    cwd: str | None = None

    @property
    def label(self) -> str:
        """How messages name the server: its command line."""
        return shlex.join([self.command, *self.args])


@dataclass(frozen=True, kw_only=True)
class MCPHttpServer:
    """An MCP server at a streamable HTTP endpoint, such as `http://127.0.0.1:8000/mcp`.

    `headers` go with every request (for example `Authorization`); they are never
    logged or recorded.
    """

    url: str
    headers: Mapping[str, str] | None = dataclasses.field(default=None, repr=False)

    @property
    def label(self) -> str:
        """How messages name the server: its URL."""
        return self.url


MCPServerParameters = MCPStdioServer | MCPHttpServer


class MCPTools:
    """The tools of one MCP server, open for calls; made by `open_mcp_tools`.

    Iterate it (or take `.tools`) to hand the tools to an agent; `mcp_tools["name"]`
    is one tool by its phalanx name. Each is a plain `Tool`: change its policy with
    `dataclasses.replace(tool, retry=...)`.
    """

    def __init__(self, server: str, tools: Sequence[Tool], connection: _Connection) -> None:
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
    connection = _Connection(server, connect_timeout)
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
    connection: _Connection,
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


class _Session:
    """One session with the server: one connection (and, for stdio, one process)."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.client: Any = None
        self.listing: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self.ready = anyio.Event()  # connected, or failed to (then `error` says why)
        self.finish = anyio.Event()  # close it: asked to, or the server is gone
        self.scope: anyio.CancelScope | None = None  # the holder's, while connecting
        self.calls: set[anyio.CancelScope] = set()  # the calls waiting for an answer

    @property
    def usable(self) -> bool:
        return self.ready.is_set() and self.error is None and not self.finish.is_set()

    def end(self) -> None:
        """Close the session (idempotent); abort the connecting if it is not ready yet."""
        self.finish.set()
        if not self.ready.is_set() and self.scope is not None:
            self.scope.cancel()
        for call in self.calls:
            call.cancel()


class _Connection:
    """The connection to one server, reopened when the server goes away."""

    group: TaskGroup

    def __init__(self, server: MCPServerParameters, connect_timeout: float) -> None:
        self.server = server
        self.label = server.label
        self.connect_timeout = connect_timeout
        self.opened = 0
        self.closed = False
        self._current: _Session | None = None
        self._wrapped: dict[str, bool] = {}
        self._sdk = _import_sdk(self.label)

    def note_output_schema(self, tool: str, schema: Any) -> None:
        """Remember whether `tool` wraps its results in `{"result": ...}` (the SDK's way)."""
        properties = schema.get("properties") if isinstance(schema, dict) else None
        self._wrapped[tool] = isinstance(properties, dict) and set(properties) == {"result"}

    async def open(self) -> list[dict[str, Any]]:
        """Connect and list the server's tools (as their JSON form)."""
        return (await self._session(None)).listing

    def caller(self, tool: str) -> Callable[..., Any]:
        """The function of the phalanx tool wrapping `tool`."""

        async def call_mcp_tool(**arguments: Any) -> Any:
            return await self.call(tool, arguments)

        call_mcp_tool.__qualname__ = call_mcp_tool.__name__ = f"mcp:{tool}"
        return call_mcp_tool

    async def call(self, tool: str, arguments: dict[str, Any]) -> Any:
        """Call `tool` once; the result's value, or a typed error."""
        for fresh in (False, True):
            session = await self._session(tool)
            failure: Exception | None = None
            # The session cancels calls still waiting when it ends: some SDK versions
            # leave them waiting for an answer that cannot come.
            with anyio.CancelScope() as scope:
                session.calls.add(scope)
                try:
                    result = await session.client.call_tool(tool, arguments)
                except Exception as exc:
                    failure = exc
                finally:
                    session.calls.discard(scope)
            if scope.cancelled_caught:
                raise MCPConnectionError(
                    server=self.label, tool=tool, reason=_CLOSED_DURING_CALL
                ) from failure
            if failure is None:
                return self._value(tool, result)
            if not fresh and self._expired(failure):
                # An HTTP server that restarted (or expired the session) refuses it
                # before running anything: open a new session and send again.
                session.end()
                continue
            raise self._translate(failure, tool, session) from failure
        raise AssertionError("unreachable: the second round returns or raises")

    def _expired(self, exc: Exception) -> bool:
        """Whether the server refused the session itself (HTTP 404 on a session id)."""
        error: Any = getattr(exc, "error", None) if isinstance(exc, self._sdk.error) else None
        # The SDK's INVALID_REQUEST ("Session not found", "Session terminated"); some
        # 1.x versions send the code without its minus sign.
        return (
            error is not None
            and abs(int(error.code)) == _INVALID_REQUEST
            and "session" in str(error.message).lower()
        )

    def close(self) -> None:
        """Close the connection (idempotent); calls after this fail."""
        self.closed = True
        if self._current is not None:
            self._current.end()

    async def _session(self, tool: str | None) -> _Session:
        # Two rounds: a session found dead is replaced once; one that dies again
        # while connecting is a connection failure for this attempt.
        for _ in range(2):
            session = self._current
            if session is None or session.finish.is_set():
                if self.closed:
                    raise MCPConnectionError(
                        server=self.label,
                        tool=tool,
                        reason="the toolset is closed (its `open_mcp_tools` block ended); "
                        "call its tools inside the block",
                        retryable=False,
                    )
                session = self._start()
            await session.ready.wait()
            if session.error is not None:
                raise MCPConnectionError(
                    server=self.label, tool=tool, reason=_describe(session.error)
                ) from session.error
            if session.usable:
                return session
        raise MCPConnectionError(
            server=self.label, tool=tool, reason="the server went away right after connecting"
        )

    def _start(self) -> _Session:
        # No await between the check in `_session` and here: one session at a time.
        self.opened += 1
        session = self._current = _Session(self.opened)
        if self.opened > 1:
            logger.info("reconnecting to MCP server %s (session %d)", self.label, self.opened)
        self.group.start_soon(self._hold, session, name=f"mcp session {self.label}")
        return session

    async def _hold(self, session: _Session) -> None:
        """Open the session, keep it until it is to be closed, close it. Never raises."""
        try:
            with anyio.CancelScope() as scope:
                session.scope = scope
                scope.deadline = anyio.current_time() + self.connect_timeout
                async with AsyncExitStack() as stack:
                    read, write = await self._open_transport(stack)
                    client = await stack.enter_async_context(
                        self._sdk.ClientSession(_Watched(read, session.end), write)
                    )
                    await client.initialize()
                    if session.number == 1:
                        session.listing = await _list_tools(client)
                    scope.deadline = float("inf")  # connected: no deadline any more
                    session.client = client
                    session.ready.set()
                    await session.finish.wait()
            if not session.ready.is_set():
                session.error = TimeoutError(
                    f"no answer to `initialize` within the connect timeout of "
                    f"{self.connect_timeout:g}s"
                    if not session.finish.is_set()
                    else "the toolset was closed while connecting"
                )
        except Exception as exc:  # told to whoever waits for the session, not the group
            if session.ready.is_set():  # closing a session that worked: nobody waits
                logger.debug(
                    "MCP server %s: session %d closed with %r", self.label, session.number, exc
                )
            else:
                session.error = _unwrap(exc)
        finally:
            session.finish.set()
            session.ready.set()

    async def _open_transport(self, stack: AsyncExitStack) -> tuple[Any, Any]:
        server = self.server
        if isinstance(server, MCPStdioServer):
            from mcp.client.stdio import StdioServerParameters, stdio_client

            parameters = StdioServerParameters(
                command=server.command,
                args=list(server.args),
                env=None if server.env is None else dict(server.env),
                cwd=server.cwd,
            )
            streams = await stack.enter_async_context(stdio_client(parameters))
            return streams[0], streams[1]
        from mcp.client import streamable_http

        headers = dict(server.headers or {})
        modern: Any = getattr(streamable_http, "streamable_http_client", None)
        if modern is not None:  # mcp >= 1.24: an HTTP client carries the headers
            from mcp.shared._httpx_utils import create_mcp_http_client

            http = await stack.enter_async_context(create_mcp_http_client(headers=headers))
            streams = await stack.enter_async_context(modern(server.url, http_client=http))
        else:  # older 1.x
            legacy: Any = getattr(streamable_http, "streamablehttp_client")  # noqa: B009
            streams = await stack.enter_async_context(legacy(server.url, headers=headers))
        return streams[0], streams[1]

    def _translate(self, exc: Exception, tool: str, session: _Session) -> MCPCallError:
        """The typed error for what the SDK raised when calling `tool`."""
        if self._expired(exc):
            session.end()
            return MCPConnectionError(
                server=self.label,
                tool=tool,
                reason="the server refused a new session right after it was opened",
            )
        if isinstance(exc, self._sdk.error):
            error: Any = getattr(exc, "error")  # noqa: B009  # the SDK's ErrorData
            code, message, data = error.code, str(error.message), error.data
            if code == _CONNECTION_CLOSED:
                session.end()
                return MCPConnectionError(server=self.label, tool=tool, reason=_CLOSED_DURING_CALL)
            return MCPProtocolError(
                server=self.label, tool=tool, error_code=int(code), detail=message, data=data
            )
        if _is_transport_failure(exc):
            session.end()
            return MCPConnectionError(server=self.label, tool=tool, reason=_describe(exc))
        if isinstance(exc, pydantic.ValidationError):
            detail = f"its answer is not a valid MCP result: {exc.error_count()} problem(s)"
            return MCPProtocolError(server=self.label, tool=tool, error_code=None, detail=detail)
        return MCPProtocolError(
            server=self.label, tool=tool, error_code=None, detail=_describe(exc)
        )

    def _value(self, tool: str, result: Any) -> Any:
        """A tool result's value (JSON), or `MCPToolError` for an error result."""
        answer = result.model_dump(mode="json", by_alias=True, exclude_none=True)
        content = answer.get("content") or []
        texts = [str(b.get("text", "")) for b in content if b.get("type") == "text"]
        if answer.get("isError"):
            structured = answer.get("structuredContent")
            meta = answer.get("_meta")
            retryable = any(
                isinstance(part, dict) and part.get("retryable") is True
                for part in (meta, structured)
            )
            detail = "\n".join(texts) or "(the tool gave no message)"
            raise MCPToolError(server=self.label, tool=tool, detail=detail, retryable=retryable)
        structured = answer.get("structuredContent")
        if structured is not None:
            if (
                self._wrapped.get(tool)
                and isinstance(structured, dict)
                and set(structured) == {"result"}
            ):
                return structured["result"]
            return structured
        if len(texts) == len(content):
            return "\n".join(texts)
        return content


class _Watched:
    """A transport's read stream that reports its end: the server is gone.

    The SDK's session reads until the stream ends and then answers pending requests
    with "connection closed", but keeps no public sign that it is dead; this tells the
    connection, so the next call reconnects before sending anything.
    """

    def __init__(self, inner: Any, on_end: Callable[[], None]) -> None:
        self._inner = inner
        self._on_end = on_end

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_end()
            raise

    def __aiter__(self) -> _Watched:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._inner.__anext__()
        except (StopAsyncIteration, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_end()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> _Watched:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._inner.aclose()

    def __getattr__(self, name: str) -> Any:  # e.g. the SDK's `last_context`
        return getattr(self._inner, name)


class _SDK:
    """The parts of the `mcp` SDK used here, the same in its 1.x and 2.x versions."""

    def __init__(self, client_session: Any, error: type[Exception]) -> None:
        self.ClientSession = client_session
        self.error = error


def _import_sdk(server: str) -> _SDK:
    try:
        import mcp
        from mcp.shared import exceptions
    except ImportError as exc:
        raise ConfigError(
            setting="MCP server",
            value=server,
            reason="the `mcp` SDK is not installed; install it with `pip install 'phalanx[mcp]'`",
        ) from exc
    error = getattr(exceptions, "MCPError", None) or getattr(exceptions, "McpError")  # noqa: B009
    return _SDK(mcp.ClientSession, error)


async def _list_tools(client: Any) -> list[dict[str, Any]]:
    """Every tool the server lists (all pages), in their JSON form."""
    listing: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        if cursor is None:
            page = await client.list_tools()
        else:
            from mcp import types

            paginated: Any = getattr(types, "PaginatedRequestParams", None)
            try:
                page = await client.list_tools(params=paginated(cursor=cursor))
            except TypeError:  # an older 1.x SDK
                page = await client.list_tools(cursor=cursor)
        answer = page.model_dump(mode="json", by_alias=True, exclude_none=True)
        listing.extend(answer.get("tools") or [])
        cursor = answer.get("nextCursor")
        if not cursor:
            return listing


def _unwrap(exc: BaseException) -> BaseException:
    """The one error inside (nested) single-error groups, as anyio task groups raise."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    exc = _unwrap(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _is_transport_failure(exc: BaseException) -> bool:
    """Whether `exc` says the connection broke: streams, sockets, pipes, HTTP transport."""
    exc = _unwrap(exc)
    if isinstance(
        exc,
        anyio.EndOfStream
        | anyio.ClosedResourceError
        | anyio.BrokenResourceError
        | OSError
        | EOFError,
    ):
        return True
    # httpx's and httpx2's connection failures, without importing either.
    return any(cls.__name__ == "TransportError" for cls in type(exc).__mro__)
