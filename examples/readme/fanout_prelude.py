"""Names the README's fan-out example uses: two branch workflows and a question."""

import phalanx

q = "what is a lease?"


@phalanx.workflow
async def retrieve(ctx: phalanx.WorkflowContext, q: str) -> str:
    """A vector-store lookup (a stand-in)."""
    return await ctx.step("retrieve", lambda: f"passages about {q}")


@phalanx.workflow
async def search_web(ctx: phalanx.WorkflowContext, q: str) -> str:
    """A web search (a stand-in)."""
    return await ctx.step("search", lambda: f"pages about {q}")
