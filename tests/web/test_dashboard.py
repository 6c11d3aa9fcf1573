"""`phalanx ui` over HTTP: pages, 404s, the live stream, DLQ actions, and its security.

Each test starts the real command (`phalanx ui --port 0`) over a real store (SQLite and
PostgreSQL) and talks to it with plain HTTP; the browser tests are in tests/e2e.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time
from pathlib import Path

import pytest

from phalanx.testing import load_recorded, read_recorded

from .server import ROOT, cli, csrf_of, dashboard, hermetic_env, status_of

RECORDED = ROOT / "docs" / "pictures" / "research-run.jsonl"
RUN = "research-demo"

pytestmark = pytest.mark.slow


@pytest.fixture
def recorded(url: str) -> str:
    """The research demo's recorded run in the test's store."""
    asyncio.run(load_recorded(url, read_recorded(RECORDED)))
    return url


def test_runs_page_lists_runs_and_filters_by_status(recorded: str) -> None:
    """`/` lists every run id; `?status=` filters; an unknown status is a 400 page."""
    with dashboard(recorded) as server:
        assert server.host == "127.0.0.1"
        status, _, page = server.request("/")
        assert status == 200
        for run in (RUN, f"{RUN}.1.web_search", f"{RUN}.1.vector_db"):
            assert f'id="run-{run}"' in page
        _, _, cancelled = server.request("/?status=cancelled")
        assert f"run-{RUN}.1.web_search" in cancelled and f'id="run-{RUN}"' not in cancelled
        status, _, _ = server.request("/?status=sleeping")
        assert status == 400


def test_run_page_names_every_branch_with_its_outcome(recorded: str) -> None:
    """`/runs/RUN`: lanes with outcomes, the story, model calls, events; pictures as SVG."""
    with dashboard(recorded) as server:
        status, _, page = server.request(f"/runs/{RUN}")
        assert status == 200
        for lane, outcome in (("vector_db", "succeeded"), ("web_search", "timed_out")):
            assert f'data-lane="{lane}"' in page and outcome in page
        assert "went silent (stalled)" in page and "Decision: degrade visibly" in page
        assert "GatherStarted" in page and 'id="model-calls"' in page
        status, headers, svg = server.request(f"/runs/{RUN}/timeline.svg")
        assert status == 200 and headers["content-type"].startswith("image/svg+xml")
        assert "✗ timed_out" in svg and "DEADLINE" in svg
        status, _, topology = server.request(f"/runs/{RUN}/topology.svg")
        assert status == 200 and "web_search" in topology and "timed_out" in topology


def test_events_are_paginated(tmp_path: Path, url: str) -> None:
    """A long run's page shows one page of events and links to the next."""
    done = cli(
        url, "run", "tests.web.webflows:many_steps", "--input", '{"n": 150}', "--run-id", "long"
    )
    assert done.returncode == 0, done.stderr
    with dashboard(url) as server:
        _, _, first = server.request("/runs/long")
        assert first.count("<tr><td>") == 100 and 'href="/runs/long?after=100"' in first
        _, _, second = server.request("/runs/long?after=100")
        assert "<tr><td>101</td>" in second and "<tr><td>100</td>" not in second


def test_unknown_run_and_unknown_page_are_404_pages(url: str) -> None:
    """No traceback: a 404 page that says what was not found."""
    with dashboard(url) as server:
        status, headers, page = server.request("/runs/no-such-run")
        assert status == 404 and "No such run" in page and "Traceback" not in page
        assert headers["content-type"].startswith("text/html")
        status, _, page = server.request("/runs/no-such-run/timeline.svg")
        assert status == 404
        status, _, page = server.request("/nowhere")
        assert status == 404 and "Not found" in page
        status, _, page = server.request("/dlq/dlq-nope")
        assert status == 404 and "No such entry" in page


def test_live_stream_reports_a_new_run_and_its_status_changes(url: str) -> None:
    """`/live/runs` streams each status change the journal records, as it commits."""
    with dashboard(url) as server:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
        conn.request("GET", "/live/runs")
        response = conn.getresponse()
        assert response.getheader("content-type", "").startswith("text/event-stream")
        assert response.readline().startswith(b"retry:")
        done = cli(url, "run", "tests.web.webflows:quick", "--run-id", "live-1")
        assert done.returncode == 0, done.stderr
        seen: list[str] = []
        while "completed" not in seen:
            line = response.readline().decode()
            if line.startswith("data: "):
                event = json.loads(line[6:])
                if event["run_id"] == "live-1":
                    seen.append(event["status"])
        conn.close()
        assert seen == ["running", "completed"]


def test_resolve_a_dead_letter_from_the_dashboard(tmp_path: Path, url: str) -> None:
    """Resolve needs confirmation and the page's CSRF token; it is journaled with who acted."""
    done = cli(url, "run", "tests.observe.workflows:dead_letters", "--run-id", "dl")
    assert done.returncode == 0, done.stderr
    with dashboard(url) as server:
        _, _, listing = server.request("/dlq")
        entry = listing.split('data-entry="', 1)[1].split('"', 1)[0]
        _, _, page = server.request(f"/dlq/{entry}")
        csrf = csrf_of(page)
        form = {"csrf": csrf, "result": '{"ok": true}', "reason": "fixed by hand"}
        status, text = server.post_form(f"/dlq/{entry}/resolve", form)
        assert status == 400 and "Not confirmed" in text
        status, text = server.post_form(
            f"/dlq/{entry}/resolve", {**form, "result": "{nope", "confirm": "yes"}
        )
        assert status == 400 and "not JSON" in text
        status, _ = server.post_form(f"/dlq/{entry}/resolve", {**form, "confirm": "yes"})
        assert status == 303
        _, _, page = server.request(f"/dlq/{entry}?done=resolve")
        assert 'id="entry-status">resolved' in page and "(dashboard, from 127.0.0.1)" in page
        status, text = server.post_form(f"/dlq/{entry}/discard", {**form, "confirm": "yes"})
        assert status == 409 and "Cannot discard" in text
    shown = json.loads(cli(url, "dlq", "show", entry, "--json").stdout)
    assert shown["status"] == "resolved" and shown["resolution"]["result"] == {"ok": True}
    assert "dashboard" in shown["resolution"]["by"]


def test_cross_site_posts_are_refused(url: str) -> None:
    """Another origin, a cross-site fetch or a missing CSRF token: 403, nothing done."""
    done = cli(url, "run", "tests.observe.workflows:dead_letters", "--run-id", "dl")
    assert done.returncode == 0, done.stderr
    with dashboard(url) as server:
        _, _, listing = server.request("/dlq")
        entry = listing.split('data-entry="', 1)[1].split('"', 1)[0]
        csrf = csrf_of(server.request(f"/dlq/{entry}")[2])
        form = {"csrf": csrf, "reason": "evil", "confirm": "yes"}
        path = f"/dlq/{entry}/discard"
        assert server.post_form(path, form, Origin="http://evil.example")[0] == 403
        assert server.post_form(path, form, **{"Sec-Fetch-Site": "cross-site"})[0] == 403
        assert server.post_form(path, {**form, "csrf": "guess"})[0] == 403
        assert server.post_form(path, {k: v for k, v in form.items() if k != "csrf"})[0] == 403
        assert 'id="entry-status">open' in server.request(f"/dlq/{entry}")[2]
        own = f"http://{server.host}:{server.port}"
        assert (
            server.post_form(path, form, Origin=own, **{"Sec-Fetch-Site": "same-origin"})[0] == 303
        )


def _outside_address() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))  # no packet is sent: UDP connect picks a route
        address = str(probe.getsockname()[0])
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


def test_default_binds_loopback_only(url: str) -> None:
    """Without --host the dashboard listens on 127.0.0.1, needing no token, and nowhere else."""
    with dashboard(url) as server:
        assert server.url.startswith("http://127.0.0.1:") and server.token is None
        assert server.request("/")[0] == 200
        outside = _outside_address()
        if outside is not None:
            with pytest.raises(OSError):
                socket.create_connection((outside, server.port), timeout=3).close()


def test_another_host_requires_the_printed_token(url: str) -> None:
    """--host 0.0.0.0 prints a token; requests without it (or with a wrong one) get 401."""
    with dashboard(url, "--host", "0.0.0.0") as server:
        assert server.token is not None and f"?token={server.token}" in server.url
        status, _, page = server.request("/", host="127.0.0.1")
        assert status == 401 and "token" in page
        assert server.request("/?token=wrong", host="127.0.0.1")[0] == 401
        assert server.request("/live/runs", host="127.0.0.1")[0] == 401
        status, headers, _ = server.request(f"/?token={server.token}", host="127.0.0.1")
        assert status == 200
        cookie = headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        by_cookie = server.request(
            "/dlq", host="127.0.0.1", headers={"Cookie": cookie.split(";")[0]}
        )
        assert by_cookie[0] == 200
        bearer = {"Authorization": f"Bearer {server.token}"}
        assert server.request("/tools", host="127.0.0.1", headers=bearer)[0] == 200


def test_taken_port_is_a_usage_error(url: str) -> None:
    """A port in use or out of range: exit 2 with one line that says so, no traceback."""
    with dashboard(url) as server:
        done = cli(url, "ui", "--port", str(server.port))
        assert done.returncode == 2
        assert "cannot listen on 127.0.0.1" in done.stderr and "Traceback" not in done.stderr
    done = cli(url, "ui", "--port", "70000")
    assert done.returncode == 2 and "--port" in done.stderr


def test_tools_page_shows_calls_failures_and_breaker_state(url: str) -> None:
    """Per-tool calls, failures and breaker state, from the journal."""
    assert cli(url, "run", "tests.observe.workflows:dead_letters", "--run-id", "dl").returncode == 0
    with dashboard(url) as server:
        status, _, page = server.request("/tools")
        assert status == 200 and 'data-tool="always_down"' in page and "open" in page


__all__ = ["hermetic_env", "status_of", "time"]
