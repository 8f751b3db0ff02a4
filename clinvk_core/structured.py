"""Structured output held to its schema, whatever the CLI guarantees on its own.

When a turn asks for JSON (``Conversation.output``), its text is held back until the turn ends, then
parsed and validated against the schema. An answer that does not validate gets one corrective turn
(the same conversation, the invalid answer, and what is wrong with it); a second invalid answer is a
502 saying why. The text goes out as one delta once it is known to be valid. A turn that ends in a
client tool call, or at the length limit, is passed on unchecked: it is not the final answer.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import Any

from clinvk_core.answer import total_usage
from clinvk_core.conversation import Conversation, TextPart, Turn
from clinvk_core.errors import UpstreamFailed
from clinvk_core.events import Completed, Event, TextDelta

Rerun = Callable[[Conversation], AbstractAsyncContextManager[AsyncIterator[Event]]]


def violation(text: str, schema: dict[str, Any]) -> str | None:
    """What is wrong with ``text`` as an answer for ``schema`` (None: nothing)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        return f"the answer is not JSON ({error.msg} at character {error.pos})"
    from jsonschema import validators  # here: a cold start without structured output need not pay

    found = next(iter(validators.validator_for(schema)(schema).iter_errors(value)), None)
    if found is None:
        return None
    where = "/".join(str(part) for part in found.absolute_path) or "the top level"
    return f"at {where}: {found.message[:300]}"


async def checked_output(
    events: AsyncIterator[Event], conversation: Conversation, rerun: Rerun
) -> AsyncGenerator[Event, None]:
    """The events of a structured-output turn, its answer validated (and corrected once if need be)."""
    assert conversation.output is not None
    schema = conversation.output.schema
    first = _Turn()
    async for event in first.relay(events):
        yield event
    if first.completed is None or not first.checked:
        return
    problem = violation(first.text, schema)
    if problem is None:
        yield TextDelta(first.text)
        yield first.completed
        return
    correction = (
        f"Your answer does not match the required JSON schema: {problem}. "
        "Answer again with only the JSON value, valid against the schema."
    )
    turns = (*conversation.turns, Turn("assistant", (TextPart(first.text),)), Turn("user", (TextPart(correction),)))
    second = _Turn()
    async with rerun(replace(conversation, turns=turns)) as retry:
        async for event in second.relay(retry):
            yield event
    if second.completed is None or not second.checked:
        return
    problem = violation(second.text, schema)
    if problem is not None:
        raise UpstreamFailed(f"The model's answer does not match the requested JSON schema, twice: {problem}")
    yield TextDelta(second.text)
    yield replace(second.completed, usage=total_usage((first.completed.usage, second.completed.usage)))  # both ran


class _Turn:
    """One run's events passed on, its text held back until its end."""

    def __init__(self) -> None:
        self.text = ""
        self.completed: Completed | None = None

    @property
    def checked(self) -> bool:
        """Whether the turn ended with a final answer (not a tool call, not cut at the length limit)."""
        return self.completed is not None and self.completed.finish_reason == "stop"

    async def relay(self, events: AsyncIterator[Event]) -> AsyncIterator[Event]:
        async for event in events:
            if isinstance(event, TextDelta):
                self.text += event.text
            elif isinstance(event, Completed):
                self.completed = event
                if not self.checked:  # passed on as it is
                    if self.text:
                        yield TextDelta(self.text)
                    yield event
                return
            else:
                yield event
