"""Gemini CLI (``gemini -o stream-json``): assistant messages arrive as token deltas."""

from __future__ import annotations

import json
import re
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
from clinvk_core.events import Completed, Event, Failed, SessionStarted, TextDelta, TokenUsage

# Without an upstream, a system settings file laid over the user's own login (gemini ignores it under a
# world-writable ancestor such as /tmp). With one, the settings of a fresh home per run: gemini records
# every conversation under its home, which must not outlive the request.
SYSTEM_SETTINGS = "settings.json"
_APPROVAL: dict[ToolMode, str] = {"chat": "default", "read-only": "plan", "agent": "yolo"}
_CODE = re.compile(r'"code"\s*:\s*(\d{3})')
# A 429 reads "[API Error: <text>\nSuggested retry after 7s.]", with no status code in it.
_RETRY_AFTER = re.compile(r"Suggested retry after (\d+)s")


class Gemini(Backend):
    name = "gemini"
    executable = "gemini"
    passthrough_env = ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GEMINI_CLI_HOME")

    def state_files(self, settings: BackendSettings) -> dict[str, str]:
        if settings.upstream.configured:
            return {}
        return {SYSTEM_SETTINGS: json.dumps(_settings(settings), indent=2)}

    def invocation(self, binary: Path, request: RunRequest, paths: RunPaths, settings: BackendSettings) -> Invocation:
        # Always -m: without it gemini makes an extra "router" model call per request.
        argv = [
            str(binary),
            "-o",
            "stream-json",
            "--skip-trust",
            "--approval-mode",
            _APPROVAL[settings.tool_mode],
        ]
        if request.model:
            argv += ["-m", request.model]
        env = {"GEMINI_CLI_NO_RELAUNCH": "true"}  # no self re-spawn: 0.6 s per call
        files: dict[Path, str] = {}
        if request.system_prompt:
            system_md = paths.scratch / "system.md"
            files[system_md] = request.system_prompt
            env["GEMINI_SYSTEM_MD"] = str(system_md)  # replaces the CLI's own system prompt
        upstream = settings.upstream
        if not upstream.configured:
            env["GEMINI_CLI_SYSTEM_SETTINGS_PATH"] = str(paths.state / SYSTEM_SETTINGS)
        else:
            env |= {"HOME": str(paths.run_home), "GEMINI_CLI_HOME": str(paths.run_home)}
            files[paths.run_home / ".gemini" / "settings.json"] = json.dumps(_settings(settings))
            if upstream.base_url:
                env["GOOGLE_GEMINI_BASE_URL"] = upstream.base_url
            if upstream.api_key:
                env["GEMINI_API_KEY"] = upstream.api_key
        return Invocation(argv=tuple(argv), env=env, stdin=request.prompt, files=files)

    def login_files(self, env: Mapping[str, str], login: Mapping[str, Any]) -> dict[Path, str]:
        gemini_dir = config_dir(env, "GEMINI_CLI_HOME", "") / ".gemini"
        return {
            gemini_dir / "oauth_creds.json": json.dumps(login, indent=2),
            # Non-interactive gemini refuses to run until an auth type is chosen; this one reads oauth_creds.json.
            gemini_dir / "settings.json": json.dumps({"security": {"auth": {"selectedType": "oauth-personal"}}}),
        }

    def parse_object(self, obj: dict[str, Any], model: str | None) -> list[Event]:
        kind = obj.get("type")
        if kind == "init" and isinstance(obj.get("session_id"), str):
            return [SessionStarted(obj["session_id"])]
        if kind == "message" and obj.get("role") == "assistant" and isinstance(obj.get("content"), str):
            return [TextDelta(obj["content"])]
        if kind == "result":
            return [_result(obj, model)]
        return []


def _settings(settings: BackendSettings) -> dict[str, Any]:
    content: dict[str, Any] = {
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
        "general": {
            "enableAutoUpdate": False,
            "enableAutoUpdateNotification": False,
            "maxAttempts": settings.max_retries + 1,
        },
        # The commands a tool runs get no variable named like a secret (the upstream key among them).
        "security": {"environmentVariableRedaction": {"enabled": True}},
    }
    if settings.tool_mode == "chat":
        content["tools"] = {"core": []}  # an empty allowlist registers no tool at all
    if settings.upstream.configured:
        # With a base URL the CLI refuses to start unless the auth type is chosen here.
        content["security"]["auth"] = {"selectedType": "gemini-api-key"}
    return content


def _result(obj: dict[str, Any], model: str | None) -> Event:
    if obj.get("status") != "success":
        error = obj.get("error")
        message = str(error.get("message")) if isinstance(error, dict) else "gemini failed"
        if retry := _RETRY_AFTER.search(message):
            return Failed(message, 429, int(retry.group(1)))
        code = _CODE.search(message)
        return Failed(message, int(code.group(1)) if code else None)
    stats = obj.get("stats")
    if not isinstance(stats, dict):
        return Completed(None)
    # Count only the requested model: helper calls (e.g. the router) are not the user's tokens.
    models = stats.get("models")
    if model and isinstance(models, dict) and isinstance(models.get(model), dict):
        stats = models[model]
    return Completed(
        TokenUsage(
            prompt_tokens=as_int(stats.get("input_tokens")),
            completion_tokens=as_int(stats.get("output_tokens")),
            cached_tokens=as_int(stats.get("cached")),
        )
    )
