"""Claude Code (``claude``): stream-json with partial messages, so text and tool calls arrive as deltas."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinvk_core.backends.base import (
    TOOL_SERVER,
    Backend,
    BackendSettings,
    Invocation,
    OutputParser,
    RunPaths,
    RunRequest,
    as_int,
    config_dir,
)
from clinvk_core.config import ToolMode
from clinvk_core.conversation import ImagePart
from clinvk_core.events import (
    Completed,
    Event,
    Failed,
    FinishReason,
    ReasoningDelta,
    SessionStarted,
    TextDelta,
    TokenUsage,
    ToolCallArguments,
    ToolCallDone,
    ToolCallStarted,
)
from clinvk_core.transcript import numbered_image, render_prompt

# --tools "" removes every tool (and 40 KB from each upstream request).
_TOOL_FLAGS: dict[ToolMode, tuple[str, ...]] = {
    "chat": ("--tools", ""),
    "read-only": ("--tools", "Read,Glob,Grep"),
    "agent": ("--permission-mode", "bypassPermissions"),
}
TOOL_PREFIX = f"mcp__{TOOL_SERVER}__"  # how claude names an MCP server's tools for the model
_BRIDGE_ONLY = ("--strict-mcp-config", "--allowedTools", f"{TOOL_PREFIX}*")  # no MCP server of the user's
# OpenAI's reasoning_effort values -> claude's --effort levels.
_EFFORT = {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh", "max": "max"}


class Claude(Backend):
    name = "claude"
    executable = "claude"
    warm_kind = "prespawn"
    ends_calls_in_stream = True  # claude calls a tool as soon as its block is complete, before the next
    passthrough_env = (
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_BASE_URL",
        "CLAUDE_CODE_OAUTH_TOKEN",
        "CLAUDE_CONFIG_DIR",
    )

    def invocation(self, binary: Path, request: RunRequest, paths: RunPaths, settings: BackendSettings) -> Invocation:
        conversation = request.conversation
        argv = _argv(binary, settings, request.model)
        if conversation.system:
            argv += [_system_flag(settings), conversation.system]
        if request.tools:
            argv += ["--mcp-config", json.dumps({"mcpServers": _bridge(request)}), *_BRIDGE_ONLY]
        if conversation.output:
            argv += ["--json-schema", json.dumps(conversation.output.schema)]
        if conversation.reasoning_effort in _EFFORT:
            argv += ["--effort", _EFFORT[conversation.reasoning_effort]]
        env = _env(settings, paths)
        if conversation.sampling.max_output_tokens:
            env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] = str(conversation.sampling.max_output_tokens)
        prompt = render_prompt(conversation)
        if not conversation.images:
            return Invocation(argv=tuple(argv), env=env, stdin=prompt)
        # Images go as content blocks of a stream-json user message, each after the label the prompt uses.
        argv += ["--input-format", "stream-json"]
        return Invocation(argv=tuple(argv), env=env, stdin=_user_message(prompt, conversation.images))

    # Started ahead: a process per coming request, waiting for its stream-json input. What a request
    # brings arrives as control requests (system prompt, the bridge) and the user message.

    def warm_invocation(
        self, binary: Path, paths: RunPaths, settings: BackendSettings, model: str | None
    ) -> Invocation:
        argv = _argv(binary, settings, model)
        # The bridge, if the request brings one, is set later.
        argv += ["--input-format", "stream-json", *_BRIDGE_ONLY]
        return Invocation(argv=tuple(argv), env=_env(settings, paths), stdin="")

    def warm_refusal(self, request: RunRequest, settings: BackendSettings) -> str | None:
        conversation = request.conversation
        if conversation.output is not None:
            return "structured output needs --json-schema when claude starts"
        if conversation.reasoning_effort in _EFFORT:
            return "the effort is set when claude starts"
        if conversation.sampling.max_output_tokens:
            return "the output limit is set when claude starts"
        return None

    def warm_input(self, request: RunRequest, settings: BackendSettings) -> str:
        conversation = request.conversation
        lines = []
        if conversation.system:
            key = "systemPrompt" if settings.tool_mode == "chat" else "appendSystemPrompt"  # as the flags
            lines.append(_control("initialize", {key: conversation.system}))
        if request.tools:
            lines.append(_control("mcp_set_servers", {"servers": _bridge(request)}))
        return "".join(json.dumps(line) + "\n" for line in lines) + _user_message(
            render_prompt(conversation), conversation.images
        )

    def login_files(self, env: Mapping[str, str], login: Mapping[str, Any]) -> dict[Path, str]:
        return {config_dir(env, "CLAUDE_CONFIG_DIR", ".claude") / ".credentials.json": json.dumps(login, indent=2)}

    def parser(self, request: RunRequest) -> ClaudeParser:
        return ClaudeParser(structured=request.conversation.output is not None)


def _argv(binary: Path, settings: BackendSettings, model: str | None) -> list[str]:
    argv = [
        str(binary),
        "-p",
        "--output-format", "stream-json",
        "--verbose",  # stream-json refuses to run without it
        "--include-partial-messages",  # the only way to get token deltas
        "--no-session-persistence",
        *_TOOL_FLAGS[settings.tool_mode],
    ]  # fmt: skip
    return [*argv, "--model", model] if model else argv


def _system_flag(settings: BackendSettings) -> str:
    """The system prompt replaces the agent prompt in chat mode; the tool modes need its tool guidance."""
    return "--system-prompt" if settings.tool_mode == "chat" else "--append-system-prompt"


def _env(settings: BackendSettings, paths: RunPaths) -> dict[str, str]:
    env = {
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_MAX_RETRIES": str(settings.max_retries),
        # Every tool declared to the model, none deferred behind tool search (and no placeholder for it).
        "ENABLE_TOOL_SEARCH": "false",
    }
    if settings.tool_mode == "agent":
        env["IS_SANDBOX"] = "1"  # bypassPermissions exits 1 as root without it
    upstream = settings.upstream
    if upstream.configured:
        # Its config dir per run: claude needs nothing prepared there, and the files it adds on
        # every run (sessions/PID.json, projects/WORKDIR/) go away with the run instead of piling up.
        env |= {"HOME": str(paths.run_home), "CLAUDE_CONFIG_DIR": str(paths.run_home / ".claude")}
        if upstream.base_url:
            env["ANTHROPIC_BASE_URL"] = upstream.base_url
        if upstream.api_key:
            env["ANTHROPIC_API_KEY"] = upstream.api_key
    return env


def _bridge(request: RunRequest) -> dict[str, Any]:
    """The bridge session as claude's MCP servers, given at the start or to a process started ahead."""
    return {TOOL_SERVER: {"type": "http", "url": request.tool_server_url}}


def _control(subtype: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {"type": "control_request", "request_id": subtype, "request": {"subtype": subtype, **fields}}


def _user_message(prompt: str, images: list[ImagePart]) -> str:
    content: list[dict[str, Any]] = []
    for index, image in enumerate(images):
        data = base64.b64encode(image.data).decode("ascii")
        content.append({"type": "text", "text": numbered_image(index, image)})
        content.append({"type": "image", "source": {"type": "base64", "media_type": image.media_type, "data": data}})
    content.append({"type": "text", "text": prompt})
    message = {"type": "user", "message": {"role": "user", "content": content}, "parent_tool_use_id": None}
    return json.dumps(message) + "\n"


@dataclass
class _Call:
    index: int
    name: str
    arguments: list[str] = field(default_factory=list)


class ClaudeParser(OutputParser):
    """claude's stream-json: deltas from the wrapped Anthropic events, the end from the result line."""

    def __init__(self, *, structured: bool) -> None:
        self._structured = structured  # the answer is the result line's structured_output, not the text
        self._calls: dict[int, _Call] = {}  # by content block index, in the current message
        self._call_count = 0
        self._usage = self._message_usage = _NONE

    def parse(self, obj: dict[str, Any]) -> list[Event]:
        kind = obj.get("type")
        if kind == "stream_event" and obj.get("parent_tool_use_id") is None:
            event = obj.get("event")
            return self._stream_event(event) if isinstance(event, dict) else []
        if kind == "system" and obj.get("subtype") == "init" and isinstance(obj.get("session_id"), str):
            return [SessionStarted(obj["session_id"])]
        if kind == "result":
            return [self._result(obj)]
        return []

    def usage_so_far(self) -> TokenUsage | None:
        return self._usage + self._message_usage

    def _stream_event(self, event: dict[str, Any]) -> list[Event]:
        kind = event.get("type")
        if kind == "message_start":
            self._usage += self._message_usage
            self._calls.clear()
            message = event.get("message")
            self._message_usage = _usage(message.get("usage") if isinstance(message, dict) else None) or _NONE
        elif kind == "message_delta":
            if isinstance(event.get("usage"), dict):
                output = as_int(event["usage"].get("output_tokens"))
                usage = self._message_usage
                self._message_usage = TokenUsage(usage.prompt_tokens, output, usage.cached_tokens)
            delta = event.get("delta")
            stop_reason = delta.get("stop_reason") if isinstance(delta, dict) else None
            if stop_reason == "max_tokens":
                # The answer is cut where the client's limit cut it: claude would ask the model to go on.
                return [Completed(self.usage_so_far(), "length")]
            if stop_reason == "tool_use" and self._calls:
                # The model's message ends with calls of client tools: the client runs them, not the CLI.
                return [Completed(self.usage_so_far(), "tool_calls")]
        elif kind == "content_block_start":
            return self._block_start(event)
        elif kind == "content_block_delta":
            return self._block_delta(event)
        elif kind == "content_block_stop" and (call := self._calls.get(as_int(event.get("index")))):
            return [ToolCallDone(call.index, call.name, "".join(call.arguments) or "{}")]
        return []

    def _block_start(self, event: dict[str, Any]) -> list[Event]:
        block = event.get("content_block")
        if not isinstance(block, dict) or block.get("type") != "tool_use":
            return []
        name = str(block.get("name", ""))
        if not name.startswith(TOOL_PREFIX):
            # One of claude's own tools, run inside the CLI: a built-in one (read-only / agent modes), or
            # StructuredOutput, whose validated input the result line restates as the whole answer.
            return []
        call = _Call(self._call_count, name.removeprefix(TOOL_PREFIX))
        self._call_count += 1
        self._calls[as_int(event.get("index"))] = call
        return [ToolCallStarted(call.index, call.name)]

    def _block_delta(self, event: dict[str, Any]) -> list[Event]:
        delta = event.get("delta")
        if not isinstance(delta, dict):
            return []
        kind = delta.get("type")
        if kind == "text_delta" and isinstance(delta.get("text"), str):
            return [] if self._structured else [TextDelta(delta["text"])]
        if kind == "thinking_delta" and isinstance(delta.get("thinking"), str):
            return [ReasoningDelta(delta["thinking"])]
        call = self._calls.get(as_int(event.get("index")))
        if kind == "input_json_delta" and call and isinstance(piece := delta.get("partial_json"), str):
            call.arguments.append(piece)
            return [ToolCallArguments(call.index, piece)]
        return []

    def _result(self, obj: dict[str, Any]) -> Event:
        # On failure claude keeps subtype "success" and sets is_error; result holds its message.
        if obj.get("is_error") or str(obj.get("subtype", "")).startswith("error"):
            status = obj.get("api_error_status")
            message = obj.get("result") or obj.get("subtype") or "claude failed"
            return Failed(str(message), status if isinstance(status, int) else None)
        finish: FinishReason = "length" if obj.get("stop_reason") == "max_tokens" else "stop"
        final_text = obj.get("result")
        if self._structured and "structured_output" in obj:
            final_text = json.dumps(obj["structured_output"], ensure_ascii=False)
        return Completed(_usage(obj.get("usage")), finish, final_text if isinstance(final_text, str) else None)


_NONE = TokenUsage(0, 0)


def _usage(usage: Any) -> TokenUsage | None:
    if not isinstance(usage, dict):
        return None
    cached = as_int(usage.get("cache_read_input_tokens"))
    prompt = as_int(usage.get("input_tokens")) + as_int(usage.get("cache_creation_input_tokens")) + cached
    return TokenUsage(prompt, as_int(usage.get("output_tokens")), cached)
