"""A Conversation as the one text prompt a CLI reads: the shared part of every backend's rendering.

A lone user turn is sent as it is. Otherwise the earlier turns become a delimited transcript (tool
calls with their ids, names and arguments; tool results with the id they answer), followed by the
latest user turn, or, when the conversation ends with tool results, by the request to go on from
them. Images stand in the text where they were, as the backend refers to them (``image_ref``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from html import escape

from clinvk_core.conversation import (
    Conversation,
    ImagePart,
    Part,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    Turn,
)

ImageRef = Callable[[int, ImagePart], str]
"""The text that stands for the n-th image of the conversation (0-based), where the CLI gets it otherwise."""

CONTINUE = "Continue from the tool results above: answer the user, or call a tool again if you need more."


def numbered_image(index: int, image: ImagePart) -> str:
    return f"[image {index + 1}]"


def render_prompt(conversation: Conversation, image_ref: ImageRef = numbered_image) -> str:
    """The prompt for ``conversation``: transcript of earlier turns, then the request."""
    images = _ImageCounter(image_ref)
    turns = list(conversation.turns)
    last = turns[-1] if turns else Turn("user", ())
    ends_with_request = last.role == "user" and not any(isinstance(p, ToolResultPart) for p in last.parts)
    history = turns[:-1] if ends_with_request else turns
    transcript = "\n\n".join(block for turn in history for block in _blocks(turn, images))
    request = _content(last.parts, images) if ends_with_request else CONTINUE
    prompt = request if not history else (
        "The conversation so far, oldest turn first:\n\n"
        f"<conversation>\n{transcript}\n</conversation>\n\n"
        + (f"Reply to the user's latest message:\n\n{request}" if ends_with_request else request)
    )  # fmt: skip
    return prompt + _tool_choice_note(conversation)


def _blocks(turn: Turn, images: _ImageCounter) -> Iterator[str]:
    """A turn as transcript blocks: the speaker's own content, then each tool result on its own."""
    own = [part for part in turn.parts if not isinstance(part, ToolResultPart)]
    if own:
        yield f"<{turn.role}>\n{_content(own, images)}\n</{turn.role}>"
    for part in turn.parts:
        if isinstance(part, ToolResultPart):
            name = f' name="{escape(part.name)}"' if part.name else ""
            error = ' is_error="true"' if part.is_error else ""
            yield f'<tool_result call_id="{escape(part.call_id)}"{name}{error}>\n{part.content}\n</tool_result>'


def _content(parts: Sequence[Part], images: _ImageCounter) -> str:
    pieces: list[str] = []
    for part in parts:
        if isinstance(part, TextPart):
            pieces.append(part.text)
        elif isinstance(part, ImagePart):
            pieces.append(images.ref(part))
        elif isinstance(part, ToolCallPart):
            pieces.append(
                f'<tool_call call_id="{escape(part.id)}" name="{escape(part.name)}">{part.arguments}</tool_call>'
            )
    return "\n".join(pieces)


def _tool_choice_note(conversation: Conversation) -> str:
    """What the tool choice asks, said to the model where the CLI has no setting for it."""
    choice = conversation.tool_choice
    if not conversation.tools or choice.mode == "auto":
        return ""
    if choice.mode == "function":
        return f"\n\n(Answer by calling the tool `{choice.name}` now.)"
    return "\n\n(Answer by calling one of your tools now.)"


class _ImageCounter:
    def __init__(self, image_ref: ImageRef) -> None:
        self._image_ref = image_ref
        self._count = 0

    def ref(self, image: ImagePart) -> str:
        text = self._image_ref(self._count, image)
        self._count += 1
        return text
