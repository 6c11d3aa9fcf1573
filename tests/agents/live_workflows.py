"""An agent on a real (local) model endpoint, for crash tests in subprocesses."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import phalanx
from phalanx.agents import Agent, model_from_env
from phalanx.tools import tool


@tool
def slow_lookup(city: str) -> str:
    """Weather for a city; slow enough to be killed in the middle of."""
    with open(os.environ["AGENT_LEDGER"], "a", encoding="utf-8") as ledger:
        ledger.write(json.dumps({"city": city}) + "\n")
    time.sleep(0.8)
    return f"{city}: sunny"


@phalanx.workflow
async def ask_server(ctx: phalanx.WorkflowContext, prompt: str) -> dict[str, Any]:
    agent = Agent(
        "assistant",
        model=model_from_env(),
        instructions="You are assistant. Use slow_lookup for weather.",
        tools=[slow_lookup],
    )
    return (await agent.run(ctx, prompt)).to_json()
