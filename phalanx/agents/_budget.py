"""Budgets: how many tokens (and how much money) a model call may still use.

Context bloat cascades: a verbose agent's output becomes the next agent's input, and
the synthesiser at the end works from a context that is mostly noise. A `Budget`
bounds that: per agent (`Agent(budget=...)`), per run (`open_budget(ctx, ...)`, which
every agent of the run draws from) and per fan-out (`BudgetLedger.split`, reserved
shares each child run receives as an input and opens in its own run). Budgets
propagate down like deadlines: a child's budget is never more than its parent has
left, and what a child reserved is not available to its siblings.

A `BudgetLedger` is the spending side, kept in memory and rebuilt by replay (a
replayed model step returns its journaled usage, which is charged again in the same
order), so a resumed run sees the budget the crashed one had without a ledger of its
own in the store. Before a call the ledger is asked `check` (estimated input tokens,
see `_tokens.py`); after it, `charge` (the provider's reported usage).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

from .._errors import ConfigError
from ._messages import Usage

if TYPE_CHECKING:
    from ..durable import WorkflowContext

#: What an agent does when its next model call would pass the budget, tried in order:
#: `compact` drops the oldest turns, `summarize` replaces them with a summary by the
#: summariser model, `final_answer` asks for a last, tool-less answer, `fail` raises
#: `BudgetExceededError`.
BudgetAction = Literal["compact", "summarize", "final_answer", "fail"]
ACTIONS: tuple[BudgetAction, ...] = ("compact", "summarize", "final_answer", "fail")

#: The output-token limit of a request when no budget says otherwise. Every request
#: carries one: a small model left unbounded can generate past any deadline.
DEFAULT_MAX_TOKENS = 1024
#: Fewer output tokens than this left: no useful answer fits, the output budget is out.
MIN_OUTPUT_TOKENS = 16


@dataclass(frozen=True, kw_only=True)
class Prices:
    """What a model charges, per million tokens (in any one currency)."""

    input_per_mtok: float
    output_per_mtok: float

    def cost(self, input_tokens: float, output_tokens: float) -> float:
        """The price of that many tokens."""
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6


@dataclass(frozen=True, kw_only=True)
class Budget:
    """Limits on model calls; any left None is unlimited.

    Args:
        input_tokens: Input tokens over every call in the scope.
        output_tokens: Output tokens over every call (also caps each call's max_tokens).
        cost: Money over every call; needs `prices`.
        context_tokens: The largest input one request may carry (the context window
            the agent may fill).
        max_tokens: Each request's output-token limit (default `DEFAULT_MAX_TOKENS`),
            lowered to the output (and cost) budget left.
        prices: What the model charges, for `cost`.
        actions: What to do, in order, when a call would pass the budget.

    Raises:
        ConfigError: a limit of 0 or less, `cost` without `prices`, an unknown action,
            or no action at all.
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    cost: float | None = None
    context_tokens: int | None = None
    max_tokens: int | None = None
    prices: Prices | None = None
    actions: tuple[BudgetAction, ...] = ("fail",)

    def __post_init__(self) -> None:
        for name in ("input_tokens", "output_tokens", "cost", "context_tokens", "max_tokens"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(
                    setting=f"Budget.{name}",
                    value=value,
                    reason="a budget must be more than 0 (leave it None for no limit)",
                )
        if self.cost is not None and self.prices is None:
            raise ConfigError(
                setting="Budget.cost",
                value=self.cost,
                reason="a cost budget needs prices=Prices(input_per_mtok=..., output_per_mtok=...)",
            )
        unknown = [a for a in self.actions if a not in ACTIONS]
        if unknown or not self.actions:
            raise ConfigError(
                setting="Budget.actions",
                value=list(self.actions),
                reason=f"declare one or more of {', '.join(ACTIONS)}, in the order to try them",
            )

    def to_json(self) -> dict[str, Any]:
        """JSON form (to hand a share to a child run as an input)."""
        data: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        data["actions"] = list(self.actions)
        if self.prices is not None:
            data["prices"] = {
                "input_per_mtok": self.prices.input_per_mtok,
                "output_per_mtok": self.prices.output_per_mtok,
            }
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Budget:
        """The budget `to_json` gave."""
        prices = data.get("prices")
        return cls(
            input_tokens=data.get("input_tokens"),
            output_tokens=data.get("output_tokens"),
            cost=data.get("cost"),
            context_tokens=data.get("context_tokens"),
            max_tokens=data.get("max_tokens"),
            prices=None if prices is None else Prices(**prices),
            actions=tuple(data.get("actions") or ("fail",)),
        )


@dataclass(frozen=True, kw_only=True)
class Shortfall:
    """Why a call does not fit: which limit, what it needs, what is left, whose it is."""

    limit: str
    needed: float
    available: float
    scope: str


@dataclass(kw_only=True)
class BudgetLedger:
    """Spending against one `Budget`, inside its parent's (if any).

    Lifecycle: made by `open_budget` (a run's), by an agent for one `run` (its own,
    under the run's), or by a child run from the share its parent reserved for it.
    """

    budget: Budget
    scope: str
    parent: BudgetLedger | None = None
    input_used: int = 0
    output_used: int = 0
    cost_used: float = 0.0
    #: Shares reserved for children (child name to its budget), not yet settled.
    reserved: dict[str, Budget] = field(default_factory=dict)
    #: The largest input one request of this scope carried (estimated before sending).
    largest_context: int = 0

    def __post_init__(self) -> None:
        # Per-request settings come from the innermost budget that declares them; the
        # budgets are frozen and the parent fixed, so they are looked up once, here.
        self._context: int | None = self._first("context_tokens")
        self._max_tokens: int = self._first("max_tokens") or DEFAULT_MAX_TOKENS
        self._prices: Prices | None = self._first("prices")

    # -- what is left -----------------------------------------------------------------

    def left(self, name: Literal["input_tokens", "output_tokens", "cost"]) -> float | None:
        """What remains of `name` here and in every ancestor (the least); None: no limit.

        Shares reserved for children count as spent. On every model call's path, so a
        plain loop up the chain: no recursion, nothing allocated.
        """
        best: float | None = None
        ledger: BudgetLedger | None = self
        while ledger is not None:
            limit = getattr(ledger.budget, name)
            if limit is not None:
                if name == "input_tokens":
                    own = limit - ledger.input_used
                elif name == "output_tokens":
                    own = limit - ledger.output_used
                else:
                    own = limit - ledger.cost_used
                if ledger.reserved:
                    own -= sum(getattr(b, name) or 0 for b in ledger.reserved.values())
                if best is None or own < best:
                    best = own
            ledger = ledger.parent
        return None if best is None else float(best)

    def _first(self, name: str) -> Any:
        """The innermost declared value of a per-request setting (`context_tokens`...)."""
        ledger: BudgetLedger | None = self
        while ledger is not None:
            value = getattr(ledger.budget, name)
            if value is not None:
                return value
            ledger = ledger.parent
        return None

    @property
    def actions(self) -> tuple[BudgetAction, ...]:
        """The declared actions of the innermost budget that limits anything."""
        ledger: BudgetLedger | None = self
        while ledger is not None:
            if ledger.budget != UNLIMITED:
                return ledger.budget.actions
            ledger = ledger.parent
        return ("fail",)

    def prices(self) -> Prices | None:
        """The innermost declared prices."""
        return self._prices

    def max_tokens(self) -> int:
        """The output-token limit for the next request: the default, lowered to what is left."""
        cap = float(self._max_tokens)
        output = self.left("output_tokens")
        if output is not None:
            cap = min(cap, output)
        return max(0, int(cap))

    def check(self, input_tokens: int, *, max_tokens: int | None = None) -> Shortfall | None:
        """Whether a request of `input_tokens` (estimated) fits; None if it does.

        `max_tokens` is `self.max_tokens()` when the caller already has it.
        """
        context = self._context
        if context is not None and input_tokens > context:
            return Shortfall(
                limit="context_tokens", needed=input_tokens, available=context, scope=self.scope
            )
        left = self.left("input_tokens")
        if left is not None and input_tokens > left:
            return Shortfall(
                limit="input_tokens", needed=input_tokens, available=left, scope=self.scope
            )
        output = self.max_tokens() if max_tokens is None else max_tokens
        if output < MIN_OUTPUT_TOKENS:
            return Shortfall(
                limit="output_tokens", needed=MIN_OUTPUT_TOKENS, available=output, scope=self.scope
            )
        prices = self._prices
        money = None if prices is None else self.left("cost")
        if money is not None and prices is not None:
            needed = prices.cost(input_tokens, MIN_OUTPUT_TOKENS)
            if needed > money:
                return Shortfall(limit="cost", needed=needed, available=money, scope=self.scope)
        return None

    # -- spending ---------------------------------------------------------------------

    def charge(self, usage: Usage) -> None:
        """Count a call's usage (the provider's figures) here and in every ancestor."""
        prices = self._prices
        cost = 0.0 if prices is None else prices.cost(usage.input_tokens, usage.output_tokens)
        ledger: BudgetLedger | None = self
        while ledger is not None:
            ledger.input_used += usage.input_tokens
            ledger.output_used += usage.output_tokens
            ledger.cost_used += cost
            ledger = ledger.parent

    def note_context(self, input_tokens: int) -> None:
        """Remember the largest request sent, here and in every ancestor."""
        ledger: BudgetLedger | None = self
        while ledger is not None:
            ledger.largest_context = max(ledger.largest_context, input_tokens)
            ledger = ledger.parent

    def reserve(self, name: str, wanted: Budget) -> Budget:
        """Set aside a share for child `name`: `wanted`, cut to what is left here.

        The child sees exactly that budget (hand it `share.to_json()` as an input);
        until `settle`, it is not available to anyone else. A share of a budget that
        is spent is one token (a budget cannot be 0): the child's first call is refused.
        """
        limits: dict[str, Any] = {}
        for limit in _TOTALS:
            left, asked = self.left(limit), getattr(wanted, limit)
            if left is not None:
                asked = left if asked is None else min(asked, left)
            if asked is not None and limit != "cost":
                asked = max(1, int(asked))
            limits[limit] = None if asked is None else max(asked, 1e-9)
        context = self._first("context_tokens")
        if context is not None and wanted.context_tokens is not None:
            context = min(context, wanted.context_tokens)
        share = Budget(
            **limits,
            context_tokens=context if context is not None else wanted.context_tokens,
            max_tokens=wanted.max_tokens or self._first("max_tokens"),
            prices=wanted.prices or self.prices(),
            actions=wanted.actions,
        )
        self.reserved[name] = share
        return share

    def split(self, names: Sequence[str], *, keep: float = 0.0) -> dict[str, Budget]:
        """Reserve equal shares of what is left for children `names` (a fan-out's).

        `keep` is the fraction kept back for this scope's own calls (the synthesis
        after the fan-out, say). Each share keeps this scope's context limit and
        actions.
        """
        part = (1.0 - keep) / max(1, len(names))
        wanted: dict[str, Any] = {}
        for limit in _TOTALS:
            left = self.left(limit)
            wanted[limit] = None if left is None else max(left, 0.0) * part
        ask = Budget(
            input_tokens=None
            if wanted["input_tokens"] is None
            else max(1, int(wanted["input_tokens"])),
            output_tokens=None
            if wanted["output_tokens"] is None
            else max(1, int(wanted["output_tokens"])),
            cost=None if wanted["cost"] is None else max(wanted["cost"], 1e-9),
            prices=self.prices(),
            actions=self.actions,
        )
        return {name: self.reserve(name, ask) for name in names}

    def settle(self, name: str, usage: Usage) -> None:
        """Child `name` ended having used `usage`: release its share, charge what it used."""
        self.reserved.pop(name, None)
        self.charge(usage)


_TOTALS: tuple[Literal["input_tokens", "output_tokens", "cost"], ...] = (
    "input_tokens",
    "output_tokens",
    "cost",
)

#: No limits at all: the ledger of an agent without a budget (it still sets max_tokens).
UNLIMITED = Budget()

_RUN_LEDGERS: weakref.WeakKeyDictionary[WorkflowContext, BudgetLedger] = weakref.WeakKeyDictionary()


def open_budget(ctx: WorkflowContext, budget: Budget | Mapping[str, Any]) -> BudgetLedger:
    """Give this run a budget every agent in it draws from; returns its ledger.

    `budget` may be a share a parent reserved for this run, as JSON (an input). Call
    it before any agent runs (on replay too: it is not journaled, the replayed model
    steps charge it again).
    """
    if not isinstance(budget, Budget):
        budget = Budget.from_json(budget)
    ledger = BudgetLedger(budget=budget, scope=f"run {ctx.run_id}")
    _RUN_LEDGERS[ctx] = ledger
    return ledger


def run_ledger(ctx: WorkflowContext) -> BudgetLedger | None:
    """The ledger `open_budget` gave this run, if any."""
    return _RUN_LEDGERS.get(ctx)
