"""`phalanx ui`: serve the dashboard over the store until Ctrl-C."""

from __future__ import annotations

from typing import Annotated

import typer

from ..durable import Runtime
from ..web import DEFAULT_HOST, DEFAULT_PORT, serve
from ._app import StoreOption, _execute, app, out


@app.command()
def ui(
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port to listen on (0: any free one).")
    ] = DEFAULT_PORT,
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            help="Address to listen on (default 127.0.0.1). Any other address requires the "
            "token printed at start on every request.",
        ),
    ] = None,
    store: StoreOption = None,
) -> None:
    """Serve the local dashboard: runs (live), run timelines and topologies, DLQ, tools."""

    def announce(url: str, token: str | None) -> None:
        out.print(f"phalanx dashboard on {url}")
        if token is not None:
            out.print(f"token {token} (every request needs it; the URL above carries it)")
        out.print("Ctrl-C stops it.")

    async def body(runtime: Runtime) -> None:
        await serve(runtime, host=host or DEFAULT_HOST, port=port, announce=announce)

    _execute(store, 15.0, body)
