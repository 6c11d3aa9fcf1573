"""Fitting an agent's next model call into its budget: "slow down, I'm full".

Before each call the agent asks its ledger whether the request fits. When it does not,
the budget's declared actions run in order until it does:

- `compact` drops the oldest turns (never the instructions, the task or the latest
  turn; a tool call and its results go together);
- `summarize` has the summariser model (the agent's own unless configured) condense
  those turns into one message: a journaled step, so a replay does not call it again;
- `final_answer` drops the tools and asks for a short last answer;
- `fail` raises `BudgetExceededError`; the call is never sent.

Each action taken is journaled as `BudgetActionTaken` (`agent`, `turn`, `action`,
`limit`, `needed`, `available`, `tokens_before`, `tokens_after`), and each summary as
`ContextSummarized` (`agent`, `turn`, `summary`, `replaced`: exactly the messages it
replaced, as JSON), so "what the agent saw" stays exact.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._errors import BudgetExceededError
from ..durable import lowlevel
from ._budget import MIN_OUTPUT_TOKENS, BudgetAction, BudgetLedger, Shortfall
from ._messages import Message, ModelRequest, ModelResponse, ToolSpec
from ._tokens import TokenCache, estimate_request

if TYPE_CHECKING:
    from ..durable import WorkflowContext

SUMMARY_INSTRUCTIONS = (
    "You summarise the earlier part of a conversation for the agent that continues it. "
    "Keep every fact, number, source and open question it needs; drop repetition. "
    "Answer with the summary only."
)
SUMMARY_PREFIX = "Summary of the earlier conversation (older turns were summarised): "
FINAL_PROMPT = (
    "Your budget is nearly spent: no more tool calls. Give your final answer now, briefly, "
    "from what you have."
)

#: Calls the summariser model with a request; returns the response as JSON (a step).
CallModel = Callable[[ModelRequest], Awaitable[dict[str, Any]]]


def _units(messages: Sequence[Message]) -> tuple[list[Message], list[list[Message]]]:
    """(the head that always stays: system messages and the task, the turns after it).

    A turn is one message, or an assistant message with tool calls plus its results.
    """
    head_end = 0
    while head_end < len(messages) and messages[head_end].role == "system":
        head_end += 1
    if head_end < len(messages) and messages[head_end].role == "user":
        head_end += 1
    units: list[list[Message]] = []
    for message in messages[head_end:]:
        if message.role == "tool" and units:
            units[-1].append(message)
        else:
            units.append([message])
    return list(messages[:head_end]), units


def _flat(head: list[Message], units: Sequence[list[Message]]) -> list[Message]:
    return [*head, *(m for unit in units for m in unit)]


@dataclass(kw_only=True)
class Fitter:
    """Makes one agent's requests fit its ledger; one per `Agent.run`."""

    ctx: WorkflowContext
    agent: str
    ledger: BudgetLedger
    summarize: CallModel
    #: How many summaries and actions this run of the agent made.
    summaries: int = 0
    taken: list[str] = field(default_factory=list)
    tokens: TokenCache = field(default_factory=TokenCache)

    def estimate(self, messages: Sequence[Message], tools: tuple[ToolSpec, ...]) -> int:
        """The request's estimated input tokens (cached per message)."""
        return self.tokens.request(messages, tools)

    def request(
        self,
        messages: Sequence[Message],
        tools: tuple[ToolSpec, ...],
        output_schema: dict[str, Any] | None,
        max_tokens: int | None = None,
    ) -> ModelRequest:
        """The request for `messages`, with max_tokens from the budget left."""
        return ModelRequest(
            messages=tuple(messages),
            tools=tools,
            output_schema=output_schema,
            max_tokens=self.ledger.max_tokens() if max_tokens is None else max_tokens,
        )

    async def fit(
        self,
        turn: int,
        messages: list[Message],
        tools: tuple[ToolSpec, ...],
        output_schema: dict[str, Any] | None,
    ) -> tuple[list[Message], ModelRequest]:
        """The messages and request to send on `turn`, after the actions it took.

        Raises:
            BudgetExceededError: no declared action made the call fit.
        """
        size = self.estimate(messages, tools)
        output = self.ledger.max_tokens()
        shortfall = self.ledger.check(size, max_tokens=output)
        tried: list[str] = []
        actions = list(self.ledger.actions) if shortfall is not None else []
        while shortfall is not None:
            if not actions:
                raise self._exceeded(shortfall, tried)
            action = actions.pop(0)
            tried.append(action)
            if action == "fail":
                await self._journal(turn, action, shortfall, size, size)
                raise self._exceeded(shortfall, tried)
            messages, tools = await self._apply(action, turn, messages, tools)
            after = self.estimate(messages, tools)
            await self._journal(turn, action, shortfall, size, after)
            size = after
            shortfall = self.ledger.check(size)
        self.ledger.note_context(size)
        if tried:
            output = self.ledger.max_tokens()  # a summary's usage was charged meanwhile
        return messages, self.request(messages, tools, output_schema, output)

    async def _apply(
        self,
        action: BudgetAction,
        turn: int,
        messages: list[Message],
        tools: tuple[ToolSpec, ...],
    ) -> tuple[list[Message], tuple[ToolSpec, ...]]:
        head, units = _units(messages)
        if action == "compact":
            # Drop the oldest turns until it fits, keeping the latest turn.
            while len(units) > 1:
                units.pop(0)
                if self.ledger.check(self.estimate(_flat(head, units), tools)) is None:
                    break
            return _flat(head, units), tools
        if action == "summarize":
            # Condense the oldest turns, as many as one summariser request can hold
            # within the context budget, until the call fits or nothing older is left.
            while len(units) > 1:
                take = self._fitting_prefix(units[:-1])
                if take == 0:
                    break  # even the oldest turn alone is too large to summarise
                older = [m for unit in units[:take] for m in unit]
                summary = await self._summarize(turn, older)
                units = [[Message.user(SUMMARY_PREFIX + summary)], *units[take:]]
                fits = self.ledger.check(self.estimate(_flat(head, units), tools)) is None
                if fits or take == 1:
                    break
            return _flat(head, units), tools
        # final_answer: keep the latest turn's content, no tools, ask for the answer.
        kept = units[-1:] if units and units[-1][0].role != "assistant" else []
        return [*_flat(head, kept), Message.user(FINAL_PROMPT)], ()

    def _summary_request(self, older: Sequence[Message]) -> ModelRequest:
        transcript = "\n".join(
            f"{m.role}{f' ({m.name})' if m.name else ''}: {m.content or ''}"
            + "".join(f" [calls {c.name}({c.arguments})]" for c in m.tool_calls)
            for m in older
        )
        return ModelRequest(
            messages=(Message.system(SUMMARY_INSTRUCTIONS), Message.user(transcript)),
            # A summary is short: it must leave room for the conversation it serves.
            max_tokens=max(MIN_OUTPUT_TOKENS, self.ledger.max_tokens() // 4),
        )

    def _fitting_prefix(self, units: Sequence[list[Message]]) -> int:
        """How many of the oldest `units` one summariser request can hold within budget."""
        fits = 0
        for count in range(1, len(units) + 1):
            older = [m for unit in units[:count] for m in unit]
            if self.ledger.check(estimate_request(self._summary_request(older))) is not None:
                break
            fits = count
        return fits

    async def _summarize(self, turn: int, older: list[Message]) -> str:
        request = self._summary_request(older)
        self.ledger.note_context(estimate_request(request))
        raw = await lowlevel.step(
            self.ctx,
            f"{self.agent}/summarize/{turn}.{self.summaries}",
            self.summarize,
            request,
            tags={"agent": self.agent, "turn": turn, "operation": "summarize"},
        )
        response = ModelResponse.model_validate(raw)
        self.ledger.charge(response.usage)
        summary = (response.text or "").strip()
        name = f"{self.agent}/summary/{turn}.{self.summaries}"
        self.summaries += 1
        op, recorded = lowlevel.claim(self.ctx, "summary", name)
        if recorded is None:
            await lowlevel.record(
                self.ctx,
                "ContextSummarized",
                {
                    "op": op,
                    "name": name,
                    "agent": self.agent,
                    "turn": turn,
                    "summary": summary,
                    "replaced": [m.model_dump(mode="json") for m in older],
                },
            )
        return summary

    async def _journal(
        self, turn: int, action: str, shortfall: Shortfall, before: int, after: int
    ) -> None:
        self.taken.append(action)
        name = f"{self.agent}/budget/{turn}.{len(self.taken)}"
        op, recorded = lowlevel.claim(self.ctx, "budget", name)
        if recorded is None:
            await lowlevel.record(
                self.ctx,
                "BudgetActionTaken",
                {
                    "op": op,
                    "name": name,
                    "agent": self.agent,
                    "turn": turn,
                    "action": action,
                    "limit": shortfall.limit,
                    "needed": shortfall.needed,
                    "available": shortfall.available,
                    "scope": shortfall.scope,
                    "tokens_before": before,
                    "tokens_after": after,
                },
            )

    def _exceeded(self, shortfall: Shortfall, tried: list[str]) -> BudgetExceededError:
        return BudgetExceededError(
            agent=self.agent,
            scope=shortfall.scope,
            limit=shortfall.limit,
            needed=shortfall.needed,
            available=shortfall.available,
            tried=[t for t in tried if t != "fail"],
        )
