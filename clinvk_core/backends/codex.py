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
    Call,
    Invocation,
    OutputParser,
    RpcDialect,
    RunPaths,
    RunRequest,
    WarmSession,
    as_int,
    config_dir,
    image_files,
    whole_call,
)
from clinvk_core.config import ToolMode
from clinvk_core.conversation import Conversation, ImagePart
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
# reasoning_effort values -> codex's model_reasoning_effort (its highest is xhigh).
_EFFORT = {"minimal": "minimal", "low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh", "max": "xhigh"}
# The npm launcher only execs this native binary; calling it directly saves ~70 ms per request.
_NATIVE = Path("codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex")
_NATIVE_ARM = Path("codex-linux-arm64/vendor/aarch64-unknown-linux-musl/bin/codex")


def toml_string(value: str) -> str:
    """A TOML basic string (``-c key=value`` values are parsed as TOML)."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


class Codex(Backend):
    name = "codex"
    executable = "codex"
    warm_kind = "server"
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
        flags, env = _common(settings, paths)
        argv = [str(binary), "exec", "--json", "--skip-git-repo-check", "--ephemeral",
                "--sandbox", _SANDBOX[settings.tool_mode], *flags]  # fmt: skip
        if request.model:
            argv += ["--model", request.model]
        if conversation.system:
            argv += ["-c", f"developer_instructions={toml_string(conversation.system)}"]
        if request.tools and request.tool_server_url:
            server = f"mcp_servers.{TOOL_SERVER}"
            argv += ["-c", f"{server}.url={toml_string(request.tool_server_url)}"]
            # exec cannot ask for approval: without this every call is refused.
            argv += ["-c", f'{server}.default_tools_approval_mode="approve"']
        if conversation.reasoning_effort in _EFFORT:
            argv += ["-c", f"model_reasoning_effort={toml_string(_EFFORT[conversation.reasoning_effort])}"]
        files: dict[Path, str | bytes] = {}
        if conversation.output:
            schema_file = paths.scratch / "output-schema.json"
            files[schema_file] = json.dumps(strict_schema(conversation.output.schema)[0])
            argv += ["--output-schema", str(schema_file)]
        for image_file, image in _image_files(conversation, paths).items():
            files[image_file] = image.data
            argv += ["--image", str(image_file)]
        argv.append("-")  # the prompt comes on stdin
        return Invocation(argv=tuple(argv), env=env, stdin=render_prompt(conversation), files=files)

    # Started ahead: one app server, a thread per request (its cwd, model, instructions, the bridge).

    def warm_invocation(
        self, binary: Path, paths: RunPaths, settings: BackendSettings, model: str | None
    ) -> Invocation:
        flags, env = _common(settings, paths)
        # A thread closes (its MCP connection with it) as soon as it is unsubscribed.
        return Invocation(
            argv=(str(binary), "app-server", *flags, "-c", "thread_unload_delay_secs=0"), env=env, stdin=""
        )

    def warm_serves(self, settings: BackendSettings) -> bool:
        # Only in chat mode: the app server's HOME is every thread's, and a tool's ~ must be its run's own.
        return settings.tool_mode == "chat"

    def warm_refusal(self, request: RunRequest, settings: BackendSettings) -> str | None:
        return None

    def rpc_dialect(self) -> RpcDialect:
        client = {"name": "clinvk", "title": None, "version": "1"}
        handshake = (
            Call("initialize", {"clientInfo": client, "capabilities": {"experimentalApi": False}}),
            Call("initialized", {}, notify=True),
        )
        return RpcDialect(jsonrpc=False, handshake=handshake, session_of=_thread_of, answer=_decline)

    def warm_session(self, request: RunRequest, paths: RunPaths, settings: BackendSettings) -> CodexSession:
        return CodexSession(request, paths)

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
            self._calls += 1
            return _client_call(self._calls - 1, item)
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
            return [_turn_failed(message, None)]
        return []


def _common(settings: BackendSettings, paths: RunPaths) -> tuple[list[str], dict[str, str]]:
    """The flags and environment of every codex this gateway starts, for a turn or for many."""
    flags = [
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
        flags += ["-c", setting]
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
        flags += ["-c", "model_provider=clinvk", "-c", f"model_providers.clinvk={provider}"]
        # CODEX_HOME (must exist already) keeps codex's caches between runs; a tool's ~ is the run's own.
        env |= {"HOME": str(paths.run_home), "CODEX_HOME": str(paths.home)}
        env[KEY_ENV] = upstream.api_key or ""
    return flags, env


def _image_files(conversation: Conversation, paths: RunPaths) -> dict[Path, ImagePart]:
    return {paths.scratch / name: image for name, image in image_files(conversation).items()}


def _thread_of(message: dict[str, Any]) -> str | None:
    params = message.get("params")
    thread = params.get("threadId") if isinstance(params, dict) else None
    return thread if isinstance(thread, str) else None


def _decline(message: dict[str, Any]) -> Any:
    """codex asks for approvals only when a tool needs it: never granted from here (chat mode has none)."""
    return {"decision": "decline"}


class CodexSession(WarmSession):
    """A thread of the app server for one request: thread/start, turn/start, its notifications, unsubscribe."""

    def __init__(self, request: RunRequest, paths: RunPaths) -> None:
        self._request = request
        self._paths = paths
        self._images = _image_files(request.conversation, paths)
        self._turn: str | None = None
        self._usage: TokenUsage | None = None
        self._calls = 0

    @property
    def files(self) -> Mapping[Path, str | bytes]:
        return {path: image.data for path, image in self._images.items()}

    def opening(self) -> Call:
        conversation = self._request.conversation
        params: dict[str, Any] = {"cwd": str(self._paths.workdir), "approvalPolicy": "never", "sandbox": "read-only",
                                  "ephemeral": True}  # fmt: skip
        if self._request.model:
            params["model"] = self._request.model
        if conversation.system:
            params["developerInstructions"] = conversation.system
        if self._request.tools:
            server = {"url": self._request.tool_server_url, "default_tools_approval_mode": "approve"}
            params["config"] = {"mcp_servers": {TOOL_SERVER: server}}
        return Call("thread/start", params)

    def on_result(self, call: Call, result: Any) -> tuple[list[Call], list[Event]]:
        if call.method == "thread/start":
            self.key = str(result["thread"]["id"])
            return [Call("turn/start", self._turn_params())], [SessionStarted(self.key)]
        if call.method == "turn/start":
            self._turn = str(result["turn"]["id"])
        return [], []

    def _turn_params(self) -> dict[str, Any]:
        conversation = self._request.conversation
        items: list[dict[str, Any]] = [{"type": "localImage", "path": str(path)} for path in self._images]
        items.append({"type": "text", "text": render_prompt(conversation), "text_elements": []})
        params: dict[str, Any] = {"threadId": self.key, "input": items}
        if conversation.reasoning_effort in _EFFORT:
            params["effort"] = _EFFORT[conversation.reasoning_effort]
        if conversation.output:
            params["outputSchema"] = strict_schema(conversation.output.schema)[0]
        return params

    def on_notification(self, message: dict[str, Any]) -> list[Event]:
        method = message.get("method")
        params: dict[str, Any] = message["params"] if isinstance(message.get("params"), dict) else {}
        item: dict[str, Any] = params["item"] if isinstance(params.get("item"), dict) else {}
        if method == "item/agentMessage/delta" and isinstance(params.get("delta"), str):
            return [TextDelta(params["delta"])]
        if method == "item/completed" and item.get("type") == "reasoning":
            summary = item.get("summary")
            text = "\n".join(str(part) for part in summary) if isinstance(summary, list) else ""
            return [ReasoningDelta(text)] if text else []
        if method == "item/started" and item.get("type") == "mcpToolCall" and item.get("server") == TOOL_SERVER:
            self._calls += 1
            return _client_call(self._calls - 1, item)
        if method == "thread/tokenUsage/updated":
            usage = params.get("tokenUsage")
            self._usage = _usage(_snake(usage.get("total")) if isinstance(usage, dict) else None)
        elif method == "turn/completed":
            return [self._end(params.get("turn") or {})]
        return []

    def _end(self, turn: dict[str, Any]) -> Event:
        if turn.get("status") == "completed":
            return Completed(self._usage)
        error: dict[str, Any] = turn["error"] if isinstance(turn.get("error"), dict) else {}
        message = str(error.get("message") or f"codex: the turn ended {turn.get('status')}")
        info = error.get("codexErrorInfo")
        attempts = info.get("responseTooManyFailedAttempts") if isinstance(info, dict) else None
        status = attempts.get("httpStatusCode") if isinstance(attempts, dict) else None
        return _turn_failed(message, self._usage, status if isinstance(status, int) else None)

    def usage_so_far(self) -> TokenUsage | None:
        return self._usage

    def cancel(self) -> Call | None:
        if self.key is None or self._turn is None:
            return None
        return Call("turn/interrupt", {"threadId": self.key, "turnId": self._turn})

    def closing(self) -> Call | None:
        return None if self.key is None else Call("thread/unsubscribe", {"threadId": self.key})


def _client_call(index: int, item: dict[str, Any]) -> list[Event]:
    """The events of codex's MCP call of a client tool, which it reports whole (exec and app server alike)."""
    arguments = item.get("arguments")
    return whole_call(index, str(item.get("tool")), arguments if isinstance(arguments, dict) else {})


def _turn_failed(message: str, usage: TokenUsage | None, status: int | None = None) -> Event:
    """A failed turn's end (exec and app server alike): cut at the output limit, the answer so far is the
    answer; else a failure, with the provider's status as stated or as the message spells it."""
    if _CUT in message:
        return Completed(usage, "length")
    if status is None and (match := _STATUS.search(message)):
        status = int(match.group(1))
    return Failed(message, status)


def _snake(usage: Any) -> dict[str, Any] | None:
    """The app server's camelCase token counts under exec's names."""
    if not isinstance(usage, dict):
        return None
    names = {"inputTokens": "input_tokens", "cachedInputTokens": "cached_input_tokens",
             "outputTokens": "output_tokens", "reasoningOutputTokens": "reasoning_output_tokens"}  # fmt: skip
    return {names[key]: value for key, value in usage.items() if key in names}


def _usage(usage: Any) -> TokenUsage | None:
    if not isinstance(usage, dict):
        return None
    return TokenUsage(
        prompt_tokens=as_int(usage.get("input_tokens")),
        completion_tokens=as_int(usage.get("output_tokens")),
        cached_tokens=as_int(usage.get("cached_input_tokens")),
        reasoning_tokens=as_int(usage.get("reasoning_output_tokens")),
    )
