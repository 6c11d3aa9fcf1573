"""One trace across a SIGKILL: the resumed process continues the trace its journal recorded."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.observe.helpers import ROOT, journal, named, one, otel_env, phalanx_cli, store_url
from tests.observe.receiver import ReceivedSpan, start_receiver

PARENT = "tests.observe.workflows:crash_parent"
CHILD = "tests.observe.workflows:crash_child"


def first_runner_span(url: str, run_id: str) -> tuple[str, str]:
    """The trace and run span the first runner of `run_id` journaled."""
    event = next(e for e in journal(url, run_id) if e.type != "RunStarted")
    assert event.metadata.trace_id and event.metadata.span_id
    return event.metadata.trace_id, event.metadata.span_id


@pytest.mark.slow
def test_run_resumed_in_another_process_after_sigkill_continues_the_same_trace(
    tmp_path: Path,
) -> None:
    """Spans of the killed and the resuming process share one trace; nothing is traced twice."""
    ledger = tmp_path / "ledger.txt"
    ledger.touch()
    url = store_url(tmp_path)
    with start_receiver() as receiver:
        env = otel_env(tmp_path, receiver, OBSERVE_LEDGER=str(ledger))
        log = (tmp_path / "runner.log").open("w")
        runner = subprocess.Popen(
            [sys.executable, "-m", "phalanx.cli", "run", PARENT, "--run-id", "crash-1"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
        try:
            # Killed mid-step in the child, once what finished before has been exported.
            # (A minute: under a loaded CI the exporter process first has to start.)
            receiver.wait_for(
                lambda spans: bool(named(spans, "phalanx.step child-first")), timeout=60
            )
            deadline = time.monotonic() + 30
            while "child-blocked" not in ledger.read_text():
                assert runner.poll() is None, (tmp_path / "runner.log").read_text()
                assert time.monotonic() < deadline, "the child's second step never started"
                time.sleep(0.02)
            runner.send_signal(signal.SIGKILL)
        finally:
            if runner.poll() is None:  # failed before the kill: never leave it running
                runner.kill()
            runner.wait(timeout=10)
            log.close()
        assert runner.returncode == -signal.SIGKILL
        before_kill = {s.span_id for s in receiver.snapshot()}

        (tmp_path / "ledger.txt.release").touch()
        resumed = phalanx_cli("resume", "crash-1", "--force", "--json", env=env)
        assert resumed.returncode == 0, resumed.stderr
        assert json.loads(resumed.stdout)["status"] == "completed"
        spans = receiver.wait_for(
            lambda spans: bool(named(spans, f"phalanx.run {PARENT}")), timeout=20
        )

    trace_id, parent_first = first_runner_span(url, "crash-1")
    child_id = next(
        e.data["child_run_id"] for e in journal(url, "crash-1") if e.type == "ChildStarted"
    )
    child_trace, child_first = first_runner_span(url, child_id)
    assert child_trace == trace_id
    assert {s.trace_id for s in spans} == {trace_id}

    # The killed runners never ended their run spans, so those never left the process:
    # what did leave hangs off the run spans the journal recorded.
    assert one(spans, "phalanx.step parent-first").parent_span_id == parent_first
    assert one(spans, "phalanx.step child-first").parent_span_id == child_first
    assert not any(s.span_id in (parent_first, child_first) for s in spans)

    # The resumed parent continues the recorded trace: parented to, and linked with, it.
    parent_run = one(spans, f"phalanx.run {PARENT}")
    assert parent_run.span_id not in before_kill
    assert parent_run.attributes["phalanx.run.resumed"] is True
    assert parent_run.parent_span_id == parent_first
    assert (trace_id, parent_first) in [(t, s) for t, s, _ in parent_run.links]
    assert "phalanx.lease.taken_over" in parent_run.event_names()
    assert parent_run.attributes["phalanx.run.status"] == "completed"

    # The child, resumed by its resumed parent, nests under it and links to its own past.
    child_run = one(spans, f"phalanx.run {CHILD}")
    assert child_run.parent_span_id == parent_run.span_id
    assert (trace_id, child_first) in [(t, s) for t, s, _ in child_run.links]

    # The step in flight at the kill ran again (one span, from the resumed process);
    # finished work was answered by the journal and traced once, by the process that did it.
    blocked = one(spans, "phalanx.step child-blocked")
    assert blocked.parent_span_id == child_run.span_id
    assert one(spans, "phalanx.step parent-last").parent_span_id == parent_run.span_id
    assert len(named(spans, "invoke_agent researcher")) == 1
    assert len(named(spans, "chat scripted-1")) == 2
    assert len(named(spans, "execute_tool lookup")) == 1
    replayed: list[ReceivedSpan] = [s for s in spans if s.span_id not in before_kill]
    assert not [s for s in replayed if s.name.startswith(("chat", "execute_tool", "invoke_agent"))]

    # The journal alone tells the same story: two runners, one trace.
    shown = phalanx_cli("trace", "crash-1", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    tree = json.loads(shown.stdout)
    assert tree["trace_id"] == trace_id
    assert tree["root"]["attributes"]["phalanx.run.runners"] == 2


@pytest.mark.slow
def test_a_fenced_runner_records_the_takeover_and_both_runners_share_the_trace(
    tmp_path: Path,
) -> None:
    """A live runner taken over by `resume --force` marks its spans fenced; one trace."""
    ledger = tmp_path / "ledger.txt"
    ledger.touch()
    url = store_url(tmp_path)
    with start_receiver() as receiver:
        env = otel_env(tmp_path, receiver, OBSERVE_LEDGER=str(ledger))
        old = subprocess.Popen(
            [sys.executable, "-m", "phalanx.cli", "run", PARENT, "--run-id", "fence-1"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        new = None
        try:
            deadline = time.monotonic() + 30
            while ledger.read_text().count("child-blocked") < 1:
                assert old.poll() is None and time.monotonic() < deadline
                time.sleep(0.02)
            new = subprocess.Popen(
                [sys.executable, "-m", "phalanx.cli", "resume", "fence-1", "--force", "--json"],
                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            while ledger.read_text().count("child-blocked") < 2:
                assert new.poll() is None and time.monotonic() < deadline
                time.sleep(0.02)
            (tmp_path / "ledger.txt.release").touch()  # both runners finish the step now
            _, old_err = old.communicate(timeout=60)
            new_out, new_err = new.communicate(timeout=60)
        finally:
            for process in (old, new):
                if process is not None and process.poll() is None:
                    process.kill()
        assert old.returncode == 1, old_err
        assert "fenced out" in old_err
        assert new.returncode == 0, new_err
        assert json.loads(new_out)["status"] == "completed"
        spans = receiver.wait_for(
            lambda spans: (
                sum(1 for s in spans if "phalanx.lease.fenced" in s.event_names()) >= 1
                and any(s.attributes.get("phalanx.run.resumed") is True for s in spans)
            )
        )
    trace_id, _ = first_runner_span(url, "fence-1")
    assert {s.trace_id for s in spans} == {trace_id}
    fenced = [s for s in spans if "phalanx.lease.fenced" in s.event_names()]
    assert all(s.attributes["phalanx.run.resumed"] is False for s in fenced)
    assert all(s.status_code == 2 for s in fenced)  # ERROR: this runner lost the run
    taken = [s for s in spans if "phalanx.lease.taken_over" in s.event_names()]
    assert {s.attributes["phalanx.run.id"] for s in taken} >= {"fence-1"}
    winner = next(s for s in taken if s.attributes["phalanx.run.id"] == "fence-1")
    assert winner.attributes["phalanx.run.status"] == "completed"
