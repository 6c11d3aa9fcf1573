"""Lifecycle, hooks, events, configuration errors, errors that pickle, and the public surface."""

from __future__ import annotations

import asyncio
import pickle
from typing import Any

import pytest

import phalanx
import phalanx.actors
from phalanx import (
    ActorConfigError,
    ActorNameTakenError,
    ActorSpawnError,
    ActorStoppedError,
    AskTimeoutError,
    MailboxFullError,
    SupervisorEscalationError,
)
from phalanx.actors import (
    Actor,
    ActorEvent,
    Envelope,
    MailboxPolicy,
    SupervisionPolicy,
    open_actor_system,
)
from phalanx.testing import SeededEntropy
from tests.actors.helpers import Echo, EventLog, Worker


async def test_an_actor_lives_through_started_then_stopped() -> None:
    """A spawned actor reports started, and stopped with the reason when stopped."""
    log = EventLog()
    async with open_actor_system(on_event=log) as system:
        ref = await system.spawn(Echo, name="echo")
        assert ref.alive and ref.incarnation == 1 and ref.name == "echo" and ref.path == "/echo"
        assert system.live_actor_count() == 1
        await ref.stop()
    assert log.kinds("/echo") == ["started", "stopped"]
    assert log.find("stopped", "/echo")[0].reason == "stopped"
    assert "stopped: stopped" in repr(ref)


async def test_a_sibling_name_is_unique_while_alive() -> None:
    """Spawning a live sibling's name fails; after it stops the name can be reused."""
    async with open_actor_system() as system:
        first = await system.spawn(Echo, name="same")
        with pytest.raises(ActorNameTakenError) as caught:
            await system.spawn(Echo, name="same")
        assert caught.value.path == "/same"
        await first.stop()
        again = await system.spawn(Echo, name="same")
        assert again.alive and again is not first


async def test_names_default_to_the_factory_name_and_a_number() -> None:
    """Without a name, an actor is named after its factory."""
    async with open_actor_system() as system:
        ref = await system.spawn(Echo)
        assert ref.name.startswith("echo-")


async def test_message_ids_come_from_the_entropy_seam() -> None:
    """The same seed gives the same message ids, so a simulation is reproducible."""
    ids: list[list[str]] = []

    class Hooks:
        def __init__(self) -> None:
            self.seen: list[str] = []

        async def sent(self, target: Any, envelope: Envelope) -> None:
            self.seen.append(envelope.message_id)

        async def received(self, target: Any, envelope: Envelope) -> None:
            pass

        async def processed(self, target: Any, envelope: Envelope, error: Any) -> None:
            pass

    for _ in range(2):
        hooks = Hooks()

        async with open_actor_system(entropy=SeededEntropy(7), hooks=hooks) as system:
            ref = await system.spawn(Echo, name="echo")
            await ref.tell(1)
            await ref.ask(2, timeout=5)
        ids.append(hooks.seen)
    assert ids[0] == ids[1]
    assert len(set(ids[0])) == 2


async def test_message_hooks_see_sent_received_processed_in_order() -> None:
    """The hooks a durable layer will use are awaited around every message."""
    calls: list[tuple[str, str, Any]] = []

    class Hooks:
        async def sent(self, target: Any, envelope: Envelope) -> None:
            calls.append(("sent", target.path, envelope.message))

        async def received(self, target: Any, envelope: Envelope) -> None:
            calls.append(("received", target.path, envelope.message))

        async def processed(self, target: Any, envelope: Envelope, error: Any) -> None:
            calls.append(("processed", target.path, type(error).__name__ if error else None))

    async with open_actor_system(hooks=Hooks()) as system:
        ref = await system.spawn(Worker, name="w")
        await ref.ask("hello", timeout=5)
        with pytest.raises(ValueError):
            await ref.ask("fail", timeout=5)
    assert calls == [
        ("sent", "/w", "hello"),
        ("received", "/w", "hello"),
        ("processed", "/w", None),
        ("sent", "/w", "fail"),
        ("received", "/w", "fail"),
        ("processed", "/w", "ValueError"),
    ]


async def test_a_failing_event_hook_does_not_break_the_runtime() -> None:
    """An on_event callback that raises is logged and ignored."""

    def broken(event: ActorEvent) -> None:
        raise RuntimeError("observer bug")

    async with open_actor_system(on_event=broken) as system:
        ref = await system.spawn(Echo, name="echo")
        assert await ref.ask("still works", timeout=5) == "still works"


async def test_events_are_plain_data() -> None:
    """An event turns into a dict of JSON-friendly fields, ready for a journal."""
    log = EventLog()
    async with open_actor_system(on_event=log) as system:
        ref = await system.spawn(Worker, name="w")
        with pytest.raises(ValueError):
            await ref.ask("fail", timeout=5)
        failed = await log.wait_for("failed", "/w")
    data = failed.to_dict()
    assert data["kind"] == "failed"
    assert data["error_type"] == "ValueError"
    assert data["error_message"] == "asked to fail"
    assert data["incarnation"] == 1


async def test_spawning_under_a_stopped_parent_is_refused() -> None:
    """A stopped actor cannot be given children (they could never be stopped with it)."""
    async with open_actor_system() as system:
        parent = await system.spawn(Echo, name="parent")
        child = await system.spawn(Echo, name="child", parent=parent)
        assert child.path == "/parent/child"
        await parent.stop()
        assert not child.alive
        with pytest.raises(ActorSpawnError, match="stopping or stopped"):
            await system.spawn(Echo, name="late", parent=parent)


async def test_spawning_outside_an_open_system_is_refused() -> None:
    """spawn before entering or after leaving the block raises ActorSpawnError."""
    system = open_actor_system()
    with pytest.raises(ActorSpawnError, match="not open"):
        await system.spawn(Echo, name="early")
    async with system:
        pass
    with pytest.raises(ActorSpawnError, match="closed"):
        await system.spawn(Echo, name="late")


# Some settings below are deliberately ill-typed: the point is the runtime check.
@pytest.mark.parametrize(
    ("make", "setting"),
    [
        (lambda: MailboxPolicy(capacity=0), "MailboxPolicy.capacity"),
        (lambda: MailboxPolicy(when_full="drop"), "MailboxPolicy.when_full"),  # type: ignore[arg-type]
        (lambda: MailboxPolicy(dedup_window=-1), "MailboxPolicy.dedup_window"),
        (lambda: SupervisionPolicy(strategy="all_for_one"), "SupervisionPolicy.strategy"),  # type: ignore[arg-type]
        (lambda: SupervisionPolicy(max_restarts=-1), "SupervisionPolicy.max_restarts"),
        (lambda: SupervisionPolicy(within=0), "SupervisionPolicy.within"),
        (lambda: open_actor_system(timer_resolution=0), "timer_resolution"),
    ],
)
def test_bad_settings_are_configuration_errors(make: Any, setting: str) -> None:
    """Every out-of-range setting raises ActorConfigError naming the setting."""
    with pytest.raises(ActorConfigError) as caught:
        make()
    assert caught.value.setting == setting
    assert isinstance(caught.value, phalanx.UserError)


async def test_bad_spawn_arguments_are_configuration_errors() -> None:
    """Names with '/', unknown restart types and non-positive deadlines are refused."""
    async with open_actor_system() as system:
        with pytest.raises(ActorConfigError, match="name"):
            await system.spawn(Echo, name="a/b")
        with pytest.raises(ActorConfigError, match="restart"):
            await system.spawn(Echo, name="x", restart="sometimes")  # type: ignore[arg-type]  # on purpose
        with pytest.raises(ActorConfigError, match="deadline"):
            await system.spawn(Echo, name="x", deadline=0)
        assert system.live_actor_count() == 0


async def test_an_actor_without_receive_says_what_is_missing() -> None:
    """Forgetting to define receive fails the message with a clear NotImplementedError."""
    async with open_actor_system() as system:
        ref = await system.spawn(Actor, name="empty")
        with pytest.raises(NotImplementedError, match="must define"):
            await ref.ask("anything", timeout=5)


@pytest.mark.parametrize(
    "error",
    [
        MailboxFullError(path="/a", capacity=3, message_id="m"),
        AskTimeoutError(path="/a", timeout=1.5, message_id="m"),
        ActorStoppedError(path="/a", reason="deadline"),
        ActorNameTakenError(path="/a"),
        SupervisorEscalationError(
            supervisor="/", child="/a", restarts=3, within=5, error_type="E", error_message="m"
        ),
    ],
)
def test_actor_errors_survive_pickling(error: phalanx.PhalanxError) -> None:
    """Errors round-trip through pickle with their fields, so they can be journaled."""
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.__dict__ == error.__dict__


def test_the_public_surface_is_pinned() -> None:
    """phalanx.actors exports exactly its small surface, and phalanx re-exports the core."""
    exported = {name for name in dir(phalanx.actors) if not name.startswith("_")}
    assert exported == {
        "Actor",
        "ActorEvent",
        "ActorRef",
        "ActorSystem",
        "Deadline",
        "DeadlineScope",
        "Envelope",
        "EventHook",
        "EventKind",
        "HeartbeatPolicy",
        "MailboxPolicy",
        "MessageHooks",
        "Restart",
        "Strategy",
        "SupervisionPolicy",
        "current_deadline",
        "fail_after",
        "move_on_after",
        "open_actor_system",
    }
    for name in ("Actor", "ActorRef", "open_actor_system", "fail_after", "SupervisionPolicy"):
        assert getattr(phalanx, name) is getattr(phalanx.actors, name)


async def test_the_class_docstring_example_runs() -> None:
    """The Counter example in Actor's docstring works as written."""

    class Counter(Actor):
        def __init__(self) -> None:
            self.total = 0

        async def receive(self, message: int) -> int:
            self.total += message
            return self.total

    async with open_actor_system() as system:
        counter = await system.spawn(Counter, name="counter")
        await counter.tell(2)
        assert await counter.ask(3, timeout=1.0) == 5
    await asyncio.sleep(0)
