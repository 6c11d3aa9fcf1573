"""The connection to one MCP server: one session at a time, reopened when the server goes.

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

Kept apart from wrapping the server's tools (`_mcp.py`) and from the transports
(`_mcp_transport.py`): this module owns the session's state machine, one call's
round trip and the typed errors and values a call ends with.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import anyio
import pydantic

from .._errors import MCPCallError, MCPConnectionError, MCPProtocolError, MCPToolError
from ._mcp_transport import (
    MCPServerParameters,
    Watched,
    describe,
    import_sdk,
    is_transport_failure,
    list_tools,
    open_transport,
    unwrap,
)

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

logger = logging.getLogger("phalanx")

#: JSON-RPC code the SDK gives a request whose connection closed (the server is gone).
_CONNECTION_CLOSED = -32000
#: JSON-RPC "invalid request", which the SDK also uses for a session the server dropped.
_INVALID_REQUEST = 32600

_CLOSED_DURING_CALL = (
    "the connection closed during the call: the server exited, crashed or dropped the session"
)


class Session:
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


class Connection:
    """The connection to one server, reopened when the server goes away."""

    group: TaskGroup

    def __init__(self, server: MCPServerParameters, connect_timeout: float) -> None:
        self.server = server
        self.label = server.label
        self.connect_timeout = connect_timeout
        self.opened = 0
        self.closed = False
        self._current: Session | None = None
        self._wrapped: dict[str, bool] = {}
        self._sdk = import_sdk(self.label)

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

    async def _session(self, tool: str | None) -> Session:
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
                    server=self.label, tool=tool, reason=describe(session.error)
                ) from session.error
            if session.usable:
                return session
        raise MCPConnectionError(
            server=self.label, tool=tool, reason="the server went away right after connecting"
        )

    def _start(self) -> Session:
        # No await between the check in `_session` and here: one session at a time.
        self.opened += 1
        session = self._current = Session(self.opened)
        if self.opened > 1:
            logger.info("reconnecting to MCP server %s (session %d)", self.label, self.opened)
        self.group.start_soon(self._hold, session, name=f"mcp session {self.label}")
        return session

    async def _hold(self, session: Session) -> None:
        """Open the session, keep it until it is to be closed, close it. Never raises."""
        try:
            with anyio.CancelScope() as scope:
                session.scope = scope
                scope.deadline = anyio.current_time() + self.connect_timeout
                async with AsyncExitStack() as stack:
                    read, write = await open_transport(self.server, stack)
                    client = await stack.enter_async_context(
                        self._sdk.ClientSession(Watched(read, session.end), write)
                    )
                    await client.initialize()
                    if session.number == 1:
                        session.listing = await list_tools(client)
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
                session.error = unwrap(exc)
        finally:
            session.finish.set()
            session.ready.set()

    def _translate(self, exc: Exception, tool: str, session: Session) -> MCPCallError:
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
        if is_transport_failure(exc):
            session.end()
            return MCPConnectionError(server=self.label, tool=tool, reason=describe(exc))
        if isinstance(exc, pydantic.ValidationError):
            detail = f"its answer is not a valid MCP result: {exc.error_count()} problem(s)"
            return MCPProtocolError(server=self.label, tool=tool, error_code=None, detail=detail)
        return MCPProtocolError(server=self.label, tool=tool, error_code=None, detail=describe(exc))

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
