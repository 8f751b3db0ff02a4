"""A scripted fake model provider on 127.0.0.1, for tests that must never reach the internet.

It speaks just enough of three provider APIs for the real CLIs to complete a turn against it:

* Anthropic Messages   ``POST /v1/messages``                          (claude; SSE or JSON)
* OpenAI Responses     ``POST /v1/responses``                         (codex; SSE or JSON)
* Gemini API           ``POST /v1beta/models/{model}:streamGenerateContent?alt=sse`` and
                       ``:generateContent`` (gemini; ``:countTokens`` too)

Every request is recorded (control calls under ``/_fake/`` excepted) so tests can assert on what a
CLI actually sent. How the fake answers is set with :class:`Script`, from Python
(:meth:`FakeUpstream.set_script`) or over HTTP (``POST /_fake/script``), so the same fake serves
in-process tests and a gateway running in another process.

Helper calls that the CLIs make on their own (gemini's model router and next-speaker check:
``:generateContent`` with a ``responseJsonSchema``; ``:countTokens``) are exempt from the script:
they always get a valid answer, so that a script describes the one model turn under test.

With ``Script.tool_command`` set, the fake plays a model that wants to run a shell command: a request
carrying no tool result yet gets a call of the CLI's shell tool (Anthropic ``tool_use``, Responses
``function_call``, Gemini ``functionCall``) instead of text; once the CLI sends the tool's result back,
the scripted text answers (followed by that result with ``tool_echo``), so tests see what ran.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import copy
import itertools
import json
import re
import signal
import socket
import threading
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from types import FrameType, TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = [
    "HELPER_USAGE",
    "PROVIDERS",
    "RETRY_AFTER_SECONDS",
    "SHELL_TOOLS",
    "FakeUpstream",
    "RecordedRequest",
    "Script",
    "ScriptedCall",
    "ToolCall",
    "Usage",
    "generation_settings",
    "main",
    "received_images",
    "shell_call",
    "tool_result",
]

PROVIDERS = {"claude": "anthropic", "codex": "openai", "gemini": "gemini"}
"""The provider API each CLI speaks to the fake, as :attr:`RecordedRequest.provider` names it."""

RETRY_AFTER_SECONDS = 7
"""Value of the ``Retry-After`` header sent with every scripted 429 (distinctive on purpose)."""

_JSON = dict[str, Any]


_GEMINI_HELPER_METHODS = (
    ":generateContent",
    ":countTokens",
)  # gemini asks for its model turns by :streamGenerateContent


@dataclass
class Usage:
    """Token counts the fake reports upstream; each provider maps them into its own usage shape."""

    input_tokens: int = 10  # ALL input tokens, cached included
    cached_tokens: int = 0  # of which cached
    output_tokens: int = 5


HELPER_USAGE = Usage(input_tokens=3, cached_tokens=0, output_tokens=2)
"""Usage reported by exempt helper calls (gemini router / next-speaker check): small and recognisable."""


@dataclass
class Script:
    """How the fake answers the next requests, for all providers alike.

    Usage mapping: Anthropic ``input_tokens`` = input - cached, ``cache_read_input_tokens`` = cached,
    ``cache_creation_input_tokens`` = 0; Responses ``input_tokens`` = input (cached included),
    ``input_tokens_details.cached_tokens`` = cached; Gemini ``promptTokenCount`` = input,
    ``cachedContentTokenCount`` = cached.
    """

    text: str = "pong from fake"
    chunks: list[str] | None = None  # explicit chunking (wins over `text`); default: ~words, spaces kept
    chunk_delay: float = 0.0  # seconds between chunks (after the first); Anthropic: between calls too
    usage: Usage = field(default_factory=Usage)
    status: int = 200  # != 200: that HTTP status with the provider's own error JSON body
    error_message: str = ""  # error body text; default depends on the status
    retry_delay: bool = True  # a 429 states its retry delay (Retry-After header; Gemini's RetryInfo)
    hang: bool = False  # accept the request, never answer; released by client disconnect or stop() (503)
    hang_on: str | None = None  # hang only the requests whose body holds this text (others answer)
    echo: bool = False  # reply = text + " " + the last user text of the request
    tool_command: str | None = None  # first answer a shell tool call running this (see module doc)
    tool_echo: bool = False  # after the tool ran: reply = text + "\n" + the tool result the CLI sent
    # Calls of declared tools, all in one model turn, until a tool result comes back (see module doc).
    tool_calls: list[ScriptedCall] | None = None
    finish: str = "stop"  # "length": the answer was cut at the output token limit
    reasoning: str | None = None  # the model's visible reasoning, before the answer

    @classmethod
    def from_json(cls, data: Any) -> Script:
        """Build a Script from its JSON form (``usage`` as a nested dict); ValueError if malformed."""
        values = _checked_fields(data, _SCRIPT_TYPES, "script")
        if "usage" in values:
            values["usage"] = Usage(**_checked_fields(values["usage"], _USAGE_TYPES, "usage"))
        chunks = values.get("chunks")
        if chunks is not None and not all(isinstance(chunk, str) for chunk in chunks):
            raise ValueError("script.chunks must be a list of strings")
        if values.get("finish", "stop") not in ("stop", "length"):
            raise ValueError("script.finish must be 'stop' or 'length'")
        if values.get("tool_calls") is not None:
            values["tool_calls"] = [
                ScriptedCall(**_checked_fields(call, _CALL_TYPES, "tool_calls[]")) for call in values["tool_calls"]
            ]
        return cls(**values)


@dataclass
class ScriptedCall:
    """A call the fake's model makes of a tool the request declares, found by the client's own name.

    ``name`` matches a declared tool of that exact name, else one whose name ends with ``_`` + name
    (how the CLIs prefix the tools of an MCP server: ``mcp__clinvk__get_weather``, ``mcp_clinvk_get_weather``).
    """

    name: str
    arguments: _JSON = field(default_factory=dict)


_USAGE_TYPES: dict[str, tuple[type, ...]] = {
    "input_tokens": (int,),
    "cached_tokens": (int,),
    "output_tokens": (int,),
}
_SCRIPT_TYPES: dict[str, tuple[type, ...]] = {
    "text": (str,),
    "chunks": (list, type(None)),
    "chunk_delay": (int, float),
    "usage": (dict,),
    "status": (int,),
    "error_message": (str,),
    "retry_delay": (bool,),
    "hang": (bool,),
    "hang_on": (str, type(None)),
    "echo": (bool,),
    "tool_command": (str, type(None)),
    "tool_echo": (bool,),
    "tool_calls": (list, type(None)),
    "finish": (str,),
    "reasoning": (str, type(None)),
}
_CALL_TYPES: dict[str, tuple[type, ...]] = {"name": (str,), "arguments": (dict,)}


def _checked_fields(data: Any, types: dict[str, tuple[type, ...]], what: str) -> dict[str, Any]:
    """`data` as keyword arguments, refusing non-objects, unknown keys and wrongly typed values."""
    if not isinstance(data, dict):
        raise ValueError(f"{what} must be a JSON object")
    for key, value in data.items():
        if key not in types:
            raise ValueError(f"unknown {what} field: {key!r}")
        if not isinstance(value, types[key]) or (isinstance(value, bool) and bool not in types[key]):
            raise ValueError(f"{what}.{key} has the wrong type: {value!r}")
    return dict(data)


@dataclass
class RecordedRequest:
    """One request as the fake received it (headers lower-cased, body parsed as JSON when possible)."""

    provider: str  # "anthropic" | "openai" | "gemini" | "unknown" (unrouted path, answered 404)
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    received_at: float = 0.0  # time.perf_counter() when it came (the bench times CLIs by it)

    def text(self) -> str:
        """The whole body as one JSON string, for "does X appear anywhere" asserts."""
        if isinstance(self.body, str):
            return self.body
        return json.dumps(self.body, ensure_ascii=False)


# --------------------------------------------------------------------------------------------
# Pure helpers: reply text, chunking, error bodies, provider payloads.
# --------------------------------------------------------------------------------------------

_WORD_RE = re.compile(r"\s*\S+\s*")


def _split_words(text: str) -> list[str]:
    """Split into ~word chunks that keep their trailing spaces ("pong ", "from ", "fake")."""
    parts = _WORD_RE.findall(text)
    if not parts and text:
        return [text]
    return parts


def _content_texts(content: Any) -> list[str]:
    """Texts of a message ``content``: a plain string or a list of typed blocks / Gemini parts."""
    if isinstance(content, str):
        return [content]
    texts: list[str] = []
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and isinstance(block.get("text"), str):
                if block.get("type") in (None, "text", "input_text"):
                    texts.append(block["text"])
            elif isinstance(block, str):
                texts.append(block)
    return texts


def _last_user_text(provider: str, body: Any) -> str:
    """The last text the user sent, wherever this provider puts it ("" if none)."""
    if not isinstance(body, dict):
        return ""
    if provider == "anthropic":
        items, content_key = body.get("messages"), "content"
    elif provider == "openai":
        items, content_key = body.get("input"), "content"
        if isinstance(items, str):
            return items
    else:
        items, content_key = body.get("contents"), "parts"
    if not isinstance(items, list):
        return ""
    for item in reversed(items):
        if isinstance(item, dict) and item.get("role", "user") == "user":
            texts = _content_texts(item.get(content_key))
            if texts:
                return texts[-1]
    return ""


def _reply_chunks(script: Script, provider: str, body: Any) -> list[str]:
    """The chunks of the scripted reply, echo and tool echo applied."""
    tail = ""
    if script.echo:
        tail += " " + _last_user_text(provider, body)
    if script.tool_echo:
        tail += "\n" + (tool_result(provider, body) or "")
    if script.chunks is None:
        return _split_words(script.text + tail)
    return [*script.chunks, tail] if tail else list(script.chunks)


@dataclass(frozen=True)
class Reply:
    """A text answer as the fake's model gives it: the chunks, the counts, how it ends, reasoning first."""

    chunks: list[str]
    usage: Usage
    finish: str = "stop"
    reasoning: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.chunks)


def _reply(script: Script, provider: str, body: Any) -> Reply:
    return Reply(_reply_chunks(script, provider, body), script.usage, script.finish, script.reasoning)


# ---- Tool calls ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolCall:
    """A call of a tool, as the fake's model makes it."""

    name: str
    arguments: _JSON
    namespace: str | None = None  # Responses API: the namespace the tool is declared in (codex's MCP tools)


# The shell tool of each CLI, by provider: names in order of preference, the first one the default.
SHELL_TOOLS: dict[str, tuple[str, ...]] = {
    "anthropic": ("Bash",),  # claude
    "openai": ("exec_command", "shell_command", "shell"),  # codex, depending on version and features
    "gemini": ("run_shell_command",),
}
STRUCTURED_OUTPUT_TOOL = "StructuredOutput"
"""The tool claude declares under ``--json-schema``: a model with a scripted JSON text answers by calling it."""
TRANSCRIPT_RESULT = "<tool_result"
"""How a tool result shows in a prompt that carries the conversation as a transcript (clinvk's)."""


@dataclass(frozen=True)
class _Offered:
    schema: _JSON
    namespace: str | None = None


def _offered_tools(provider: str, body: Any) -> dict[str, _Offered]:
    """The tools a request offers the model, by name, each with its parameters' JSON schema."""
    tools = body.get("tools") if isinstance(body, dict) else None
    declarations: list[tuple[Any, str | None]] = []
    for tool in tools if isinstance(tools, list) else []:
        if not isinstance(tool, dict):
            continue
        if provider == "gemini" and isinstance(tool.get("functionDeclarations"), list):
            declarations += [(declared, None) for declared in tool["functionDeclarations"]]
        elif tool.get("type") == "namespace" and isinstance(tool.get("tools"), list):
            declarations += [(inner, str(tool.get("name"))) for inner in tool["tools"]]
        else:
            declarations.append((tool, None))
    schema_key = {"anthropic": "input_schema", "openai": "parameters"}.get(provider)
    offered: dict[str, _Offered] = {}
    for tool, namespace in declarations:
        if isinstance(tool, dict) and isinstance(tool.get("name"), str):
            keys = (schema_key,) if schema_key else ("parametersJsonSchema", "parameters")
            schema: _JSON = next((tool[k] for k in keys if isinstance(tool.get(k), dict)), {})
            offered[tool["name"]] = _Offered(schema, namespace)
    return offered


def declared_call(provider: str, body: Any, call: ScriptedCall) -> ToolCall:
    """The call of the declared tool ``call`` names (see :class:`ScriptedCall`); as named when none matches."""
    offered = _offered_tools(provider, body)
    name = call.name if call.name in offered else next((n for n in offered if n.endswith("_" + call.name)), call.name)
    declared = offered.get(name)
    return ToolCall(name, call.arguments, declared.namespace if declared else None)


def shell_call(provider: str, body: Any, command: str) -> ToolCall:
    """The call of the request's shell tool running ``command``, arguments shaped by the tool's schema.

    When the request offers no shell tool, the CLI's usual one is called anyway: the CLI must refuse it.
    """
    offered = _offered_tools(provider, body)
    names = SHELL_TOOLS.get(provider, ("shell",))
    name = next((n for n in names if n in offered), names[0])
    properties = offered[name].schema.get("properties") if name in offered else None
    if not isinstance(properties, dict) or not properties:
        properties = {"cmd": {"type": "string"}} if name == "exec_command" else {"command": {"type": "string"}}
    if "cmd" in properties:
        return ToolCall(name, {"cmd": command})
    command_schema = properties.get("command")
    kind = str(command_schema.get("type", "")).lower() if isinstance(command_schema, dict) else ""
    return ToolCall(name, {"command": ["bash", "-lc", command] if kind == "array" else command})


def _output_text(output: Any) -> str:
    """A tool result's text: a string, a list of text blocks, or (Gemini) a response object."""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return "\n".join(_content_texts(output))
    if isinstance(output, dict):
        inner = output.get("output")
        return inner if isinstance(inner, str) else json.dumps(output, ensure_ascii=False)
    return ""


def tool_result(provider: str, body: Any) -> str | None:
    """The text of the last tool result in the request, or None when it carries none."""
    if not isinstance(body, dict):
        return None
    results: list[str] = []
    if provider == "anthropic":
        for message in body.get("messages") or []:
            content = message.get("content") if isinstance(message, dict) else None
            for block in content if isinstance(content, list) else []:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    results.append(_output_text(block.get("content")))
    elif provider == "openai":
        items = body.get("input")
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and str(item.get("type", "")).endswith("call_output"):
                results.append(_output_text(item.get("output")))
    elif provider == "gemini":
        for content in body.get("contents") or []:
            parts = content.get("parts") if isinstance(content, dict) else None
            for part in parts if isinstance(parts, list) else []:
                if isinstance(part, dict) and isinstance(part.get("functionResponse"), dict):
                    results.append(_output_text(part["functionResponse"].get("response")))
    return results[-1] if results else None


def received_images(request: RecordedRequest) -> list[tuple[str, bytes]]:
    """(media type, bytes) of every image the request carries, in each provider's own form."""
    found: list[tuple[str, bytes]] = []
    for block in _blocks(request.body):
        if block.get("type") == "image" and isinstance(source := block.get("source"), dict):  # Anthropic
            found.append((str(source.get("media_type")), base64.b64decode(str(source.get("data", "")))))
        elif block.get("type") == "input_image" and str(block.get("image_url", "")).startswith("data:"):  # Responses
            header, _, data = str(block["image_url"]).partition(",")
            found.append((header[5:].split(";")[0], base64.b64decode(data)))
        elif isinstance(inline := block.get("inlineData"), dict):  # Gemini
            found.append((str(inline.get("mimeType")), base64.b64decode(str(inline.get("data", "")))))
    return found


def _blocks(value: Any) -> Iterator[_JSON]:
    """Every JSON object nested in ``value``."""
    if isinstance(value, dict):
        yield value
        for inner in value.values():
            yield from _blocks(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _blocks(inner)


def generation_settings(request: RecordedRequest) -> dict[str, Any]:
    """The sampling, length and reasoning settings a request sent, named alike for every provider."""
    body = request.body if isinstance(request.body, dict) else {}
    if request.provider == "gemini":
        config = body.get("generationConfig") or {}
        found = {"max_tokens": config.get("maxOutputTokens"), "temperature": config.get("temperature"),
                 "top_p": config.get("topP"), "effort": None}  # fmt: skip
    elif request.provider == "openai":
        reasoning = body.get("reasoning") or {}
        found = {"max_tokens": body.get("max_output_tokens"), "temperature": body.get("temperature"),
                 "top_p": body.get("top_p"), "effort": reasoning.get("effort")}  # fmt: skip
    else:
        output = body.get("output_config") or {}
        found = {"max_tokens": body.get("max_tokens"), "temperature": body.get("temperature"),
                 "top_p": body.get("top_p"), "effort": output.get("effort")}  # fmt: skip
    return found


def _wanted_calls(script: Script, provider: str, body: Any) -> list[ToolCall]:
    """The calls to answer with: some are scripted and no tool result came back yet."""
    answered = tool_result(provider, body) is not None or TRANSCRIPT_RESULT in _last_user_text(provider, body)
    if answered:
        return []
    if script.tool_command is not None:
        return [shell_call(provider, body, script.tool_command)]
    if script.tool_calls:
        return [declared_call(provider, body, call) for call in script.tool_calls]
    if STRUCTURED_OUTPUT_TOOL in _offered_tools(provider, body):  # claude --json-schema: answer through it
        return [ToolCall(STRUCTURED_OUTPUT_TOOL, _json_object(script.text))]
    return []


def _json_object(text: str) -> _JSON:
    """The scripted text as the JSON object it holds (else wrapped in one)."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {"answer": text}


_DEFAULT_ERROR_MESSAGES = {
    400: "fake: bad request",
    401: "fake: invalid api key",
    403: "fake: permission denied",
    404: "fake: not found",
    408: "fake: request timeout",
    413: "fake: request too large",
    429: "fake: rate limited",
    500: "fake internal server error",
    502: "fake: bad gateway",
    503: "fake: service unavailable",
    504: "fake: gateway timeout",
    529: "fake: overloaded",
}

_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}

_OPENAI_ERRORS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}

_GEMINI_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def _error_body(provider: str, status: int, message: str, request_id: str, retry_delay: bool = True) -> _JSON:
    """The error JSON each provider really sends, so the CLIs parse and report it as they would."""
    if provider == "anthropic":
        kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        error = {"type": kind, "message": message}
        return {"type": "error", "error": error, "request_id": request_id}
    if provider == "openai":
        kind, code = _OPENAI_ERRORS.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}
    if provider == "gemini":
        state = _GEMINI_STATUSES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
        gerror: _JSON = {"code": status, "message": message, "status": state}
        if status == 429 and retry_delay:  # Google states the retry delay in the body; gemini reads only this
            retry_info = {
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": f"{RETRY_AFTER_SECONDS}s",
            }
            gerror["details"] = [retry_info]
        return {"error": gerror}
    return {"error": {"message": message, "type": "not_found", "code": status}}


def _error_response(provider: str, status: int, message: str = "", retry_delay: bool = True) -> JSONResponse:
    """An HTTP error in the provider's format (429 also carries Retry-After, unless ``retry_delay`` is off)."""
    message = message or _DEFAULT_ERROR_MESSAGES.get(status, f"fake: error {status}")
    headers = {"retry-after": str(RETRY_AFTER_SECONDS)} if status == 429 and retry_delay else {}
    request_id = _new_id("req_fake_")
    if provider == "anthropic":
        headers["request-id"] = request_id
    body = _error_body(provider, status, message, request_id, retry_delay)
    return JSONResponse(body, status_code=status, headers=headers)


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:16]


def _sse(data: _JSON, event: str | None = None) -> bytes:
    """One server-sent event (``event:`` line only when the provider names its events)."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


# ---- Anthropic Messages ------------------------------------------------------------------------


def _anthropic_usage(usage: Usage) -> _JSON:
    return {
        "input_tokens": usage.input_tokens - usage.cached_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": usage.cached_tokens,
        "output_tokens": usage.output_tokens,
    }


def _anthropic_message(msg_id: str, model: str, reply: Reply) -> _JSON:
    thinking = [{"type": "thinking", "thinking": reply.reasoning, "signature": "fake-signature"}]
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [*(thinking if reply.reasoning else []), {"type": "text", "text": reply.text}],
        "stop_reason": "max_tokens" if reply.finish == "length" else "end_turn",
        "stop_sequence": None,
        "usage": _anthropic_usage(reply.usage),
    }


def _anthropic_tool_use(call: ToolCall) -> _JSON:
    return {"type": "tool_use", "id": _new_id("toolu_fake_"), "name": call.name, "input": call.arguments}


def _anthropic_call_message(msg_id: str, model: str, calls: list[ToolCall], usage: Usage) -> _JSON:
    message = _anthropic_message(msg_id, model, Reply([], usage))
    message["content"], message["stop_reason"] = [_anthropic_tool_use(call) for call in calls], "tool_use"
    return message


def _anthropic_call_events(msg_id: str, model: str, calls: list[ToolCall], usage: Usage) -> Iterable[bytes]:
    """Events of a streamed Anthropic message of ``tool_use`` blocks (each input as one JSON delta)."""
    start = _anthropic_message(msg_id, model, Reply([], usage))
    start["content"], start["stop_reason"] = [], None
    yield _sse({"type": "message_start", "message": start}, "message_start")
    for index, call in enumerate(calls):
        block = {**_anthropic_tool_use(call), "input": {}}
        yield _sse({"type": "content_block_start", "index": index, "content_block": block}, "content_block_start")
        delta = {"type": "input_json_delta", "partial_json": json.dumps(call.arguments)}
        yield _sse({"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta")
        yield _sse({"type": "content_block_stop", "index": index}, "content_block_stop")
    message_delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": usage.output_tokens},
    }
    yield _sse(message_delta, "message_delta")
    yield _sse({"type": "message_stop"}, "message_stop")


def _anthropic_events(msg_id: str, model: str, reply: Reply) -> Iterable[bytes]:
    """Events of a streamed Anthropic message; the caller inserts delays between text deltas."""
    start = _anthropic_message(msg_id, model, reply)
    start["content"], start["stop_reason"] = [], None
    start["usage"]["output_tokens"] = 1
    yield _sse({"type": "message_start", "message": start}, "message_start")
    index = 0
    if reply.reasoning:
        block = {"type": "thinking", "thinking": "", "signature": ""}
        yield _sse({"type": "content_block_start", "index": 0, "content_block": block}, "content_block_start")
        for kind, key, value in (
            ("thinking_delta", "thinking", reply.reasoning),
            ("signature_delta", "signature", "fake-signature"),
        ):
            delta = {"type": "content_block_delta", "index": 0, "delta": {"type": kind, key: value}}
            yield _sse(delta, "content_block_delta")
        yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        index = 1
    block = {"type": "text", "text": ""}
    yield _sse({"type": "content_block_start", "index": index, "content_block": block}, "content_block_start")
    yield _sse({"type": "ping"}, "ping")
    for chunk in reply.chunks:
        delta = {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": chunk}}
        yield _sse(delta, "content_block_delta")
    yield _sse({"type": "content_block_stop", "index": index}, "content_block_stop")
    stop_reason = "max_tokens" if reply.finish == "length" else "end_turn"
    message_delta = {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": {"output_tokens": reply.usage.output_tokens},
    }
    yield _sse(message_delta, "message_delta")
    yield _sse({"type": "message_stop"}, "message_stop")


# ---- OpenAI Responses --------------------------------------------------------------------------


def _responses_usage(usage: Usage) -> _JSON:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def _responses_item(item_id: str, text: str, status: str) -> _JSON:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content if status == "completed" else [],
    }


def _responses_object(resp_id: str, model: str, status: str, output: list[_JSON], usage: _JSON | None) -> _JSON:
    return {
        "id": resp_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
    }


def _responses_call_item(item_id: str, call_id: str, call: ToolCall, status: str) -> _JSON:
    arguments = json.dumps(call.arguments) if status == "completed" else ""
    item = {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": call.name,
        "arguments": arguments,
    }
    return item if call.namespace is None else {**item, "namespace": call.namespace}


def _responses_call_items(calls: list[ToolCall]) -> list[_JSON]:
    return [_responses_call_item(_new_id("fc_fake_"), _new_id("call_fake_"), call, "completed") for call in calls]


def _responses_call_events(resp_id: str, model: str, calls: list[ToolCall], usage: Usage) -> Iterable[bytes]:
    """Events of a streamed Responses turn whose outputs are ``function_call`` items."""
    seq = itertools.count()

    def ev(kind: str, **data: Any) -> bytes:
        return _sse({"type": kind, "sequence_number": next(seq), **data}, kind)

    yield ev("response.created", response=_responses_object(resp_id, model, "in_progress", [], None))
    yield ev("response.in_progress", response=_responses_object(resp_id, model, "in_progress", [], None))
    done_items = _responses_call_items(calls)
    for index, (call, done_item) in enumerate(zip(calls, done_items, strict=True)):
        item_id, call_id, arguments = done_item["id"], done_item["call_id"], done_item["arguments"]
        added = _responses_call_item(item_id, call_id, call, "in_progress")
        yield ev("response.output_item.added", output_index=index, item=added)
        loc = {"item_id": item_id, "output_index": index}
        yield ev("response.function_call_arguments.delta", **loc, delta=arguments)
        yield ev("response.function_call_arguments.done", **loc, arguments=arguments)
        yield ev("response.output_item.done", output_index=index, item=done_item)
    final = _responses_object(resp_id, model, "completed", done_items, _responses_usage(usage))
    yield ev("response.completed", response=final)


def _responses_reasoning_item(text: str) -> _JSON:
    return {"id": _new_id("rs_fake_"), "type": "reasoning", "summary": [{"type": "summary_text", "text": text}]}


def _responses_output(reply: Reply) -> tuple[str, list[_JSON]]:
    """The final status and output items of a text answer (reasoning first)."""
    reasoning = [_responses_reasoning_item(reply.reasoning)] if reply.reasoning else []
    status = "incomplete" if reply.finish == "length" else "completed"
    return status, [*reasoning, _responses_item(_new_id("msg_fake_"), reply.text, "completed")]


def _responses_events(resp_id: str, model: str, reply: Reply) -> Iterable[bytes]:
    """Events of a streamed Responses turn with one assistant message (after a reasoning item, if any)."""
    status, output = _responses_output(reply)
    seq = itertools.count()

    def ev(kind: str, **data: Any) -> bytes:
        return _sse({"type": kind, "sequence_number": next(seq), **data}, kind)

    yield ev("response.created", response=_responses_object(resp_id, model, "in_progress", [], None))
    yield ev("response.in_progress", response=_responses_object(resp_id, model, "in_progress", [], None))
    for index, item in enumerate(output[:-1]):  # reasoning, whole
        yield ev("response.output_item.added", output_index=index, item={**item, "summary": []})
        yield ev("response.output_item.done", output_index=index, item=item)
    index, item_id = len(output) - 1, output[-1]["id"]
    yield ev("response.output_item.added", output_index=index, item=_responses_item(item_id, "", "in_progress"))
    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    loc = {"item_id": item_id, "output_index": index, "content_index": 0}
    yield ev("response.content_part.added", **loc, part=part)
    for chunk in reply.chunks:
        yield ev("response.output_text.delta", **loc, delta=chunk, logprobs=[])
    yield ev("response.output_text.done", **loc, text=reply.text, logprobs=[])
    yield ev("response.content_part.done", **loc, part={**part, "text": reply.text})
    yield ev("response.output_item.done", output_index=index, item=output[-1])
    final = _responses_object(resp_id, model, status, output, _responses_usage(reply.usage))
    yield ev("response.completed" if status == "completed" else "response.incomplete", response=final)


# ---- Gemini ------------------------------------------------------------------------------------


def _gemini_usage(usage: Usage) -> _JSON:
    return {
        "promptTokenCount": usage.input_tokens,
        "candidatesTokenCount": usage.output_tokens,
        "totalTokenCount": usage.input_tokens + usage.output_tokens,
        "cachedContentTokenCount": usage.cached_tokens,
    }


def _gemini_chunk(model: str, resp_id: str, text: str, final: bool, usage: Usage) -> _JSON:
    candidate: _JSON = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    chunk: _JSON = {"candidates": [candidate], "modelVersion": model, "responseId": resp_id}
    if final:
        candidate["finishReason"] = "STOP"
        chunk["usageMetadata"] = _gemini_usage(usage)
    return chunk


def _gemini_call_chunk(model: str, resp_id: str, calls: list[ToolCall], usage: Usage) -> _JSON:
    chunk = _gemini_chunk(model, resp_id, "", True, usage)
    parts = [{"functionCall": {"name": call.name, "args": call.arguments}} for call in calls]
    chunk["candidates"][0]["content"]["parts"] = parts
    return chunk


def _gemini_stream(model: str, resp_id: str, reply: Reply) -> Iterable[bytes]:
    """One SSE ``data:`` event per chunk (a thought first, if any); the last carries finishReason and usage."""
    if reply.reasoning:
        thought = _gemini_chunk(model, resp_id, "", False, reply.usage)
        thought["candidates"][0]["content"]["parts"] = [{"text": reply.reasoning, "thought": True}]
        yield _sse(thought)
    chunks = reply.chunks or [""]
    for i, chunk in enumerate(chunks):
        data = _gemini_chunk(model, resp_id, chunk, i == len(chunks) - 1, reply.usage)
        if i == len(chunks) - 1 and reply.finish == "length":
            data["candidates"][0]["finishReason"] = "MAX_TOKENS"
        yield _sse(data)


def _json_schema_of(body: Any) -> _JSON | None:
    """The response JSON schema of a Gemini structured-output request (the CLIs' helper calls)."""
    if not isinstance(body, dict):
        return None
    config = body.get("generationConfig")
    if not isinstance(config, dict):
        return None
    schema = config.get("responseJsonSchema") or config.get("responseSchema")
    return schema if isinstance(schema, dict) else None


_HELPER_VALUES: dict[str, Any] = {
    "complexity_score": 10,  # gemini router: low score = simple task, routes to the flash model
    "complexity_reasoning": "fake: simple task",
    "next_speaker": "user",  # gemini next-speaker check: the turn is over
    "reasoning": "fake: the model answered",
}


def _sample_for_schema(schema: Any, name: str = "") -> Any:
    """A small value valid for a (Gemini-flavoured, upper- or lower-case) JSON schema."""
    if name in _HELPER_VALUES:
        return _HELPER_VALUES[name]
    if not isinstance(schema, dict):
        return None
    if schema.get("enum"):
        return schema["enum"][0]
    kind = str(schema.get("type", "object")).lower()
    if kind == "object":
        props = schema.get("properties") or {}
        return {key: _sample_for_schema(sub, key) for key, sub in props.items()}
    if kind == "array":
        return [_sample_for_schema(schema.get("items"))]
    samples: dict[str, Any] = {"string": "fake", "integer": 1, "number": 1, "boolean": False}
    return samples.get(kind)


# --------------------------------------------------------------------------------------------
# The server.
# --------------------------------------------------------------------------------------------


def _decode_body(raw: bytes, encoding: str) -> Any:
    """Parse a request body: inflate gzip/deflate, then JSON if it parses, else text."""
    if encoding in ("gzip", "deflate"):
        with contextlib.suppress(zlib.error):
            raw = zlib.decompress(raw, zlib.MAX_WBITS | 32)
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


class FakeUpstream:
    """The fake provider: a Starlette app served by uvicorn in a daemon thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._script = Script()
        self._requests: list[RecordedRequest] = []
        self._hanging = 0
        self._stopping = threading.Event()
        self._async_stopping: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._thread_error: BaseException | None = None
        self.app = self._build_app()

    # ---- public API ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:18080`` (real port once started)."""
        return f"http://{self.host}:{self.port}"

    def set_script(self, script: Script) -> None:
        """Answer the next requests with `script` (a copy is kept; thread-safe)."""
        with self._lock:
            self._script = copy.deepcopy(script)

    @property
    def script(self) -> Script:
        """A copy of the current script."""
        with self._lock:
            return copy.deepcopy(self._script)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the recorded requests, oldest first."""
        with self._lock:
            return list(self._requests)

    def requests_of(self, cli: str) -> list[RecordedRequest]:
        """The recorded requests ``cli`` sent (to its provider's API), oldest first; gemini's helper calls too."""
        return [request for request in self.requests if request.provider == PROVIDERS[cli]]

    def model_turns(self, cli: str) -> list[RecordedRequest]:
        """``cli``'s requests for a model turn itself: gemini's helper calls and token counts left out."""
        return [request for request in self.requests_of(cli) if not request.path.endswith(_GEMINI_HELPER_METHODS)]

    @property
    def hanging(self) -> int:
        """Requests held open by a hanging script right now (their client has not gone away)."""
        with self._lock:
            return self._hanging

    def clear(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._requests.clear()

    def reset(self) -> None:
        """Default script and an empty request log."""
        with self._lock:
            self._script = Script()
            self._requests.clear()

    def start(self) -> FakeUpstream:
        """Bind, serve in a daemon thread and return once listening (port 0 picks a free port)."""
        if self._thread is not None:
            raise RuntimeError("FakeUpstream already started")
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
            timeout_keep_alive=5,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._stopping.clear()

        async def serve_async() -> None:
            self._loop = asyncio.get_running_loop()
            self._async_stopping = asyncio.Event()
            await server.serve(sockets=[sock])

        def serve() -> None:
            try:
                asyncio.run(serve_async())
            except BaseException as exc:  # reported by start() / stop()
                self._thread_error = exc
            finally:
                sock.close()

        self._thread = threading.Thread(target=serve, name=f"fake-upstream-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._thread = None
                raise RuntimeError(f"fake upstream failed to start: {self._thread_error!r}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving; hanging requests are released first so this returns within ~1-2 s."""
        self._stopping.set()
        loop, event = self._loop, self._async_stopping
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(event.set)
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None
        self._server = None
        self._loop = None
        self._async_stopping = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- app ----------------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        routes = [
            Route("/v1/messages", self._anthropic, methods=["POST"]),
            Route("/v1/responses", self._openai, methods=["POST"]),
            Route("/{version:str}/models/{target:str}", self._gemini, methods=["POST"]),
            Route("/_fake/script", self._control_script, methods=["GET", "POST"]),
            Route("/_fake/reset", self._control_reset, methods=["POST"]),
            Route("/_fake/requests", self._control_requests, methods=["GET"]),
            Route(
                "/{path:path}",
                self._unknown,
                methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
            ),
        ]
        return Starlette(routes=routes)

    async def _record(self, provider: str, request: Request) -> RecordedRequest:
        received_at = time.perf_counter()
        raw = await request.body()
        recorded = RecordedRequest(
            provider=provider,
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            headers=dict(request.headers),
            body=_decode_body(raw, request.headers.get("content-encoding", "")),
            received_at=received_at,
        )
        with self._lock:
            self._requests.append(recorded)
        return recorded

    async def _script_failure(
        self, provider: str, script: Script, request: Request, recorded: RecordedRequest
    ) -> Response | None:
        """The answer of a hanging or failing script; None when the script answers normally."""
        if script.hang or (script.hang_on is not None and script.hang_on in recorded.text()):
            await self._hang(request)
            return _error_response(provider, 503, "fake: server stopping")
        if script.status != 200:
            return _error_response(provider, script.status, script.error_message, script.retry_delay)
        return None

    async def _hang(self, request: Request) -> None:
        """Wait until the client goes away or the server stops, answering nothing meanwhile."""

        async def client_gone() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        waiters = [asyncio.ensure_future(client_gone()), asyncio.ensure_future(self._stop_event().wait())]
        with self._lock:
            self._hanging += 1
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            with self._lock:
                self._hanging -= 1
            for waiter in waiters:
                waiter.cancel()

    async def _paced(
        self, events: Iterable[bytes], is_delta: Callable[[bytes], bool], delay: float
    ) -> AsyncIterator[bytes]:
        """Yield SSE events, sleeping `delay` before every text delta but the first."""
        seen_delta = False
        for event in events:
            if is_delta(event):
                if seen_delta and delay > 0:
                    await self._sleep(delay)
                seen_delta = True
            yield event

    async def _sleep(self, seconds: float) -> None:
        """Sleep, cut short when the server stops so shutdown is not held up by slow scripts."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop_event().wait(), seconds)

    def _stop_event(self) -> asyncio.Event:
        """The server loop's view of "stopping" (created there, set from stop() thread-safely)."""
        if self._async_stopping is None:
            self._async_stopping = asyncio.Event()
            if self._stopping.is_set():
                self._async_stopping.set()
        return self._async_stopping

    async def _anthropic(self, request: Request) -> Response:
        recorded, script = await self._record("anthropic", request), self.script
        if (failure := await self._script_failure("anthropic", script, request, recorded)) is not None:
            return failure
        body = recorded.body if isinstance(recorded.body, dict) else {}
        model = str(body.get("model", "claude-fake"))
        msg_id = _new_id("msg_fake_")
        headers = {"request-id": _new_id("req_fake_")}
        if calls := _wanted_calls(script, "anthropic", body):
            if not body.get("stream"):
                return JSONResponse(_anthropic_call_message(msg_id, model, calls, script.usage), headers=headers)
            events = _anthropic_call_events(msg_id, model, calls, script.usage)
        else:
            reply = _reply(script, "anthropic", body)
            if not body.get("stream"):
                return JSONResponse(_anthropic_message(msg_id, model, reply), headers=headers)
            events = _anthropic_events(msg_id, model, reply)
        stream = self._paced(events, lambda e: e.startswith(b"event: content_block_delta"), script.chunk_delay)
        return StreamingResponse(stream, media_type="text/event-stream", headers=headers)

    async def _openai(self, request: Request) -> Response:
        recorded, script = await self._record("openai", request), self.script
        if (failure := await self._script_failure("openai", script, request, recorded)) is not None:
            return failure
        body = recorded.body if isinstance(recorded.body, dict) else {}
        model = str(body.get("model", "gpt-fake"))
        resp_id = _new_id("resp_fake_")
        if calls := _wanted_calls(script, "openai", body):
            if not body.get("stream"):
                usage = _responses_usage(script.usage)
                return JSONResponse(_responses_object(resp_id, model, "completed", _responses_call_items(calls), usage))
            events = _responses_call_events(resp_id, model, calls, script.usage)
            return StreamingResponse(events, media_type="text/event-stream")
        reply = _reply(script, "openai", body)
        if not body.get("stream"):
            status, output = _responses_output(reply)
            return JSONResponse(_responses_object(resp_id, model, status, output, _responses_usage(reply.usage)))
        events = _responses_events(resp_id, model, reply)
        stream = self._paced(events, lambda e: e.startswith(b"event: response.output_text.delta"), script.chunk_delay)
        return StreamingResponse(stream, media_type="text/event-stream")

    async def _gemini(self, request: Request) -> Response:
        model, _, method = request.path_params["target"].rpartition(":")
        known = ("streamGenerateContent", "generateContent", "countTokens")
        if not model or method not in known or not request.path_params["version"].startswith("v1"):
            return await self._unknown(request)
        # Helper calls (router, next-speaker check, token counting) are exempt from the script.
        recorded = await self._record("gemini", request)
        if method == "countTokens":
            return JSONResponse({"totalTokens": max(1, len(recorded.text()) // 4)})
        schema = _json_schema_of(recorded.body)
        if method == "generateContent" and schema is not None:
            text = json.dumps(_sample_for_schema(schema))
            return JSONResponse(_gemini_chunk(model, _new_id("fake-"), text, True, HELPER_USAGE))
        script = self.script
        if (failure := await self._script_failure("gemini", script, request, recorded)) is not None:
            return failure
        resp_id = _new_id("fake-")
        if calls := _wanted_calls(script, "gemini", recorded.body):
            chunk = _gemini_call_chunk(model, resp_id, calls, script.usage)
            if method == "generateContent":
                return JSONResponse(chunk)
            return StreamingResponse(iter([_sse(chunk)]), media_type="text/event-stream")
        reply = _reply(script, "gemini", recorded.body)
        if method == "generateContent":
            return JSONResponse(_gemini_chunk(model, resp_id, reply.text, True, reply.usage))
        events = _gemini_stream(model, resp_id, reply)
        stream = self._paced(events, lambda e: True, script.chunk_delay)
        return StreamingResponse(stream, media_type="text/event-stream")

    async def _unknown(self, request: Request) -> Response:
        await self._record("unknown", request)
        message = f"fake upstream: no route for {request.method} {request.url.path}"
        return JSONResponse(_error_body("unknown", 404, message, ""), status_code=404)

    async def _control_script(self, request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(asdict(self.script))
        try:
            script = Script.from_json(json.loads(await request.body()))
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        self.set_script(script)
        return JSONResponse({"ok": True, "script": asdict(script)})

    async def _control_reset(self, request: Request) -> Response:
        self.reset()
        return JSONResponse({"ok": True})

    async def _control_requests(self, request: Request) -> Response:
        return JSONResponse([asdict(r) for r in self.requests])


def main() -> None:
    """Run the fake in the foreground (for a gateway in another process) until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    args = parser.parse_args()
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    fake = FakeUpstream(args.host, args.port).start()
    print(f"fake upstream listening on {fake.url}", flush=True)
    try:
        while not done.wait(0.5):
            pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
