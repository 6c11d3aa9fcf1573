"""Agent-loop benchmark: phalanx's agent against its peers, on a zero-latency model.

Run it as `.venv/bin/python benchmarks/agents.py [--quick] [--json]`.

Two scenarios, each the same for every contender:
- `one_turn`: one model call that answers with text (no tool);
- `tool_turn`: two model calls and one tool call in between (the model asks for
  `add(a, b)`, gets the sum back and answers with it).

The model answers at once, so what is measured is each framework's own loop. The
contenders, measured side by side in interleaved rounds of N agent runs each:
- phalanx, durable on SQLite (WAL, synchronous=NORMAL): every agent run is its own
  durable workflow run (`runtime.run`: lease, RunStarted, the model and tool steps,
  RunCompleted), so each one is resumable after a crash;
- phalanx in memory (`memory://`, not durable), the same runs;
- phalanx durable on SQLite with N agent runs inside one workflow run (the agent's
  steps only, the run's start and end amortised): reported, no target;
- Pydantic AI, `Agent.run` on its `FunctionModel`;
- the OpenAI Agents SDK, `Runner.run` on an offline fake `Model`, tracing off.

phalanx's tool is declared as users declare tools, with its default circuit breaker,
which is shared: its state is a stream in the store, read before each call. The
peers' tools are plain functions.

Targets: per agent run, phalanx durable >= 5x faster than the faster peer, and
phalanx in memory >= 10x faster, in both scenarios. The peers are optional
(`pip install -e '.[bench]'`); a peer that is missing or fails here is reported as
skipped with the reason. The script exits 0 even when a target is missed: it is a
report, not a gate. With `--json` the tables go to stderr and stdout carries one JSON
object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

if __package__ in (None, ""):
    # Run as a script, sys.path[0] is benchmarks/ itself: make `benchmarks` importable,
    # and keep this file from shadowing the OpenAI Agents SDK's `agents` package.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import phalanx
from benchmarks._util import format_number, interleaved, paired_ratio, print_table, stopwatch
from phalanx.agents import Agent, ModelRequest, ModelResponse, StreamChunk, ToolCall

Scenario = Literal["one_turn", "tool_turn"]
SCENARIOS: tuple[Scenario, ...] = ("one_turn", "tool_turn")

#: Targets: the faster peer's time per run over phalanx's, at least this.
DURABLE_LIMIT = 5.0
MEMORY_LIMIT = 10.0
PROMPT = "What is 2 + 3?"
ANSWER = "5"


@dataclass(frozen=True)
class Sizes:
    """How much work each figure does; `--quick` shrinks it to a smoke test."""

    runs: int
    repeats: int


FULL = Sizes(runs=300, repeats=7)
QUICK = Sizes(runs=30, repeats=5)


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


# -- phalanx ---------------------------------------------------------------------------


class ZeroLatencyModel:
    """Answers at once: a tool call first if it has tools and none was answered yet."""

    provider = "bench"
    name = "zero-latency"

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """The next answer of the scenario."""
        answered = any(m.role == "tool" for m in request.messages)
        if request.tools and not answered:
            call = ToolCall(id="call-1", name="add", arguments='{"a": 2, "b": 3}')
            return ModelResponse(
                tool_calls=(call,), finish_reason="tool_calls", model=self.name, provider="bench"
            )
        return ModelResponse(text=ANSWER, model=self.name, provider=self.provider)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        """The same answer in one chunk."""
        yield StreamChunk(response=await self.complete(request))


PHALANX_AGENTS = {
    "one_turn": Agent("bench", model=ZeroLatencyModel()),
    "tool_turn": Agent("bench", model=ZeroLatencyModel(), tools=[phalanx.tool(add)]),
}


@phalanx.workflow
async def one_agent_run(ctx: phalanx.WorkflowContext, scenario: str) -> str:
    """One agent run, as its own durable workflow run."""
    result = await PHALANX_AGENTS[scenario].run(ctx, PROMPT)
    return str(result.output)


@phalanx.workflow
async def many_agent_runs(ctx: phalanx.WorkflowContext, scenario: str, n: int) -> int:
    """N agent runs inside one workflow run."""
    for _ in range(n):
        result = await PHALANX_AGENTS[scenario].run(ctx, PROMPT)
        if result.output != ANSWER:
            raise RuntimeError(f"the agent answered {result.output!r}")
    return n


def phalanx_runs(
    store: Literal["sqlite", "memory"], scenario: Scenario, scratch: Path
) -> Callable[[int], Awaitable[float]]:
    """N agent runs, each its own workflow run, on a fresh store; us per run."""

    async def measure(n: int) -> float:
        with tempfile.TemporaryDirectory(dir=scratch) as where:
            url = f"sqlite:///{where}/j.db" if store == "sqlite" else "memory://"
            async with phalanx.open_runtime(url) as runtime:
                with stopwatch() as elapsed:
                    for _ in range(n):
                        outcome = await runtime.run(one_agent_run, {"scenario": scenario})
                        if outcome.result != ANSWER:
                            raise RuntimeError(f"phalanx run ended {outcome.status}")
        return elapsed() / n * 1e6

    return measure


def phalanx_in_one_run(scenario: Scenario, scratch: Path) -> Callable[[int], Awaitable[float]]:
    """N agent runs inside one durable workflow run on SQLite; us per agent run."""

    async def measure(n: int) -> float:
        with tempfile.TemporaryDirectory(dir=scratch) as where:
            async with phalanx.open_runtime(f"sqlite:///{where}/j.db") as runtime:
                with stopwatch() as elapsed:
                    outcome = await runtime.run(many_agent_runs, {"scenario": scenario, "n": n})
                if outcome.result != n:
                    raise RuntimeError(f"phalanx run ended {outcome.status}: {outcome.error}")
        return elapsed() / n * 1e6

    return measure


# -- Pydantic AI -----------------------------------------------------------------------


def pydantic_ai_runs(scenario: Scenario) -> Callable[[int], Awaitable[float]]:
    """N `Agent.run`s on a `FunctionModel` answering like `ZeroLatencyModel`."""

    async def measure(n: int) -> float:
        from pydantic_ai import Agent as PAgent
        from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
        from pydantic_ai.messages import ToolReturnPart as Returned
        from pydantic_ai.models.function import AgentInfo, FunctionModel

        def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
            returned = any(isinstance(p, Returned) for m in messages for p in m.parts)
            if info.function_tools and not returned:
                return ModelResponse(parts=[ToolCallPart("add", {"a": 2, "b": 3}, "call-1")])
            return ModelResponse(parts=[TextPart(ANSWER)])

        tools = [add] if scenario == "tool_turn" else []
        agent = PAgent(FunctionModel(answer), tools=tools)
        with stopwatch() as elapsed:
            for _ in range(n):
                result = await agent.run(PROMPT)
                if result.output != ANSWER:
                    raise RuntimeError(f"Pydantic AI answered {result.output!r}")
        return elapsed() / n * 1e6

    return measure


# -- OpenAI Agents SDK -----------------------------------------------------------------


def openai_agents_runs(scenario: Scenario) -> Callable[[int], Awaitable[float]]:
    """N `Runner.run`s on an offline `Model` answering like `ZeroLatencyModel`."""

    async def measure(n: int) -> float:
        from agents import Agent as OAgent
        from agents import Model, ModelResponse, Runner, Usage, function_tool, set_tracing_disabled
        from openai.types.responses import (
            ResponseFunctionToolCall,
            ResponseOutputMessage,
            ResponseOutputText,
        )

        set_tracing_disabled(True)

        class FakeModel(Model):
            async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
                items = args[1] if len(args) > 1 else kwargs["input"]
                tools = args[3] if len(args) > 3 else kwargs["tools"]
                returned = isinstance(items, list) and any(
                    isinstance(i, dict) and i.get("type") == "function_call_output" for i in items
                )
                if tools and not returned:
                    output: list[Any] = [
                        ResponseFunctionToolCall(
                            type="function_call",
                            call_id="call-1",
                            name="add",
                            arguments='{"a": 2, "b": 3}',
                        )
                    ]
                else:
                    text = ResponseOutputText(type="output_text", text=ANSWER, annotations=[])
                    output = [
                        ResponseOutputMessage(
                            id="msg-1",
                            type="message",
                            role="assistant",
                            status="completed",
                            content=[text],
                        )
                    ]
                return ModelResponse(output=output, usage=Usage(), response_id=None)

            def stream_response(self, *args: Any, **kwargs: Any) -> Any:
                raise NotImplementedError("the benchmark does not stream")

        tools = [function_tool(add)] if scenario == "tool_turn" else []
        agent = OAgent(name="bench", model=FakeModel(), tools=tools)
        with stopwatch() as elapsed:
            for _ in range(n):
                result = await Runner.run(agent, PROMPT)
                if result.final_output != ANSWER:
                    raise RuntimeError(f"the Agents SDK answered {result.final_output!r}")
        return elapsed() / n * 1e6

    return measure


# -- measuring -------------------------------------------------------------------------


@dataclass
class Contender:
    """One way to run N agent runs; `measure(n)` returns microseconds per run."""

    key: str
    label: str
    measure: Callable[[int], Awaitable[float]]
    peer: str | None = None
    skipped: str | None = None
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float | None:
        """The median sample, None when skipped."""
        return statistics.median(self.samples) if self.samples else None

    def to_json(self) -> dict[str, Any]:
        """The contender in the `--json` schema."""
        return {
            "label": self.label,
            "status": "skipped" if self.skipped else "ok",
            "reason": self.skipped,
            "us_per_run": self.median,
            "samples": list(self.samples),
        }


def contenders(scenario: Scenario, scratch: Path) -> list[Contender]:
    """Everything one scenario compares, phalanx first."""
    return [
        Contender(
            "phalanx.sqlite", "phalanx durable, SQLite", phalanx_runs("sqlite", scenario, scratch)
        ),
        Contender(
            "phalanx.memory",
            "phalanx in memory (memory://)",
            phalanx_runs("memory", scenario, scratch),
        ),
        Contender(
            "phalanx.sqlite_one_run",
            "phalanx durable, SQLite, N agent runs in one workflow run",
            phalanx_in_one_run(scenario, scratch),
        ),
        Contender(
            "pydantic_ai", "Pydantic AI, FunctionModel", pydantic_ai_runs(scenario), "pydantic_ai"
        ),
        Contender(
            "openai_agents",
            "OpenAI Agents SDK, fake Model, tracing off",
            openai_agents_runs(scenario),
            "agents",
        ),
    ]


def installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ModuleNotFoundError, ValueError):
        return False


async def preflight(contender: Contender) -> None:
    """Mark a peer skipped, with why, if it is not installed or fails to run here."""
    if contender.peer is not None and not installed(contender.peer):
        contender.skipped = f"not installed ({contender.peer}; pip install -e '.[bench]')"
        return
    try:
        await contender.measure(2)
    except Exception as exc:
        if contender.peer is None:
            raise  # phalanx itself must run
        contender.skipped = f"failed to run: {type(exc).__name__}: {exc}"[:300]


@dataclass
class ScenarioResult:
    """One scenario's contenders and figures."""

    scenario: Scenario
    contenders: list[Contender]
    figures: dict[str, dict[str, Any]]


def figures(everyone: list[Contender]) -> dict[str, dict[str, Any]]:
    """phalanx durable and in memory against the faster peer, round by round."""
    by_key = {c.key: c for c in everyone if not c.skipped}
    peers = [by_key[k] for k in ("pydantic_ai", "openai_agents") if k in by_key]
    out: dict[str, dict[str, Any]] = {}
    if not peers:
        return out
    fastest = min(peers, key=lambda c: c.median or float("inf"))
    for key, limit in (("phalanx.sqlite", DURABLE_LIMIT), ("phalanx.memory", MEMORY_LIMIT)):
        mine = by_key[key]
        ratio = paired_ratio(fastest.samples, mine.samples)
        out[key] = {
            "vs": fastest.key,
            "speedup": ratio,
            "target": f">= {limit:.0f}x",
            "pass": ratio >= limit,
        }
    return out


async def measure_scenario(scenario: Scenario, sizes: Sizes, scratch: Path) -> ScenarioResult:
    """Every contender of one scenario, N runs per sample, in interleaved rounds."""
    everyone = contenders(scenario, scratch)
    for contender in everyone:
        await preflight(contender)
        if contender.skipped:
            progress(f"{contender.label}: skipped: {contender.skipped}")
    running = [c for c in everyone if not c.skipped]

    def bind(contender: Contender) -> Callable[[], Awaitable[float]]:
        return lambda: contender.measure(sizes.runs)

    samples = await interleaved({c.key: bind(c) for c in running}, sizes.repeats)
    for contender in running:
        contender.samples = samples[contender.key]
    return ScenarioResult(scenario, everyone, figures(everyone))


def render(results: Sequence[ScenarioResult], sizes: Sizes, quick: bool, file: Any) -> None:
    """The tables: per-run cost of each contender, then the figures and verdicts."""
    print(
        f"phalanx agents benchmark{' (--quick)' if quick else ''}: {sizes.runs} agent runs per "
        f"sample, medians of {sizes.repeats} interleaved rounds; ratios are medians of "
        "per-round ratios",
        file=file,
    )
    print(f"peers: {peer_versions()}", file=file)
    for result in results:
        print(file=file)
        print(f"scenario {result.scenario}", file=file)
        rows = []
        for c in result.contenders:
            shown = "skipped" if c.skipped else format_number(c.median or 0.0)
            rows.append([c.label, shown])
        print_table(["contender", "us/run"], rows, file=file)
        for c in result.contenders:
            if c.skipped:
                print(f"skipped {c.label}: {c.skipped}", file=file)
        for key, figure in result.figures.items():
            verdict = "PASS" if figure["pass"] else "MISS"
            print(
                f"{key} is {figure['speedup']:.2f}x faster than {figure['vs']} "
                f"(target {figure['target']}): {verdict}",
                file=file,
            )


def peer_versions() -> str:
    """The installed peers and their versions, for the report header."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("pydantic-ai-slim", "openai-agents"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def progress(message: str) -> None:
    """Say what is being measured, on stderr so stdout stays the report."""
    print(f"... {message}", file=sys.stderr, flush=True)


async def run(sizes: Sizes, scratch: Path) -> list[ScenarioResult]:
    """Both scenarios in turn."""
    results = []
    for scenario in SCENARIOS:
        progress(f"scenario {scenario}: {sizes.runs} runs x {sizes.repeats} rounds")
        results.append(await measure_scenario(scenario, sizes, scratch))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the report; 0 even when a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke test: less work, noisier")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--runs", type=int, help="agent runs per sample")
    parser.add_argument("--dir", help="where the scratch SQLite files go")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.runs is not None:
        if args.runs < 1:
            parser.error("--runs must be positive")
        sizes = Sizes(runs=args.runs, repeats=sizes.repeats)
    with tempfile.TemporaryDirectory(prefix="phalanx-bench-", dir=args.dir) as scratch:
        results = asyncio.run(run(sizes, Path(scratch)))
    render(results, sizes, args.quick, sys.stderr if args.json else sys.stdout)
    if args.json:
        report = {
            "benchmark": "agents",
            "quick": args.quick,
            "sizes": {"runs": sizes.runs, "repeats": sizes.repeats},
            "peers": peer_versions(),
            "scenarios": {
                r.scenario: {
                    "contenders": {c.key: c.to_json() for c in r.contenders},
                    "figures": r.figures,
                }
                for r in results
            },
        }
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
