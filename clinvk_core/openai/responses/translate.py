"""A Responses API request -> the neutral :class:`Conversation`, checked on the way.

The turn is built from the items of the stored conversation (``previous_response_id``) followed by the
request's own input. ``instructions`` and ``system``/``developer`` messages become the system prompt
(earlier responses' ``instructions`` are not carried over, as in OpenAI's API). Consecutive assistant
messages and ``function_call`` items make one assistant turn, consecutive ``function_call_output``
items one turn of results, each of which must answer an earlier call. The conversation must end with
what the model is to answer: a user message or function results.

Tools are the flat Responses shape, ``{"type": "function", "name", "description", "parameters",
"strict"}``, and namespaces of them (the codex CLI groups some of its tools so); the calls of a
namespaced function name their namespace. Hosted tool types are a 400 naming the type, except the
``web_search`` the codex CLI sends by default (docs/responses.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from clinvk_core.conversation import (
    Conversation,
    Part,
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
from clinvk_core.openai.responses.items import Located, part_text
from clinvk_core.openai.responses.schema import (
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionTool,
    Item,
    MessageItem,
    ResponseCreateRequest,
)
from clinvk_core.openai.translate import output_format, reasoning_effort, sampling
from clinvk_core.tools import TOOL_NAME, check_choice, check_tool_set, tool_spec
from clinvk_core.web.errors import invalid_at, param_path

MAX_METADATA_PAIRS, MAX_METADATA_KEY, MAX_METADATA_VALUE = 16, 64, 512
LOGPROBS_INCLUDE = "message.output_text.logprobs"


@dataclass(frozen=True)
class Tools:
    """The request's functions: as the model is offered them, as the response lists them, and their namespaces."""

    specs: tuple[ToolSpec, ...] = ()
    listed: list[dict[str, Any]] = field(default_factory=list)
    namespaces: dict[str, str] = field(default_factory=dict)  # function name -> its namespace


async def to_conversation(
    body: ResponseCreateRequest, items: Sequence[Located], tools: Tools, images: ImageLoader
) -> Conversation:
    """The Conversation of ``items`` (earlier turns' first) under the request's settings; 400 when wrong."""
    choice, offered = tool_choice(body.tool_choice, tools.specs)
    turns, system = await _Turns(images).build(items)
    text_format = body.text.format if body.text else None
    return Conversation(
        turns=turns,
        system="\n\n".join(part for part in (valid_unicode(body.instructions or ""), *system) if part) or None,
        tools=() if choice is None else offered,
        tool_choice=choice or ToolChoice(),
        parallel_tool_calls=body.parallel_tool_calls is not False,
        output=output_format(text_format, param="text.format", flat=True),
        sampling=sampling(body.max_output_tokens, body.temperature, body.top_p, max_tokens_param="max_output_tokens"),
        reasoning_effort=reasoning_effort(body.reasoning.effort if body.reasoning else None, param="reasoning.effort"),
    )


def check_supported(body: ResponseCreateRequest) -> None:
    """400 for what clinvk cannot honour and would otherwise silently change the answer; metadata's limits."""
    refused = {
        "background": (body.background is True, "Background responses are not available: every response "
                       "is answered while the request is open (stream it for long turns)."),
        "conversation": (body.conversation is not None, "The Conversations API is not available: continue a "
                         "conversation with previous_response_id."),
        "prompt": (body.prompt is not None, "Stored prompt templates are not available: send instructions and input."),
        "top_logprobs": (bool(body.top_logprobs), "logprobs are not available: none of the CLIs reports token "
                         "log probabilities."),
        "include": (LOGPROBS_INCLUDE in (body.include or []), f"'{LOGPROBS_INCLUDE}' is not available: none of "
                    "the CLIs reports token log probabilities."),
    }  # fmt: skip
    for param, (wrong, message) in refused.items():
        if wrong:
            raise InvalidRequest(message, param=param)
    metadata = body.metadata or {}
    if len(metadata) > MAX_METADATA_PAIRS or any(
        len(key) > MAX_METADATA_KEY or len(value) > MAX_METADATA_VALUE for key, value in metadata.items()
    ):
        raise InvalidRequest(
            f"'metadata' holds at most {MAX_METADATA_PAIRS} pairs, keys of at most {MAX_METADATA_KEY} characters "
            f"and values of at most {MAX_METADATA_VALUE}.",
            param="metadata",
        )


def offered_tools(raw: Sequence[dict[str, Any]] | None) -> Tools:
    """The request's ``tools``: functions, and namespaces of functions; 400 for any other kind."""
    specs: list[ToolSpec] = []
    listed: list[dict[str, Any]] = []
    namespaces: dict[str, str] = {}
    for index, tool in enumerate(raw or []):
        param = f"tools[{index}]"
        kind = tool.get("type")
        if kind == "function":
            spec, shown = _function(tool, "tools", index)
            specs.append(spec)
            listed.append(shown)
        elif kind == "namespace":
            name, inner = tool.get("name"), tool.get("tools")
            if not isinstance(name, str) or not TOOL_NAME.fullmatch(name) or not isinstance(inner, list):
                raise InvalidRequest(
                    f"'{param}' must have a 'name' (1 to 64 letters, digits, '_' or '-') and a list of 'tools'.",
                    param=param,
                )
            functions = [_function(f, "tools", index, "tools", i) for i, f in enumerate(inner)]
            specs += [spec for spec, _ in functions]
            namespaces |= {spec.name: name for spec, _ in functions}
            description = tool.get("description") if isinstance(tool.get("description"), str) else ""
            listed.append({"type": "namespace", "name": name, "description": description,
                           "tools": [shown for _, shown in functions]})  # fmt: skip
        elif not _sent_by_default(tool):
            raise InvalidRequest(
                f"Tools of type {str(kind)[:60]!r} are not supported: only 'function' tools (and namespaces of "
                "them), which the client runs.",
                param=f"{param}.type",
            )
    check_tool_set(specs, param="tools")
    return Tools(tuple(specs), listed, namespaces)


def _function(tool: Any, *loc: str | int) -> tuple[ToolSpec, dict[str, Any]]:
    """A function tool at ``loc``: what the model is offered, and how the response lists it."""
    param = param_path(loc)
    if not isinstance(tool, dict) or tool.get("type") != "function":
        kind = tool.get("type") if isinstance(tool, dict) else tool
        raise InvalidRequest(
            f"Tools of type {str(kind)[:60]!r} are not supported in a namespace: only 'function'.",
            param=f"{param}.type",
        )
    try:
        function = FunctionTool.model_validate(tool)
    except ValidationError as error:
        raise invalid_at(error, *loc) from None
    spec = tool_spec(function.name, function.description, function.parameters, param=param)
    shown = {"type": "function", "name": spec.name, "description": function.description,
             "parameters": spec.parameters, "strict": function.strict}  # fmt: skip
    return spec, shown


def _sent_by_default(tool: dict[str, Any]) -> bool:
    """A hosted tool a client sends without being asked, which clinvk drops (docs/responses.md).

    The codex CLI offers its cached web search, ``{"type": "web_search", "external_web_access": false}``, on
    every turn; the model gets no web search through clinvk (the CLIs' own tools follow the tool mode).
    """
    return tool.get("type") == "web_search" and tool.get("external_web_access") is False


def tool_choice(
    raw: str | dict[str, Any] | None, tools: tuple[ToolSpec, ...]
) -> tuple[ToolChoice | None, tuple[ToolSpec, ...]]:
    """The tool choice (None: ``none``, no tool may be called) and the tools it leaves the model."""
    if raw is None or raw == "auto":
        return ToolChoice(), tools
    if raw == "none":
        return None, tools
    if raw == "required":
        choice = ToolChoice("required")
    elif isinstance(raw, dict) and raw.get("type") == "function" and isinstance(raw.get("name"), str):
        choice = ToolChoice("function", raw["name"])
    elif isinstance(raw, dict) and raw.get("type") == "allowed_tools":
        choice, tools = _allowed_tools(raw, tools)
    else:
        kind = raw.get("type") if isinstance(raw, dict) else raw
        raise InvalidRequest(
            f"Unsupported tool_choice {str(kind)[:60]!r}: use 'auto', 'none', 'required', "
            '{"type": "function", "name": ...} or {"type": "allowed_tools", ...}.',
            param="tool_choice",
        )
    check_choice(choice, tools, param="tool_choice")
    return choice, tools


def _allowed_tools(raw: dict[str, Any], tools: tuple[ToolSpec, ...]) -> tuple[ToolChoice, tuple[ToolSpec, ...]]:
    """``{"type": "allowed_tools", "mode": "auto"|"required", "tools": [{"type": "function", "name": ...}]}``."""
    allowed = raw.get("tools")
    names = [t.get("name") for t in allowed if isinstance(t, dict)] if isinstance(allowed, list) else []
    if raw.get("mode") not in ("auto", "required") or not names or not all(isinstance(n, str) for n in names):
        raise InvalidRequest(
            "tool_choice 'allowed_tools' needs 'mode' ('auto' or 'required') and 'tools', a list of "
            '{"type": "function", "name": ...}.',
            param="tool_choice",
        )
    offered = {tool.name for tool in tools}
    unknown = [name for name in names if name not in offered]
    if unknown:
        raise InvalidRequest(f"tool_choice allows {unknown[0]!r}, which is not an offered tool.", param="tool_choice")
    return ToolChoice("required" if raw["mode"] == "required" else "auto"), tuple(t for t in tools if t.name in names)


class _Turns:
    """Items -> turns and system prompt, remembering the calls made so far so that each result answers one."""

    def __init__(self, images: ImageLoader) -> None:
        self._images = images
        self._calls: dict[str, str] = {}  # call id -> function name

    async def build(self, items: Sequence[Located]) -> tuple[tuple[Turn, ...], list[str]]:
        turns: list[Turn] = []
        system: list[str] = []
        last: Item | None = None
        for param, item in items:
            if isinstance(item, MessageItem) and item.role in ("system", "developer"):
                system.append(_text(item))
                continue
            last, turn = item, await self._turn(item, param)
            if turns and turns[-1].role == turn.role and _joins(turns[-1], turn):
                turns[-1] = Turn(turn.role, turns[-1].parts + turn.parts)
            else:
                turns.append(turn)
        answerable = isinstance(last, FunctionCallOutputItem) or (isinstance(last, MessageItem) and last.role == "user")
        if not answerable:
            raise InvalidRequest(
                "The input must end with what the model is to answer: a user message, or function_call_output items.",
                param="input",
            )
        return tuple(turns), system

    async def _turn(self, item: Item, param: str) -> Turn:
        if isinstance(item, FunctionCallOutputItem):
            return Turn("user", (self._result(item, param),))
        if isinstance(item, FunctionCallItem):
            call = ToolCallPart(valid_unicode(item.call_id), valid_unicode(item.name), valid_unicode(item.arguments))
            self._calls[item.call_id] = call.name
            return Turn("assistant", (call,))
        if item.role == "user":
            return Turn("user", await self._user_parts(item, param))
        return Turn("assistant", (TextPart(text),) if (text := _text(item)) else ())

    async def _user_parts(self, item: MessageItem, param: str) -> tuple[Part, ...]:
        if isinstance(item.content, str):
            return (TextPart(valid_unicode(item.content)),)
        parts: list[Part] = []
        for index, part in enumerate(item.content):
            if part.type == "input_image" and part.image_url is not None:
                url_param = f"{param}.content[{index}].image_url"
                parts.append(await self._images.load(part.image_url, param=url_param))
            else:
                parts.append(TextPart(valid_unicode(part_text(part))))
        return tuple(parts)

    def _result(self, item: FunctionCallOutputItem, param: str) -> ToolResultPart:
        if item.call_id not in self._calls:
            raise InvalidRequest(
                f"{param} is the output of call {item.call_id[:80]!r}, which no earlier function_call made.",
                param=f"{param}.call_id",
            )
        output = item.output if isinstance(item.output, str) else "\n".join(part_text(p) for p in item.output)
        return ToolResultPart(valid_unicode(item.call_id), valid_unicode(output), self._calls[item.call_id])


def _joins(previous: Turn, turn: Turn) -> bool:
    """One assistant turn of consecutive messages and calls; one turn of consecutive function results."""
    return turn.role == "assistant" or (_all_results(previous.parts) and _all_results(turn.parts))


def _all_results(parts: Sequence[Part]) -> bool:
    return bool(parts) and all(isinstance(part, ToolResultPart) for part in parts)


def _text(item: MessageItem) -> str:
    if isinstance(item.content, str):
        return valid_unicode(item.content)
    return "\n".join(valid_unicode(part_text(part)) for part in item.content)
