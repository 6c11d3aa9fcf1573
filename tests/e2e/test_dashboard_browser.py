"""The dashboard in a real browser: Playwright driving Debian's chromium (no download).

Each test starts `phalanx ui` over a real store (SQLite and PostgreSQL) and works it the
way a person would. Screenshots are saved as test artefacts in $PHALANX_TEST_ARTIFACTS
(default test-artifacts/e2e), with the measured live-update latency (latency.json).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from phalanx.testing import load_recorded, read_recorded
from tests.conftest import missing
from tests.web.server import PHALANX, ROOT, cli, dashboard, hermetic_env, status_of

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("PHALANX_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "e2e"
RECORDED = ROOT / "docs" / "pictures" / "research-run.jsonl"
#: Generous bounds for a loaded CI machine: waits, never the measured figure.
WAIT_MS = 30_000

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the dev extra installs it
    missing("the playwright package is not installed (pip install -e '.[dev]')", module_level=True)

expect.set_options(timeout=WAIT_MS)


def load_research_run(url: str) -> None:
    """Write the recorded research run into the store (in a thread: Playwright's sync API
    keeps an event loop running in this one)."""
    worker = threading.Thread(
        target=lambda: asyncio.run(load_recorded(url, read_recorded(RECORDED)))
    )
    worker.start()
    worker.join(timeout=120)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian chromium, one per module (a browser start is the slow part)."""
    if not CHROMIUM.exists():
        missing("Debian's chromium is not installed (bash scripts/services installs it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh page; its screenshot is saved as an artefact whatever the outcome."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = request.node.name.replace("[", "-").replace("]", "")
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    context.close()


def test_runs_page_shows_a_new_run_and_its_status_change_live(page: Page, url: str) -> None:
    """Start a run while the page is open: it appears, parks waiting, then completes."""
    with dashboard(url) as server:
        page.goto(server.url)
        expect(page.locator("#live-state")).to_have_text("live")
        runner = subprocess.Popen(
            [PHALANX, "run", "tests.web.webflows:waits", "--run-id", "w1", "--store", url],
            cwd=ROOT,
            env=hermetic_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            row = page.locator("#run-w1")
            expect(row.locator("td.status")).to_have_text("waiting")
            assert cli(url, "signal", "w1", "go", "--data", '"yes"').returncode == 0
            expect(row.locator("td.status")).to_have_text("completed")
            seen_ms = float(row.get_attribute("data-seen-at") or "nan")
            assert runner.wait(timeout=60) == 0
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait()
        events = [json.loads(x) for x in cli(url, "events", "w1", "--json").stdout.splitlines()]
        done = next(e for e in events if e["type"] == "RunCompleted")
        appended_ms = datetime.fromisoformat(done["timestamp"]).timestamp() * 1000
        latency_s = (seen_ms - appended_ms) / 1000
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        record = ARTIFACTS / "latency.json"
        figures = json.loads(record.read_text()) if record.exists() else {}
        figures[url.split(":", 1)[0]] = round(latency_s, 3)
        record.write_text(json.dumps(figures, indent=2))
        print(f"append-to-page latency: {latency_s * 1000:.0f} ms")
        assert latency_s >= 0  # seen after it was appended (clocks are the same machine's)
        assert page.locator("#run-w1").count() == 1  # updated in place, never reloaded


def test_research_run_shows_web_search_timed_out_on_the_timeline(page: Page, url: str) -> None:
    """The research demo's run page: web_search is marked timed out, in the table and drawn."""
    load_research_run(url)
    with dashboard(url) as server:
        page.goto(f"{server.url.rstrip('/')}/runs/research-demo")
        lane = page.locator('#lanes tr[data-lane="web_search"] td.outcome')
        expect(lane).to_contain_text("timed_out")
        timeline = page.locator("#timeline")
        expect(timeline).to_have_attribute("data-loaded", "yes")
        texts = timeline.locator("svg text")
        expect(texts.filter(has_text="web_search").first).to_be_visible()
        expect(texts.filter(has_text="fan-out branch: ✗ timed_out, stalled")).to_have_count(1)
        expect(texts.filter(has_text="DEADLINE +4.0s")).to_have_count(1)
        expect(page.locator("#topology")).to_have_attribute("data-loaded", "yes")
        expect(page.locator("#topology svg")).to_contain_text("timed_out")


def test_resolving_a_dead_letter_lets_the_waiting_run_complete(
    page: Page, url: str, tmp_path: Path
) -> None:
    """Open the entry, resolve it with a result (confirmed), and watch the run complete."""
    fault = tmp_path / "gateway-down"
    fault.touch()
    runner = subprocess.Popen(
        [
            PHALANX, "run", "tests.tools.workflows:charge_flow", "--input", '{"order": "o-7"}',
            "--run-id", "k", "--store", url,
        ],
        cwd=ROOT,
        env=hermetic_env(TOOLS_TEST_FAULT=str(fault)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while status_of(url, "k") != "waiting":
            assert runner.poll() is None and time.monotonic() < deadline, "never parked"
            time.sleep(0.1)
        with dashboard(url) as server:
            page.goto(server.url)
            expect(page.locator("#run-k td.status")).to_have_text("waiting")
            page.click("text=dead letters")
            page.locator("#entries a").first.click()
            expect(page.locator("#entry-status")).to_have_text("open")
            page.fill("#resolve-result", '{"order": "o-7", "charged": 42, "via": "dashboard"}')
            page.fill("#resolve-reason", "charged by hand")
            page.check("#resolve-confirm")
            page.once("dialog", lambda dialog: dialog.accept())
            page.click("#resolve")
            expect(page.locator("#flash")).to_contain_text("resolve")
            expect(page.locator("#entry-status")).to_have_text("resolved")
            expect(page.locator("#actions")).to_contain_text("dashboard")
            page.click("text=runs")  # live: the run completes while we look
            expect(page.locator("#run-k td.status")).to_have_text("completed")
            assert runner.wait(timeout=60) == 0
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        if runner.stdout is not None:
            runner.stdout.close()
    outcome = status_of(url, "k")
    assert outcome == "completed"


def test_saga_run_page_shows_its_compensations(page: Page, url: str) -> None:
    """The saga demo with a failing fact-checker: the run page shows the undo, in order."""
    done = cli(url, "demo", "saga", "--fault", "fact_check=error", "--json")
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    with dashboard(url) as server:
        page.goto(f"{server.url.rstrip('/')}/runs/{run_id}")
        saga = page.locator("section.saga")
        expect(saga.locator("h3")).to_contain_text("compensated")
        expect(saga.locator('tr[data-step="fact_check"]')).to_contain_text("failed")
        for step in ("research", "outline", "draft"):
            expect(saga.locator(f'tr[data-step="{step}"]')).to_contain_text("compensated")
        expect(saga.locator(".compensation-order")).to_have_text(
            "Compensation order: draft → outline → research"
        )
