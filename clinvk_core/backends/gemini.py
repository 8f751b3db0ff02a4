"""Gemini CLI (``gemini -o stream-json``): assistant messages arrive as token deltas."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
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
    image_files,
    whole_call,
)
from clinvk_core.config import ToolMode
from clinvk_core.conversation import Conversation, ToolSpec
from clinvk_core.events import Completed, Event, Failed, SessionStarted, TextDelta, TokenUsage
from clinvk_core.transcript import render_prompt

# Without an upstream, a system settings file laid over the user's own login (gemini ignores it under a
# world-writable ancestor such as /tmp). With one, the settings of a fresh home per run: gemini records
# every conversation under its home, which must not outlive the request. Either way written per run.
SYSTEM_SETTINGS = "system-settings.json"
_APPROVAL: dict[ToolMode, str] = {"chat": "default", "read-only": "plan", "agent": "yolo"}
_CODE = re.compile(r'"code"\s*:\s*(\d{3})')
# A 429 reads "[API Error: <text>\nSuggested retry after 7s.]", with no status code in it; without a
# stated delay, gemini's own quota text.
_RETRY_AFTER = re.compile(r"Suggested retry after (\d+)s")
_QUOTA = ("Please wait and try again later", "RESOURCE_EXHAUSTED", "Quota exceeded")
TOOL_PREFIX = f"mcp_{TOOL_SERVER}_"  # how gemini names an MCP server's tools for the model
_WAIT_FOR_PREVIOUS = "wait_for_previous"  # a parameter gemini adds to every tool's schema


class Gemini(Backend):
    name = "gemini"
    executable = "gemini"
    passthrough_env = ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GEMINI_CLI_HOME")

    def invocation(self, binary: Path, request: RunRequest, paths: RunPaths, settings: BackendSettings) -> Invocation:
        conversation = request.conversation
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
        if request.tools:
            argv += ["--allowed-mcp-server-names", TOOL_SERVER]
        env = {"GEMINI_CLI_NO_RELAUNCH": "true"}  # no self re-spawn: 0.6 s per call
        files: dict[Path, str | bytes] = {}
        if conversation.system:
            system_md = paths.scratch / "system.md"
            files[system_md] = conversation.system
            env["GEMINI_SYSTEM_MD"] = str(system_md)  # replaces the CLI's own system prompt
        # Images are files in the working directory, each mentioned (@path) where the prompt shows it.
        images = image_files(conversation)
        files |= {paths.workdir / name: image.data for name, image in images.items()}
        content = json.dumps(_settings(settings, request))
        upstream = settings.upstream
        if not upstream.configured:
            files[paths.scratch / SYSTEM_SETTINGS] = content
            env["GEMINI_CLI_SYSTEM_SETTINGS_PATH"] = str(paths.scratch / SYSTEM_SETTINGS)
        else:
            env |= {"HOME": str(paths.run_home), "GEMINI_CLI_HOME": str(paths.run_home)}
            files[paths.run_home / ".gemini" / "settings.json"] = content
            if upstream.base_url:
                env["GOOGLE_GEMINI_BASE_URL"] = upstream.base_url
            if upstream.api_key:
                env["GEMINI_API_KEY"] = upstream.api_key
        names = list(images)
        prompt = render_prompt(conversation, lambda index, image: f"@{names[index]}")
        return Invocation(argv=tuple(argv), env=env, stdin=prompt, files=files)

    def login_files(self, env: Mapping[str, str], login: Mapping[str, Any]) -> dict[Path, str]:
        gemini_dir = config_dir(env, "GEMINI_CLI_HOME", "") / ".gemini"
        return {
            gemini_dir / "oauth_creds.json": json.dumps(login, indent=2),
            # Non-interactive gemini refuses to run until an auth type is chosen; this one reads oauth_creds.json.
            gemini_dir / "settings.json": json.dumps({"security": {"auth": {"selectedType": "oauth-personal"}}}),
        }

    def parser(self, request: RunRequest) -> GeminiParser:
        return GeminiParser(request.model, request.tools)


class GeminiParser(OutputParser):
    """gemini's stream-json: assistant message deltas, tool_use lines, and the result line."""

    def __init__(self, model: str | None, tools: tuple[ToolSpec, ...]) -> None:
        self._model = model
        self._tools = {tool.name: tool for tool in tools}
        self._calls = 0

    def parse(self, obj: dict[str, Any]) -> list[Event]:
        kind = obj.get("type")
        if kind == "init" and isinstance(obj.get("session_id"), str):
            return [SessionStarted(obj["session_id"])]
        if kind == "message" and obj.get("role") == "assistant" and isinstance(obj.get("content"), str):
            return [TextDelta(obj["content"])]
        if kind == "tool_use" and (tool := self._client_tool(obj.get("tool_name"))):
            arguments: dict[str, Any] = obj["parameters"] if isinstance(obj.get("parameters"), dict) else {}
            if _WAIT_FOR_PREVIOUS not in tool.parameters.get("properties", {}):
                arguments = {k: v for k, v in arguments.items() if k != _WAIT_FOR_PREVIOUS}
            self._calls += 1
            return whole_call(self._calls - 1, tool.name, arguments)
        if kind == "result":
            return [_result(obj, self._model)]
        return []

    def _client_tool(self, shown: Any) -> ToolSpec | None:
        """The client's tool behind the name gemini shows the model (prefixed, and sanitized when needed)."""
        if not isinstance(shown, str) or not shown.startswith(TOOL_PREFIX):
            return None
        name = shown.removeprefix(TOOL_PREFIX)
        return self._tools.get(name) or next(
            (tool for tool in self._tools.values() if _sanitized(TOOL_PREFIX + tool.name) == shown), None
        )


def _sanitized(name: str) -> str:
    """A function name as gemini declares it (its generateValidName): other characters become ``_``, and
    a name over 63 characters keeps its first and last 30 around ``...``."""
    clean = re.sub(r"[^a-zA-Z0-9_.:-]", "_", name)
    return clean if len(clean) <= 63 else f"{clean[:30]}...{clean[-30:]}"


def _settings(settings: BackendSettings, request: RunRequest) -> dict[str, Any]:
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
    if request.tools:
        # Untrusted servers are left out in headless mode; "http" is the streamable transport.
        server = {"type": "http", "url": request.tool_server_url, "trust": True}
        content["mcpServers"] = {TOOL_SERVER: server}
    if settings.tool_mode == "chat":
        # An allowlist: none of gemini's own tools, only the client's (an empty one registers nothing).
        content["tools"] = {"core": [f"{TOOL_PREFIX}*"] if request.tools else []}
    if settings.upstream.configured:
        # With a base URL the CLI refuses to start unless the auth type is chosen here.
        content["security"]["auth"] = {"selectedType": "gemini-api-key"}
    generation = _generation_config(request.conversation)
    if generation and request.model:
        # Applied to the requests of the model the turn runs on, not to the CLI's helper calls.
        override = {"match": {"model": request.model}, "modelConfig": {"generateContentConfig": generation}}
        content["modelConfigs"] = {"overrides": [override]}
    return content


def _generation_config(conversation: Conversation) -> dict[str, Any]:
    """What the request sets of the Gemini API's generation config (passed through by the CLI)."""
    sampling = conversation.sampling
    config: dict[str, Any] = {}
    if sampling.temperature is not None:
        config["temperature"] = sampling.temperature
    if sampling.top_p is not None:
        config["topP"] = sampling.top_p
    if sampling.max_output_tokens is not None:
        config["maxOutputTokens"] = sampling.max_output_tokens
    if conversation.output is not None:
        config["responseMimeType"] = "application/json"
        config["responseJsonSchema"] = conversation.output.schema
    choice = conversation.tool_choice
    if conversation.tools and choice.mode != "auto":
        calling: dict[str, Any] = {"mode": "ANY"}
        if choice.mode == "function" and choice.name:
            calling["allowedFunctionNames"] = [_sanitized(TOOL_PREFIX + choice.name)]
        config["toolConfig"] = {"functionCallingConfig": calling}
    return config


def _result(obj: dict[str, Any], model: str | None) -> Event:
    if obj.get("status") != "success":
        error = obj.get("error")
        message = str(error.get("message")) if isinstance(error, dict) else "gemini failed"
        if retry := _RETRY_AFTER.search(message):
            return Failed(message, 429, int(retry.group(1)))
        if any(text in message for text in _QUOTA):
            return Failed(message, 429)
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
