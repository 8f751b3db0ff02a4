"""An OpenAI chat completions request -> the neutral :class:`Conversation`, checked on the way.

``system`` and ``developer`` messages become the system prompt. User messages bring text and
images; assistant messages text and calls (``tool_calls``, or a legacy ``function_call``); ``tool``
and legacy ``function`` messages the results, each of which must answer an earlier call. Every
problem is a 400 naming the parameter, as the OpenAI API would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clinvk_core.conversation import (
    Conversation,
    OutputFormat,
    Part,
    Role,
    Sampling,
    TextPart,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
    ToolSpec,
    Turn,
    valid_unicode,
)
from clinvk_core.errors import InvalidRequest
from clinvk_core.images import ImageLoader
from clinvk_core.openai.schema import ChatCompletionRequest, ChatMessage, ContentPart
from clinvk_core.tools import check_choice, check_json_schema, check_tool_set, tool_spec

_SYSTEM_ROLES = frozenset({"system", "developer"})
REASONING_EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh", "max"})


async def to_conversation(body: ChatCompletionRequest, images: ImageLoader) -> Conversation:
    """The Conversation ``body`` asks for; 400 when there is nothing to answer or something is wrong."""
    tools = _tools(body)
    choice = _tool_choice(body, tools)
    turns = await _Turns(images).build(body.messages)
    system = "\n\n".join(t for i, m in enumerate(body.messages) if m.role in _SYSTEM_ROLES and (t := _text(m, i)))
    return Conversation(
        turns=turns,
        system=system or None,
        tools=() if choice is None else tools,
        tool_choice=choice or ToolChoice(),
        parallel_tool_calls=body.parallel_tool_calls is not False,
        output=output_format(body.response_format, param="response_format"),
        sampling=_sampling(body),
        reasoning_effort=reasoning_effort(body.reasoning_effort, param="reasoning_effort"),
    )


class _Turns:
    """Messages -> turns, remembering the calls made so far so that each result answers one."""

    def __init__(self, images: ImageLoader) -> None:
        self._images = images
        self._calls: dict[str, str] = {}  # call id -> tool name
        self._legacy: list[tuple[str, str]] = []  # (call id, name) of function_call messages, unanswered

    async def build(self, messages: Sequence[ChatMessage]) -> tuple[Turn, ...]:
        turns: list[Turn] = []
        for index, message in enumerate(messages):
            if message.role in _SYSTEM_ROLES:
                continue
            role: Role = "assistant" if message.role == "assistant" else "user"
            parts = await self._parts(message, index)
            if turns and turns[-1].role == role == "user" and _all_results(turns[-1].parts) and _all_results(parts):
                turns[-1] = Turn("user", turns[-1].parts + parts)  # parallel results: one turn
            else:
                turns.append(Turn(role, parts))
        if not any(m.role == "user" for m in messages):
            raise InvalidRequest("messages must contain at least one message with role 'user'.", param="messages")
        return tuple(turns)

    async def _parts(self, message: ChatMessage, index: int) -> tuple[Part, ...]:
        if message.role == "user":
            return await self._user_parts(message, index)
        if message.role == "assistant":
            return self._assistant_parts(message, index)
        return (self._result(message, index),)

    async def _user_parts(self, message: ChatMessage, index: int) -> tuple[Part, ...]:
        content = message.content
        if content is None:
            raise _missing_content(index)
        if isinstance(content, str):
            return (TextPart(valid_unicode(content)),)
        parts: list[Part] = []
        for part_index, part in enumerate(content):
            param = f"messages[{index}].content[{part_index}]"
            if part.type == "image_url" and part.image_url is not None:
                parts.append(await self._images.load(part.image_url.url, param=f"{param}.image_url"))
            else:
                parts.append(TextPart(_part_text(part, param)))
        return tuple(parts)

    def _assistant_parts(self, message: ChatMessage, index: int) -> tuple[Part, ...]:
        parts: list[Part] = []
        if message.content is not None:
            text = _text(message, index)
            if text:
                parts.append(TextPart(text))
        for call_index, call in enumerate(message.tool_calls or []):
            param = f"messages[{index}].tool_calls[{call_index}]"
            if call.type != "function":
                raise InvalidRequest(f"Tool calls of type {call.type!r} are not supported.", param=f"{param}.type")
            self._calls[call.id] = call.function.name
            parts.append(ToolCallPart(call.id, call.function.name, call.function.arguments))
        if message.function_call is not None:
            call_id = f"call_legacy_{index}"
            self._legacy.append((call_id, message.function_call.name))
            parts.append(ToolCallPart(call_id, message.function_call.name, message.function_call.arguments))
        return tuple(parts)

    def _result(self, message: ChatMessage, index: int) -> ToolResultPart:
        if message.content is None:
            raise _missing_content(index)
        text = _text(message, index)
        if message.role == "function":  # legacy: answers the latest call of that name
            name = message.name or ""
            match = next((call for call in reversed(self._legacy) if call[1] == name), None)
            if match is None:
                raise InvalidRequest(
                    f"messages[{index}] is a function result for {name!r}, which no earlier function_call made.",
                    param=f"messages[{index}].name",
                )
            self._legacy.remove(match)
            return ToolResultPart(match[0], text, name)
        call_id = message.tool_call_id
        if call_id is None:
            raise InvalidRequest(f"Missing required parameter: 'messages[{index}].tool_call_id'.",
                                 param=f"messages[{index}].tool_call_id")  # fmt: skip
        if call_id not in self._calls:
            raise InvalidRequest(
                f"messages[{index}].tool_call_id {call_id[:80]!r} answers no tool call of an earlier "
                "assistant message.",
                param=f"messages[{index}].tool_call_id",
            )
        return ToolResultPart(call_id, text, self._calls[call_id])


def _all_results(parts: Sequence[Part]) -> bool:
    return bool(parts) and all(isinstance(part, ToolResultPart) for part in parts)


def _text(message: ChatMessage, index: int) -> str:
    """A message's text: its string content, or its text parts joined by newlines."""
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return valid_unicode(content)
    return "\n".join(_part_text(part, f"messages[{index}].content[{i}]") for i, part in enumerate(content))


def _part_text(part: ContentPart, param: str) -> str:
    if part.type != "text" or part.text is None:
        kinds = "text and image_url parts" if part.type != "text" else "a text part with 'text'"
        raise InvalidRequest(
            f"Content parts of type {part.type!r} are not supported here ({param}); send {kinds}.",
            param=param.rsplit("[", 1)[0],
        )
    return valid_unicode(part.text)


def _missing_content(index: int) -> InvalidRequest:
    return InvalidRequest(
        f"messages[{index}].content must be a string or an array of content parts.", param=f"messages[{index}].content"
    )


def _tools(body: ChatCompletionRequest) -> tuple[ToolSpec, ...]:
    tools: list[ToolSpec] = []
    for index, tool in enumerate(body.tools or []):
        param = f"tools[{index}]"
        if tool.type != "function" or tool.function is None:
            raise InvalidRequest(
                f"Tools of type {tool.type!r} are not supported: only 'function' tools, which the client runs.",
                param=f"{param}.type",
            )
        function = tool.function
        tools.append(tool_spec(function.name, function.description, function.parameters, param=f"{param}.function"))
    for index, function in enumerate(body.functions or []):
        tools.append(tool_spec(function.name, function.description, function.parameters, param=f"functions[{index}]"))
    check_tool_set(tools, param="tools" if body.tools else "functions")
    return tuple(tools)


def _tool_choice(body: ChatCompletionRequest, tools: Sequence[ToolSpec]) -> ToolChoice | None:
    """The tool choice (None: ``none``, no tool may be called); legacy ``function_call`` too."""
    param = "tool_choice" if body.tool_choice is not None else "function_call"
    raw: Any = body.tool_choice if body.tool_choice is not None else body.function_call
    if raw is None or raw == "auto":
        return ToolChoice()
    if raw == "none":
        return None
    if raw == "required":
        choice = ToolChoice("required")
    elif isinstance(raw, dict) and isinstance(name := _chosen_name(raw), str):
        choice = ToolChoice("function", name)
    else:
        raise InvalidRequest(
            f"Invalid value for '{param}': use 'auto', 'none', 'required' or "
            '{"type": "function", "function": {"name": ...}}.',
            param=param,
        )
    check_choice(choice, tools, param=param)
    return choice


def _chosen_name(raw: dict[str, Any]) -> Any:
    """The name in ``{"type":"function","function":{"name":...}}`` (or legacy ``{"name":...}``)."""
    if raw.get("type") == "function" and isinstance(raw.get("function"), dict):
        return raw["function"].get("name")
    return raw.get("name") if "type" not in raw else None


def output_format(response_format: dict[str, Any] | None, *, param: str, flat: bool = False) -> OutputFormat | None:
    """``text`` (None), ``json_object`` (any object) or ``json_schema`` (that schema).

    Chat nests a schema's ``name``/``schema``/``strict`` under ``json_schema``; the Responses API's
    ``text.format`` carries them itself (``flat``).
    """
    if response_format is None:
        return None
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return OutputFormat({"type": "object"}, "json_object")
    if kind == "json_schema":
        spec_param = param if flat else f"{param}.json_schema"
        spec = response_format if flat else response_format.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise InvalidRequest(f"'{spec_param}' must be an object with a 'name'.", param=spec_param)
        schema = spec.get("schema", {"type": "object"})
        check_json_schema(schema, param=f"{spec_param}.schema", what="The response format's schema")
        return OutputFormat(schema, spec["name"], spec.get("strict") is True)
    raise InvalidRequest(
        f"Unsupported {param} type {kind!r}: use 'text', 'json_object' or 'json_schema'.", param=f"{param}.type"
    )


def reasoning_effort(value: str | None, *, param: str) -> str | None:
    if value is not None and value not in REASONING_EFFORTS:
        raise InvalidRequest(
            f"Invalid value for '{param}': {value[:40]!r}; use one of {', '.join(sorted(REASONING_EFFORTS))}.",
            param=param,
        )
    return value


def _sampling(body: ChatCompletionRequest) -> Sampling:
    max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    param = "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
    return sampling(max_tokens, body.temperature, body.top_p, max_tokens_param=param)


def sampling(
    max_tokens: int | None, temperature: float | None, top_p: float | None, *, max_tokens_param: str
) -> Sampling:
    """The sampling settings, range-checked as the OpenAI API does."""
    if max_tokens is not None and max_tokens < 1:
        raise InvalidRequest(f"'{max_tokens_param}' must be at least 1.", param=max_tokens_param)
    if temperature is not None and not 0 <= temperature <= 2:
        raise InvalidRequest("'temperature' must be between 0 and 2.", param="temperature")
    if top_p is not None and not 0 <= top_p <= 1:
        raise InvalidRequest("'top_p' must be between 0 and 1.", param="top_p")
    return Sampling(max_tokens, temperature, top_p)
