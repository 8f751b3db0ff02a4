"""Settings from ``CLINVK_*`` environment variables (``clinvk_core.config``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from clinvk_core.config import Settings, Upstream


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CLINVK_"):
            monkeypatch.delenv(name)


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/someone")
    settings = Settings()
    assert settings.backends == ["claude", "codex", "gemini"]
    assert settings.api_keys == []
    assert settings.tool_mode == "chat"
    assert settings.timeout_seconds >= 1
    assert settings.max_concurrency >= 1
    assert settings.keepalive_seconds <= 15  # the contract: a keep-alive at least every 15 s
    assert settings.state_dir.is_relative_to(Path("/home/someone"))
    for backend in ("claude", "codex", "gemini"):
        assert settings.upstream_for(backend) == Upstream()
        assert not settings.upstream_for(backend).configured
        assert settings.model_for(backend) != backend  # never the bare backend name as --model


def test_contract_setting_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINVK_TIMEOUT_SECONDS", "4")
    monkeypatch.setenv("CLINVK_MAX_CONCURRENCY", "3")
    monkeypatch.setenv("CLINVK_API_KEYS", " key-one , key-two,,")
    monkeypatch.setenv("CLINVK_BACKENDS", "claude, gemini")
    monkeypatch.setenv("CLINVK_STATE_DIR", "/tmp/clinvk-state")
    monkeypatch.setenv("CLINVK_CLAUDE_MODEL", "sonnet")
    settings = Settings()
    assert settings.timeout_seconds == 4
    assert settings.max_concurrency == 3
    assert [key.get_secret_value() for key in settings.api_keys] == ["key-one", "key-two"]
    assert settings.backends == ["claude", "gemini"]
    assert settings.state_dir == Path("/tmp/clinvk-state")
    assert settings.model_for("claude") == "sonnet"


def test_empty_api_keys_mean_no_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINVK_API_KEYS", "")
    assert Settings().api_keys == []


def test_upstreams_and_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINVK_CODEX_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("CLINVK_CODEX_API_KEY", "sk-codex-secret")
    monkeypatch.setenv("CLINVK_GEMINI_API_KEY", "gemini-secret")
    monkeypatch.setenv("CLINVK_API_KEYS", "gateway-secret")
    settings = Settings()
    assert settings.upstream_for("codex") == Upstream("http://127.0.0.1:9/v1", "sk-codex-secret")
    assert settings.upstream_for("gemini") == Upstream(None, "gemini-secret")
    assert settings.upstream_for("gemini").configured
    assert not settings.upstream_for("claude").configured
    shown = repr(settings) + str(settings)
    for secret in ("sk-codex-secret", "gemini-secret", "gateway-secret"):
        assert secret not in shown


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CLINVK_TIMEOUT_SECONDS", "0.5"),
        ("CLINVK_MAX_CONCURRENCY", "0"),
        ("CLINVK_BACKENDS", "claude,llama"),
        ("CLINVK_TOOL_MODE", "root"),
        ("CLINVK_KEEPALIVE_SECONDS", "0"),
    ],
)
def test_invalid_values_are_rejected(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()
