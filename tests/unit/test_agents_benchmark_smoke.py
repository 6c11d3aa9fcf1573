"""`benchmarks/agents.py` runs end to end; its figures are never asserted on (too noisy)."""

from __future__ import annotations

import math
from typing import Any

from tests.benchmark_runs import run_benchmark

PHALANX_CONTENDERS = {"phalanx.sqlite", "phalanx.memory", "phalanx.sqlite_one_run"}
PEER_CONTENDERS = {"pydantic_ai", "openai_agents"}


def positive(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def test_agents_benchmark_quick_json_reports_both_scenarios() -> None:
    """`agents.py --quick --json` exits 0; phalanx and each peer (or why not) per scenario."""
    report = run_benchmark("agents.py", "--runs", "3", timeout=120)

    assert report["benchmark"] == "agents"
    assert report["scenarios"].keys() == {"one_turn", "tool_turn"}
    for name, scenario in report["scenarios"].items():
        contenders = scenario["contenders"]
        assert contenders.keys() == PHALANX_CONTENDERS | PEER_CONTENDERS, name
        measured_peers = []
        for key, contender in contenders.items():
            if key in PEER_CONTENDERS and contender["status"] == "skipped":
                assert contender["reason"], f"skipped {key} must say why"
                continue
            assert contender["status"] == "ok", (name, key)
            assert positive(contender["us_per_run"]), (name, key, contender)
            assert len(contender["samples"]) >= 5, (name, key)
            measured_peers += [key] if key in PEER_CONTENDERS else []
        if measured_peers:
            figures = scenario["figures"]
            assert figures.keys() == {"phalanx.sqlite", "phalanx.memory"}, name
            for figure in figures.values():
                assert positive(figure["speedup"]) and isinstance(figure["pass"], bool)
                assert figure["vs"] in measured_peers
