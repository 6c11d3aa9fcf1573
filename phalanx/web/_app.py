"""The dashboard's routes: runs (live), one run, the dead-letter queue, tools, memories.

Server-rendered pages (Jinja2 templates, autoescaped) with a little vanilla JavaScript
(`static/app.js`): the runs page listens to server-sent events fed by the journal's
subscription; the run page fetches its timeline and topology SVGs after it loads, so
serving the page stays fast however long the run. The server streams nothing it has
not read from the journal, and writes only through the API the CLI uses
(`DeadLetterQueue`), each action journaled with who acted.
"""

from __future__ import annotations

import contextlib
import getpass
import json
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from .._errors import (
    DeadLetterClosedError,
    DeadLetterRetryError,
    PhalanxError,
    UnknownDeadLetterError,
    UnknownRunError,
)
from ..durable import STATUS_EVENTS, Runtime
from ..durable.lowlevel import TERMINAL, run_id_of
from ..observe import ViewCache, build_run_model, diagram_bytes, render_timeline_svg, run_graph
from ..tools import DeadLetterQueue, tool_stats
from ._pages import compact, outcome_word, redact, run_page, run_rows
from ._patterns import memory_page
from ._security import TokenGuard, check_post

STATUSES = ("running", "waiting", *sorted(TERMINAL))


def _templates() -> Environment:
    env = Environment(
        loader=PackageLoader("phalanx.web", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["compact"] = compact
    env.filters["outcome"] = outcome_word
    env.filters["redact"] = redact
    env.filters["pretty"] = lambda v: json.dumps(redact(v), indent=2, ensure_ascii=False)
    return env


class Dashboard:
    """The dashboard over one open runtime; `app` is its ASGI application."""

    def __init__(self, runtime: Runtime, *, token: str | None, csrf: str) -> None:
        self.runtime = runtime
        self.csrf = csrf
        self.views = ViewCache()
        self.env = _templates()
        self.script = resources.files("phalanx.web").joinpath("static", "app.js").read_text()
        routes = [
            Route("/", self.runs_page),
            Route("/live/runs", self.live_runs),
            Route("/runs/{run_id:path}/timeline.svg", self.timeline),
            Route("/runs/{run_id:path}/topology.svg", self.topology),
            Route("/runs/{run_id:path}", self.run_detail),
            Route("/dlq", self.dlq_page),
            Route("/dlq/{entry_id}", self.dlq_entry),
            Route("/dlq/{entry_id}/{action}", self.dlq_action, methods=["POST"]),
            Route("/tools", self.tools_page),
            Route("/memory/{name:path}", self.memory_detail),
            Route("/static/app.js", self.static_script),
        ]
        handlers = {404: self.not_found, 405: self.not_found}
        self.app = TokenGuard(
            Starlette(routes=routes, exception_handlers=handlers),
            token=token,
        )

    def page(self, name: str, code: int = 200, **context: Any) -> HTMLResponse:
        """Render template `name` with the base context, as HTTP status `code`."""
        html = self.env.get_template(name).render(
            csrf=self.csrf, store=self.runtime.store.url, **context
        )
        return HTMLResponse(html, status_code=code)

    async def not_found(self, request: Request, exc: Exception) -> Response:
        """A 404 page (never a traceback)."""
        detail = exc.detail if isinstance(exc, HTTPException) else "not found"
        return self.page("error.html", 404, title="Not found", detail=detail)

    async def static_script(self, request: Request) -> Response:
        """The dashboard's one script."""
        return Response(self.script, media_type="text/javascript")

    async def runs_page(self, request: Request) -> Response:
        """All runs, newest first, optionally one status; updated live."""
        status = request.query_params.get("status") or None
        if status is not None and status not in STATUSES:
            return self.page("error.html", 400, title="Unknown status", detail=status)
        runs = await self.runtime.runs(status=status)  # type: ignore[arg-type]  # checked above
        return self.page("runs.html", runs=run_rows(runs), status=status, statuses=STATUSES)

    async def live_runs(self, request: Request) -> Response:
        """Server-sent events: each run's status change, as the journal records it."""
        store = self.runtime.store
        head = await store.head_position()

        async def stream() -> AsyncIterator[str]:
            yield "retry: 1000\n: connected\n\n"
            async for event in store.subscribe(after=head):
                run_id = run_id_of(event.stream_id)
                status = STATUS_EVENTS.get(event.type)
                if run_id is None or status is None:
                    continue
                data = {"run_id": run_id, "status": status, "updated_at": event.recorded_at}
                if event.type == "RunStarted":
                    data["workflow"] = event.data.get("workflow", "")
                    data["parent_run_id"] = event.data.get("parent_run_id")
                    data["started_at"] = event.recorded_at
                yield f"event: run\ndata: {json.dumps(data)}\n\n"

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    async def run_detail(self, request: Request) -> Response:
        """One run: its lanes with outcomes, story, model calls and a page of events."""
        run_id = request.path_params["run_id"]
        try:
            after = max(0, int(request.query_params.get("after", "0")))
        except ValueError:
            after = 0
        try:
            page = await run_page(self.runtime, run_id, after=after, cache=self.views)
        except UnknownRunError:
            return self.page(
                "error.html", 404, title="No such run", detail=f"no run {run_id!r} in this store"
            )
        return self.page("run.html", run=page, model=page.model, after=after)

    async def timeline(self, request: Request) -> Response:
        """The run's timeline as SVG."""
        try:
            model = await build_run_model(self.runtime, request.path_params["run_id"])
        except UnknownRunError as exc:
            raise HTTPException(404, str(exc)) from exc
        return Response(render_timeline_svg(model), media_type="image/svg+xml")

    async def topology(self, request: Request) -> Response:
        """The run's topology as SVG (Graphviz)."""
        try:
            model = await build_run_model(self.runtime, request.path_params["run_id"])
        except UnknownRunError as exc:
            raise HTTPException(404, str(exc)) from exc
        svg = diagram_bytes(run_graph(model), Path("topology.svg"))
        return Response(svg, media_type="image/svg+xml")

    async def dlq_page(self, request: Request) -> Response:
        """Dead-letter entries (open by default, `?status=all` for every one)."""
        wanted = request.query_params.get("status", "open")
        status = None if wanted == "all" else wanted
        if status not in (None, "open", "resolved", "discarded"):
            return self.page("error.html", 400, title="Unknown status", detail=wanted)
        entries = await DeadLetterQueue(self.runtime).entries(status=status)  # type: ignore[arg-type]  # checked above
        return self.page("dlq.html", entries=[e.summary() for e in entries], status=wanted)

    async def dlq_entry(self, request: Request) -> Response:
        """One entry with its full context and the actions on it."""
        entry_id = request.path_params["entry_id"]
        try:
            entry = await DeadLetterQueue(self.runtime).get(entry_id)
        except UnknownDeadLetterError:
            return self.page(
                "error.html",
                404,
                title="No such entry",
                detail=f"no dead-letter entry {entry_id!r}",
            )
        return self.page(
            "entry.html", entry=entry.to_json(), message=request.query_params.get("done")
        )

    async def dlq_action(self, request: Request) -> Response:
        """Retry, resolve or discard an entry: confirmed, same-origin, journaled with who."""
        form, refused = await check_post(request, self.csrf)
        if refused is not None:
            return refused
        entry_id = request.path_params["entry_id"]
        action = request.path_params["action"]
        if action not in ("retry", "resolve", "discard"):
            return self.page("error.html", 404, title="Unknown action", detail=action)
        if form.get("confirm") != "yes":
            return self.page(
                "error.html", 400, title="Not confirmed", detail="tick the confirmation box"
            )
        client = request.client.host if request.client else "unknown"
        by = f"{_user()} (dashboard, from {client})"
        reason = form.get("reason") or None
        queue = DeadLetterQueue(self.runtime)
        try:
            if action == "resolve":
                try:
                    result = json.loads(form.get("result", ""))
                except json.JSONDecodeError as exc:
                    return self.page(
                        "error.html", 400, title="The result is not JSON", detail=str(exc)
                    )
                await queue.resolve(entry_id, result, by=by, reason=reason)
            elif action == "discard":
                await queue.discard(
                    entry_id, by=by, reason=reason or "discarded from the dashboard"
                )
            else:
                await queue.retry(entry_id, by=by, reason=reason)
        except UnknownDeadLetterError:
            return self.page("error.html", 404, title="No such entry", detail=entry_id)
        except (DeadLetterClosedError, DeadLetterRetryError) as exc:
            return self.page("error.html", 409, title=f"Cannot {action}", detail=str(exc))
        except PhalanxError as exc:
            return self.page("error.html", 500, title=f"{action} failed", detail=str(exc))
        return RedirectResponse(f"/dlq/{entry_id}?done={action}", status_code=303)

    async def memory_detail(self, request: Request) -> Response:
        """One memory: its keys, each key's versions (a page) with author, basis and diff."""
        name = request.path_params["name"]
        key = request.query_params.get("key") or None
        try:
            before = (
                int(request.query_params["before"]) if "before" in request.query_params else None
            )
        except ValueError:
            before = None
        page = await memory_page(self.runtime.store, name, key=key, before=before)
        if page is None:
            return self.page(
                "error.html",
                404,
                title="No such memory",
                detail=f"no memory {name!r} in this store",
            )
        return self.page("memory.html", memory=page, key=key)

    async def tools_page(self, request: Request) -> Response:
        """Per-tool calls, failures, latency percentiles and breaker states."""
        stats = await tool_stats(self.runtime.store, checkpoint=False)
        tools = {name: m.to_json() for name, m in sorted(stats.tools.items())}
        return self.page("tools.html", tools=tools)


def _user() -> str:
    with contextlib.suppress(KeyError, OSError):
        return getpass.getuser()
    return "unknown"
