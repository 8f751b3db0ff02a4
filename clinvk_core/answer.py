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


async def collect(events: AsyncIterator[Event]) -> Answer:
    """The turn's text, reasoning and tool calls, once the CLI reports its end."""
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[ToolCallDone] = []
    async for event in events:
        if isinstance(event, TextDelta):
            text.append(event.text)
        elif isinstance(event, ReasoningDelta):
            reasoning.append(event.text)
        elif isinstance(event, ToolCallDone):
            calls.append(event)
        elif isinstance(event, Completed):
            return Answer(event, "".join(text), "".join(reasoning), calls)
    raise UpstreamFailed("The CLI ended without completing the turn.")  # the gateway raises first


async def until_completed(events: AsyncIterator[Event]) -> AsyncIterator[Event]:
    """The events up to the end of the turn: what follows it (the CLI's exit) nobody waits for."""
    async for event in events:
        yield event
        if isinstance(event, Completed):
            return


def total_usage(usages: Iterable[TokenUsage | None]) -> TokenUsage | None:
    """What several runs of one request used (``n`` choices, a corrective turn): unknown if any run's is."""
    total = TokenUsage(0, 0)
    for usage in usages:
        if usage is None:
            return None
        total += usage
    return total
