"""A run that waits for a person: `phalanx signal RUN approve --data JSON` answers it."""

from typing import Any

import phalanx


@phalanx.workflow
async def approval(ctx: phalanx.WorkflowContext, timeout: float = 3600) -> dict[str, Any]:
    """Wait (durably: the run may crash and resume meanwhile) for the `approve` signal."""
    answer = await ctx.wait_for_signal("approve", timeout=timeout)
    return {"approved": answer}
