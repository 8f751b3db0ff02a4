"""The neutral request: what a client asks of a model, independent of any wire format or CLI.

Every wire format (OpenAI chat completions, OpenAI Responses, Anthropic Messages) translates its
request into a :class:`Conversation`; every backend renders a Conversation into what its CLI takes.
A new wire format or part type plugs in here, without touching the runner.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["user", "assistant"]


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image, already fetched or decoded: its bytes and media type (``image/png``...)."""

    media_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class ToolCallPart:
    """A call the assistant made earlier in the conversation; ``arguments`` is a JSON text."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolResultPart:
    """What the client's tool answered to the call ``call_id``."""

    call_id: str
    content: str
    name: str | None = None  # the called tool, when known
    is_error: bool = False


Part = TextPart | ImagePart | ToolCallPart | ToolResultPart


@dataclass(frozen=True, slots=True)
class Turn:
    role: Role
    parts: tuple[Part, ...]

    @property
    def text(self) -> str:
        """The turn's text parts, joined by newlines."""
        return "\n".join(part.text for part in self.parts if isinstance(part, TextPart))


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function the client offers the model; ``parameters`` is its JSON Schema, unchanged."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """``auto`` (the model decides), ``required`` (some tool), or ``function`` (the one named)."""

    mode: Literal["auto", "required", "function"] = "auto"
    name: str | None = None


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """The answer must be one JSON value valid against ``schema`` (``json_object``: any object)."""

    schema: dict[str, Any]
    name: str = "output"
    strict: bool = False


@dataclass(frozen=True, slots=True)
class Sampling:
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None


@dataclass(frozen=True, slots=True)
class Conversation:
    """One model turn to run: the system prompt, the turns so far, and what the answer may use.

    ``tools`` is empty when the model must not call any client tool (none offered, or tool choice
    ``none``); a turn ends as soon as the model calls one of them.
    """

    turns: tuple[Turn, ...]
    system: str | None = None
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    parallel_tool_calls: bool = True
    output: OutputFormat | None = None
    sampling: Sampling = field(default_factory=Sampling)
    reasoning_effort: str | None = None

    @classmethod
    def of(cls, prompt: str, system: str | None = None) -> Conversation:
        """One user turn of text (and a system prompt): the simplest request."""
        return cls((Turn("user", (TextPart(prompt),)),), system)

    @property
    def images(self) -> list[ImagePart]:
        return [part for turn in self.turns for part in turn.parts if isinstance(part, ImagePart)]


def valid_unicode(text: str) -> str:
    """Text any CLI can take: lone surrogates (legal in JSON escapes, not in UTF-8) and NUL (which no argv
    string can hold) become U+FFFD instead of crashing a write."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").replace("\x00", "\ufffd")


def valid_unicode_json(value: Any) -> Any:
    """A JSON value whose every string (keys included) is :func:`valid_unicode`."""
    if isinstance(value, str):
        return valid_unicode(value)
    if isinstance(value, dict):
        return {valid_unicode(key): valid_unicode_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [valid_unicode_json(item) for item in value]
    return value


def loads_valid_unicode(text: str) -> Any:
    """``json.loads``, with any lone surrogate its escapes spelled (``\\udXXX``) made :func:`valid_unicode`."""
    value = json.loads(text)
    return valid_unicode_json(value) if "\\ud" in text.lower() else value
