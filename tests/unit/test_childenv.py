"""The CLI's environment is an allowlist (``clinvk_core.childenv.child_environment``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinvk_core.backends import BACKENDS, Backend, BackendSettings, RunPaths, RunRequest
from clinvk_core.childenv import child_environment
from clinvk_core.config import Upstream
from clinvk_core.conversation import Conversation

SOURCE = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/home/someone",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "LC_CTYPE": "en_US.UTF-8",
    "TZ": "UTC",
    "HTTPS_PROXY": "http://proxy:3128",
    "AWS_ACCESS_KEY_ID": "CANARY-aws-access-key-id",
    "AWS_SECRET_ACCESS_KEY": "CANARY-aws-secret",
    "AWS_SESSION_TOKEN": "CANARY-aws-session",
    "AWS_LAMBDA_RUNTIME_API": "CANARY-runtime-api",
    "CLINVK_API_KEYS": "CANARY-gateway-key-1,CANARY-gateway-key-2",
    "CLINVK_CLAUDE_API_KEY": "CANARY-clinvk-claude-key",
    "CLINVK_STATE_DIR": "CANARY-state",
    "OPENAI_API_KEY": "CANARY-openai-key",
    "CODEX_API_KEY": "CANARY-codex-key",
    "GEMINI_API_KEY": "CANARY-gemini-key",
    "GOOGLE_API_KEY": "CANARY-google-key",
    "ANTHROPIC_API_KEY": "CANARY-anthropic-key",
    "ANTHROPIC_AUTH_TOKEN": "CANARY-anthropic-token",
    "RANDOM_VAR": "CANARY-random",
    "DATABASE_PASSWORD": "CANARY-db-password",
    "GITHUB_TOKEN": "CANARY-github-token",
}
UPSTREAM = Upstream(base_url="http://127.0.0.1:9", api_key="upstream-key")
OWN_VENDOR_KEYS = {
    "claude": {"ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"},
    "codex": {"OPENAI_API_KEY", "CODEX_API_KEY"},
    "gemini": {"GEMINI_API_KEY", "GOOGLE_API_KEY"},
}
ALL_VENDOR_KEYS = set().union(*OWN_VENDOR_KEYS.values())


def child_env(backend: Backend, paths: RunPaths, upstream: Upstream | None) -> dict[str, str]:
    settings = BackendSettings(upstream=upstream or Upstream())
    invocation = backend.invocation(Path("/bin/true"), RunRequest(Conversation.of("hi", "sys"), "m"), paths, settings)
    return child_environment(SOURCE, backend, invocation, paths, upstream_configured=settings.upstream.configured)


@pytest.mark.parametrize("name", sorted(BACKENDS))
@pytest.mark.parametrize("upstream", [None, UPSTREAM], ids=["login", "upstream"])
def test_no_aws_no_clinvk_no_foreign_keys(name: str, upstream: Upstream | None, run_paths: RunPaths) -> None:
    backend = next(b for b in BACKENDS.values() if b.name == name)
    env = child_env(backend, run_paths, upstream)
    assert not [k for k in env if k.startswith("AWS_")]
    assert not [k for k in env if k.startswith("CLINVK_")]
    for foreign in ALL_VENDOR_KEYS - OWN_VENDOR_KEYS[name]:
        assert foreign not in env
    for unneeded in ("RANDOM_VAR", "DATABASE_PASSWORD", "GITHUB_TOKEN"):
        assert unneeded not in env
    # No value of a variable the CLI does not need, under any name.
    leaked = [value for value in env.values() if "CANARY" in value]
    allowed = {SOURCE[k] for k in OWN_VENDOR_KEYS[name]} if upstream is None else set()
    assert set(leaked) <= allowed


@pytest.mark.parametrize("name", sorted(BACKENDS))
@pytest.mark.parametrize("upstream", [None, UPSTREAM], ids=["login", "upstream"])
def test_keeps_what_programs_need_and_sets_tmpdir(name: str, upstream: Upstream | None, run_paths: RunPaths) -> None:
    backend = next(b for b in BACKENDS.values() if b.name == name)
    env = child_env(backend, run_paths, upstream)
    for kept in ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "HTTPS_PROXY"):
        assert env[kept] == SOURCE[kept]
    assert env["TMPDIR"] == str(run_paths.tmp)
    # HOME is the user's for their own login; the run's own (removed with it) when an upstream is configured.
    assert env["HOME"] == (SOURCE["HOME"] if upstream is None else str(run_paths.run_home))
    if upstream is not None:
        assert Path(env["HOME"]).is_relative_to(run_paths.scratch)


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_own_vendor_variables_pass_only_without_upstream(name: str, run_paths: RunPaths) -> None:
    backend = next(b for b in BACKENDS.values() if b.name == name)
    login = child_env(backend, run_paths, None)
    for key in OWN_VENDOR_KEYS[name]:
        assert login[key] == SOURCE[key]
    configured = child_env(backend, run_paths, UPSTREAM)
    for key in OWN_VENDOR_KEYS[name]:
        assert configured.get(key) in (None, UPSTREAM.api_key)  # only the configured key, if any


def test_backend_variables_win_over_the_source(run_paths: RunPaths) -> None:
    env = child_env(BACKENDS["claude"], run_paths, UPSTREAM)
    assert env["ANTHROPIC_API_KEY"] == "upstream-key"
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:9"
    codex = child_env(BACKENDS["codex"], run_paths, UPSTREAM)
    assert "OPENAI_API_KEY" not in codex
    assert codex["CODEX_UPSTREAM_API_KEY"] == "upstream-key"


def test_empty_source(run_paths: RunPaths) -> None:
    backend = BACKENDS["codex"]
    invocation = backend.invocation(Path("/bin/true"), RunRequest(Conversation.of("hi")), run_paths, BackendSettings())
    assert child_environment({}, backend, invocation, run_paths, upstream_configured=False) == {
        "TMPDIR": str(run_paths.tmp)
    }
