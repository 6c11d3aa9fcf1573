"""`benchmarks/durable.py` runs end to end; its figures are never asserted on (too noisy)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tests.benchmark_runs import run_benchmark

PHALANX_CONTENDERS = {
    "phalanx.normal",
    "phalanx.full",
    "phalanx.sync_def",
    "phalanx.cli",
    "plain",
    "to_thread",
    "raw.normal",
    "raw.full",
}
PEER_CONTENDERS = {
    "langgraph.none",
    "langgraph.sqlite",
    "langgraph.sqlite_sync",
    "dbos.sqlite",
}
HISTORIES = (20, 60)
TARGET_FIGURES = {
    "step.normal.vs_raw_floor",
    "step.full.vs_raw_floor",
    "step.langgraph_vs_phalanx",
    "step.sync_def_vs_thread_hop",
    "step.cli_vs_in_process",
    *(f"resume.{h}.vs_read" for h in HISTORIES),
    "resume.linearity",
}


def positive(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def test_durable_benchmark_quick_json_reports_every_figure(tmp_path: Path) -> None:
    """`durable.py --quick --json` with tiny sizes exits 0 and reports positive figures."""
    # Twelve `phalanx run` processes among the rounds: generous for a loaded machine.
    report = run_benchmark(
        "durable.py",
        "--steps",
        "8",
        "--cli-steps",
        "50",
        "--histories",
        ",".join(str(h) for h in HISTORIES),
        "--dir",
        str(tmp_path),
        timeout=180,
    )

    assert report["benchmark"] == "durable"
    assert report["sizes"]["steps"] == 8
    assert report["sizes"]["cli_steps"] == 50
    contenders = report["steps"]
    assert contenders.keys() == PHALANX_CONTENDERS | PEER_CONTENDERS
    for key, contender in contenders.items():
        if key in PEER_CONTENDERS and contender["status"] == "skipped":
            assert contender["reason"], f"skipped {key} must say why"
            continue
        assert contender["status"] == "ok", key
        if key == "phalanx.cli":
            # Two process lifetimes apart, 50 steps are within start-up noise: the
            # difference may come out below zero here; it must exist.
            assert math.isfinite(contender["us_per_step"]), (key, contender)
        else:
            assert positive(contender["us_per_step"]), (key, contender)
        assert len(contender["samples"]) >= 5, key

    resume = report["resume"]
    assert resume.keys() == {str(h) for h in HISTORIES}
    for history, figures in resume.items():
        assert figures["events"] > int(history), history
        for name in ("read_ms", "resume_ms", "ratio", "read_us_per_event", "resume_us_per_event"):
            assert positive(figures[name]), (history, name, figures[name])

    figures = report["figures"]
    assert figures.keys() >= TARGET_FIGURES
    for key, figure in figures.items():
        if figure["value"] is None:
            assert figure["reason"], f"a figure without a value must say why: {key}"
            continue
        if key in ("step.sync_def_vs_thread_hop", "step.cli_vs_in_process"):
            # A difference of two noisy timings over a third: below zero in a noisy round.
            assert math.isfinite(figure["value"]), (key, figure)
        else:
            assert positive(figure["value"]), (key, figure)
        if figure["target"] is not None:
            assert isinstance(figure["pass"], bool), key
    assert isinstance(report["all_targets_met"], bool)
    assert not list(tmp_path.iterdir()), "scratch files were left behind"
