"""Codex CLI (``codex exec --json``): no token deltas; each agent message and tool call arrives whole."""

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
    whole_call,
)
from clinvk_core.config import ToolMode
from clinvk_core.conversation import Conversation
from clinvk_core.events import Completed, Event, Failed, ReasoningDelta, SessionStarted, TextDelta, TokenUsage
from clinvk_core.transcript import render_prompt

# codex reads the provider key from the variable its provider entry names.
KEY_ENV = "CODEX_UPSTREAM_API_KEY"
_DEFAULT_BASE_URL = "https://api.openai.com/v1"
_SANDBOX: dict[ToolMode, str] = {"chat": "read-only", "read-only": "read-only", "agent": "workspace-write"}
# Tools a one-shot, non-interactive turn never needs (goals, sub-agents, questions to the user).
_NEVER_USEFUL = (
    "features.goals=false",
    "features.multi_agent=false",
    "tools.experimental_request_user_input.enabled=false",
)
# Each tool mode switches off what it must not use. In chat mode only apply_patch is left, which
# comes from the model catalog and cannot write anything in the read-only sandbox.
_TOOLS_OFF: dict[ToolMode, tuple[str, ...]] = {
    "chat": (*_NEVER_USEFUL, "web_search=disabled", "features.shell_tool=false", "features.view_image=false"),
    "read-only": (*_NEVER_USEFUL, "web_search=disabled"),
    "agent": _NEVER_USEFUL,
}
_STATUS = re.compile(r"\bstatus:? (\d{3})\b")
# Its model catalog, rewritten at cold start: MCP tools declared to the model (not deferred behind a
# tool_search tool), and in chat mode no apply_patch tool either.
CATALOG = "models.json"
_CUT = "Incomplete response returned, reason: max_output_tokens"
_EFFORTS = frozenset({"minimal", "low", "medium", "high", "xhigh"})
_IMAGE_SUFFIX = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp"}
# The npm launcher only execs this native binary; calling it directly saves ~70 ms per request.
_NATIVE = Path("codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex")
_NATIVE_ARM = Path("codex-linux-arm64/vendor/aarch64-unknown-linux-musl/bin/codex")


def toml_string(value: str) -> str:
    """A TOML basic string (``-c key=value`` values are parsed as TOML)."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


class Codex(Backend):
    name = "codex"
    executable = "codex"
    passthrough_env = ("OPENAI_API_KEY", "CODEX_API_KEY", "CODEX_HOME")

    def binary_candidates(self, launcher: Path) -> list[Path]:
        # node_modules/.bin/codex -> node_modules/@openai/codex/bin/codex.js
        scope = launcher.resolve().parent.parent.parent
        return [scope / _NATIVE, scope / _NATIVE_ARM, launcher]

    def setup_argv(self, binary: Path) -> tuple[str, ...]:
        return (str(binary), "debug", "models", "--bundled")

    def state_files(self, settings: BackendSettings, setup_output: str | None) -> dict[str, str]:
        catalog = json.loads(setup_output or "")
        for model in catalog["models"]:
            # Every model on the plain Responses API with tools declared as functions: the newer models'
            # "lite" requests carry tools as input items, reached from code the model writes (code mode),
            # and MCP tools otherwise hide behind a tool_search tool. Neither declares the client's tools.
            model |= {"supports_search_tool": False, "tool_mode": None, "use_responses_lite": False}
            model["experimental_supported_tools"] = []
            if settings.tool_mode == "chat":  # none of codex's own tools
                model |= {"apply_patch_tool_type": None, "multi_agent_version": None}
        return {CATALOG: json.dumps(catalog)}

    def invocation(self, binary: Path, request: RunRequest, paths: RunPaths, settings: BackendSettings) -> Invocation:
        conversation = request.conversation
        argv = [
            str(binary), "exec",
            "--json",
            "--skip-git-repo-check",
            "--ephemeral",
            "--sandbox", _SANDBOX[settings.tool_mode],
            "-c", f"model_catalog_json={toml_string(str(paths.state / CATALOG))}",
            "-c", "analytics.enabled=false",
            "-c", "check_for_update_on_startup=false",
            "-c", "features.plugins=false",
            # Else every run writes a snapshot of its shell environment, upstream key included, to CODEX_HOME.
            "-c", "features.shell_snapshot=false",
            # The commands a tool runs get no variable named like a secret (the upstream key among them).
            "-c", "shell_environment_policy.ignore_default_excludes=false",
        ]  # fmt: skip
        for setting in _TOOLS_OFF[settings.tool_mode]:
            argv += ["-c", setting]
        if request.model:
            argv += ["--model", request.model]
        if conversation.system:
            argv += ["-c", f"developer_instructions={toml_string(conversation.system)}"]
        if request.tools and request.tool_server_url:
            server = f"mcp_servers.{TOOL_SERVER}"
            argv += ["-c", f"{server}.url={toml_string(request.tool_server_url)}"]
            # exec cannot ask for approval: without this every call is refused.
            argv += ["-c", f'{server}.default_tools_approval_mode="approve"']
        if conversation.reasoning_effort in _EFFORTS:
            argv += ["-c", f"model_reasoning_effort={toml_string(conversation.reasoning_effort or '')}"]
        files: dict[Path, str | bytes] = {}
        if conversation.output:
            schema_file = paths.scratch / "output-schema.json"
            files[schema_file] = json.dumps(strict_schema(conversation.output.schema)[0])
            argv += ["--output-schema", str(schema_file)]
        for index, image in enumerate(conversation.images):
            image_file = paths.scratch / "images" / f"{index + 1}{_IMAGE_SUFFIX.get(image.media_type, '')}"
            files[image_file] = image.data
            argv += ["--image", str(image_file)]

        env: dict[str, str] = {}
        upstream = settings.upstream
        if upstream.configured:
            # codex ignores OPENAI_BASE_URL: a custom provider is the only way to move it.
            retries = settings.max_retries
            provider = (
                f'{{name="clinvk",base_url={toml_string(upstream.base_url or _DEFAULT_BASE_URL)},'
                f'env_key="{KEY_ENV}",wire_api="responses",supports_websockets=false,'
                f"request_max_retries={retries},stream_max_retries={retries}}}"
            )
            argv += ["-c", "model_provider=clinvk", "-c", f"model_providers.clinvk={provider}"]
            # CODEX_HOME (must exist already) keeps codex's caches between runs; a tool's ~ is the run's own.
            env |= {"HOME": str(paths.run_home), "CODEX_HOME": str(paths.home)}
            env[KEY_ENV] = upstream.api_key or ""
        argv.append("-")  # the prompt comes on stdin
        return Invocation(argv=tuple(argv), env=env, stdin=render_prompt(conversation), files=files)

    def login_files(self, env: Mapping[str, str], login: Mapping[str, Any]) -> dict[Path, str]:
        return {config_dir(env, "CODEX_HOME", ".codex") / "auth.json": json.dumps(login, indent=2)}

    def parser(self, request: RunRequest) -> CodexParser:
        return CodexParser()

    def refusal(self, conversation: Conversation) -> str | None:
        output = conversation.output
        if output is None or not output.strict or not (breaks := strict_schema(output.schema)[1]):
            return None
        return (
            "codex holds structured output to OpenAI's strict schema rules: every object needs "
            f"'additionalProperties': false and all its properties in 'required' ({'; '.join(breaks[:5])}). "
            "Fix the schema, or send it with strict false and clinvk adapts it."
        )


def strict_schema(schema: Any, path: str = "") -> tuple[Any, list[str]]:
    """``schema`` as OpenAI's strict mode takes it, and where the original breaks its rules.

    The adaptation only narrows: every object closed (``additionalProperties: false``) with all its
    properties required, so an answer valid for the adapted schema is valid for the original one.
    """
    if isinstance(schema, list):
        parts = [strict_schema(item, f"{path}/{i}") for i, item in enumerate(schema)]
        return [part for part, _ in parts], [problem for _, found in parts for problem in found]
    if not isinstance(schema, dict):
        return schema, []
    adapted: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in schema.items():
        adapted[key], found = strict_schema(value, f"{path}/{key}")
        problems += found
    if schema.get("type") == "object" or "properties" in schema:
        names = list(schema.get("properties") or {})
        if schema.get("additionalProperties") is not False:
            problems.append(f"{path or '/'}: additionalProperties is not false")
            adapted["additionalProperties"] = False
        if set(schema.get("required") or []) != set(names):
            problems.append(f"{path or '/'}: not every property is required")
            adapted["required"] = names
    return adapted, problems


class CodexParser(OutputParser):
    """codex's --json events: whole agent messages, reasoning summaries and MCP tool calls."""

    def __init__(self) -> None:
        self._calls = 0

    def parse(self, obj: dict[str, Any]) -> list[Event]:
        kind = obj.get("type")
        item: dict[str, Any] = obj["item"] if isinstance(obj.get("item"), dict) else {}
        if kind == "thread.started" and isinstance(obj.get("thread_id"), str):
            return [SessionStarted(obj["thread_id"])]
        if kind == "item.started" and item.get("type") == "mcp_tool_call" and item.get("server") == TOOL_SERVER:
            # The call as codex starts it; it reaches the bridge within a millisecond.
            arguments = item.get("arguments")
            self._calls += 1
            return whole_call(self._calls - 1, str(item.get("tool")), arguments if isinstance(arguments, dict) else {})
        if kind == "item.completed" and isinstance(text := item.get("text"), str):
            if item.get("type") == "agent_message":
                return [TextDelta(text)]
            if item.get("type") == "reasoning":
                return [ReasoningDelta(text)]
        elif kind == "turn.completed":
            return [Completed(_usage(obj.get("usage")))]
        elif kind == "turn.failed":
            # "error" lines before it are retry notices; turn.failed carries the final message.
            error = obj.get("error")
            message = str(error.get("message")) if isinstance(error, dict) else "codex failed"
            if _CUT in message:  # the answer so far is the answer, cut at the output limit
                return [Completed(None, "length")]
            match = _STATUS.search(message)
            return [Failed(message, int(match.group(1)) if match else None)]
        return []


def _usage(usage: Any) -> TokenUsage | None:
    if not isinstance(usage, dict):
        return None
    return TokenUsage(
        prompt_tokens=as_int(usage.get("input_tokens")),
        completion_tokens=as_int(usage.get("output_tokens")),
        cached_tokens=as_int(usage.get("cached_input_tokens")),
        reasoning_tokens=as_int(usage.get("reasoning_output_tokens")),
    )
