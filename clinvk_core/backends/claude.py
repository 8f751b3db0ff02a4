"""Claude Code (``claude``): stream-json with partial messages, so text arrives as token deltas."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clinvk_core.backends.base import (
    Backend,
    BackendSettings,
    Invocation,
    RunPaths,
    RunRequest,
    as_int,
    config_dir,
)
from clinvk_core.config import ToolMode
from clinvk_core.events import (
    Completed,
    Event,
    Failed,
    FinishReason,
    SessionStarted,
    TextDelta,
    TokenUsage,
)

# --tools "" removes every tool (and 40 KB from each upstream request).
_TOOL_FLAGS: dict[ToolMode, tuple[str, ...]] = {
    "chat": ("--tools", ""),
    "read-only": ("--tools", "Read,Glob,Grep"),
    "agent": ("--permission-mode", "bypassPermissions"),
}


class Claude(Backend):
    name = "claude"
    executable = "claude"
    passthrough_env = (
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_BASE_URL",
        "CLAUDE_CODE_OAUTH_TOKEN",
        "CLAUDE_CONFIG_DIR",
    )

    def invocation(self, binary: Path, request: RunRequest, paths: RunPaths, settings: BackendSettings) -> Invocation:
        argv = [
            str(binary),
            "-p",
            "--output-format", "stream-json",
            "--verbose",  # stream-json refuses to run without it
            "--include-partial-messages",  # the only way to get token deltas
            "--no-session-persistence",
            *_TOOL_FLAGS[settings.tool_mode],
        ]  # fmt: skip
        if request.model:
            argv += ["--model", request.model]
        if request.system_prompt:
            flag = "--system-prompt" if settings.tool_mode == "chat" else "--append-system-prompt"
            argv += [flag, request.system_prompt]

        env = {
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "CLAUDE_CODE_MAX_RETRIES": str(settings.max_retries),
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
        return Invocation(argv=tuple(argv), env=env, stdin=request.prompt)

    def login_files(self, env: Mapping[str, str], login: Mapping[str, Any]) -> dict[Path, str]:
        return {config_dir(env, "CLAUDE_CONFIG_DIR", ".claude") / ".credentials.json": json.dumps(login, indent=2)}

    def parse_object(self, obj: dict[str, Any], model: str | None) -> list[Event]:
        kind = obj.get("type")
        if kind == "stream_event" and obj.get("parent_tool_use_id") is None:
            return _text_delta(obj.get("event"))
        if kind == "system" and obj.get("subtype") == "init" and isinstance(obj.get("session_id"), str):
            return [SessionStarted(obj["session_id"])]
        if kind == "result":
            return [_result(obj)]
        return []


def _text_delta(event: Any) -> list[Event]:
    if not isinstance(event, dict) or event.get("type") != "content_block_delta":
        return []
    delta = event.get("delta")
    if isinstance(delta, dict) and delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
        return [TextDelta(delta["text"])]
    return []


def _result(obj: dict[str, Any]) -> Event:
    # On failure claude keeps subtype "success" and sets is_error; result holds its message.
    if obj.get("is_error"):
        status = obj.get("api_error_status")
        return Failed(str(obj.get("result") or "claude failed"), status if isinstance(status, int) else None)
    usage = obj.get("usage")
    token_usage = None
    if isinstance(usage, dict):
        cached = as_int(usage.get("cache_read_input_tokens"))
        prompt = as_int(usage.get("input_tokens")) + as_int(usage.get("cache_creation_input_tokens")) + cached
        token_usage = TokenUsage(prompt, as_int(usage.get("output_tokens")), cached)
    finish: FinishReason = "length" if obj.get("stop_reason") == "max_tokens" else "stop"
    final_text = obj.get("result")
    return Completed(token_usage, finish, final_text if isinstance(final_text, str) else None)
