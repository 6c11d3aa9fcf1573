"""Rubrics are checked on load: each problem is a RubricError saying where and what."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from phalanx import RubricError
from phalanx.evals import Rubric, load_rubric

RESEARCH = Path(__file__).parents[2] / "examples" / "rubrics" / "research.yaml"


def _one(**criterion: Any) -> dict[str, Any]:
    return {"rubric": "r", "criteria": [{"name": "c", **criterion}]}


def test_research_rubric_loads() -> None:
    """The shipped research rubric is valid and has every failure-mode criterion."""
    rubric = load_rubric(RESEARCH)
    kinds = {c.evaluator for c in rubric.criteria}
    assert {"unacknowledged_partial", "step_repetition", "ignored_tool_errors"} <= kinds
    assert Rubric.from_data(rubric.to_json()).to_json() == rubric.to_json()


@pytest.mark.parametrize(
    ("data", "where", "problem"),
    [
        (_one(evaluator="telepathy"), "criteria[0] (c).evaluator", "unknown evaluator 'telepathy'"),
        (
            _one(evaluator="status", threshold=2),
            "criteria[0] (c).threshold",
            "outside the scale [0, 1]",
        ),
        (_one(evaluator="status", scale=[5, 1]), "criteria[0] (c).scale", "low < high"),
        (_one(), "criteria[0] (c)", "missing field `evaluator`"),
        (
            {"rubric": "r", "criteria": [{"evaluator": "status"}]},
            "criteria[0]",
            "missing field `name`",
        ),
        ({"rubric": "r"}, "criteria", "missing field"),
        ({"criteria": []}, "rubric", "missing field"),
        (_one(evaluator="status", wieght=2), "criteria[0] (c)", "unknown field(s) wieght"),
        (_one(evaluator="regex"), "criteria[0] (c).params.pattern", "missing field"),
        (
            _one(evaluator="regex", params={"pattern": "("}),
            "criteria[0] (c).params.pattern",
            "not a regular expression",
        ),
        (
            _one(evaluator="status", params={"expect": ["x"]}),
            "criteria[0] (c).params.expect",
            "takes no such parameter",
        ),
        (
            _one(evaluator="json_schema", params={"schema": {"type": 3}}),
            "criteria[0] (c).params.schema",
            "not a valid JSON schema",
        ),
        (_one(evaluator="status", weight=0), "criteria[0] (c).weight", "positive number"),
        (
            _one(evaluator="judge", params={"instructions": "x", "models": ["a", "b", "c"]}),
            "criteria[0] (c).params.models",
            "at most 2",
        ),
    ],
)
def test_rubric_errors(data: dict[str, Any], where: str, problem: str) -> None:
    """A rubric with an error names the place and the problem."""
    with pytest.raises(RubricError) as caught:
        Rubric.from_data(data, source="test.yaml")
    assert caught.value.where == where
    assert problem in caught.value.problem
    assert str(caught.value).startswith(f"rubric test.yaml at {where}: ")


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    """A rubric file that is not YAML says where the syntax breaks."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("rubric: r\ncriteria:\n  - name: [unclosed\n")
    with pytest.raises(RubricError, match=r"at line \d+, column \d+: not valid YAML"):
        load_rubric(bad)


def test_missing_rubric_file(tmp_path: Path) -> None:
    """A rubric file that does not exist is a RubricError, not an OSError."""
    with pytest.raises(RubricError, match="no such file"):
        load_rubric(tmp_path / "none.yaml")
