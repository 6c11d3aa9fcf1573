"""`phalanx eval`: the research rubric over recorded demo runs, JSON, JUnit, exit codes."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import phalanx

from ..cli.helpers import make_cli
from . import workflows as wf

RUBRIC = str(Path(__file__).parents[2] / "examples" / "rubrics" / "research.yaml")


async def test_research_rubric_passes_demo_and_fails_unmarked_partial(
    url: str, tmp_path: Path, runtime: phalanx.Runtime
) -> None:
    """The research rubric passes `demo --fault none` and fails a partial answer not named."""
    cli = make_cli(tmp_path, url)
    demo = cli("demo", "--fault", "none", "--json", timeout=120)
    assert demo.returncode == 0, demo.stderr
    good = json.loads(demo.stdout)["run_id"]
    bad = (await runtime.run(wf.unacknowledged, {})).run_id

    passed = cli("eval", RUBRIC, "--run", good, "--json")
    assert passed.returncode == 0, passed.stderr
    report = json.loads(passed.stdout)
    assert report["passed"] is True and report["eval_run_id"]
    assert report["runs"][0]["run_id"] == good

    junit = tmp_path / "junit.xml"
    both = cli("eval", RUBRIC, "--run", good, "--run", bad, "--json", "--junit", str(junit))
    assert both.returncode == 1, both.stderr
    runs = {r["run_id"]: r for r in json.loads(both.stdout)["runs"]}
    assert runs[good]["passed"] is True and runs[bad]["passed"] is False
    failed = {c["criterion"] for c in runs[bad]["criteria"] if not c["passed"]}
    assert "partial_named" in failed
    suites = ET.parse(junit).getroot().findall("testsuite")
    assert [s.get("name") for s in suites] == [f"research:{good}", f"research:{bad}"]
    failures = suites[1].findall("testcase/failure/..")
    assert "partial_named" in {case.get("name") for case in failures}

    table = cli("eval", RUBRIC, "--run", bad)
    assert table.returncode == 1
    assert f"run {bad} (completed): FAILED" in table.stdout
    assert "Traceback" not in table.stderr

    shown = cli("show", good, "--json")
    assert shown.returncode == 0, shown.stderr
    evals = json.loads(shown.stdout)["evals"]
    assert evals and evals[-1]["rubric"] == "research" and evals[-1]["passed"] is True
    text = cli("show", bad)
    assert text.returncode == 0, text.stderr
    assert "eval research (eval run eval-" in text.stdout and "FAILED partial_named" in text.stdout


def test_eval_usage_errors(url: str, tmp_path: Path) -> None:
    """Missing rubric, bad rubric, unknown run, no --run: exit 2 with a clear message."""
    cli = make_cli(tmp_path, url)
    missing = cli("eval", "nope.yaml", "--run", "x")
    assert missing.returncode == 2 and "rubric nope.yaml: no such file" in missing.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("rubric: r\ncriteria:\n  - {name: c, evaluator: vibes}\n")
    bad = cli("eval", str(broken), "--run", "x")
    assert bad.returncode == 2 and "unknown evaluator 'vibes'" in bad.stderr
    unknown = cli("eval", RUBRIC, "--run", "no-such-run")
    assert unknown.returncode == 2 and "no run 'no-such-run'" in unknown.stderr
    neither = cli("eval", RUBRIC)
    assert neither.returncode == 2 and "--run RUN" in neither.stderr
    for result in (missing, bad, unknown, neither):
        assert "Traceback" not in result.stderr
