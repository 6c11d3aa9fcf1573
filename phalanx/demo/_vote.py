"""The vote scenario (`phalanx demo vote`): three replicas answer, a wrong one is outvoted.

One question goes to three replicas, `replica_1` to `replica_3`: the same agent on the
scripted model with a different seed each (as you would vary seeds, temperatures or
models). A replica can be made to answer wrongly on purpose (`--fault
replica_2=wrong`): a well-formed, plausible, wrong answer, phantom completion. The
vote compares the answers (as text, case and spacing ignored) and takes the majority;
any dissent is journaled as `DisagreementDetected`. With two replicas wrong in
different ways there is no majority, and the run parks `waiting` for a person
(`phalanx signal RUN vote:capital --data '{"answer": "..."}'`).

The vote waits for every replica (no early quorum) so that each one's answer, and so
every dissent, is shown: this demo is about seeing disagreement, not about saving the
third call.
"""

from __future__ import annotations

from typing import Any

from .. import workflow
from ..agents import Agent, Rule, Script, ScriptedModel, Turn
from ..durable import RetryPolicy, WorkflowContext
from ..patterns import Branch, text, vote

REPLICAS = ("replica_1", "replica_2", "replica_3")
#: The vote's name: the signal a person answers an escalation with is `vote:capital`.
VOTE = "capital"
QUESTION = "What is the capital of Australia? Answer with the city's name only."
RIGHT = "Canberra"
#: Each replica's wrong answer, different from each other's: two wrong replicas split.
WRONG = {"replica_1": "Sydney", "replica_2": "Sydney", "replica_3": "Melbourne"}


def parse_vote_faults(specs: list[str] | None) -> dict[str, str]:
    """`REPLICA=wrong[,REPLICA=wrong]` (repeatable) to {replica: "wrong"}; `none` clears.

    Raises:
        ValueError: an unknown replica or fault kind (the message lists the valid ones).
    """
    faults: dict[str, str] = {}
    for part in ",".join(specs or []).split(","):
        if not part.strip() or part.strip() == "none":
            continue
        replica, sep, kind = (p.strip() for p in part.partition("="))
        if not sep or replica not in REPLICAS or kind not in ("wrong", "none"):
            raise ValueError(
                f"bad fault {part.strip()!r}: use REPLICA=wrong with REPLICA one of "
                f"{', '.join(REPLICAS)}"
            )
        if kind == "wrong":
            faults[replica] = kind
        else:
            faults.pop(replica, None)
    return faults


def replica_agent(replica: str, wrong: bool) -> Agent[str]:
    """One replica: the scripted model, seeded by replica, right or wrong on purpose."""
    answer = WRONG[replica] if wrong else RIGHT
    script = Script(rules=(Rule(r"capital of Australia", (Turn(text=answer),)),))
    seed = REPLICAS.index(replica) + 1
    return Agent(
        replica,
        role="replica",
        model=ScriptedModel(script, seed=seed, latency=0.1, seconds_per_token=0.004),
        instructions=f"You are {replica}, one of three independent replicas. Answer briefly.",
        max_turns=2,
        model_retry=RetryPolicy(max_attempts=2, initial_interval=0.2, max_interval=1.0),
    )


@workflow
async def vote_replica(
    ctx: WorkflowContext, replica: str, question: str, wrong: bool = False
) -> str:
    """One replica's answer: its own durable run."""
    return (await replica_agent(replica, wrong).run(ctx, question)).text


@workflow
async def vote_demo(
    ctx: WorkflowContext, question: str = QUESTION, faults: dict[str, str] | None = None
) -> dict[str, Any]:
    """Ask every replica, take the majority, surface dissent, escalate a split."""
    wrong = dict(faults or {})
    replicas = {
        name: Branch(vote_replica, {"replica": name, "question": question, "wrong": name in wrong})
        for name in REPLICAS
    }
    result = await vote(ctx, VOTE, replicas, normalize=text, stop_early=False, deadline=30.0)
    return result.to_json()
