"""Names the README's budget example uses: a scripted model and a long-page tool."""

from phalanx.agents import Rule, Script, ScriptedModel, Turn
from phalanx.tools import tool

PAGE = "Leases fence stale writers; epochs only grow. " * 12


@tool
def fetch(page: int) -> str:
    """A long page of notes (the context grows by one each turn)."""
    return f"page {page}: {PAGE}"


model = ScriptedModel(
    Script(
        rules=(
            Rule(r"You summarise the earlier part", (Turn(text="Pages so far: leases fence."),)),
            Rule(
                r"You are the reader",
                (
                    *(Turn(tool_calls=(("fetch", {"page": n}),)) for n in range(1, 5)),
                    Turn(text="Leases fence stale writers."),
                ),
            ),
        )
    ),
    latency=0.0,
    seconds_per_token=0.0,
)
