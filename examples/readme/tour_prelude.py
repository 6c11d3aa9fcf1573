"""Names the README's tour uses before it defines its workflow: a planner and a search."""

import asyncio


def make_plan(topic: str) -> list[str]:
    """Split a topic into questions (a stand-in for a model call)."""
    return [f"{topic}: history", f"{topic}: failure modes"]


async def search(question: str) -> str:
    """A slow "search" (a stand-in for a tool call)."""
    await asyncio.sleep(0.05)
    return f"notes on {question}"
