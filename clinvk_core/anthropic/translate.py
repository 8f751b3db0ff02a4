"""An Anthropic Messages request -> the neutral :class:`Conversation`, checked on the way.

``system`` (a string or text blocks) and system turns in ``messages`` (Claude Code sends its environment
that way) become the system prompt, in order. User messages bring text, images and tool results, each
result answering an earlier ``tool_use``; assistant messages bring text and tool calls. ``thinking`` blocks
of earlier turns are dropped, as Anthropic's API drops them from the context: the CLIs cannot take signed
reasoning back. Every problem is a 400 that says what is wrong and where.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from clinvk_core.anthropic.schema import ContentBlock, Message, MessagesRequest, OutputConfig
from clinvk_core.anthropic.toolset import ToolSet, parallel_calls, tool_choice
from clinvk_core.conversation import (
    Conversation,
    ImagePart,
    OutputFormat,
    Part,
    Sampling,
    TextPart,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
    Turn,
    valid_unicode,
)
from clinvk_core.errors import InvalidRequest
from clinvk_core.images import ImageLoader
from clinvk_core.tools import check_json_schema

EFFORTS = ("low", "medium", "high", "xhigh", "max")
_THINKING = frozenset({"thinking", "redacted_thinking"})


async def to_conversation(body: MessagesRequest, images: ImageLoader) -> Conversation:
    """The Conversation ``body`` asks for; 400 when there is nothing to answer or something is wrong."""
    if body.mcp_servers:
        raise InvalidRequest("mcp_servers is not supported: clinvk's CLIs reach no remote MCP server for a request.")
    tools = ToolSet(body.tools or [])
    messages = _Messages(images, tools)
    turns = await messages.build(body.messages)
    system = [*_system_texts(body.system), *messages.system]
    offered = tools.offered()
    choice = tool_choice(body.tool_choice, offered)
    return Conversation(
        turns=turns,
        system="\n\n".join(text for text in system if text) or None,
        tools=() if choice is None else offered,
        tool_choice=choice or ToolChoice(),
        parallel_tool_calls=parallel_calls(body.tool_choice),
        output=output_format(body.output_config),
        sampling=sampling(body),
        reasoning_effort=effort(body.output_config),
    )


class _Messages:
    """Messages -> turns, remembering the calls made so far so that each result answers one."""

    def __init__(self, images: ImageLoader, tools: ToolSet) -> None:
        self._images = images
        self._tools = tools
        self._calls: dict[str, str] = {}  # tool_use id -> tool name
        self.system: list[str] = []  # the texts of system turns

    async def build(self, messages: Sequence[Message]) -> tuple[Turn, ...]:
        turns: list[Turn] = []
        for index, message in enumerate(messages):
            param = f"messages[{index}]"
            if isinstance(message.content, list) and not message.content:
                raise InvalidRequest(f"{param}.content must not be empty.")
            if message.role == "system":
                self.system.append(self._system(message, param))
            elif message.role == "user":
                turns.append(Turn("user", await self._user(message, param)))
            else:
                turns.append(Turn("assistant", self._assistant(message, param)))
        if not turns or turns[-1].role != "user":
            raise InvalidRequest(
                "The last message must be a user message (a question or tool results): clinvk cannot continue a "
                "prefilled assistant message."
            )
        return tuple(turns)

    def _system(self, message: Message, param: str) -> str:
        if isinstance(message.content, str):
            return valid_unicode(message.content)
        texts: list[str] = []
        for index, block in enumerate(message.content):
            where = f"{param}.content[{index}]"
            if block.type in ("tool_addition", "tool_removal"):
                self._tools.change(block.type, block.tool, where)
            else:
                texts.append(_text(block, where, "text, tool_addition and tool_removal blocks in a system turn"))
        return "\n\n".join(texts)

    async def _user(self, message: Message, param: str) -> tuple[Part, ...]:
        if isinstance(message.content, str):
            return (TextPart(valid_unicode(message.content)),)
        parts: list[Part] = []
        for index, block in enumerate(message.content):
            where = f"{param}.content[{index}]"
            if block.type == "image":
                parts.append(await self._image(block, where))
            elif block.type == "tool_result":
                parts += await self._result(block, where)
            else:
                parts.append(TextPart(_text(block, where, "text, image and tool_result blocks in a user message")))
        return tuple(parts)

    def _assistant(self, message: Message, param: str) -> tuple[Part, ...]:
        if isinstance(message.content, str):
            return (TextPart(valid_unicode(message.content)),)
        parts: list[Part] = []
        for index, block in enumerate(message.content):
            where = f"{param}.content[{index}]"
            if block.type in _THINKING:
                continue
            if block.type == "tool_use":
                if block.id is None or block.name is None or block.input is None:
                    raise InvalidRequest(f"{where} is a tool_use block without its 'id', 'name' or 'input'.")
                self._calls[block.id] = block.name
                parts.append(ToolCallPart(block.id, block.name, json.dumps(block.input, ensure_ascii=False)))
            else:
                parts.append(TextPart(_text(block, where, "text, tool_use and thinking blocks in an assistant turn")))
        return tuple(parts)

    async def _result(self, block: ContentBlock, param: str) -> list[Part]:
        """The result, then the images it holds (each shown as ``[image]`` in its text)."""
        call_id = block.tool_use_id
        if call_id is None:
            raise InvalidRequest(f"Missing required parameter: '{param}.tool_use_id'.")
        if call_id not in self._calls:
            raise InvalidRequest(
                f"{param}.tool_use_id {call_id[:80]!r} answers no tool_use block of an earlier assistant message."
            )
        images: list[Part] = []
        pieces: list[str] = []
        for index, inner in enumerate([] if isinstance(block.content, str | None) else block.content):
            where = f"{param}.content[{index}]"
            if inner.type == "image":
                images.append(await self._image(inner, where))
                pieces.append("[image]")
            elif inner.type == "tool_reference" and inner.tool_name is not None:
                self._tools.reference(inner.tool_name, where)
                pieces.append(f"[tool {inner.tool_name} is now available]")
            else:
                pieces.append(_text(inner, where, "text, image and tool_reference blocks in a tool result"))
        text = valid_unicode(block.content) if isinstance(block.content, str) else "\n".join(pieces)
        return [ToolResultPart(call_id, text, self._calls[call_id], block.is_error is True), *images]

    async def _image(self, block: ContentBlock, param: str) -> ImagePart:
        source = block.source
        if source is None or isinstance(source, str):
            raise InvalidRequest(f"{param} is an image block without a 'source'.")
        if source.type == "base64" and source.media_type is not None and source.data is not None:
            return self._images.from_base64(source.media_type, source.data, param=param)
        if source.type == "url" and source.url is not None:
            return await self._images.load(source.url, param=param)
        raise InvalidRequest(
            f"{param}.source must be {{'type': 'base64', 'media_type', 'data'}} or {{'type': 'url', 'url'}}."
        )


def _text(block: ContentBlock, param: str, supported: str) -> str:
    """A text block's text; any other block type here is a 400 naming what is supported."""
    if block.type != "text" or block.text is None:
        what = f"blocks of type {block.type[:40]!r}" if block.type != "text" else "a text block without 'text'"
        raise InvalidRequest(f"{param}: {what} are not supported here; send {supported}.")
    return valid_unicode(block.text)


def _system_texts(system: str | list[ContentBlock] | None) -> list[str]:
    if system is None or isinstance(system, str):
        return [valid_unicode(system or "")]
    return [_text(block, f"system[{index}]", "text blocks") for index, block in enumerate(system)]


def sampling(body: MessagesRequest) -> Sampling:
    """max_tokens, temperature and top_p, range-checked as Anthropic does; top_k is checked, then ignored."""
    if body.max_tokens < 1:
        raise InvalidRequest("max_tokens must be at least 1.")
    if body.temperature is not None and not 0 <= body.temperature <= 1:
        raise InvalidRequest("temperature must be between 0 and 1.")
    if body.top_p is not None and not 0 <= body.top_p <= 1:
        raise InvalidRequest("top_p must be between 0 and 1.")
    if body.top_k is not None and body.top_k < 0:
        raise InvalidRequest("top_k must be at least 0.")
    return Sampling(body.max_tokens, body.temperature, body.top_p)


def effort(config: OutputConfig | None) -> str | None:
    value = config.effort if config else None
    if value is not None and value not in EFFORTS:
        raise InvalidRequest(f"Invalid output_config.effort {value[:40]!r}: use one of {', '.join(EFFORTS)}.")
    return value


def output_format(config: OutputConfig | None) -> OutputFormat | None:
    """``output_config.format``: the answer is one JSON value valid against the schema.

    Not ``strict`` in clinvk's sense (OpenAI's strict rules, which codex enforces): Anthropic accepts
    schemas with optional properties, and codex narrows them instead; clinvk checks every answer anyway.
    """
    spec = config.format if config else None
    if spec is None:
        return None
    if spec.get("type") != "json_schema" or "schema" not in spec:
        raise InvalidRequest('output_config.format must be {"type": "json_schema", "schema": {...}}.')
    check_json_schema(spec["schema"], param="output_config.format.schema", what="The output format's schema")
    return OutputFormat(spec["schema"])
