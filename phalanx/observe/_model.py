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

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .._errors import UnknownRunError
from ._runview import FanOutView, Mark, RunView, view_run

if TYPE_CHECKING:
    from ..durable import Runtime

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


async def _children_index(runtime: Runtime) -> dict[str, list[str]]:
    """Parent run id to its child runs' ids, from every run's `RunStarted`."""
    index: dict[str, list[str]] = {}
    for summary in await runtime.runs():
        if summary.parent_run_id is not None:
            index.setdefault(summary.parent_run_id, []).append(summary.run_id)
    return index


async def build_run_model(runtime: Runtime, run_id: str) -> RunModel:
    """Read run `run_id` and its child runs (recursively) into a `RunModel`.

    Raises:
        UnknownRunError: no such run.
    """
    root = view_run(await runtime.history(run_id))
    index = await _children_index(runtime)
    lanes = [Lane(short_workflow(root.workflow), "run", 0, root.status, root)]
    await _add_children(runtime, lanes[0], index, lanes, {run_id})
    return RunModel(lanes)


async def _add_children(
    runtime: Runtime,
    parent: Lane,
    index: dict[str, list[str]],
    lanes: list[Lane],
    seen: set[str],
) -> None:
    view = parent.view
    named = dict(view.children)
    for child in index.get(view.run_id, ()):
        named.setdefault(child, "")
    branches = {b.run_id: b for fan in view.fan_outs for b in fan.branches.values()}
    children: list[Lane] = []
    for child_id, name in named.items():
        if child_id in seen or len(seen) >= MAX_RUNS:
            continue
        seen.add(child_id)
        try:
            child_view = view_run(await runtime.history(child_id))
        except UnknownRunError:
            continue  # never started (the parent crashed first, or the fan-out ended)
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
        await _add_children(runtime, lane, index, lanes, seen)
