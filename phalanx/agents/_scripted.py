"""The scripted model: offline, deterministic, clearly not a real model.

It drives the demo and the tests. A `Script` maps patterns in an agent's
instructions or prompt to a sequence of turns (tool calls, then an answer); each
turn is picked by how many assistant turns the conversation already holds, so the
same request always gets the same answer, which is what replay after a crash needs.

Latency and token counts are realistic but approximate: tokens are counted by the
estimate budgets use before a call (`_tokens.py`), so offline the two agree exactly.
Faults can be injected on purpose: a hang, a slow answer, an error status,
malformed JSON, or tool calls with wrong arguments.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._clock import Clock, SystemClock
from .._simloop import simulated_loop
from ._faults import Fault, after_call, before_call
from ._instance import schema_instance
from ._messages import ModelRequest, ModelResponse, StreamChunk, ToolCall, Usage
from ._model import complete_from_stream
from ._tokens import estimate_request, estimate_tokens

#: Every scripted response carries this provider name, so nothing shows it as a real model.
PROVIDER = "scripted"


@dataclass(frozen=True)
class Turn:
    """One scripted answer: tool calls to make, or text (a template) to reply.

    Templates may use `{prompt}` (the first user message), `{tool_results}` (every
    tool result so far, joined) and `{instructions}` (the system message).
    """

    text: str | None = None
    tool_calls: tuple[tuple[str, Mapping[str, Any] | str], ...] = ()
    fault: Fault | None = None


@dataclass(frozen=True)
class Rule:
    """When `pattern` (a regex) matches the system message or the prompt, play `turns`.

    Past the last turn, the last one repeats.
    """

    pattern: str
    turns: tuple[Turn, ...]


@dataclass(frozen=True)
class Script:
    """Rules tried in order; `default` answers when none matches.

    A request for structured output (an agent with an `output_type`) that no rule
    matches is answered with a valid instance of the requested schema instead of the
    default text, so such agents work offline without a script of their own.
    """

    rules: tuple[Rule, ...] = ()
    default: Turn = field(default_factory=lambda: Turn(text="[scripted answer] {prompt}"))

    def turn_for(self, request: ModelRequest) -> Turn:
        """The turn this request gets.

        How far the conversation got is the assistant turns it holds or, when older
        turns were compacted or summarised away, the turn number in the latest
        scripted tool call's id (`call_{turn}_{index}`), whichever is further. A
        request without tools gets the next turn that calls none.
        """
        system = " ".join(m.content or "" for m in request.messages if m.role == "system")
        prompt = next((m.content or "" for m in request.messages if m.role == "user"), "")
        done = _progress(request)
        for rule in self.rules:
            if re.search(rule.pattern, system) or re.search(rule.pattern, prompt):
                index = min(done, len(rule.turns) - 1)
                if not request.tools:
                    later = [t for t in rule.turns[index:] if not t.tool_calls]
                    return later[0] if later else rule.turns[-1]
                return rule.turns[index]
        return self.default


def _progress(request: ModelRequest) -> int:
    """Assistant turns so far, counting those compacted away (see `Script.turn_for`)."""
    done = sum(1 for m in request.messages if m.role == "assistant")
    for message in request.messages:
        for call in message.tool_calls:
            found = _CALL_ID.match(call.id)
            if found:
                done = max(done, int(found.group(1)) + 1)
    return done


_CALL_ID = re.compile(r"call_(\d+)_\d+$")


class ScriptedModel:
    """An offline `Model` that answers from a `Script`, deterministic for a seed.

    Example::

        model = ScriptedModel(Script(rules=(
            Rule("researcher", (Turn(tool_calls=(("search", {"query": "leases"}),)),
                                Turn(text="Found: {tool_results}"))),
        )))

    `latency` is the base seconds per call and `seconds_per_token` the generation
    speed; a per-request jitter drawn from the seed keeps timings realistic yet
    repeatable. A turn's `fault` is injected on purpose (to fault a whole agent, wrap
    any model in `FaultyModel`).
    """

    provider = PROVIDER

    def __init__(
        self,
        script: Script | None = None,
        *,
        name: str = "scripted-1",
        seed: int = 0,
        latency: float = 0.05,
        seconds_per_token: float = 0.002,
        clock: Clock | None = None,
    ) -> None:
        self.script = script or Script()
        self.name = name
        self.seed = seed
        self.latency = latency
        self.seconds_per_token = seconds_per_token
        self._clock: Clock = clock or SystemClock()

    def _rng(self, request: ModelRequest) -> random.Random:
        digest = hashlib.sha256(f"{self.seed}:{request.model_dump_json()}".encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))

    def _render(self, request: ModelRequest, turn: Turn) -> ModelResponse:
        prompt = next((m.content or "" for m in request.messages if m.role == "user"), "")
        system = " ".join(m.content or "" for m in request.messages if m.role == "system")
        results = "; ".join(m.content or "" for m in request.messages if m.role == "tool")
        done = _progress(request)
        calls: list[ToolCall] = []
        for index, (tool_name, arguments) in enumerate(turn.tool_calls):
            raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
            calls.append(ToolCall(id=f"call_{done}_{index}", name=tool_name, arguments=raw))
        text: str | None = None
        if turn is self.script.default and request.output_schema is not None and not calls:
            text = json.dumps(schema_instance(request.output_schema))
        elif turn.text is not None and not calls:
            # Plain replacement, not str.format: scripted answers are often JSON.
            text = (
                turn.text.replace("{prompt}", prompt)
                .replace("{tool_results}", results)
                .replace("{instructions}", system)
            )
        output = (text or "") + "".join(c.name + c.arguments for c in calls)
        return ModelResponse(
            text=text,
            tool_calls=tuple(calls),
            finish_reason="tool_calls" if calls else "stop",
            usage=Usage(
                input_tokens=estimate_request(request), output_tokens=estimate_tokens(output)
            ),
            model=self.name,
            provider=PROVIDER,
        )

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Answer from the script after a realistic, seeded delay."""
        return await complete_from_stream(self, request)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        """Stream the scripted answer in a few chunks, ending with the full response."""
        started = self._clock.monotonic()
        turn = self.script.turn_for(request)
        fault = turn.fault or _simulated_fault(request)
        rng = self._rng(request)
        await before_call(fault, PROVIDER, self._clock)
        await self._clock.sleep(self.latency * (0.8 + 0.4 * rng.random()))
        response = after_call(fault, self._render(request, turn))
        ttft = self._clock.monotonic() - started
        pieces = _split(response.text or "", 3)
        per_piece = self.seconds_per_token * response.usage.output_tokens / max(1, len(pieces))
        for piece in pieces:
            yield StreamChunk(text=piece)
            await self._clock.sleep(per_piece)
        final = response.model_copy(
            update={"latency_s": self._clock.monotonic() - started, "time_to_first_token_s": ttft}
        )
        yield StreamChunk(response=final)


def _simulated_fault(request: ModelRequest) -> Fault | None:
    """The fault a simulation's world injects into this call (see `testing._sim_world`)."""
    sim = simulated_loop()
    if sim is None or sim.world is None:
        return None
    system = next((m.content or "" for m in request.messages if m.role == "system"), "")
    kind = sim.world.model_fault(" ".join(system.split()[:3]))
    return None if kind is None else Fault(kind)  # type: ignore[arg-type]  # the world draws FaultKind values


def _split(text: str, parts: int) -> Sequence[str]:
    if not text:
        return []
    size = max(1, math.ceil(len(text) / parts))
    return [text[i : i + size] for i in range(0, len(text), size)]
