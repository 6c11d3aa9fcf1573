"""A saga's state, folded from its events alone: the same fold for both styles.

An orchestrated saga journals in its run's stream; a choreographed one in the stream
of the run that started it, written by its participants. Either way every event
carries the saga's id (`saga_id`, in `data` or in a step's `tags`), and this fold turns
them into one `SagaView`: what `phalanx show`, the demo and the participants read.

The events (beside the steps' own `StepStarted` / `StepCompleted` / `StepFailed`,
whose `data.name` is the step's name), each with `data.saga_id`:

- `SagaStarted`: the declaration (`steps` with their compensations, dependencies and
  recovery; `compensation_order`; `on_compensation_failure`); `data.name` is the saga's.
- `SagaRecovering`: forward recovery (`step` failed, `rerun` runs again, `round`).
- `SagaCompensating`: the saga rolls back (`step` that failed, `error`, `reason`).
- `CompensationStarted` / `CompensationCompleted` / `CompensationFailed`: `data.name`
  is the compensated step's; a failed one carries `dead_letter_id` and the saga waits
  for a person; a completed one after that carries `resolved_by`.
- `CompensationAbandoned`: a person discarded a failed compensation's entry; the
  step stays undone and the saga ends `failed`.
- `SagaEnded`: `status` (`completed`, `compensated` or `failed`), `steps`,
  `compensations`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from ..journal import Event

SagaStatus = Literal["running", "completed", "compensating", "compensated", "waiting", "failed"]
StepStatus = Literal["not_run", "running", "completed", "failed", "compensated"]

#: Saga events other than the steps' own, in the order a saga can journal them.
SAGA_EVENTS = frozenset(
    {
        "SagaStarted",
        "SagaRecovering",
        "SagaCompensating",
        "CompensationStarted",
        "CompensationCompleted",
        "CompensationFailed",
        "CompensationAbandoned",
        "SagaEnded",
    }
)
_STEP_EVENTS = frozenset({"StepStarted", "StepCompleted", "StepFailed"})


def saga_id_of(event: Event) -> str | None:
    """The saga an event belongs to, if any (in its data, or a step's tags)."""
    data = event.data
    found = data.get("saga_id")
    if found is None and event.type in _STEP_EVENTS:
        tags = data.get("tags")
        found = tags.get("saga_id") if isinstance(tags, dict) else None
    return found if isinstance(found, str) else None


@dataclass
class SagaView:
    """One saga as its events tell it; `apply` folds one more event."""

    saga_id: str
    name: str = ""
    style: str = "orchestrated"
    status: SagaStatus = "running"
    steps: dict[str, StepStatus] = field(default_factory=dict)
    compensations: list[str] = field(default_factory=list)
    #: Dead-letter entries of failed compensations a person has not acted on yet.
    waiting_on: dict[str, str] = field(default_factory=dict)
    failed_step: str | None = None
    error: Any = None
    rounds: int = 0

    def apply(self, event: Event) -> None:
        """Fold one event of this saga."""
        data = event.data
        kind = event.type
        name = str(data.get("name", ""))
        if kind == "SagaStarted":
            self.name = name
            self.style = str(data.get("style", "orchestrated"))
            for step in data.get("steps", []):
                self.steps.setdefault(str(step["name"]), "not_run")
        elif kind == "StepStarted":
            self.steps[name] = "running"
        elif kind == "StepCompleted":
            self.steps[name] = "completed"
        elif kind == "StepFailed" and data.get("retry_at") is None:
            self.steps[name] = "failed"
        elif kind == "SagaRecovering":
            self.rounds += 1
        elif kind == "SagaCompensating":
            self.status = "compensating"
            self.failed_step = data.get("step")
            self.error = data.get("error")
        elif kind == "CompensationCompleted":
            self.steps[name] = "compensated"
            self.compensations.append(name)
            self.waiting_on.pop(name, None)
            self._settle()
        elif kind == "CompensationFailed":
            if data.get("dead_letter_id"):
                self.waiting_on[name] = str(data["dead_letter_id"])
            self._settle()
        elif kind == "CompensationAbandoned":
            self.waiting_on.pop(name, None)
            self._settle()
        elif kind == "SagaEnded":
            self.status = data["status"]

    def _settle(self) -> None:
        if self.status not in ("completed", "compensated", "failed"):
            self.status = "waiting" if self.waiting_on else "compensating"

    def to_json(self) -> dict[str, Any]:
        """The view as `phalanx show --json` prints it."""
        return {
            "saga_id": self.saga_id,
            "name": self.name,
            "style": self.style,
            "status": self.status,
            "steps": dict(self.steps),
            "compensations": list(self.compensations),
            "waiting_on": dict(self.waiting_on),
            "failed_step": self.failed_step,
            "error": self.error,
            "recovery_rounds": self.rounds,
        }


def saga_views(events: Iterable[Event]) -> list[SagaView]:
    """Every saga the events tell of, in the order they started."""
    views: dict[str, SagaView] = {}
    # A failed attempt's StepFailed carries no tags: it belongs where its op started.
    step_ops: dict[tuple[str, Any], str] = {}
    for event in events:
        if event.type not in SAGA_EVENTS and event.type not in _STEP_EVENTS:
            continue
        saga_id = saga_id_of(event)
        where = (event.stream_id, event.data.get("op"))
        if saga_id is None and event.type == "StepFailed":
            saga_id = step_ops.get(where)
        if saga_id is None:
            continue
        if event.type == "StepStarted":
            step_ops[where] = saga_id
        view = views.get(saga_id)
        if view is None:
            if event.type != "SagaStarted":
                continue  # a stray event of a saga whose start is not in these events
            view = views[saga_id] = SagaView(saga_id)
        view.apply(event)
    return list(views.values())
