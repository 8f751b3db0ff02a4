"""A whole turn's answer, gathered from its events: what every buffered (non-streamed) response renders."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from clinvk_core.errors import UpstreamFailed
from clinvk_core.events import Completed, Event, ReasoningDelta, TextDelta, TokenUsage, ToolCallDone


@dataclass
class Answer:
    completed: Completed
    text: str = ""
    reasoning: str = ""
    calls: list[ToolCallDone] = field(default_factory=list)


class Turn:
    """A run's events up to the end of its turn (what follows, the CLI's exit, nobody waits for), then
    that end: ``completed``, which fails the request if the events ended without one."""

    def __init__(self, events: AsyncIterator[Event]) -> None:
        self._events = events
        self._completed: Completed | None = None

    def __aiter__(self) -> Turn:
        return self

    async def __anext__(self) -> Event:
        if self._completed is not None:
            raise StopAsyncIteration
        event = await anext(self._events)
        if isinstance(event, Completed):
            self._completed = event
        return event

    @property
    def completed(self) -> Completed:
        if self._completed is None:  # the gateway raises first: a guard, and the type of the end
            raise UpstreamFailed("The CLI ended without completing the turn.")
        return self._completed


async def collect(events: AsyncIterator[Event]) -> Answer:
    """The turn's text, reasoning and tool calls, once the CLI reports its end."""
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[ToolCallDone] = []
    turn = Turn(events)
    async for event in turn:
        if isinstance(event, TextDelta):
            text.append(event.text)
        elif isinstance(event, ReasoningDelta):
            reasoning.append(event.text)
        elif isinstance(event, ToolCallDone):
            calls.append(event)
    return Answer(turn.completed, "".join(text), "".join(reasoning), calls)


def total_usage(usages: Iterable[TokenUsage | None]) -> TokenUsage | None:
    """What several runs of one request used (``n`` choices, a corrective turn): unknown if any run's is."""
    total = TokenUsage(0, 0)
    for usage in usages:
        if usage is None:
            return None
        total += usage
    return total
