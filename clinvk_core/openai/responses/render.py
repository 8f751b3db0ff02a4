"""A turn's events -> Responses API objects: the output items, the typed stream events, the response. Pure.

:class:`OutputBuilder` turns each event into the stream events it makes (an item opened, a delta, an
item done) and keeps the output items they add up to. The buffered answer runs the same builder and
keeps only the items, so a streamed and a buffered answer carry the same output. Text is a ``message``
item, visible reasoning a ``reasoning`` item (its text as the summary), each call of a client function
a ``function_call`` item; a new item starts whenever the kind of output changes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from clinvk_core.errors import GatewayError, RateLimited
from clinvk_core.events import (
    Completed,
    Event,
    ReasoningDelta,
    TextDelta,
    TokenUsage,
    ToolCallArguments,
    ToolCallDone,
    ToolCallStarted,
)
from clinvk_core.openai.responses.items import new_id, printable

JSON = dict[str, Any]


@dataclass(frozen=True)
class ResponseMeta:
    """What the response object repeats in every event of a stream: its id, and what the request asked."""

    id: str
    created_at: int
    model: str  # echoes the requested model string
    settings: JSON = field(default_factory=dict)  # instructions, tools, text, store... as the response lists them
    namespaces: dict[str, str] = field(default_factory=dict)  # function name -> its namespace


def response_object(
    meta: ResponseMeta,
    status: str,
    output: list[JSON],
    usage: TokenUsage | None = None,
    **fields: Any,
) -> JSON:
    """The ``response`` object; ``fields`` adds or overrides (``error``, ``incomplete_details``, ``store``)."""
    return {
        "id": meta.id,
        "object": "response",
        "created_at": meta.created_at,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": None,
        "model": meta.model,
        "output": output,
        "usage": usage_of(usage),
        **meta.settings,
        **fields,
    }


def usage_of(usage: TokenUsage | None) -> JSON | None:
    """The CLI's own counts (None rather than an estimate); cache writes are not reported through clinvk."""
    if usage is None:
        return None
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def finished_response(meta: ResponseMeta, output: list[JSON], completed: Completed) -> JSON:
    """The response at the end of the turn: completed, or incomplete at the output token limit."""
    if completed.finish_reason == "length":
        return response_object(meta, "incomplete", output, completed.usage,
                               incomplete_details={"reason": "max_output_tokens"})  # fmt: skip
    return response_object(meta, "completed", output, completed.usage, completed_at=int(time.time()))


def failed_response(meta: ResponseMeta, output: list[JSON], error: GatewayError) -> JSON:
    """The response of a turn that failed after the stream started (``response.failed``)."""
    code = "rate_limit_exceeded" if isinstance(error, RateLimited) else "server_error"  # the codes OpenAI has
    return response_object(meta, "failed", output, error={"code": code, "message": error.message})


def error_fields(error: GatewayError) -> JSON:
    """An ``error`` stream event's fields: the gateway's own code (upstream_error, timeout...)."""
    return {"code": error.code or error.type, "message": error.message, "param": error.param}


class OutputBuilder:
    """Events -> stream events (each with the next ``sequence_number``) and the output items."""

    def __init__(self, namespaces: dict[str, str] | None = None) -> None:
        self.items: list[JSON] = []
        self._namespaces = namespaces or {}
        self._sequence = 0
        self._open: int | None = None  # index of the message or reasoning item being written
        self._text: list[str] = []  # of that item
        self._calls: dict[int, tuple[int, list[str]]] = {}  # call index -> (item index, arguments so far)

    def event(self, kind: str, **fields: Any) -> JSON:
        """A stream event of type ``kind``, numbered."""
        numbered = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return numbered

    def feed(self, event: Event) -> list[JSON]:
        """The stream events ``event`` makes (none for what the Responses API does not show)."""
        if isinstance(event, TextDelta) and event.text:
            return self._write("message", printable(event.text))
        if isinstance(event, ReasoningDelta) and event.text:
            return self._write("reasoning", printable(event.text))
        if isinstance(event, ToolCallStarted):
            return self._close("completed") + self._start_call(event.index, event.name)
        if isinstance(event, ToolCallArguments) and event.delta:
            return self._call_arguments(event.index, printable(event.delta))
        if isinstance(event, ToolCallDone):
            done = ToolCallDone(event.index, event.name, printable(event.arguments))
            return self._close("completed") + self._finish_call(done)
        return []

    def finish(self, completed: Completed) -> list[JSON]:
        """Close every open item at the end of the turn; an answer with no output at all is one empty message."""
        status = "incomplete" if completed.finish_reason == "length" else "completed"
        events = self._close(status)
        for index in list(self._calls):
            item = self.items[self._calls[index][0]]
            events += self._finish_call(ToolCallDone(index, item["name"], "".join(self._calls[index][1])), status)
        if not self.items:
            events += self._open_item("message") + self._close(status)
        return events

    # --- message and reasoning items: text written as deltas -----------------------------------------

    def _write(self, kind: str, text: str) -> list[JSON]:
        events: list[JSON] = []
        if self._open is not None and self.items[self._open]["type"] != kind:
            events += self._close("completed")
        if self._open is None:
            events += self._open_item(kind)
        self._text.append(text)
        where = self._where()
        if kind == "message":
            return [
                *events,
                self.event("response.output_text.delta", **where, content_index=0, delta=text, logprobs=[]),
            ]
        return [*events, self.event("response.reasoning_summary_text.delta", **where, summary_index=0, delta=text)]

    def _open_item(self, kind: str) -> list[JSON]:
        if kind == "message":
            item: JSON = {"id": new_id("msg"), "type": "message", "status": "in_progress", "role": "assistant",
                          "content": []}  # fmt: skip
        else:
            item = {"id": new_id("rs"), "type": "reasoning", "summary": []}
        self._open, self._text = len(self.items), []
        self.items.append(item)
        added = self.event("response.output_item.added", output_index=self._open, item=dict(item))
        if kind == "message":
            part = self.event("response.content_part.added", **self._where(), content_index=0, part=_output_text(""))
        else:
            part = self.event("response.reasoning_summary_part.added", **self._where(), summary_index=0,
                              part=_summary_text(""))  # fmt: skip
        return [added, part]

    def _close(self, status: str) -> list[JSON]:
        if self._open is None:
            return []
        index, text = self._open, "".join(self._text)
        where = self._where()
        self._open = None
        item = self.items[index]
        if item["type"] == "message":
            events = [
                self.event("response.output_text.done", **where, content_index=0, text=text, logprobs=[]),
                self.event("response.content_part.done", **where, content_index=0, part=_output_text(text)),
            ]
            item |= {"status": status, "content": [_output_text(text)]}
        else:
            events = [
                self.event("response.reasoning_summary_text.done", **where, summary_index=0, text=text),
                self.event("response.reasoning_summary_part.done", **where, summary_index=0, part=_summary_text(text)),
            ]
            item["summary"] = [_summary_text(text)]
        return [*events, self.event("response.output_item.done", output_index=index, item=dict(item))]

    def _where(self) -> JSON:
        """``item_id`` and ``output_index`` of the open item."""
        assert self._open is not None
        return {"item_id": self.items[self._open]["id"], "output_index": self._open}

    # --- function_call items: arguments written as deltas ----------------------------------------------

    def _start_call(self, index: int, name: str) -> list[JSON]:
        item: JSON = {"id": new_id("fc"), "type": "function_call", "status": "in_progress",
                      "call_id": new_id("call"), "name": name, "arguments": ""}  # fmt: skip
        if name in self._namespaces:
            item["namespace"] = self._namespaces[name]
        self._calls[index] = (len(self.items), [])
        self.items.append(item)
        return [self.event("response.output_item.added", output_index=len(self.items) - 1, item=dict(item))]

    def _call_arguments(self, index: int, delta: str) -> list[JSON]:
        if index not in self._calls:
            return []  # arguments of a call never started: its ToolCallDone still brings them whole
        position, arguments = self._calls[index]
        arguments.append(delta)
        item_id = self.items[position]["id"]
        return [self.event("response.function_call_arguments.delta", item_id=item_id, output_index=position,
                           delta=delta)]  # fmt: skip

    def _finish_call(self, done: ToolCallDone, status: str = "completed") -> list[JSON]:
        """The call's arguments complete: what the deltas lacked as one more delta, then the item done."""
        events = [] if done.index in self._calls else self._start_call(done.index, done.name)
        sent = "".join(self._calls[done.index][1])
        if done.arguments != sent and done.arguments.startswith(sent):
            events += self._call_arguments(done.index, done.arguments[len(sent) :])
        position, _ = self._calls.pop(done.index)
        item = self.items[position]
        item |= {"status": status, "arguments": done.arguments}
        return [
            *events,
            self.event(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=position,
                arguments=done.arguments,
            ),
            self.event("response.output_item.done", output_index=position, item=dict(item)),
        ]


def _output_text(text: str) -> JSON:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _summary_text(text: str) -> JSON:
    return {"type": "summary_text", "text": text}
