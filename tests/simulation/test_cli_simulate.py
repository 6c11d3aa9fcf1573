"""`phalanx simulate`, run as a real process: the JSON contract, exit statuses, replay."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def simulate(*args: str, hash_seed: str | None = None) -> subprocess.CompletedProcess[str]:
    """`phalanx simulate ARGS` from the repository root (so `tests.` imports)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHALANX_")}
    env.pop("PYTHONHASHSEED", None)
    if hash_seed is not None:
        env["PYTHONHASHSEED"] = hash_seed
    return subprocess.run(
        [sys.executable, "-m", "phalanx.cli", "simulate", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def report(done: subprocess.CompletedProcess[str], code: int) -> Any:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout)


def test_a_correct_workflow_exits_0_with_the_contracted_json() -> None:
    """No seed fails: exit 0; seeds_run, faults_injected (with crash) and no failures."""
    out = report(simulate("tests.simulation.planted:fair_coin", "--seeds", "30", "--json"), 0)
    assert out["seeds_run"] == 30 and out["failures"] == []
    assert out["faults_injected"]["crash"] > 0
    assert "trace_sha256" not in out


def test_a_nondeterministic_workflow_exits_1_with_kind_nondeterminism() -> None:
    """A workflow reading the stdlib random fails seeds with kind `nondeterminism`."""
    out = report(simulate("tests.simulation.planted:coin_flip", "--seeds", "30", "--json"), 1)
    assert out["failures"]
    assert {"seed", "kind", "message"} <= out["failures"][0].keys()
    assert "nondeterminism" in {f["kind"] for f in out["failures"]}


def test_a_seed_replays_to_one_trace_sha256_in_every_process() -> None:
    """`--seed S` prints the same trace_sha256 from fresh processes, whatever their hash seed."""
    args = ("tests.simulation.planted:guarded_counter", "--seed", "11", "--json")
    first = report(simulate(*args, hash_seed="123"), 0)
    second = report(simulate(*args), 0)
    assert first["seeds_run"] == 1
    assert first["trace_sha256"] == second["trace_sha256"]
    assert len(first["trace_sha256"]) == 64


def test_a_failing_seed_says_how_to_replay_it_and_prints_its_trace() -> None:
    """Human output names the failed seed and the command replaying it; --trace prints events."""
    done = simulate("tests.simulation.planted:double_debit", "--seeds", "200")
    assert done.returncode == 1, done.stderr
    assert "--seed" in done.stdout and "--trace" in done.stdout and "invariant" in done.stdout
    seed = next(
        line.split()[1].rstrip(":") for line in done.stdout.splitlines() if line.startswith("seed ")
    )
    traced = simulate("tests.simulation.planted:double_debit", "--seed", seed, "--trace")
    assert traced.returncode == 1
    assert '"Debited"' in traced.stdout and "trace_sha256" in traced.stdout


def test_usage_errors_exit_2_in_one_line() -> None:
    """Conflicting or bad options, bad input and an unknown workflow exit 2, no traceback."""
    for args in (
        ("tests.simulation.planted:fair_coin", "--seeds", "3", "--seed", "1"),
        ("tests.simulation.planted:fair_coin", "--seeds", "0"),
        ("tests.simulation.planted:fair_coin", "--trace"),
        ("tests.simulation.planted:fair_coin", "--input", "[1]"),
        ("tests.simulation.planted:no_such_flow", "--seeds", "1"),
    ):
        done = simulate(*args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr, args
