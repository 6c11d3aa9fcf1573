"""Deterministic simulation: a workflow through many seeded fault schedules, on virtual time.

Each seed is one world (see `_sim_world`): a `SimulatedLoop` whose scheduler, clock,
ids and faults all come from the seed, an in-memory journal, and the processes that
run the workflow on it, crash, and resume it from the journal as a new process
would. Every seed runs twice and the two traces are compared, so nondeterminism that
escaped the seams is caught (as madsim does); then the checks of `_sim_checks` run.

Example::

    report = simulate(research, {"question": "why?"}, seeds=200)
    assert report.ok, report.failures
    again = simulate(research, {"question": "why?"}, seed=report.failures[0].seed)

A seed is replayed exactly within one Python process, and across processes when
`PYTHONHASHSEED` is the same (`phalanx simulate` pins it to 0), since set iteration
order over strings depends on it. Known limit: module-level state of the workflow's
own code survives a simulated crash (a real new process would start afresh).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .._errors import (
    FencedError,
    NonDeterminismError,
    SimulationStuckError,
    StoreUnavailableError,
)
from .._simloop import SimulatedLoop, shutdown
from ..durable import RunHistory, RunOutcome, Runtime
from ..journal import Event, MemoryEventStore
from ._sim_checks import (
    Invariant,
    deadline_passed,
    declared_invariants,
    digest,
    first_difference,
    internal_errors,
    journal_problems,
    masked,
    orphan_runs,
    ran_concurrently,
    run_user_invariants,
    trace_line,
)
from ._sim_world import FaultPlan, ProcessCrash, SimProcess, World

#: The run id every simulated run gets (child runs derive theirs from it).
RUN_ID = "sim"
#: Lease TTL of simulated runners, virtual seconds.
LEASE_TTL = 15.0
#: How often simulated runners poll their inbox, virtual seconds.
INBOX_POLL = 1.0
#: A run neither ended nor parked after this much virtual time hangs.
MAX_VIRTUAL_SECONDS = 900.0
#: Resumes after which a run that still has not ended counts as hanging.
MAX_RESTARTS = 12
#: Faults under which a correct workflow's result equals its fault-free result.
RESULT_PRESERVING = frozenset({"crash", "lost_ack", "duplicate"})


@dataclass(frozen=True)
class SimulationFailure:
    """One seed that broke a check: its `kind` (see `_sim_checks`) and what happened."""

    seed: int
    kind: str
    message: str

    def to_json(self) -> dict[str, Any]:
        """The `phalanx simulate --json` form."""
        return {"seed": self.seed, "kind": self.kind, "message": self.message}


@dataclass
class WorldRun:
    """What one run of one seed's world left: its trace, its faults, its failures."""

    seed: int
    trace: list[str]
    faults: Counter[str]
    status: str | None
    result: Any
    calls: int
    duration: float
    failures: list[SimulationFailure] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        """The trace's digest: equal on every replay of the seed."""
        return digest(self.trace)


@dataclass
class SimulationReport:
    """The outcome of `simulate`: the contract of `phalanx simulate --json`."""

    seeds_run: int
    faults_injected: dict[str, int]
    failures: list[SimulationFailure]
    #: With a single seed: its trace's digest, and the trace itself.
    trace_sha256: str | None = None
    trace: list[str] | None = None

    @property
    def ok(self) -> bool:
        """Whether no seed failed."""
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        """The `--json` object."""
        out: dict[str, Any] = {
            "seeds_run": self.seeds_run,
            "faults_injected": self.faults_injected,
            "failures": [f.to_json() for f in self.failures],
        }
        if self.trace_sha256 is not None:
            out["trace_sha256"] = self.trace_sha256
        return out


def simulate(
    workflow: Callable[..., Any],
    inputs: Mapping[str, Any] | None = None,
    *,
    seeds: int = 100,
    seed: int | None = None,
    invariants: Sequence[Invariant] = (),
    stop_after: int | None = None,
) -> SimulationReport:
    """Run `workflow` under `seeds` seeds (0 to seeds-1), or the one `seed`, and check each.

    `invariants` add to those declared with `testing.invariant`; with `stop_after`,
    the search stops once that many seeds failed (`seeds_run` says how far it got).
    Must be called with no event loop running (each seed gets its own simulated loop).
    """
    with _quiet():
        return _simulate(workflow, dict(inputs or {}), seeds, seed, invariants, stop_after)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the runtime's logs: thousands of simulated outages are no news."""
    logger = logging.getLogger("phalanx")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _simulate(
    workflow: Callable[..., Any],
    inputs: dict[str, Any],
    seeds: int,
    seed: int | None,
    invariants: Sequence[Invariant],
    stop_after: int | None,
) -> SimulationReport:
    checks = [*declared_invariants(workflow), *invariants]
    baseline = run_world(workflow, inputs, 0, FaultPlan(), checks=checks, baseline=None)
    chosen = [seed] if seed is not None else list(range(seeds))
    faults: Counter[str] = Counter()
    failures: list[SimulationFailure] = []
    last: WorldRun | None = None
    ran = 0
    for number in chosen:
        if stop_after is not None and len({f.seed for f in failures}) >= stop_after:
            break
        ran += 1
        plan = FaultPlan.draw(
            random.Random(f"plan:{number}"),
            calls=baseline.calls,
            duration=baseline.duration,
            lease_ttl=LEASE_TTL,
        )
        first = run_world(workflow, inputs, number, plan, checks=checks, baseline=baseline)
        second = run_world(workflow, inputs, number, plan, checks=None, baseline=baseline)
        faults.update(first.faults)
        failures.extend(first.failures)
        if first.trace != second.trace and not any(
            f.kind == "nondeterminism" for f in first.failures
        ):
            failures.append(
                SimulationFailure(
                    seed=number,
                    kind="nondeterminism",
                    message="the seed ran twice and the traces differ, so something escaped "
                    f"the seams (stdlib random, wall clock, threads, state kept between "
                    f"runs): {first_difference(first.trace, second.trace)}",
                )
            )
        last = first
    for kind in ("crash",):
        faults.setdefault(kind, 0)
    report = SimulationReport(ran, dict(sorted(faults.items())), failures)
    if seed is not None and last is not None:
        report.trace_sha256, report.trace = last.sha256, last.trace
    return report


def run_world(
    workflow: Callable[..., Any],
    inputs: dict[str, Any],
    seed: int,
    plan: FaultPlan,
    *,
    checks: Sequence[Invariant] | None,
    baseline: WorldRun | None,
) -> WorldRun:
    """Run one seed's world once, to the end, and check it (`checks=None`: trace only)."""
    loop = SimulatedLoop(seed)
    world = World(loop, plan, seed)
    loop.world = world
    driver = _Driver(world, workflow, inputs)
    failures: list[SimulationFailure] = []
    try:
        task = loop.create_task(driver.drive())
        try:
            loop.run_until_complete(task)
        except RuntimeError:
            if not loop.stuck:
                raise
            failures.append(
                SimulationFailure(
                    seed=seed,
                    kind="hang",
                    message=str(SimulationStuckError(virtual_time=loop.time())),
                )
            )
        orphans = [t for t in asyncio.all_tasks(loop) if not t.done()]
        if orphans and not failures:
            names = ", ".join(sorted({_task_name(t) for t in orphans}))
            failures.append(
                SimulationFailure(
                    seed=seed,
                    kind="orphan_task",
                    message=f"{len(orphans)} task(s) still pending after every runner "
                    f"ended: {names}",
                )
            )
    finally:
        shutdown(loop)
    events = _all_events(world)
    history = RunHistory.fold(RUN_ID, [e for e in events if e.stream_id == f"run:{RUN_ID}"])
    status = history.status if history.exists else None
    failures += [SimulationFailure(seed=seed, kind=k, message=m) for k, m in driver.failures]
    if checks is not None:
        failures += _check(seed, world, driver, events, history, checks, baseline)
    with world.database.lock:
        trace = [trace_line(row) for row in world.database.rows]
    trace += [f'["fault",{t},"{kind}",{_quote(detail)}]' for t, kind, detail in world.log]
    trace.append(f'["end",{_quote(str(status))}]')
    return WorldRun(
        seed=seed,
        trace=trace,
        faults=world.faults,
        status=status,
        result=history.result,
        calls=world.calls,
        duration=driver.ended_at,
        failures=failures,
    )


def _check(
    seed: int,
    world: World,
    driver: _Driver,
    events: list[Event],
    history: RunHistory,
    checks: Sequence[Invariant],
    baseline: WorldRun | None,
) -> list[SimulationFailure]:
    found = [("journal", p) for p in journal_problems(events)]
    found += [
        ("orphan_run", f"{r} still running after {RUN_ID} ended")
        for r in orphan_runs(events, RUN_ID)
    ]
    found += [("internal_error", m) for m in internal_errors(events)]
    # An outage may stop a finished runner's release (best effort): its lease expires.
    finished = {
        p.name for p in driver.processes if p.finished and "unavailable" not in world.faults
    }
    for stream, lease in sorted(world.database.leases.items()):
        if lease.owner in finished and lease.expires_at > driver.ended_wall:
            found.append(
                ("held_lease", f"{lease.owner} still holds {stream} (epoch {lease.epoch})")
            )
    if (
        baseline is not None
        and history.terminal
        and baseline.status is not None
        and set(world.faults) <= RESULT_PRESERVING
        and _changed(history, baseline, events)
    ):
        found.append(
            (
                "result_changed",
                f"with only {', '.join(sorted(world.faults)) or 'no'} faults the run ended "
                f"{history.status} with {_short(history.result or history.error)}; "
                f"without faults it ended {baseline.status} with {_short(baseline.result)}",
            )
        )
    found += [("invariant", m) for m in run_user_invariants(checks, events)]
    return [SimulationFailure(seed=seed, kind=k, message=m) for k, m in found]


def _changed(history: RunHistory, baseline: WorldRun, events: Sequence[Event]) -> bool:
    """Whether the result moved where faults that only cost time must not move it.

    The status must be the fault-free one. The result must be too, unless a deadline
    passed in this run: recovering from a crash takes time (the work in flight at the
    crash is done again), and a deadline that time made pass legitimately changes the
    result (a branch `timed_out`, a partial answer), visibly, in the journal. Nor when
    the run recorded values (`ctx.random()`, `ctx.now()`...): one drawn again after a
    crash that came before it was journaled may rightly differ. Nor when it ran things
    concurrently (child runs, overlapping steps): a crash changes the interleaving, and
    which of two steps went first may rightly show in the result.
    """
    if history.status != baseline.status:
        return True
    if any(deadline_passed(e) or e.type == "ValueRecorded" for e in events):
        return False
    if ran_concurrently(events, RUN_ID):
        return False
    return bool(masked(history.result) != masked(baseline.result))


class _Driver:
    """Starts the first process, kills and restarts processes as the plan says."""

    def __init__(self, world: World, workflow: Callable[..., Any], inputs: dict[str, Any]):
        self.world = world
        self.workflow = workflow
        self.inputs = inputs
        self.processes: list[SimProcess] = []
        self.failures: list[tuple[str, str]] = []
        self.ended_at = 0.0
        self.ended_wall = 0.0
        #: Processes that ended because the store was down (the supervisor backs off).
        self.outages = 0

    def spawn(self, action: Literal["run", "resume"], force: bool) -> SimProcess:
        process = SimProcess(self.world, f"p{len(self.processes) + 1}")
        self.processes.append(process)
        process.task = self.world.loop.create_task(self._main(process, action, force))
        return process

    async def _main(self, process: SimProcess, action: str, force: bool) -> RunOutcome:
        runtime = Runtime(
            process.store, owner=process.name, lease_ttl=LEASE_TTL, inbox_poll=INBOX_POLL
        )
        await process.store.open()
        if action == "run":
            return await runtime.run(self.workflow, self.inputs, run_id=RUN_ID)
        return await runtime.resume(RUN_ID, force=force, workflow=self.workflow)

    def _race(self, force: bool) -> None:
        if f"run:{RUN_ID}" not in self.world.database.streams:
            return  # not started yet: nothing to race for
        self.world.note("race", f"a second runner resumes the run (force={force})")
        self.spawn("resume", force)

    def _jump(self, seconds: float) -> None:
        self.world.note("clock_jump", f"+{seconds:.3f}s")
        self.world.loop.jump(seconds)

    async def drive(self) -> None:
        loop, plan = self.world.loop, self.world.plan
        timers = []
        if plan.race_at is not None:
            timers.append(loop.call_at(plan.race_at, self._race, plan.race_force))
        if plan.jump_at is not None:
            timers.append(loop.call_at(plan.jump_at, self._jump, plan.jump_by))
        try:
            async with asyncio.timeout(MAX_VIRTUAL_SECONDS):
                await self._supervise()
        except TimeoutError:
            await self._stop_all()
            status = await self._status()
            if status != "waiting":
                self.failures.append(
                    (
                        "hang",
                        f"the run is still {status} after {MAX_VIRTUAL_SECONDS:g} virtual "
                        "seconds: put a deadline around what may hang",
                    )
                )
        finally:
            for timer in timers:
                timer.cancel()
            self.ended_at = loop.time()
            self.ended_wall = loop.wall()

    async def _supervise(self) -> None:
        self.spawn("run", False)
        restarts = 0
        while True:
            live = [p.task for p in self.processes if p.task is not None and not p.task.done()]
            if live:
                await asyncio.wait(live, return_when=asyncio.FIRST_COMPLETED)
                for process in self.processes:
                    self._judge(process)
                if self.failures:
                    await self._stop_all()
                    return
                continue
            status = await self._status()
            if status in ("completed", "failed", "cancelled", "waiting"):
                return
            restarts += 1
            if restarts > MAX_RESTARTS:
                self.failures.append(
                    ("hang", f"the run is still {status} after {MAX_RESTARTS} resumes")
                )
                return
            # As a supervisor would: at once (or the plan's delay) after a crash, backing
            # off after an outage, so a store that is down for a while is waited out.
            delay = self.world.plan.restart_delay
            if self.outages:
                delay += min(2.0 ** (self.outages - 1), 30.0)
            if status is None:
                # Died before the run was written at all: start it again, as its user
                # would, once a lease the dead process may have taken has expired.
                await asyncio.sleep(delay + LEASE_TTL)
                self.spawn("run", False)
                continue
            await asyncio.sleep(delay)
            self.spawn("resume", True)

    def _judge(self, process: SimProcess) -> None:
        task = process.task
        if task is None or not task.done() or process.judged:
            return
        process.judged = True
        error = None if task.cancelled() else task.exception()
        if error is None:
            process.finished = not task.cancelled() and not process.dead
            return
        if process.dead or _holds(error, ProcessCrash):
            return
        if _holds(error, NonDeterminismError):
            self.failures.append(("nondeterminism", _first(error, NonDeterminismError)))
        elif _only(error, (StoreUnavailableError,)):
            self.outages += 1
        elif not _only(error, (StoreUnavailableError, FencedError)):
            # Fenced out (a race, a clock jump), or the store was down when it needed it
            # (`LeaseLostError` included): a typed end, and the run stays resumable.
            self.failures.append(
                ("escaped_exception", f"{process.name} ended with {type(error).__name__}: {error}")
            )

    async def _stop_all(self) -> None:
        for process in self.processes:
            if process.task is not None and not process.task.done():
                process.dead = True
                process.task.cancel()
        tasks = [p.task for p in self.processes if p.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _status(self) -> str | None:
        events = await _read_run(self.world)
        history = RunHistory.fold(RUN_ID, events)
        return history.status if history.exists else None


async def _read_run(world: World) -> list[Event]:
    store = MemoryEventStore(world.database)
    await store.open()
    try:
        return await store.read_stream(f"run:{RUN_ID}")
    finally:
        await store.close()


def _all_events(world: World) -> list[Event]:
    return world.database.events()


def _holds(error: BaseException, kind: type[BaseException]) -> bool:
    if isinstance(error, kind):
        return True
    if isinstance(error, BaseExceptionGroup):
        return any(_holds(e, kind) for e in error.exceptions)
    return False


def _only(error: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    if isinstance(error, BaseExceptionGroup):
        return all(_only(e, kinds) for e in error.exceptions)
    return isinstance(error, kinds)


def _first(error: BaseException, kind: type[BaseException]) -> str:
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            if _holds(inner, kind):
                return _first(inner, kind)
    return str(error)


def _task_name(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    return getattr(coro, "__qualname__", task.get_name())


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 300 else f"{text[:300]}..."


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)
