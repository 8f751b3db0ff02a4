"""OpenAI messages -> one system prompt and one prompt, the only two things a CLI takes.

``system`` and ``developer`` messages become the system prompt. A single user message
is sent as is; longer conversations become a delimited transcript of the earlier
turns followed by the latest user message, which is the request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from clinvk_core.errors import InvalidRequest
from clinvk_core.openai.schema import ChatMessage

_SYSTEM_ROLES = frozenset({"system", "developer"})
_TAGS = {"user": "user", "assistant": "assistant", "tool": "tool_result", "function": "tool_result"}


@dataclass(frozen=True)
class Conversation:
    system_prompt: str | None
    prompt: str


def build_conversation(messages: Sequence[ChatMessage]) -> Conversation:
    """The system prompt and prompt for ``messages``; 400 when there is nothing to answer."""
    texts = [_text(message, index) for index, message in enumerate(messages)]
    system = "\n\n".join(t for m, t in zip(messages, texts, strict=True) if m.role in _SYSTEM_ROLES and t)
    turns = [(m.role, t) for m, t in zip(messages, texts, strict=True) if m.role not in _SYSTEM_ROLES]
    last_user = max((i for i, (role, _) in enumerate(turns) if role == "user"), default=None)
    if last_user is None:
        raise InvalidRequest("messages must contain at least one message with role 'user'.", param="messages")
    request = turns[last_user][1]
    history = turns[:last_user] + turns[last_user + 1 :]
    if not history:
        return Conversation(system or None, request)
    transcript = "\n\n".join(f"<{_TAGS[role]}>\n{text}\n</{_TAGS[role]}>" for role, text in history)
    prompt = (
        "The conversation so far, oldest turn first:\n\n"
        f"<conversation>\n{transcript}\n</conversation>\n\n"
        f"Reply to the user's latest message:\n\n{request}"
    )
    return Conversation(system or None, prompt)


def _text(message: ChatMessage, index: int) -> str:
    content = message.content
    if content is None:
        if message.role == "assistant":
            return ""
        raise InvalidRequest(
            f"messages[{index}].content must be a string or an array of text parts.",
            param=f"messages[{index}].content",
        )
    if isinstance(content, str):
        return _valid_unicode(content)
    texts = []
    for part_index, part in enumerate(content):
        if part.type != "text" or part.text is None:
            raise InvalidRequest(
                f"Content parts of type {part.type!r} are not supported "
                f"(messages[{index}].content[{part_index}]); send text parts only.",
                param=f"messages[{index}].content",
            )
        texts.append(_valid_unicode(part.text))
    return "\n".join(texts)


def _valid_unicode(text: str) -> str:
    """Text any CLI can take: lone surrogates (legal in JSON escapes, not in UTF-8) and NUL (which no argv
    string can hold) become U+FFFD instead of crashing a write."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").replace("\x00", "\ufffd")
