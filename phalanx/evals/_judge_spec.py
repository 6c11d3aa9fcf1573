"""The `judge` evaluator's parameters: what the judge is asked, by which model(s).

Registered here (the rubric needs only the parameters to check a rubric on load);
`_judge` asks the model(s) when an eval run scores a run.
"""

from __future__ import annotations

import pydantic

from ._registry import TextTarget, register_judge


class JudgeParams(TextTarget):
    """`instructions`: what to judge; `models`: one or two judges (two: agreement reported).

    A model is any `PHALANX_MODEL` form (`openai:NAME`, `openai-compatible:NAME`,
    `anthropic:NAME`, `scripted`) or `python:MODULE:NAME`, a `Model` (or a function
    returning one) imported by name; none given: the rubric's `judge.model`, else
    `PHALANX_MODEL`.
    """

    instructions: str = pydantic.Field(min_length=1)
    models: tuple[str, ...] = pydantic.Field(default=(), max_length=2)
    deadline_s: float | None = pydantic.Field(default=None, gt=0)


register_judge(
    "judge",
    JudgeParams,
    "A model scores the text on the criterion's scale, with its reasoning (LLM-as-judge)",
)
