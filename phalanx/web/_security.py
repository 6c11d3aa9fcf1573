"""Who may use the dashboard, and which POSTs it accepts.

Bound to the loopback interface (the default), the dashboard is as private as the
machine. Bound anywhere else (`--host`), every request must carry the token printed at
start: `?token=...` once (the server then sets an HttpOnly, SameSite=Strict cookie), the
cookie, or `Authorization: Bearer ...`; anything else is refused with 401 before a
handler runs. Either way, a POST (the dead-letter actions) must come from the
dashboard's own pages: it must carry the per-server CSRF token those pages embed, and a
browser's `Origin` / `Sec-Fetch-Site` must say same-origin; a cross-site POST is
refused with 403.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
COOKIE = "phalanx_token"


def needs_token(host: str) -> bool:
    """Whether binding to `host` requires a token (anything but loopback does)."""
    return host not in LOOPBACK


def _same(supplied: str | None, expected: str) -> bool:
    return supplied is not None and hmac.compare_digest(supplied.encode(), expected.encode())


def _refusal(status: int, title: str, detail: str) -> HTMLResponse:
    body = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{title}</title></head>"
        f"<body><h1>{title}</h1><p>{detail}</p></body></html>"
    )
    return HTMLResponse(body, status_code=status)


class TokenGuard:
    """ASGI middleware: refuse every HTTP request that does not carry the token."""

    def __init__(self, app: ASGIApp, *, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        from_query = request.query_params.get("token")
        bearer = request.headers.get("authorization", "")
        supplied = (
            from_query
            or request.cookies.get(COOKIE)
            or (bearer[7:] if bearer.lower().startswith("bearer ") else None)
        )
        if not _same(supplied, self.token):
            refusal = _refusal(
                401,
                "A token is required",
                "This dashboard listens beyond this machine, so every request needs the "
                "token <code>phalanx ui</code> printed: open the URL it printed.",
            )
            await refusal(scope, receive, send)
            return
        if not _same(from_query, self.token):
            await self.app(scope, receive, send)
            return
        cookie = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"

        async def with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"set-cookie", cookie.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_cookie)


def cross_site(request: Request) -> str | None:
    """Why a POST looks cross-site (from another origin), or None if it does not."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"Sec-Fetch-Site is {site}"
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        if urlsplit(origin).netloc != request.headers.get("host"):
            return f"Origin {origin} is not this dashboard"
    elif origin == "null":
        return "Origin is null"
    return None


async def check_post(request: Request, csrf: str) -> tuple[dict[str, str], HTMLResponse | None]:
    """The POSTed form, or a 403 page if the request is cross-site or lacks the CSRF token."""
    reason = cross_site(request)
    form = {k: str(v) for k, v in (await request.form()).items()}
    if reason is None and not _same(form.get("csrf"), csrf):
        reason = "the form's CSRF token is missing or wrong (reload the page)"
    if reason is not None:
        return form, _refusal(403, "Refused: cross-site request", reason)
    return form, None
