"""The README's dead-letter queue example: a CRM lookup that is down until CRM_UP is set.

`phalanx run examples.readme.crm:plan_of --input '{"customer": "acme"}'` makes the call
fail for good; with `dead_letter="continue"` the run completes, told the tool was
unavailable, and the call waits in `phalanx dlq list` for a person.
"""

import os
from typing import Any

import phalanx


@phalanx.tool(
    timeout=10,
    retry=phalanx.RetryPolicy(max_attempts=2, initial_interval=0.01),
    dead_letter="continue",
    secrets=("api_key",),
)
async def crm_lookup(customer: str, api_key: str) -> dict[str, Any]:
    """Look a customer's plan up in the CRM."""
    if not os.environ.get("CRM_UP"):
        raise ConnectionError("the CRM is unreachable")
    return {"customer": customer, "plan": "gold"}


@phalanx.workflow
async def plan_of(ctx: phalanx.WorkflowContext, customer: str) -> dict[str, Any]:
    """The customer's plan, or why it is unknown."""
    plan = await phalanx.call_tool(ctx, crm_lookup, customer=customer, api_key="sk-demo")
    if isinstance(plan, phalanx.ToolUnavailable):
        return {"customer": customer, "plan": None, "why": plan.message}
    return dict(plan)
