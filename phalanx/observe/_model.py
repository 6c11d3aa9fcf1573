"""The one model of "what happened" in a run: every picture and page renders from it.

`build_run_model(runtime, run_id)` reads a run's journal and its child runs' journals
(the branches of its fan-outs, its child workflows, recursively) and lays them out as
lanes: the run first, then each child run under its parent, each named the way its
parent knows it (a fan-out's branch name, e.g. `web_search`) and carrying its outcome
as its parent saw it (a branch cut off at the deadline is `timed_out`, though its own
run says `cancelled`). `phalanx timeline`, `phalanx diagram`, the dashboard and
`phalanx show` all read this, so they cannot disagree about a run.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .._errors import UnknownRunError
from ..durable.lowlevel import run_stream
from ._runview import FanOutView, Mark, RunView, view_run

if TYPE_CHECKING:
    from ..durable import RunHistory, RunSummary, Runtime

LaneRole = Literal["run", "branch", "child"]

#: At most this many runs are read into one model (a guard against a runaway tree).
MAX_RUNS = 1000


def short_workflow(workflow: str) -> str:
    """`pkg.module:research` → `research`: how a workflow is named in a picture."""
    return workflow.rpartition(":")[2] or workflow or "run"


@dataclass
class Lane:
    """One run in the model: the root run, a fan-out branch or a child run."""

    name: str
    role: LaneRole
    depth: int
    outcome: str
    view: RunView
    parent: str | None = None

    @property
    def run_id(self) -> str:
        """The run this lane shows."""
        return self.view.run_id

    @property
    def stalled(self) -> bool:
        """Whether the parent saw this branch go silent."""
        return any(m.kind == "stall" and m.branch == self.name for m in self._parent_marks)

    _parent_marks: list[Mark] = field(default_factory=list, repr=False)


@dataclass
class RunModel:
    """A run and its child runs as lanes, with what was decided about them."""

    lanes: list[Lane]

    @property
    def root(self) -> RunView:
        """The run the model was built for."""
        return self.lanes[0].view

    @property
    def run_id(self) -> str:
        """The root run's id."""
        return self.root.run_id

    @property
    def status(self) -> str:
        """The root run's status."""
        return self.root.status

    @property
    def start(self) -> float:
        """When the first run started (the time axis's origin)."""
        return min((lane.view.start for lane in self.lanes if lane.view.start), default=0.0)

    @property
    def end(self) -> float:
        """The latest instant anything in the model happened."""
        latest = self.start
        for lane in self.lanes:
            view = lane.view
            for value in (view.end, *(s.end or s.start for s in view.spans)):
                if value is not None and value > latest:
                    latest = value
            for mark in view.marks:
                if mark.kind != "deadline":  # a deadline never reached does not stretch time
                    latest = max(latest, mark.at)
        if self.root.end is None:  # still running: a deadline ahead is part of the picture
            for lane in self.lanes:
                for mark in lane.view.marks:
                    latest = max(latest, mark.at)
        return latest

    @property
    def fan_outs(self) -> list[tuple[Lane, FanOutView]]:
        """Every fan-out in the tree, with the lane of the run that made it."""
        return [(lane, fan) for lane in self.lanes for fan in lane.view.fan_outs]

    @property
    def event_count(self) -> int:
        """Events read from every run's journal."""
        return sum(lane.view.event_count for lane in self.lanes)

    def lane(self, run_id: str) -> Lane | None:
        """The lane of run `run_id`, if it is in the model."""
        return next((lane for lane in self.lanes if lane.run_id == run_id), None)

    def outcomes(self) -> dict[str, str]:
        """Lane name to outcome, for every lane below the root (`web_search: timed_out`)."""
        return {lane.name: lane.outcome for lane in self.lanes[1:]}

    def to_json(self) -> dict[str, Any]:
        """A stable summary: lanes with outcomes, fan-outs, decisions."""
        return {
            "run_id": self.run_id,
            "status": self.status,
            "lanes": [
                {
                    "name": lane.name,
                    "role": lane.role,
                    "run_id": lane.run_id,
                    "parent_run_id": lane.parent,
                    "outcome": lane.outcome,
                    "agents": lane.view.agents,
                    "tools": sorted(lane.view.tools),
                }
                for lane in self.lanes
            ],
            "fan_outs": [
                {
                    "run_id": lane.run_id,
                    "name": fan.name,
                    "policy": fan.policy,
                    "status": fan.status,
                    "decision": fan.decision,
                    "branches": {b.name: b.status for b in fan.branches.values()},
                }
                for lane, fan in self.fan_outs
            ],
        }


async def _children_index(runtime: Runtime) -> dict[str, list[RunSummary]]:
    """Parent run id to its child runs' summaries, from every run's status events."""
    index: dict[str, list[RunSummary]] = {}
    for summary in await runtime.runs():
        if summary.parent_run_id is not None:
            index.setdefault(summary.parent_run_id, []).append(summary)
    return index


class ViewCache:
    """Runs' views kept between reads, refreshed from the events appended since.

    A long-lived reader (the dashboard) asks for the same runs again and again: each
    ask costs one `stream_version` query, and a run that grew is brought up to date by
    reading only its new events. At most `size` runs are kept (least recently used
    first out).
    """

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._runs: OrderedDict[str, tuple[RunHistory, RunView]] = OrderedDict()

    def history(self, run_id: str) -> RunHistory | None:
        """The history of `run_id` as last read by `view` (None when not cached)."""
        cached = self._runs.get(run_id)
        return None if cached is None else cached[0]

    async def view(self, runtime: Runtime, run_id: str) -> RunView:
        """The view of `run_id` as the journal holds it now.

        Raises:
            UnknownRunError: no such run.
        """
        cached = self._runs.pop(run_id, None)
        stream = run_stream(run_id)
        if cached is None:
            history = await runtime.history(run_id)
        else:
            history, view = cached
            if await runtime.store.stream_version(stream) == history.version:
                self._runs[run_id] = cached
                return view
            for event in await runtime.store.read_stream(stream, from_seq=history.version + 1):
                history.apply(event)
        view = view_run(history)
        self._runs[run_id] = (history, view)
        while len(self._runs) > self.size:
            self._runs.popitem(last=False)
        return view


async def build_run_model(
    runtime: Runtime, run_id: str, *, deep: bool = True, cache: ViewCache | None = None
) -> RunModel:
    """Read run `run_id` and its child runs (recursively) into a `RunModel`.

    With `deep=False` only the run's own journal is read: its children are lanes with
    the outcome the run (or the run index) records, and no spans of their own. That is
    what a page listing the run needs, at a cost independent of the children's size;
    pictures read everything. A `cache` keeps the run's view between calls.

    Raises:
        UnknownRunError: no such run.
    """
    if cache is not None:
        root = await cache.view(runtime, run_id)
    else:
        root = view_run(await runtime.history(run_id))
    index = await _children_index(runtime)
    lanes = [Lane(short_workflow(root.workflow), "run", 0, root.status, root)]
    await _add_children(runtime, lanes[0], index, lanes, {run_id}, deep)
    return RunModel(lanes)


def _summary_view(summary: RunSummary) -> RunView:
    """A child run known only by its summary (`deep=False`): status and times, no spans."""
    terminal = summary.status in ("completed", "failed", "cancelled")
    return RunView(
        summary.run_id,
        summary.workflow,
        summary.status,
        summary.parent_run_id,
        summary.started_at,
        summary.updated_at if terminal else None,
        None,
        None,
    )


async def _add_children(
    runtime: Runtime,
    parent: Lane,
    index: dict[str, list[RunSummary]],
    lanes: list[Lane],
    seen: set[str],
    deep: bool,
) -> None:
    view = parent.view
    named = dict(view.children)
    known = {summary.run_id: summary for summary in index.get(view.run_id, ())}
    for child in known:
        named.setdefault(child, "")
    branches = {b.run_id: b for fan in view.fan_outs for b in fan.branches.values()}
    children: list[Lane] = []
    for child_id, name in named.items():
        if child_id in seen or len(seen) >= MAX_RUNS:
            continue
        seen.add(child_id)
        if deep:
            try:
                child_view = view_run(await runtime.history(child_id))
            except UnknownRunError:
                continue  # never started (the parent crashed first, or the fan-out ended)
        elif child_id in known:
            child_view = _summary_view(known[child_id])
        else:
            continue  # never started
        branch = branches.get(child_id)
        role: LaneRole = "branch" if branch is not None else "child"
        named_as = name or child_view.workflow
        label = short_workflow(named_as) if named_as else child_id
        outcome = branch.status if branch is not None and branch.status != "running" else None
        lane = Lane(
            label,
            role,
            parent.depth + 1,
            outcome or child_view.status,
            child_view,
            parent=view.run_id,
            _parent_marks=view.marks,
        )
        children.append(lane)
    children.sort(key=lambda lane: (lane.view.start or 0.0, lane.run_id))
    for lane in children:
        lanes.append(lane)
        if deep:
            await _add_children(runtime, lane, index, lanes, seen, deep)
