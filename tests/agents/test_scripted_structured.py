"""The scripted model answers a structured-output request with a valid instance."""

from __future__ import annotations

import datetime
import enum
from typing import Literal

import pydantic
import pytest

from phalanx.agents import Message, ModelRequest, Rule, Script, ScriptedModel, Turn


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Source(pydantic.BaseModel):
    url: str
    seen: datetime.date


class Findings(pydantic.BaseModel):
    facts: list[str] = pydantic.Field(min_length=2)
    sources: list[Source]
    confidence: float = pydantic.Field(ge=0, le=1)
    count: int = pydantic.Field(gt=3, multiple_of=5)
    kind: Literal["survey", "study"]
    color: Color
    note: str | None
    score: float = pydantic.Field(gt=0, lt=1)
    title: str = pydantic.Field(min_length=20, max_length=30)
    tags: dict[str, int] = {}


class Verdict(pydantic.BaseModel):
    answer: bool
    why: str


@pytest.mark.parametrize("output_type", [Findings, Verdict, list[Verdict], int, str])
async def test_unscripted_structured_request_gets_a_valid_instance(output_type: object) -> None:
    """No rule matches: the answer validates against the requested output type."""
    adapter = pydantic.TypeAdapter(output_type)
    request = ModelRequest(
        messages=(Message.user("research leases"),), output_schema=adapter.json_schema()
    )
    response = await ScriptedModel(latency=0.0, seconds_per_token=0.0).complete(request)
    assert response.provider == "scripted" and not response.tool_calls
    adapter.validate_json(response.text or "")
    again = await ScriptedModel(latency=0.0, seconds_per_token=0.0).complete(request)
    assert again.text == response.text, "deterministic, as replay needs"


async def test_scripted_rules_still_win_over_the_schema() -> None:
    """A rule's text is answered as scripted, even if it does not validate (to test retries)."""
    model = ScriptedModel(
        Script(rules=(Rule("judge", (Turn(text="not json"),)),)), latency=0.0, seconds_per_token=0.0
    )
    request = ModelRequest(
        messages=(Message.system("judge"), Message.user("?")),
        output_schema=Verdict.model_json_schema(),
    )
    assert (await model.complete(request)).text == "not json"
    plain = ModelRequest(messages=(Message.user("hello"),))
    assert (await model.complete(plain)).text == "[scripted answer] hello"
