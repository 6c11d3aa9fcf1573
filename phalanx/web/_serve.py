"""Serving the dashboard: bind first (a clear error if the address is taken), then run.

The socket is bound here rather than by uvicorn so that a taken port or a bad address
is a `ConfigError` before anything starts, and so that `--port 0` (any free port, for
tests) reports the port it got. Ctrl-C or SIGTERM stops the server; open live streams
are given two seconds to close.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import uvicorn

from .._errors import ConfigError
from ..durable import Runtime
from ._app import Dashboard
from ._security import needs_token

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(setting="--host", value=host, reason=f"not an address: {exc}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            setting="--port",
            value=port,
            reason=f"cannot listen on {host}:{port} ({exc.strerror}); pick another with --port",
        ) from exc
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def serve(
    runtime: Runtime,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    announce: Callable[[str, str | None], None],
) -> None:
    """Serve the dashboard over `runtime`'s store until cancelled or signalled.

    `announce(url, token)` is called once listening; the URL carries the token when one
    is required (any host but loopback).

    Raises:
        ConfigError: the address cannot be listened on.
    """
    sock = _bind(host, port)
    token = runtime.entropy.token(24) if needs_token(host) else None
    dashboard = Dashboard(runtime, token=token, csrf=runtime.entropy.token(16))
    config = uvicorn.Config(
        dashboard.app,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    async with asyncio.TaskGroup() as group:
        task = group.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await runtime.clock.sleep(0.02)
        if server.started:
            bound = sock.getsockname()
            shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
            url = f"http://{shown}:{bound[1]}/" + (f"?token={token}" if token else "")
            announce(url, token)
