"""Chaos: a workflow in a real process is SIGKILLed at precise points, then resumed.

The kill comes from inside the process (`phalanx.testing.FaultyStore` /
`FaultyClock`) or, while the run waits for a signal, from the test. Afterwards
`phalanx resume` (with `--force`, or after the dead lease expires) must finish the run
with the result an uncrashed run gets, with every step's external effect performed
exactly once, except the step in flight at the crash: at most twice, both times under
the same idempotency key.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.harness import Proc, Workspace, wait_exit, workspace
from tests.chaos.workflows import PIPELINE_STEPS, read_ledger

pytestmark = pytest.mark.slow

LEASE_TTL = 1.0  # a live runner renews every ttl/3 = 0.33 s
BACKOFF = 0.15  # the retried step's only back-off
TIMER = 0.45  # the durable timer
#: Sleep windows that catch only the back-off or only the timer (inbox polls sleep
#: 0.05 s, lease renewals exactly ttl/3; the timer sleeps what is left of its 0.45 s
#: once TimerStarted is journaled, so its window leaves room for a slow append).
IN_BACKOFF = {"longer_than": 0.1, "shorter_than": 0.3}
IN_TIMER = {"longer_than": 0.35, "shorter_than": 1.0}
RUN_ID = "chaos"
SIGNAL_DATA = "ops"


def before(event_type: str, n: int = 1) -> dict[str, Any]:
    """Die just before the nth append carrying `event_type` reaches the journal."""
    return {"kill_before_append": n, "event_type": event_type}


def after(event_type: str, n: int = 1) -> dict[str, Any]:
    """Die just after the nth append carrying `event_type` was committed."""
    return {"kill_after_append": n, "event_type": event_type}


@dataclass(frozen=True)
class KillPoint:
    """Where the first process dies, and how the run is resumed."""

    id: str
    #: The journal's last event at the crash, `Type` or `Type:step` (None: timing); a
    #: step running longer than HOLD_S (a loaded machine) has its start written alone,
    #: so after the listed event its `StepStarted:step` may come too (`twice`).
    died_after: str | None
    store: dict[str, Any] = field(default_factory=dict)
    clock: dict[str, Any] = field(default_factory=dict)
    #: The test kills the process once the journal shows SignalWaiting.
    when_waiting: bool = False
    #: The step whose effect happened but was not journaled: it must show twice.
    twice: str | None = None
    #: The step running at the crash whose start was held (default: `twice`).
    held: str | None = None
    #: `resume --force`; otherwise a plain `resume` waits for the dead lease to expire.
    force: bool = True


# A quick step is one append: its StepStarted rides with its StepCompleted (or, for
# check's failed first attempt, its StepFailed). StepCompleted appends: fetch 1, check
# 2, publish 3. Dying before such an append leaves no trace of the step, whose effect
# happened: it runs again on resume under the same key (`twice`).
POINTS = [
    KillPoint("after-RunStarted", "RunStarted", after("RunStarted"), force=False),
    KillPoint(
        "before-StepCompleted-fetch", "RunStarted", before("StepCompleted", 1), twice="fetch"
    ),
    KillPoint("after-StepCompleted-fetch", "StepCompleted:fetch", after("StepCompleted", 1)),
    KillPoint("before-StepFailed-check", "StepCompleted:fetch", before("StepFailed"), held="check"),
    KillPoint("after-StepFailed-check", "StepFailed:check", after("StepFailed"), force=False),
    KillPoint("in-retry-backoff", "StepFailed:check", clock={"kill_in_sleep": 1, **IN_BACKOFF}),
    KillPoint(
        "before-StepCompleted-check",
        "StepFailed:check",
        before("StepCompleted", 2),
        twice="check",
    ),
    KillPoint("after-StepCompleted-check", "StepCompleted:check", after("StepCompleted", 2)),
    KillPoint("after-TimerStarted", "TimerStarted", after("TimerStarted")),
    KillPoint("in-timer", "TimerStarted", clock={"kill_in_sleep": 1, **IN_TIMER}, force=False),
    KillPoint("before-TimerFired", "TimerStarted", before("TimerFired")),
    KillPoint("while-waiting-for-signal", "SignalWaiting", when_waiting=True, force=False),
    KillPoint("before-SignalReceived", "SignalWaiting", before("SignalReceived")),
    KillPoint("after-SignalReceived", "SignalReceived", after("SignalReceived")),
    KillPoint(
        "before-StepCompleted-publish",
        "SignalReceived",
        before("StepCompleted", 3),
        twice="publish",
    ),
    KillPoint(
        "before-StepCompleted-publish-lease-expires",
        "SignalReceived",
        before("StepCompleted", 3),
        twice="publish",
        force=False,
    ),
    KillPoint("after-StepCompleted-publish", "StepCompleted:publish", after("StepCompleted", 3)),
    # The first renewal comes ttl/3 into the run; where the run is then is timing.
    KillPoint("during-lease-renewal", None, {"kill_on_renew": 1}, force=False),
    KillPoint("before-RunCompleted", "StepCompleted:publish", before("RunCompleted"), force=False),
    KillPoint("after-RunCompleted", "RunCompleted", after("RunCompleted")),
]


class Scenario:
    """One run of `pipeline` in a workspace, driven through the CLI like an operator."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.ledger = str(ws.root / "ledger.jsonl")
        self.signalled = False

    def start(self, store: dict[str, Any], clock: dict[str, Any]) -> Proc:
        inputs = {
            "ledger": self.ledger,
            "marker": str(self.ws.root / "check-failed-once"),
            "backoff": BACKOFF,
            "timer": TIMER,
        }
        faults = {"store": store, "clock": clock}
        argv = [sys.executable, "-m", "tests.chaos.driver", self.ws.url, RUN_ID]
        return self.ws.spawn(*argv, json.dumps(inputs), json.dumps(faults), label="driver")

    def waiting(self, *, confirm: bool = False) -> bool:
        """Whether the run waits for its signal (`confirm`: as `phalanx events` shows)."""
        waits = any(e["type"] == "SignalWaiting" for e in self.ws.peek(RUN_ID))
        if waits and confirm:
            return any(e["type"] == "SignalWaiting" for e in self.ws.events(RUN_ID))
        return waits

    def drive(self, proc: Proc, *, kill_when_waiting: bool = False, timeout: float = 30) -> int:
        """Wait for `proc` to exit, answering (or killing) the run's signal wait."""
        deadline = time.monotonic() + timeout
        while proc.popen.poll() is None:
            if not self.signalled and self.waiting(confirm=kill_when_waiting):
                if kill_when_waiting:
                    proc.popen.kill()
                    return proc.popen.wait()
                sent = self.ws.cli("signal", RUN_ID, "approve", "--data", json.dumps(SIGNAL_DATA))
                assert sent.returncode == 0, sent.stderr
                self.signalled = True
            if time.monotonic() > deadline:
                wait_exit(proc, 0)
            time.sleep(0.05)
        return proc.popen.returncode

    def ledger_keys(self) -> dict[str, list[str]]:
        keys: dict[str, list[str]] = defaultdict(list)
        for line in read_ledger(self.ledger):
            keys[line["step"]].append(line["key"])
        return keys


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The result of the same run without any crash."""
    with workspace(tmp_path_factory.mktemp("reference"), PHALANX_LEASE_TTL=str(LEASE_TTL)) as ws:
        scenario = Scenario(ws)
        driver = scenario.start({}, {})
        assert scenario.drive(driver) == 0, driver.describe()
        outcome = json.loads(driver.stdout)
        assert outcome["status"] == "completed"
        assert {k: len(v) for k, v in scenario.ledger_keys().items()} == dict.fromkeys(
            PIPELINE_STEPS, 1
        )
        yield outcome["result"]


def describe(event: dict[str, Any]) -> str:
    """`Type:step` for a step event, `Type` for the others."""
    if event["type"].startswith("Step"):
        return f"{event['type']}:{event['data']['name']}"
    return str(event["type"])


def in_flight(events: list[dict[str, Any]]) -> set[str]:
    """Steps whose latest journaled event is StepStarted: running when the process died."""
    last: dict[str, str] = {}
    for event in events:
        if event["type"].startswith("Step"):
            last[event["data"]["name"]] = event["type"]
    return {name for name, kind in last.items() if kind == "StepStarted"}


@pytest.mark.parametrize("point", POINTS, ids=[p.id for p in POINTS])
def test_sigkill_then_resume(point: KillPoint, tmp_path: Path, url: str, reference: Any) -> None:
    """A run SIGKILLed at this point resumes to the uncrashed result, each effect once."""
    with workspace(tmp_path, url, PHALANX_LEASE_TTL=str(LEASE_TTL)) as ws:
        scenario = Scenario(ws)
        driver = scenario.start(point.store, point.clock)
        code = scenario.drive(driver, kill_when_waiting=point.when_waiting)
        assert code == -signal.SIGKILL, f"never reached {point.id}:\n{driver.describe()}"

        crashed = ws.peek(RUN_ID)
        assert crashed, "the run must exist once RunStarted is journaled"
        if point.died_after is not None:
            held = point.held or point.twice
            allowed = {point.died_after} | ({f"StepStarted:{held}"} if held else set())
            assert describe(crashed[-1]) in allowed, [describe(e) for e in crashed]
        # A step may run twice if the journal shows it started (a long step) or if
        # it ran with its start held for a commit that never came (`twice`).
        flying = in_flight(crashed)
        assert len(flying) <= 1, flying
        if point.twice is not None:
            assert flying <= {point.twice}
            flying |= {point.twice}

        args = ["resume", RUN_ID, "--json", "--lease-ttl", str(LEASE_TTL)]
        resumer = ws.spawn_cli(*args, *(["--force"] if point.force else []), label="resume")
        assert scenario.drive(resumer) == 0, resumer.describe()
        outcome = json.loads(resumer.stdout)
        assert outcome["status"] == "completed"
        assert outcome["result"] == reference

        events = ws.events(RUN_ID)
        types = [e["type"] for e in events]
        assert types.count("RunStarted") == 1
        assert types.count("RunCompleted") == 1 and types[-1] == "RunCompleted"
        completed = [e["data"]["name"] for e in events if e["type"] == "StepCompleted"]
        assert sorted(completed) == sorted(PIPELINE_STEPS), "each step completes exactly once"
        if "RunCompleted" not in (e["type"] for e in crashed):
            assert events[-1]["epoch"] > crashed[-1]["epoch"], "the resumer writes at a new epoch"

        keys = scenario.ledger_keys()
        journaled = {
            e["data"]["name"]: e["data"]["key"] for e in events if e["type"] == "StepStarted"
        }
        for step in PIPELINE_STEPS:
            performed = keys[step]
            assert set(performed) == {journaled[step]}, f"{step}: one idempotency key"
            if step in flying:
                assert 1 <= len(performed) <= 2, f"{step} was in flight: {performed}"
            else:
                assert len(performed) == 1, f"{step} performed {len(performed)} times"
        if point.twice is not None:
            assert len(keys[point.twice]) == 2, "the unjournaled effect runs again on resume"
