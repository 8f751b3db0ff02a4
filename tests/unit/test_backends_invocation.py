"""What each backend asks to run: argv, environment, stdin, files, state files and binary candidates."""

from __future__ import annotations

import base64
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from clinvk_core.backends import BACKENDS, Backend, BackendSettings, Invocation, RunPaths, RunRequest
from clinvk_core.backends.claude import Claude
from clinvk_core.backends.codex import CATALOG, KEY_ENV, Codex, strict_schema, toml_string
from clinvk_core.backends.gemini import SYSTEM_SETTINGS, Gemini
from clinvk_core.config import ToolMode, Upstream
from clinvk_core.conversation import (
    Conversation,
    ImagePart,
    OutputFormat,
    Sampling,
    TextPart,
    ToolChoice,
    ToolSpec,
    Turn,
)

BINARY = Path("/opt/clis/bin/the-cli")
PROMPT = "PROMPT-CANARY-7f3a: say pong\nsecond line"
SYSTEM = 'You are "terse".\nUse \\n literally, C:\\path, tab\there, é 漢字 🚀, DEL\x7f, bell\x07 end'
UPSTREAM = Upstream(base_url="http://127.0.0.1:9/v1", api_key="sk-UPSTREAM-KEY-CANARY")
TOOL_MODES: tuple[ToolMode, ...] = ("chat", "read-only", "agent")


def value_after(argv: tuple[str, ...], flag: str) -> str:
    """The value following ``flag``, which must appear exactly once."""
    assert argv.count(flag) == 1, f"{flag} appears {argv.count(flag)} times in {argv}"
    index = argv.index(flag)
    assert index + 1 < len(argv)
    return argv[index + 1]


def config_overrides(argv: tuple[str, ...]) -> list[str]:
    """Every ``-c key=value`` of a codex argv."""
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == "-c"]


def build(
    backend: Backend,
    paths: RunPaths,
    *,
    system: str | None = SYSTEM,
    model: str | None = None,
    upstream: Upstream | None = None,
    tool_mode: ToolMode = "chat",
    retries: int = 1,
) -> Invocation:
    settings = BackendSettings(upstream=upstream or Upstream(), tool_mode=tool_mode, max_retries=retries)
    return backend.invocation(BINARY, run_request(system=system, model=model), paths, settings)


def run_request(*, system: str | None = SYSTEM, model: str | None = None, **fields: Any) -> RunRequest:
    """A one-turn request for PROMPT; ``fields`` go into the Conversation (``tool_server_url`` into the request)."""
    server = fields.pop("tool_server_url", None)
    conversation = Conversation((Turn("user", (TextPart(PROMPT),)),), system=system, **fields)
    return RunRequest(conversation, model, server)


@pytest.mark.parametrize("backend", list(BACKENDS.values()), ids=list(BACKENDS))
@pytest.mark.parametrize("tool_mode", TOOL_MODES)
@pytest.mark.parametrize("upstream", [None, UPSTREAM], ids=["login", "upstream"])
def test_prompt_goes_to_stdin_never_argv_and_secrets_never_argv(
    backend: Backend, tool_mode: ToolMode, upstream: Upstream | None, run_paths: RunPaths
) -> None:
    invocation = build(backend, run_paths, model="some-model", upstream=upstream, tool_mode=tool_mode)
    assert invocation.argv[0] == str(BINARY)
    assert invocation.stdin == PROMPT
    assert not any("PROMPT-CANARY" in arg for arg in invocation.argv)
    assert not any("sk-UPSTREAM-KEY-CANARY" in arg for arg in invocation.argv)
    assert all(isinstance(arg, str) for arg in invocation.argv)


# --- claude -------------------------------------------------------------------------------------------


def test_claude_chat_mode(run_paths: RunPaths) -> None:
    argv = build(Claude(), run_paths).argv
    assert "-p" in argv
    assert value_after(argv, "--output-format") == "stream-json"
    assert "--verbose" in argv  # stream-json exits 1 without it
    assert "--include-partial-messages" in argv
    assert value_after(argv, "--tools") == ""
    assert value_after(argv, "--system-prompt") == SYSTEM
    assert "--append-system-prompt" not in argv
    assert "--model" not in argv
    assert "--permission-mode" not in argv


@pytest.mark.parametrize("tool_mode", ["read-only", "agent"])
def test_claude_other_modes_append_the_system_prompt(tool_mode: ToolMode, run_paths: RunPaths) -> None:
    invocation = build(Claude(), run_paths, tool_mode=tool_mode)
    assert value_after(invocation.argv, "--append-system-prompt") == SYSTEM
    assert "--system-prompt" not in invocation.argv
    assert "" not in invocation.argv  # no `--tools ""`: tools stay available in these modes
    assert ("IS_SANDBOX" in invocation.env) == (tool_mode == "agent")


def test_claude_model_only_when_given(run_paths: RunPaths) -> None:
    assert value_after(build(Claude(), run_paths, model="claude-haiku-4-5").argv, "--model") == "claude-haiku-4-5"
    assert "--model" not in build(Claude(), run_paths, model=None).argv
    no_system = build(Claude(), run_paths, system=None).argv
    assert "--system-prompt" not in no_system
    assert "--append-system-prompt" not in no_system


def test_claude_env_without_upstream_keeps_the_users_login(run_paths: RunPaths) -> None:
    invocation = build(Claude(), run_paths, retries=0)
    assert invocation.env == {
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "ENABLE_TOOL_SEARCH": "false",  # every client tool declared to the model, none deferred
    }
    assert invocation.files == {}


def test_claude_env_with_upstream(run_paths: RunPaths) -> None:
    env = build(Claude(), run_paths, upstream=UPSTREAM, retries=2).env
    assert env["ANTHROPIC_BASE_URL"] == UPSTREAM.base_url
    assert env["ANTHROPIC_API_KEY"] == UPSTREAM.api_key
    # Home and config dir are the run's own: what claude writes per session goes away with the run.
    assert env["HOME"] == str(run_paths.run_home)
    assert Path(env["CLAUDE_CONFIG_DIR"]).is_relative_to(run_paths.scratch)
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert env["CLAUDE_CODE_MAX_RETRIES"] == "2"


def test_claude_upstream_key_only(run_paths: RunPaths) -> None:
    env = build(Claude(), run_paths, upstream=Upstream(api_key="sk-only")).env
    assert env["ANTHROPIC_API_KEY"] == "sk-only"
    assert "ANTHROPIC_BASE_URL" not in env


# --- codex --------------------------------------------------------------------------------------------


def test_codex_chat_mode(run_paths: RunPaths) -> None:
    invocation = build(Codex(), run_paths, model="gpt-5.5")
    argv = invocation.argv
    assert argv[1] == "exec"
    for flag in ("--json", "--skip-git-repo-check", "--ephemeral"):
        assert flag in argv
    assert value_after(argv, "--sandbox") == "read-only"
    assert value_after(argv, "--model") == "gpt-5.5"
    assert argv[-1] == "-"  # the prompt comes on stdin
    assert invocation.env == {}
    assert invocation.files == {}


@pytest.mark.parametrize(("tool_mode", "sandbox"), [("read-only", "read-only"), ("agent", "workspace-write")])
def test_codex_sandbox_per_tool_mode(tool_mode: ToolMode, sandbox: str, run_paths: RunPaths) -> None:
    assert value_after(build(Codex(), run_paths, tool_mode=tool_mode).argv, "--sandbox") == sandbox


def test_codex_without_model_or_system_prompt(run_paths: RunPaths) -> None:
    argv = build(Codex(), run_paths, system=None, model=None).argv
    assert "--model" not in argv
    assert "-m" not in argv
    assert not any(value.startswith("developer_instructions") for value in config_overrides(argv))
    assert argv[-1] == "-"


def codex_settings(argv: tuple[str, ...]) -> dict[str, Any]:
    """The ``-c`` overrides as codex reads them: TOML, or the raw text for a bare word; keyed by dotted path."""
    settings: dict[str, Any] = {}
    for override in config_overrides(argv):
        key, _, raw = override.partition("=")
        try:
            value: Any = tomllib.loads(override)
            for part in key.split("."):
                value = value[part]
        except tomllib.TOMLDecodeError:
            assert re.fullmatch(r"[A-Za-z0-9_-]+", raw), override
            value = raw
        assert key not in settings, f"{key} is set twice"
        settings[key] = value
    return settings


@pytest.mark.parametrize("tool_mode", TOOL_MODES)
def test_codex_every_config_override_is_valid_toml(tool_mode: ToolMode, run_paths: RunPaths) -> None:
    settings = codex_settings(build(Codex(), run_paths, upstream=UPSTREAM, tool_mode=tool_mode).argv)
    assert settings["analytics.enabled"] is False
    assert settings["check_for_update_on_startup"] is False
    assert settings["features.plugins"] is False
    assert settings["model_provider"] == "clinvk"
    assert settings["developer_instructions"] == SYSTEM


def test_codex_chat_mode_switches_off_tools(run_paths: RunPaths) -> None:
    """Besides the read-only sandbox, chat mode turns off the tools a one-shot answer cannot use."""
    settings = codex_settings(build(Codex(), run_paths).argv)
    assert settings["web_search"] == "disabled"
    assert settings["features.shell_tool"] is False
    assert "features.shell_tool" not in codex_settings(build(Codex(), run_paths, tool_mode="agent").argv)


@pytest.mark.parametrize("tool_mode", TOOL_MODES)
def test_codex_keeps_secrets_out_of_tools_and_off_disk(tool_mode: ToolMode, run_paths: RunPaths) -> None:
    settings = codex_settings(build(Codex(), run_paths, upstream=UPSTREAM, tool_mode=tool_mode).argv)
    # No per-run snapshot of the shell environment (the upstream key in it) left in CODEX_HOME.
    assert settings["features.shell_snapshot"] is False
    # Commands run by a tool get no *KEY*/*SECRET*/*TOKEN* variable, so not the upstream key either.
    assert settings["shell_environment_policy.ignore_default_excludes"] is False
    assert "KEY" in KEY_ENV


def test_codex_system_prompt_is_developer_instructions(run_paths: RunPaths) -> None:
    argv = build(Codex(), run_paths).argv
    [value] = [v for v in config_overrides(argv) if v.startswith("developer_instructions=")]
    assert tomllib.loads(value) == {"developer_instructions": SYSTEM}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "plain",
        "double \"quotes\" and 'single'",
        "back\\slash \\n \\u0041 \\",
        "triple \"\"\" and '''",
        "new\nline\r\nand\ttab",
        "unicode é ß 漢字 🚀 \u2028 \u00a0 \U0001f600",
        "DEL \x7f and C1 \x85 \x9f",
        "".join(chr(code) for code in range(32)),
        '] = injected\nmodel_provider = "evil"',
    ],
)
def test_toml_string_round_trips(text: str) -> None:
    rendered = toml_string(text)
    assert "\n" not in rendered  # one -c argument, one line
    assert tomllib.loads(f"key = {rendered}") == {"key": text}


def test_codex_without_upstream_uses_the_cli_login(run_paths: RunPaths) -> None:
    invocation = build(Codex(), run_paths)
    overrides = config_overrides(invocation.argv)
    assert not any(value.startswith("model_provider") for value in overrides)
    assert KEY_ENV not in invocation.env
    assert "CODEX_HOME" not in invocation.env


def test_codex_with_upstream_uses_a_responses_provider(run_paths: RunPaths) -> None:
    invocation = build(Codex(), run_paths, upstream=UPSTREAM, retries=0)
    overrides = config_overrides(invocation.argv)
    assert "model_provider=clinvk" in overrides
    [provider_arg] = [v for v in overrides if v.startswith("model_providers.")]
    provider = tomllib.loads(provider_arg)["model_providers"]["clinvk"]
    assert provider["wire_api"] == "responses"
    assert provider["base_url"] == UPSTREAM.base_url
    assert provider["env_key"] == KEY_ENV
    assert provider["supports_websockets"] is False
    assert provider["request_max_retries"] == 0
    assert provider["stream_max_retries"] == 0
    # The key travels only in the environment, under the name the provider reads.
    assert invocation.env[KEY_ENV] == UPSTREAM.api_key
    assert all(UPSTREAM.api_key not in arg for arg in invocation.argv if UPSTREAM.api_key)
    # codex keeps its caches in the backend's home; a tool's ~ is the run's own.
    assert invocation.env["CODEX_HOME"] == str(run_paths.home)
    assert invocation.env["HOME"] == str(run_paths.run_home)
    assert invocation.argv[-1] == "-"


def test_codex_upstream_key_without_base_url_defaults_to_openai(run_paths: RunPaths) -> None:
    argv = build(Codex(), run_paths, upstream=Upstream(api_key="sk-x")).argv
    [provider_arg] = [v for v in config_overrides(argv) if v.startswith("model_providers.")]
    assert tomllib.loads(provider_arg)["model_providers"]["clinvk"]["base_url"] == "https://api.openai.com/v1"


def test_codex_prefers_the_native_binary_behind_the_npm_launcher(tmp_path: Path) -> None:
    modules = tmp_path / "node_modules"
    launcher_target = modules / "@openai" / "codex" / "bin" / "codex.js"
    launcher_target.parent.mkdir(parents=True)
    launcher_target.write_text("#!/usr/bin/env node\n")
    (modules / ".bin").mkdir()
    launcher = modules / ".bin" / "codex"
    launcher.symlink_to(Path("..") / "@openai" / "codex" / "bin" / "codex.js")

    candidates = Codex().binary_candidates(launcher)

    assert candidates[0] == modules / "@openai" / "codex-linux-x64" / "vendor" / ("x86_64-unknown-linux-musl/bin/codex")
    assert candidates[1] == modules / "@openai" / "codex-linux-arm64" / "vendor" / (
        "aarch64-unknown-linux-musl/bin/codex"
    )
    assert candidates[-1] == launcher  # the launcher itself when no native binary is installed


@pytest.mark.parametrize("backend", [Claude(), Gemini()], ids=["claude", "gemini"])
def test_other_backends_run_the_launcher_itself(backend: Backend, tmp_path: Path) -> None:
    assert backend.binary_candidates(tmp_path / "x") == [tmp_path / "x"]


# --- gemini -------------------------------------------------------------------------------------------


def test_gemini_chat_mode(run_paths: RunPaths) -> None:
    invocation = build(Gemini(), run_paths, model="gemini-2.5-pro")
    argv = invocation.argv
    assert value_after(argv, "-o") == "stream-json"
    assert "--skip-trust" in argv  # exit 55 in an untrusted folder otherwise
    assert value_after(argv, "-m") == "gemini-2.5-pro"
    assert value_after(argv, "--approval-mode") == "default"
    assert invocation.env["GEMINI_CLI_NO_RELAUNCH"] == "true"


def test_gemini_model_only_when_given(run_paths: RunPaths) -> None:
    argv = build(Gemini(), run_paths, model=None).argv
    assert "-m" not in argv
    assert "--model" not in argv


def test_gemini_system_prompt_is_a_file_in_scratch(run_paths: RunPaths) -> None:
    invocation = build(Gemini(), run_paths)
    system_md = Path(invocation.env["GEMINI_SYSTEM_MD"])
    assert system_md.parent == run_paths.scratch
    assert invocation.files[system_md] == SYSTEM
    assert SYSTEM not in invocation.argv


def test_gemini_without_system_prompt_writes_no_system_file(run_paths: RunPaths) -> None:
    invocation = build(Gemini(), run_paths, system=None)
    assert "GEMINI_SYSTEM_MD" not in invocation.env
    assert list(invocation.files) == [run_paths.scratch / SYSTEM_SETTINGS]


def test_gemini_without_upstream_lays_system_settings_over_the_login(run_paths: RunPaths) -> None:
    settings = BackendSettings()
    invocation = build(Gemini(), run_paths, system=None)
    settings_file = run_paths.scratch / SYSTEM_SETTINGS  # the run's own: each run may offer other tools
    assert invocation.env["GEMINI_CLI_SYSTEM_SETTINGS_PATH"] == str(settings_file)
    for name in ("GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GEMINI_CLI_HOME", "HOME"):
        assert name not in invocation.env
    content = json.loads(invocation.files[settings_file])
    assert content["tools"]["core"] == []
    assert content["security"] == {"environmentVariableRedaction": {"enabled": True}}  # no auth: the login's
    assert content["telemetry"] == {"enabled": False}
    assert content["privacy"] == {"usageStatisticsEnabled": False}
    assert content["general"]["maxAttempts"] == settings.max_retries + 1


def test_gemini_with_upstream_gets_a_fresh_home_per_run(run_paths: RunPaths) -> None:
    settings = BackendSettings(upstream=UPSTREAM, max_retries=0)
    invocation = Gemini().invocation(BINARY, run_request(model="gemini-2.5-pro"), run_paths, settings)
    env = invocation.env
    assert env["GEMINI_API_KEY"] == UPSTREAM.api_key
    assert env["GOOGLE_GEMINI_BASE_URL"] == UPSTREAM.base_url
    # gemini records every conversation under its home: the run's own, removed with it.
    assert env["GEMINI_CLI_HOME"] == env["HOME"] == str(run_paths.run_home)
    assert "GEMINI_CLI_SYSTEM_SETTINGS_PATH" not in env
    settings_file = run_paths.run_home / ".gemini" / "settings.json"  # where the CLI looks under that home
    content = json.loads(invocation.files[settings_file])
    assert content["security"] == {
        "auth": {"selectedType": "gemini-api-key"},
        "environmentVariableRedaction": {"enabled": True},
    }
    assert content["tools"]["core"] == []
    assert content["general"]["maxAttempts"] == 1


@pytest.mark.parametrize(("tool_mode", "approval"), [("read-only", "plan"), ("agent", "yolo")])
def test_gemini_other_modes_keep_tools(tool_mode: ToolMode, approval: str, run_paths: RunPaths) -> None:
    login = build(Gemini(), run_paths, tool_mode=tool_mode)
    assert value_after(login.argv, "--approval-mode") == approval
    with_upstream = Gemini().invocation(BINARY, run_request(), run_paths, BackendSettings(UPSTREAM, tool_mode))
    for content in (
        login.files[run_paths.scratch / SYSTEM_SETTINGS],
        with_upstream.files[run_paths.run_home / ".gemini" / "settings.json"],
    ):
        assert "tools" not in json.loads(content)
        # Commands run by a tool get no variable named like a secret, so not the upstream key either.
        assert json.loads(content)["security"]["environmentVariableRedaction"] == {"enabled": True}


@pytest.mark.parametrize("backend", [Claude(), Gemini()], ids=["claude", "gemini"])
def test_only_codex_needs_state_files(backend: Backend) -> None:
    assert backend.setup_argv(BINARY) is None
    assert backend.state_files(BackendSettings(), None) == {}
    assert backend.state_files(BackendSettings(upstream=UPSTREAM), None) == {}


def test_upstream_repr_hides_the_key() -> None:
    assert "sk-UPSTREAM-KEY-CANARY" not in repr(UPSTREAM)
    assert UPSTREAM.configured
    assert not Upstream().configured


def test_registry_names_match() -> None:
    assert {name: backend.name for name, backend in BACKENDS.items()} == {
        "claude": "claude",
        "codex": "codex",
        "gemini": "gemini",
    }
    assert all(os.sep not in backend.executable for backend in BACKENDS.values())


# --- client tools, images, output schema, sampling, reasoning ------------------------------------------

TOOL_SERVER_URL = "http://127.0.0.1:9/mcp/secret-token"
WEATHER = ToolSpec("get_weather", "Weather now", {"type": "object", "properties": {"city": {"type": "string"}}})
PNG = ImagePart("image/png", b"\x89PNG\r\n\x1a\nrest")
JPEG = ImagePart("image/jpeg", b"\xff\xd8\xffrest")


def with_tools(backend: Backend, paths: RunPaths, **settings: Any) -> Invocation:
    request = run_request(tools=(WEATHER,), tool_server_url=TOOL_SERVER_URL, model="m")
    return backend.invocation(BINARY, request, paths, BackendSettings(**settings))


def test_claude_gets_the_bridge_as_its_only_mcp_server(run_paths: RunPaths) -> None:
    argv = with_tools(Claude(), run_paths).argv
    assert json.loads(value_after(argv, "--mcp-config")) == {
        "mcpServers": {"clinvk": {"type": "http", "url": TOOL_SERVER_URL}}
    }
    assert "--strict-mcp-config" in argv  # none of the user's own servers
    assert value_after(argv, "--allowedTools") == "mcp__clinvk__*"  # else each call is denied
    assert value_after(argv, "--tools") == ""  # still none of claude's own tools
    assert "--mcp-config" not in build(Claude(), run_paths).argv


def test_codex_gets_the_bridge_with_calls_approved(run_paths: RunPaths) -> None:
    settings = codex_settings(with_tools(Codex(), run_paths).argv)
    assert settings["mcp_servers.clinvk.url"] == TOOL_SERVER_URL
    assert settings["mcp_servers.clinvk.default_tools_approval_mode"] == "approve"  # exec cannot ask
    assert not any(key.startswith("mcp_servers") for key in codex_settings(build(Codex(), run_paths).argv))


@pytest.mark.parametrize("upstream", [None, UPSTREAM], ids=["login", "upstream"])
def test_gemini_gets_the_bridge_trusted_and_only_the_client_tools(
    upstream: Upstream | None, run_paths: RunPaths
) -> None:
    invocation = with_tools(Gemini(), run_paths, upstream=upstream or Upstream())
    settings_file = (
        run_paths.run_home / ".gemini" / "settings.json" if upstream else run_paths.scratch / SYSTEM_SETTINGS
    )
    content = json.loads(invocation.files[settings_file])
    assert content["mcpServers"] == {"clinvk": {"type": "http", "url": TOOL_SERVER_URL, "trust": True}}
    assert content["tools"]["core"] == ["mcp_clinvk_*"]  # chat mode: the client's tools, none of gemini's
    assert value_after(invocation.argv, "--allowed-mcp-server-names") == "clinvk"


def test_codex_catalog_declares_mcp_tools_and_in_chat_mode_no_own_tool() -> None:
    bundled = {"models": [{"slug": "a", "supports_search_tool": True, "tool_mode": "code_mode_only",
                           "use_responses_lite": True, "experimental_supported_tools": ["clock"],
                           "apply_patch_tool_type": "freeform", "multi_agent_version": "v2"}]}  # fmt: skip
    assert Codex().setup_argv(BINARY) == (str(BINARY), "debug", "models", "--bundled")
    chat = json.loads(Codex().state_files(BackendSettings(), json.dumps(bundled))[CATALOG])["models"][0]
    assert chat == {
        "slug": "a",
        "supports_search_tool": False,
        "tool_mode": None,
        "use_responses_lite": False,
        "experimental_supported_tools": [],
        "apply_patch_tool_type": None,
        "multi_agent_version": None,
    }
    agent = json.loads(Codex().state_files(BackendSettings(tool_mode="agent"), json.dumps(bundled))[CATALOG])
    assert agent["models"][0]["apply_patch_tool_type"] == "freeform"


def test_codex_reads_the_catalog_from_its_state(run_paths: RunPaths) -> None:
    assert codex_settings(build(Codex(), run_paths).argv)["model_catalog_json"] == str(run_paths.state / CATALOG)


def test_claude_takes_images_as_blocks_of_a_stream_json_user_message(run_paths: RunPaths) -> None:
    turns = (Turn("user", (TextPart("compare"), PNG, JPEG)),)
    request = RunRequest(Conversation(turns))
    invocation = Claude().invocation(BINARY, request, run_paths, BackendSettings())
    assert value_after(invocation.argv, "--input-format") == "stream-json"
    message = json.loads(invocation.stdin)
    assert message["type"] == "user"
    content = message["message"]["content"]
    images = [block["source"] for block in content if block["type"] == "image"]
    assert [(i["media_type"], base64.b64decode(i["data"])) for i in images] == [
        ("image/png", PNG.data),
        ("image/jpeg", JPEG.data),
    ]
    assert content[-1] == {"type": "text", "text": "compare\n[image 1]\n[image 2]"}
    assert "--input-format" not in build(Claude(), run_paths).argv  # text prompt without images


def test_codex_takes_images_as_files_of_the_run(run_paths: RunPaths) -> None:
    request = RunRequest(Conversation((Turn("user", (PNG, TextPart("what is it?"))),)))
    invocation = Codex().invocation(BINARY, request, run_paths, BackendSettings())
    image_file = Path(value_after(invocation.argv, "--image"))
    assert image_file.is_relative_to(run_paths.scratch)
    assert invocation.files[image_file] == PNG.data
    assert invocation.stdin == "[image 1]\nwhat is it?"


def test_gemini_takes_images_as_files_mentioned_in_the_prompt(run_paths: RunPaths) -> None:
    request = RunRequest(Conversation((Turn("user", (PNG, TextPart("what is it?"))),)))
    invocation = Gemini().invocation(BINARY, request, run_paths, BackendSettings())
    assert invocation.files[run_paths.workdir / "images" / "1.png"] == PNG.data
    assert invocation.stdin == "@images/1.png\nwhat is it?"


SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


def test_each_cli_gets_the_output_schema_its_own_way(run_paths: RunPaths) -> None:
    request = run_request(output=OutputFormat(SCHEMA, "answer", True), model="m")
    claude = Claude().invocation(BINARY, request, run_paths, BackendSettings())
    assert json.loads(value_after(claude.argv, "--json-schema")) == SCHEMA
    codex = Codex().invocation(BINARY, request, run_paths, BackendSettings())
    assert json.loads(codex.files[Path(value_after(codex.argv, "--output-schema"))]) == {
        **SCHEMA,
        "additionalProperties": False,  # OpenAI's strict rules, which codex applies
    }
    gemini = Gemini().invocation(BINARY, request, run_paths, BackendSettings())
    [override] = json.loads(gemini.files[run_paths.scratch / SYSTEM_SETTINGS])["modelConfigs"]["overrides"]
    assert override["match"] == {"model": "m"}  # not the CLI's own helper calls
    config = override["modelConfig"]["generateContentConfig"]
    assert (config["responseMimeType"], config["responseJsonSchema"]) == ("application/json", SCHEMA)


def test_sampling_and_effort_reach_the_cli_where_it_has_a_setting(run_paths: RunPaths) -> None:
    request = run_request(sampling=Sampling(123, 0.3, 0.9), reasoning_effort="high", model="m")
    claude = Claude().invocation(BINARY, request, run_paths, BackendSettings())
    assert claude.env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] == "123"
    assert value_after(claude.argv, "--effort") == "high"
    codex = Codex().invocation(BINARY, request, run_paths, BackendSettings())
    assert codex_settings(codex.argv)["model_reasoning_effort"] == "high"
    gemini = Gemini().invocation(BINARY, request, run_paths, BackendSettings())
    [override] = json.loads(gemini.files[run_paths.scratch / SYSTEM_SETTINGS])["modelConfigs"]["overrides"]
    assert override["modelConfig"]["generateContentConfig"] == {"temperature": 0.3, "topP": 0.9, "maxOutputTokens": 123}


def test_the_highest_effort_is_each_clis_highest(run_paths: RunPaths) -> None:
    request = run_request(reasoning_effort="max", model="m")
    claude = Claude().invocation(BINARY, request, run_paths, BackendSettings())
    assert value_after(claude.argv, "--effort") == "max"
    codex = Codex().invocation(BINARY, request, run_paths, BackendSettings())
    assert codex_settings(codex.argv)["model_reasoning_effort"] == "xhigh"


def test_gemini_tool_choice_is_its_function_calling_mode(run_paths: RunPaths) -> None:
    request = run_request(tools=(WEATHER,), tool_server_url=TOOL_SERVER_URL, model="m",
                          tool_choice=ToolChoice("function", "get_weather"))  # fmt: skip
    gemini = Gemini().invocation(BINARY, request, run_paths, BackendSettings())
    [override] = json.loads(gemini.files[run_paths.scratch / SYSTEM_SETTINGS])["modelConfigs"]["overrides"]
    assert override["modelConfig"]["generateContentConfig"]["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["mcp_clinvk_get_weather"]}
    }


DAY = {"type": "object", "properties": {"temp": {"type": "number"}, "note": {"type": "string"}}, "required": ["temp"]}
NESTED = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "array", "items": DAY}}}


def test_codex_adapts_a_schema_to_openai_strict_rules_only_by_narrowing_it(run_paths: RunPaths) -> None:
    adapted, problems = strict_schema(NESTED)
    assert adapted == {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "array", "items": {
            "type": "object", "properties": {"temp": {"type": "number"}, "note": {"type": "string"}},
            "required": ["temp", "note"], "additionalProperties": False}}},
        "additionalProperties": False,
        "required": ["city", "days"],
    }  # fmt: skip
    assert problems == [
        "/properties/days/items: additionalProperties is not false",
        "/properties/days/items: not every property is required",
        "/: additionalProperties is not false",
        "/: not every property is required",
    ]
    request = run_request(output=OutputFormat(NESTED, "w", strict=False))
    codex = Codex().invocation(BINARY, request, run_paths, BackendSettings())
    assert json.loads(codex.files[Path(value_after(codex.argv, "--output-schema"))]) == adapted


def test_codex_refuses_a_strict_schema_that_breaks_the_rules_and_takes_one_that_keeps_them() -> None:
    refusal = Codex().refusal(run_request(output=OutputFormat(NESTED, "w", True)).conversation)
    assert refusal is not None
    assert "additionalProperties" in refusal
    assert Codex().refusal(run_request(output=OutputFormat(NESTED, "w", False)).conversation) is None
    strict = strict_schema(NESTED)[0]
    assert Codex().refusal(run_request(output=OutputFormat(strict, "w", True)).conversation) is None
    assert Claude().refusal(run_request(output=OutputFormat(NESTED, "w", True)).conversation) is None
