"""The Secrets Manager secret (``clinvk_core.aws``), against moto's Secrets Manager.

Every secret value here is distinctive, so a test can assert that no error message and no log
line ever carries one.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient
from moto import mock_aws

from clinvk_core.aws.logins import cli_environment, login_files
from clinvk_core.aws.secrets import SecretError, apply_secret
from clinvk_core.config import PROJECT_ROOT, BackendName, Settings
from clinvk_core.gateway import Gateway

from .coldstart import cold_start
from .conftest import HANDLER_MODULES, make_fake_clis

REGION = "eu-west-1"
GATEWAY_KEY = "gw-key-SECRET-0001"
CLAUDE_KEY = "sk-ant-SECRET-0002"
CODEX_REFRESH = "refresh-SECRET-0003"
GEMINI_REFRESH = "refresh-SECRET-0004"
SECRET_VALUES = (GATEWAY_KEY, CLAUDE_KEY, CODEX_REFRESH, GEMINI_REFRESH)

CODEX_LOGIN = {"OPENAI_API_KEY": None, "tokens": {"refresh_token": CODEX_REFRESH, "account_id": "acct"}}
GEMINI_LOGIN = {"refresh_token": GEMINI_REFRESH, "token_type": "Bearer", "expiry_date": 1}
GOOD_SECRET: dict[str, Any] = {
    "api_keys": [GATEWAY_KEY],
    "claude": {"base_url": "https://llm-proxy.example/anthropic", "api_key": CLAUDE_KEY},
    "codex": {"login": CODEX_LOGIN},
    "gemini": {"login": GEMINI_LOGIN},
}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto's AWS, with fake credentials so that nothing can ever reach a real account."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # the ARN's region must win over this
    with mock_aws():
        yield boto3.client("secretsmanager", region_name=REGION)


def create_secret(client: Any, value: str | bytes, name: str = "clinvk") -> str:
    kind = "SecretBinary" if isinstance(value, bytes) else "SecretString"
    arn: str = client.create_secret(Name=name, **{kind: value})["ARN"]
    return arn


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def settings_for(arn: str, tmp_path: Path, **values: Any) -> Settings:
    return Settings(secret_arn=arn, state_dir=tmp_path / "state", **values)


def assert_no_secret_in(text: str) -> None:
    for value in SECRET_VALUES:
        assert value not in text


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- a good secret -------------------------------------------------------------------------------------


def test_a_good_secret_sets_keys_upstreams_and_login_files(
    aws: Any, tmp_path: Path, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    arn = create_secret(aws, json.dumps(GOOD_SECRET))
    caplog.set_level(logging.DEBUG)
    settings = apply_secret(settings_for(arn, tmp_path), {"HOME": str(home), "PATH": "/usr/bin"})

    assert [key.get_secret_value() for key in settings.api_keys] == [GATEWAY_KEY]
    claude = settings.upstream_for("claude")
    assert (claude.base_url, claude.api_key) == ("https://llm-proxy.example/anthropic", CLAUDE_KEY)
    assert not settings.upstream_for("codex").configured  # a login keeps the CLI's own home
    assert settings.backends == ["claude", "codex", "gemini"]

    codex_auth = home / ".codex" / "auth.json"
    gemini_creds = home / ".gemini" / "oauth_creds.json"
    assert json.loads(codex_auth.read_text(encoding="utf-8")) == CODEX_LOGIN
    assert json.loads(gemini_creds.read_text(encoding="utf-8")) == GEMINI_LOGIN
    gemini_settings = json.loads((home / ".gemini" / "settings.json").read_text(encoding="utf-8"))
    assert gemini_settings["security"]["auth"]["selectedType"] == "oauth-personal"
    for path in (codex_auth, gemini_creds):
        assert mode(path) == 0o600
        assert mode(path.parent) == 0o700
    assert not (home / ".claude").exists()  # claude has an upstream: no login file

    shown = caplog.text + repr(settings) + str(settings)
    assert_no_secret_in(shown)
    assert "login file" in caplog.text  # where it went is logged, what it holds is not


def test_the_secret_wins_over_the_environment_and_keeps_what_it_does_not_set(aws: Any, tmp_path: Path) -> None:
    arn = create_secret(aws, json.dumps({"claude": {"api_key": CLAUDE_KEY}, "codex": {"api_key": "k"}}))
    before = settings_for(
        arn, tmp_path, claude_api_key="from-env", claude_base_url="http://env.example", api_keys=["env-key"]
    )
    settings = apply_secret(before, {"HOME": str(tmp_path)})
    assert settings.upstream_for("claude").api_key == CLAUDE_KEY
    assert settings.upstream_for("claude").base_url == "http://env.example"
    assert [key.get_secret_value() for key in settings.api_keys] == ["env-key"]
    assert settings.backends == ["claude", "codex"]  # gemini: see the missing-backend tests


def test_login_files_go_where_the_cli_variables_say(aws: Any, tmp_path: Path, home: Path) -> None:
    codex_home, gemini_home = tmp_path / "codex-home", tmp_path / "gemini-home"
    arn = create_secret(aws, json.dumps({**GOOD_SECRET, "claude": {"login": {"claudeAiOauth": {}}}}))
    environ = {"HOME": str(home), "CODEX_HOME": str(codex_home), "GEMINI_CLI_HOME": str(gemini_home)}
    apply_secret(settings_for(arn, tmp_path), environ)
    assert (home / ".claude" / ".credentials.json").is_file()
    assert (codex_home / "auth.json").is_file()
    assert (gemini_home / ".gemini" / "oauth_creds.json").is_file()


def test_an_existing_login_file_is_kept(aws: Any, tmp_path: Path, home: Path) -> None:
    auth = home / ".codex" / "auth.json"
    auth.parent.mkdir()
    auth.write_text('{"tokens": "refreshed by the CLI"}', encoding="utf-8")
    arn = create_secret(aws, json.dumps(GOOD_SECRET))
    apply_secret(settings_for(arn, tmp_path), {"HOME": str(home)})
    assert auth.read_text(encoding="utf-8") == '{"tokens": "refreshed by the CLI"}'


def test_login_paths_follow_the_child_environment_the_gateway_builds(tmp_path: Path) -> None:
    """The login goes where the CLI will look given the environment it really gets (childenv)."""
    settings = Settings(state_dir=tmp_path / "state")
    environ = {"HOME": "/home/someone", "CLAUDE_CONFIG_DIR": "/cfg/claude", "AWS_SECRET_ACCESS_KEY": "x"}
    expected: dict[BackendName, Path] = {
        "claude": Path("/cfg/claude/.credentials.json"),
        "codex": Path("/home/someone/.codex/auth.json"),
        "gemini": Path("/home/someone/.gemini/oauth_creds.json"),
    }
    for name, path in expected.items():
        env = cli_environment(name, settings, environ)
        assert "AWS_SECRET_ACCESS_KEY" not in env
        assert path in login_files(name, env, {})


# --- secrets that cannot be used -----------------------------------------------------------------------


def test_a_missing_secret_is_a_clear_error(aws: Any, tmp_path: Path) -> None:
    arn = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:clinvk-nope-AbCdEf"
    with pytest.raises(SecretError, match="does not exist") as raised:
        apply_secret(settings_for(arn, tmp_path), {})
    assert arn in str(raised.value)
    assert "SecretArn" in str(raised.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("not json " + GATEWAY_KEY, r"is not valid JSON \(line 1, column 1\)"),
        (json.dumps([GATEWAY_KEY]), "must be a JSON object, not a JSON list"),
        (json.dumps({"api_keys": GATEWAY_KEY}), r"api_keys: Input should be a valid list"),
        (json.dumps({"api_keys": [GATEWAY_KEY, 7]}), r"api_keys\.\[1\]: Input should be a valid string"),
        (json.dumps({"claude": {"api_key": 12345}}), r"claude\.api_key: Input should be a valid string"),
        (json.dumps({"claude": CLAUDE_KEY}), r"claude: Input should be a valid dictionary"),
        (json.dumps({"claude": {"apikey": CLAUDE_KEY}}), r"claude\.apikey: Extra inputs are not permitted"),
        (json.dumps({CLAUDE_KEY: "x"}), r"<a key>: Extra inputs are not permitted"),
        (json.dumps({"codex": {"base_url": "ftp://" + GATEWAY_KEY}}), r"codex\.base_url: .*http\(s\) URL"),
        (json.dumps({"codex": {"login": CODEX_REFRESH}}), r"codex\.login: Input should be a valid dictionary"),
        (
            json.dumps({"gemini": {"login": GEMINI_LOGIN, "api_key": GEMINI_REFRESH}}),
            r"gemini: .*either login or base_url/api_key",
        ),
    ],
)
def test_a_malformed_secret_is_a_clear_error_without_its_content(
    aws: Any, tmp_path: Path, value: str, expected: str
) -> None:
    arn = create_secret(aws, value)
    with pytest.raises(SecretError, match=expected) as raised:
        apply_secret(settings_for(arn, tmp_path), {"HOME": str(tmp_path)})
    message = str(raised.value)
    assert arn in message
    assert_no_secret_in(message)
    error = raised.value
    assert error.__cause__ is None  # no pydantic or JSON error text chained to it
    assert error.__context__ is None or error.__suppress_context__


def test_a_binary_secret_is_a_clear_error(aws: Any, tmp_path: Path) -> None:
    arn = create_secret(aws, GATEWAY_KEY.encode())
    with pytest.raises(SecretError, match="binary data"):
        apply_secret(settings_for(arn, tmp_path), {})


# --- a secret without one backend ----------------------------------------------------------------------


def test_a_backend_missing_from_the_secret_is_switched_off_and_the_others_served(
    aws: Any, tmp_path: Path, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    without_gemini = {key: value for key, value in GOOD_SECRET.items() if key != "gemini"}
    arn = create_secret(aws, json.dumps(without_gemini))
    clis = make_fake_clis(tmp_path / "clis")
    settings = apply_secret(settings_for(arn, tmp_path, bin_dir=clis.bin_dir), {"HOME": str(home)})

    assert settings.backends == ["claude", "codex"]
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "no credentials for the gemini backend" in record.getMessage()
    assert_no_secret_in(caplog.text)

    gateway = Gateway(settings, environ={"HOME": str(home), "PATH": os.environ.get("PATH", "")})
    assert gateway.models == ["claude", "codex"]
    assert gateway.unavailable_reason("gemini")


def test_a_backend_left_out_of_the_enabled_ones_needs_no_credentials(
    aws: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    arn = create_secret(aws, json.dumps({"claude": {"api_key": CLAUDE_KEY}}))
    settings = apply_secret(settings_for(arn, tmp_path, backends=["claude"]), {"HOME": str(tmp_path)})
    assert settings.backends == ["claude"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_backend_configured_in_the_environment_needs_nothing_in_the_secret(aws: Any, tmp_path: Path) -> None:
    arn = create_secret(aws, json.dumps({"api_keys": [GATEWAY_KEY]}))
    before = settings_for(arn, tmp_path, backends=["gemini"], gemini_base_url="http://proxy.internal")
    assert apply_secret(before, {"HOME": str(tmp_path)}).backends == ["gemini"]


# --- a cold start ------------------------------------------------------------------------------------


def test_a_cold_start_reads_the_secret_and_serves_with_its_keys(aws: Any, tmp_path: Path, home: Path) -> None:
    without_gemini = {key: value for key, value in GOOD_SECRET.items() if key != "gemini"}
    arn = create_secret(aws, json.dumps(without_gemini))
    clis = make_fake_clis(tmp_path / "clis")
    settings = {
        "CLINVK_SECRET_ARN": arn,
        "CLINVK_STATE_DIR": str(tmp_path / "state"),
        "CLINVK_BIN_DIR": str(clis.bin_dir),
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(home))
        with cold_start(settings) as modules:
            models = TestClient(modules["handlers.models"].app)
            assert models.get("/openai/v1/models").status_code == 401
            listing = models.get("/openai/v1/models", headers={"Authorization": f"Bearer {GATEWAY_KEY}"})
            assert listing.status_code == 200
            assert [m["id"] for m in listing.json()["data"]] == ["claude", "codex"]
            chat = TestClient(modules["handlers.chat_completions"].app)
            request = {"model": "gemini", "messages": [{"role": "user", "content": "hi"}]}
            refused = chat.post("/openai/v1/chat/completions", json=request, headers={"x-api-key": GATEWAY_KEY})
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "backend_unavailable"
    assert (home / ".codex" / "auth.json").is_file()


def test_a_cold_start_with_a_bad_secret_fails_closed(aws: Any, tmp_path: Path) -> None:
    arn = create_secret(aws, "{")
    with pytest.raises(SecretError, match="not valid JSON"), cold_start({"CLINVK_SECRET_ARN": arn}):
        pass


def test_without_a_secret_boto3_is_never_imported() -> None:
    """Cold-start speed: no ARN, no boto3 (it takes a good part of a second to import)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINVK_")}
    code = f"import sys, {', '.join(HANDLER_MODULES)}; print('boto3' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
