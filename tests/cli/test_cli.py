"""The `phalanx` command, run as a real process the way users and external checks run it.

Each test works in its own directory holding a workflow module (`cliflows.py`) and a
SQLite store, and checks the contracts in DESIGN.md: what each command prints, its
`--json` shapes, and its exit status (0 success, 1 the run did not complete, 2 a usage
or configuration error with a message that says what is wrong).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from typing import Any

import pytest

from tests.conftest import one_backend

from .helpers import COMMANDS, PHALANX, Cli, assert_usage_error, finish, stop, wait_for

pytestmark = pytest.mark.slow

# -- help ------------------------------------------------------------------------------


@one_backend
def test_help_lists_every_command(cli: Cli) -> None:
    """`phalanx --help` lists run, resume, runs, events, show, signal, cancel and recover."""
    done = cli("--help", store=None)
    assert done.returncode == 0, done.stderr
    for command in COMMANDS:
        assert re.search(rf"^\W*{command}\s", done.stdout, re.MULTILINE), (command, done.stdout)
        assert cli(command, "--help", store=None).returncode == 0


# -- run -------------------------------------------------------------------------------


def test_run_prints_run_id_and_result(cli: Cli) -> None:
    """`run` prints the run id and the JSON result and exits 0."""
    done = cli("run", "cliflows:hello", "--input", '{"name": "ada"}', "--run-id", "r1")
    assert done.returncode == 0, done.stderr
    assert "r1" in done.stdout and "completed" in done.stdout
    assert json.dumps({"greeting": "hello ada", "loud": "HELLO ADA"}) in done.stdout

    auto = cli("run", "cliflows:hello", "--json")
    assert auto.returncode == 0, auto.stderr
    outcome = json.loads(auto.stdout)
    assert outcome["status"] == "completed" and outcome["run_id"] != "r1"
    assert outcome["result"] == {"greeting": "hello world", "loud": "HELLO WORLD"}
    assert outcome["run_id"] in auto.stderr, "the id is announced as the run starts"


def test_failing_run_exits_1(cli: Cli) -> None:
    """A run whose workflow raises ends failed: exit 1, the error printed."""
    done = cli("run", "cliflows:failing", "--run-id", "bad")
    assert done.returncode == 1, done.stderr
    assert "bad failed" in done.stdout and "ValueError: boom" in done.stdout
    assert cli.runs()["bad"]["status"] == "failed"


# -- listing and inspecting ------------------------------------------------------------


def test_runs_json_lists_runs_with_parents_and_filters_by_status(cli: Cli) -> None:
    """`runs --json` gives run_id/status/parent_run_id (null top-level); --status filters."""
    assert cli("run", "cliflows:parent", "--run-id", "p").returncode == 0
    assert cli("run", "cliflows:failing", "--run-id", "f").returncode == 1
    listed = cli.json("runs")
    assert isinstance(listed, list)
    runs = {r["run_id"]: r for r in listed}
    assert set(runs) == {"p", "p.1", "f"}
    for row in listed:
        assert {"run_id", "status", "parent_run_id"} <= set(row)
    assert runs["p"]["parent_run_id"] is None and runs["f"]["parent_run_id"] is None
    assert runs["p.1"]["parent_run_id"] == "p"
    assert (runs["p"]["status"], runs["p.1"]["status"], runs["f"]["status"]) == (
        "completed",
        "completed",
        "failed",
    )
    assert set(cli.runs("--status", "completed")) == {"p", "p.1"}
    assert set(cli.runs("--status", "failed")) == {"f"}
    assert cli.runs("--status", "waiting") == {}


def test_events_json_prints_one_object_per_line(cli: Cli) -> None:
    """`events RUN --json`: a JSON object a line with seq, type, data, epoch, timestamp."""
    assert cli("run", "cliflows:hello", "--run-id", "e").returncode == 0
    done = cli("events", "e", "--json")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    events = [json.loads(line) for line in lines]
    assert all(isinstance(e, dict) for e in events)
    for event in events:
        assert {"seq", "type", "data", "epoch", "timestamp"} <= set(event)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "RunStarted" and events[-1]["type"] == "RunCompleted"
    steps = [(e["type"], e["data"]["name"]) for e in events if e["type"].startswith("Step")]
    assert steps == [
        ("StepStarted", "greet"),
        ("StepCompleted", "greet"),
        ("StepStarted", "shout"),
        ("StepCompleted", "shout"),
    ]
    assert {e["epoch"] for e in events} == {1}


def test_show_json_has_steps_with_attempts_and_durations(cli: Cli) -> None:
    """`show RUN --json` lists each step with its attempts, errors and duration."""
    done = cli("run", "cliflows:retried", "--input", '{"marker": "m"}', "--run-id", "s")
    assert done.returncode == 0, done.stderr
    info = cli.json("show", "s")
    assert (info["run_id"], info["status"], info["result"]) == ("s", "completed", "ok")
    [step] = info["steps"]
    assert (step["name"], step["status"], step["attempts"]) == ("fetch", "completed", 2)
    assert isinstance(step["duration_s"], float) and step["duration_s"] >= 0
    [error] = step["errors"]
    assert error["attempt"] == 1 and error["type"].endswith("ConnectionError")
    assert error["message"] == "flaky network"
    text = cli("show", "s")
    assert text.returncode == 0 and "fetch" in text.stdout


# -- steering runs ---------------------------------------------------------------------


def test_signal_wakes_a_waiting_run(cli: Cli) -> None:
    """A run waiting for a signal shows `waiting`; `signal` delivers the data and it completes."""
    proc = cli.spawn("run", "cliflows:waiter", "--run-id", "w", "--json")
    try:
        wait_for(lambda: cli.runs().get("w", {}).get("status") == "waiting", "w to wait")
        sent = cli("signal", "w", "approve", "--data", '{"ok": true}')
        assert sent.returncode == 0, sent.stderr
        code, out, err = finish(proc)
    finally:
        stop(proc)
    assert code == 0, err
    assert json.loads(out)["result"] == {"answer": {"ok": True}}
    assert cli.runs()["w"]["status"] == "completed"


def test_cancel_parent_cancels_running_child(cli: Cli) -> None:
    """Cancelling a parent whose child is running ends both `cancelled`."""
    proc = cli.spawn("run", "cliflows:stuck_parent", "--run-id", "cp")
    try:
        wait_for(lambda: cli.runs().get("cp.1", {}).get("status") == "waiting", "the child")
        done = cli("cancel", "cp")
        assert done.returncode == 0, done.stderr
        code, out, err = finish(proc)
    finally:
        stop(proc)
    assert code == 1, err
    assert "cancelled" in out
    runs = cli.runs()
    assert (runs["cp"]["status"], runs["cp.1"]["status"]) == ("cancelled", "cancelled")
    assert cli.events("cp.1")[-1]["type"] == "RunCancelled"
    assert cli.events("cp")[-1]["type"] == "RunCancelled"


def lease_outliving(cli: Cli, commands: int) -> str:
    """A `--lease-ttl` that outlives starting `commands` more commands, measured now.

    Tests about what happens while a crashed runner's lease lives must look before
    it lapses; starting one `phalanx` takes seconds on a loaded machine (CI runs the
    suite on xdist workers on two cores), so a fixed short lease is sometimes gone.
    """
    began = time.monotonic()
    assert cli.runs() == {}
    return f"{max(3.0, 2 * commands * (time.monotonic() - began)):.1f}"


def test_recover_resumes_a_crashed_run_once_its_lease_expired(cli: Cli) -> None:
    """`recover` leaves a crashed run alone while its lease lives, then finishes it."""
    ttl = lease_outliving(cli, 3)  # the crashing run, `runs`, `recover`
    args = ("--input", '{"marker": "m"}', "--run-id", "c", "--lease-ttl", ttl)
    crashed = cli("run", "cliflows:crashy", *args)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert cli.runs()["c"]["status"] == "running"
    nothing = {"recovered": [], "failed": []}
    assert cli.json("recover") == nothing, "a live lease means a live runner: left alone"

    recovered: list[dict[str, Any]] = []

    def recover() -> bool:
        recovered.extend(cli.json("recover")["recovered"])
        return bool(recovered)

    wait_for(recover, "the crashed run's lease to expire", timeout=float(ttl) + 20)
    assert [(o["run_id"], o["status"], o["result"]) for o in recovered] == [
        ("c", "completed", "survived")
    ]
    assert cli.runs()["c"]["status"] == "completed"
    assert cli.json("recover") == nothing


def test_recover_lists_what_it_could_not_resume_and_parks_waiting_runs(cli: Cli) -> None:
    """One run that cannot resume is listed (exit 1); a waiting run is parked, not waited on."""
    (cli.root / "doomed.py").write_text(
        "import phalanx\nfrom cliflows import die_once\n\n"
        "@phalanx.workflow\nasync def flow(ctx, marker):\n"
        "    return await ctx.step('die_once', die_once, marker)\n",
        encoding="utf-8",
    )
    ttl = ("--lease-ttl", "1")
    assert (
        cli("run", "doomed:flow", "--input", '{"marker": "d"}', "--run-id", "d", *ttl).returncode
        == -signal.SIGKILL
    )
    (cli.root / "doomed.py").unlink()  # the code is gone: this run cannot be resumed here
    assert (
        cli(
            "run", "cliflows:crashy", "--input", '{"marker": "m"}', "--run-id", "c", *ttl
        ).returncode
        == -signal.SIGKILL
    )
    waiter = cli.spawn("run", "cliflows:waiter", "--run-id", "w", *ttl)
    try:
        wait_for(lambda: cli.runs().get("w", {}).get("status") == "waiting", "w to wait")
    finally:
        stop(waiter)
    time.sleep(1.2)  # every lease lapses

    done = cli("recover", "--json", timeout=60)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert sorted((o["run_id"], o["status"]) for o in report["recovered"]) == [
        ("c", "completed"),
        ("w", "waiting"),
    ]
    [failed] = report["failed"]
    assert failed["run_id"] == "d" and failed["error"]["type"] == "WorkflowImportError"
    assert "doomed" in failed["error"]["message"]
    assert cli.runs()["w"]["status"] == "waiting"

    text = cli("recover")
    assert text.returncode == 1
    assert "run d NOT RESUMED: WorkflowImportError" in text.stdout
    assert "run w waiting (parked" in text.stdout
    assert "1 run(s) recovered, 1 could not be" in text.stdout


# -- usage and configuration errors: exit 2 and say what is wrong ----------------------


@pytest.mark.parametrize("command", ["resume", "show", "events"])
@pytest.mark.parametrize("run_id", ["nope", "[/bold]nope:fire:"])
def test_unknown_run_is_a_usage_error(cli: Cli, command: str, run_id: str) -> None:
    """`resume`/`show`/`events` of an unknown run id exit 2 naming the id verbatim."""
    assert_usage_error(cli(command, run_id), f"no run {run_id!r}")


@one_backend
@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("nosuchmodule:wf", "No module named 'nosuchmodule'"),
        ("cliflows:missing", "module 'cliflows' has no 'missing'"),
        ("cliflows:not_a_workflow", "is not decorated with @phalanx.workflow"),
        ("cliflows", "expected MODULE:FUNCTION"),
    ],
)
def test_unimportable_workflow_is_a_usage_error(cli: Cli, target: str, reason: str) -> None:
    """`run` of a MODULE:FUNCTION that cannot be loaded exits 2 saying what failed."""
    assert_usage_error(cli("run", target), f"cannot load workflow {target!r}", reason)
    assert cli.runs() == {}, "nothing was started"


@one_backend
def test_input_that_is_not_json_says_where(cli: Cli) -> None:
    """`--input` that is not JSON exits 2 with the line and column of the mistake."""
    text = '{"name":\n  ada}'
    with pytest.raises(json.JSONDecodeError) as info:
        json.loads(text)
    where = f"line {info.value.lineno} column {info.value.colno}"
    assert where == "line 2 column 3"
    assert_usage_error(cli("run", "cliflows:hello", "--input", text), "--input", where)


@one_backend
@pytest.mark.parametrize("text", ["[1, 2]", '"ada"', "3", "null"])
def test_input_must_be_a_json_object(cli: Cli, text: str) -> None:
    """`--input` that is JSON but not an object exits 2 saying an object is needed."""
    done = cli("run", "cliflows:hello", "--input", text)
    assert_usage_error(done, "--input must be a JSON object")


@one_backend
@pytest.mark.parametrize("command", [("runs",), ("run", "cliflows:hello"), ("show", "x")])
def test_store_that_cannot_be_opened_is_a_usage_error(cli: Cli, command: tuple[str, ...]) -> None:
    """A store URL naming a place no file can be created exits 2 naming the store."""
    url = "sqlite:////proc/nope/x.db"
    assert_usage_error(cli(*command, store=url), url, "unavailable")


@one_backend
def test_unknown_store_scheme_is_a_usage_error(cli: Cli) -> None:
    """A store URL with an unknown scheme exits 2, from --store and from PHALANX_STORE."""
    url = "mysql://db.example/phalanx"
    assert_usage_error(cli("runs", store=url), "unknown scheme 'mysql'", "sqlite:///")
    env = cli.env | {"PHALANX_STORE": url}
    done = subprocess.run(
        [PHALANX, "runs"], cwd=cli.root, env=env, capture_output=True, text=True, timeout=30
    )
    assert_usage_error(done, "unknown scheme 'mysql'")


def test_store_from_env_then_default(cli: Cli) -> None:
    """Without --store the store is $PHALANX_STORE, else ./.phalanx/phalanx.db."""
    env = cli.env | {"PHALANX_STORE": cli.store}
    done = subprocess.run(
        [PHALANX, "run", "cliflows:hello", "--run-id", "via-env"],
        cwd=cli.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "via-env" in cli.runs()

    assert cli("run", "cliflows:hello", "--run-id", "local", store=None).returncode == 0
    assert (cli.root / ".phalanx" / "phalanx.db").exists()
    assert "local" not in cli.runs()


def test_cancel_reaches_a_crashed_run_when_it_is_resumed(cli: Cli) -> None:
    """A cancel sent to a crashed run is honoured by the runner that resumes it."""
    proc = cli.spawn("run", "cliflows:waiter", "--run-id", "cw", "--lease-ttl", "5")
    try:
        wait_for(lambda: cli.runs().get("cw", {}).get("status") == "waiting", "cw to wait")
    finally:
        stop(proc)
    assert cli("cancel", "cw").returncode == 0
    resumed = cli("resume", "cw", "--force", "--json", timeout=20)
    assert resumed.returncode == 1, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "cancelled"
    assert cli.runs()["cw"]["status"] == "cancelled"


# -- leases: handed back on Ctrl-C, waited for in human time -------------------------


def test_ctrl_c_hands_the_lease_back_so_resume_starts_at_once(cli: Cli) -> None:
    """SIGINT during `run`: exit 130, RunInterrupted journaled, status kept, lease released."""
    proc = cli.spawn("run", "cliflows:napper", "--input", '{"marker": "n"}', "--run-id", "n")
    try:
        wait_for(
            lambda: "n" in cli.runs() and any(e["type"] == "StepStarted" for e in cli.events("n")),
            "the nap",
        )
        proc.send_signal(signal.SIGINT)
        code, _, err = finish(proc)
    finally:
        stop(proc)
    assert code == 130, err
    assert "resumable" in err and "Traceback" not in err
    events = cli.events("n")
    assert events[-1]["type"] == "RunInterrupted"
    assert cli.runs()["n"]["status"] == "running", "an interruption changes no status"
    started = time.monotonic()
    resumed = cli("resume", "n", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["result"] == "rested"
    assert time.monotonic() - started < 10, "no 15 s lease to wait out"
    assert "leased by" not in resumed.stderr


def test_resume_says_how_long_it_waits_for_a_lease_in_human_time(cli: Cli) -> None:
    """A resume blocked by a crashed runner's lease says how many seconds, once, no epoch."""
    ttl = lease_outliving(cli, 2)  # the crashing run, `resume`
    args = ("--input", '{"marker": "m"}', "--run-id", "c", "--lease-ttl", ttl)
    assert cli("run", "cliflows:crashy", *args).returncode == -signal.SIGKILL
    done = cli("resume", "c", timeout=float(ttl) + 30)
    assert done.returncode == 0, done.stderr
    waits = [line for line in done.stderr.splitlines() if "leased by" in line]
    assert len(waits) == 1, done.stderr
    assert re.search(r"for another \d+\.\d s \(until \d\d:\d\d:\d\d UTC", waits[0]), waits[0]
    assert not re.search(r"\d{10}\.\d", done.stderr), "no raw epoch"
