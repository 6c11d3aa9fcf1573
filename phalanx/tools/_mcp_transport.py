"""Reaching an MCP server: its parameters, its transport and the `mcp` SDK's surface.

Kept apart from the connection's lifecycle (`_mcp_connection.py`) and from wrapping a
server's tools as phalanx tools (`_mcp.py`): this is everything that depends on how
the server is reached and on which version of the `mcp` SDK is installed (stdio or
streamable HTTP, the 1.x and 2.x names, paginated listing), and recognising a broken
transport, so the modules above deal in sessions and tools only.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import anyio

from .._errors import ConfigError


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


async def open_transport(server: MCPServerParameters, stack: AsyncExitStack) -> tuple[Any, Any]:
    """Open the transport to `server` on `stack`: its read and write streams."""
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


class Watched:
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

    def __aiter__(self) -> Watched:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._inner.__anext__()
        except (StopAsyncIteration, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_end()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> Watched:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._inner.aclose()

    def __getattr__(self, name: str) -> Any:  # e.g. the SDK's `last_context`
        return getattr(self._inner, name)


class SDK:
    """The parts of the `mcp` SDK used here, the same in its 1.x and 2.x versions."""

    def __init__(self, client_session: Any, error: type[Exception]) -> None:
        self.ClientSession = client_session
        self.error = error


def import_sdk(server: str) -> SDK:
    """The SDK's parts, or `ConfigError` naming `server` when it is not installed."""
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
    return SDK(mcp.ClientSession, error)


async def list_tools(client: Any) -> list[dict[str, Any]]:
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


def unwrap(exc: BaseException) -> BaseException:
    """The one error inside (nested) single-error groups, as anyio task groups raise."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def describe(exc: BaseException) -> str:
    exc = unwrap(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def is_transport_failure(exc: BaseException) -> bool:
    """Whether `exc` says the connection broke: streams, sockets, pipes, HTTP transport."""
    exc = unwrap(exc)
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
