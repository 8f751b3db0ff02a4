"""One chat turn through ``clinvk_core.gateway.Gateway``, over stand-in CLIs that replay real captures."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clinvk_core.config import Settings
from clinvk_core.conversation import Conversation
from clinvk_core.errors import BackendUnavailable, RateLimited, Timeout, UpstreamFailed
from clinvk_core.events import Completed, Event, RunStarted, SessionStarted, TextDelta, TokenUsage
from clinvk_core.gateway import MESSAGE_LIMIT, Gateway
from clinvk_core.routing import Route

from .conftest import FakeClis

Capture = Callable[[str], list[str]]
SOURCE_ENV = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "HOME": "/nonexistent-home",
    "CLINVK_API_KEYS": "CANARY-gateway-key",
    "CLINVK_CLAUDE_API_KEY": "CANARY-settings-key",
    "AWS_SECRET_ACCESS_KEY": "CANARY-aws",
    "ANTHROPIC_API_KEY": "CANARY-local-login",
}


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings() also reads CLINVK_* from the environment: none from the outside here."""
    for name in list(os.environ):
        if name.startswith("CLINVK_"):
            monkeypatch.delenv(name)


def make_gateway(fake_clis: FakeClis, tmp_path: Path, **settings: Any) -> Gateway:
    # The stand-in CLIs speak no warm protocol: every turn here starts its CLI.
    values: dict[str, Any] = {"bin_dir": fake_clis.bin_dir, "state_dir": tmp_path / "state", "warm_backends": []}
    values |= settings
    return Gateway(Settings(**values), environ=SOURCE_ENV)


async def collect(gateway: Gateway, route: Route, *, system: str | None = None, within: float = 5) -> list[Event]:
    deadline = asyncio.get_running_loop().time() + within
    async with gateway.run(route, Conversation.of("say pong", system), deadline) as events:
        return [event async for event in events]


def test_a_turn_yields_the_clis_events(fake_clis: FakeClis, tmp_path: Path, capture: Capture) -> None:
    fake_clis.script("claude", stdout="".join(capture("claude-stream-json-partial.txt")))
    gateway = make_gateway(fake_clis, tmp_path)
    events = asyncio.run(collect(gateway, Route("claude", "sonnet"), system="Be terse."))
    assert events == [
        RunStarted(warm=False),  # started for the turn: these stand-ins speak no warm protocol
        SessionStarted("cc5a0318-7f57-4ea1-a248-27d520ec94c5"),
        TextDelta("pong "),
        TextDelta("from "),
        TextDelta("fake"),
        Completed(TokenUsage(10, 5, 0), final_text="pong from fake"),
    ]
    argv = fake_clis.argv("claude")
    assert argv[argv.index("--model") + 1] == "sonnet"
    assert argv[argv.index("--system-prompt") + 1] == "Be terse."
    assert fake_clis.stdin("claude") == "say pong"


@pytest.mark.parametrize("name", ["claude-stream-json.txt", "claude2.1.197-stream-json.txt"])
def test_a_turn_without_deltas_answers_with_the_clis_final_text(
    name: str, fake_clis: FakeClis, tmp_path: Path, capture: Capture
) -> None:
    """Without partial messages claude streams no delta; its result line restates the answer, sent once."""
    fake_clis.script("claude", stdout="".join(capture(name)))
    events = asyncio.run(collect(make_gateway(fake_clis, tmp_path), Route("claude", None)))
    assert [event for event in events if isinstance(event, TextDelta)] == [TextDelta("pong from fake")]
    assert isinstance(events[-1], Completed)


def test_child_env_is_the_allowlist(fake_clis: FakeClis, tmp_path: Path, capture: Capture) -> None:
    fake_clis.script("claude", stdout="".join(capture("claude-stream-json-partial.txt")))
    asyncio.run(collect(make_gateway(fake_clis, tmp_path), Route("claude", None)))
    env = fake_clis.env("claude")
    assert env["ANTHROPIC_API_KEY"] == "CANARY-local-login"  # no upstream configured: the user's own login
    leaked = {name for name, value in env.items() if "CANARY" in value} - {"ANTHROPIC_API_KEY"}
    assert leaked == set()
    assert env["TMPDIR"].startswith(str(tmp_path / "state" / "runs"))


def test_configured_upstream_replaces_the_login(fake_clis: FakeClis, tmp_path: Path, capture: Capture) -> None:
    fake_clis.script("claude", stdout="".join(capture("claude-stream-json-partial.txt")))
    gateway = make_gateway(fake_clis, tmp_path, claude_base_url="http://127.0.0.1:9", claude_api_key="sk-configured")
    asyncio.run(collect(gateway, Route("claude", None)))
    env = fake_clis.env("claude")
    assert env["ANTHROPIC_API_KEY"] == "sk-configured"
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:9"
    # The run's own home, removed with the run.
    assert Path(env["HOME"]).parent == tmp_path / "state" / "runs"
    assert not Path(env["HOME"]).exists()
    assert not any("CANARY" in value for value in env.values())


def test_cli_runs_in_an_empty_private_directory_removed_afterwards(
    fake_clis: FakeClis, tmp_path: Path, capture: Capture
) -> None:
    fake_clis.script("codex", stdout="".join(capture("codex-json.txt")))
    asyncio.run(collect(make_gateway(fake_clis, tmp_path), Route("codex", None)))
    cwd = fake_clis.cwd("codex")
    assert cwd.is_relative_to(tmp_path / "state" / "runs")
    assert not cwd.exists()
    assert list((tmp_path / "state" / "runs").iterdir()) == []


def test_models_and_unavailable_backends(fake_clis: FakeClis, tmp_path: Path) -> None:
    (fake_clis.bin_dir / "codex").unlink()
    gateway = make_gateway(fake_clis, tmp_path, backends="claude,codex")
    assert gateway.models == ["claude"]
    assert gateway.unavailable_reason("claude") is None
    assert "not installed" in (gateway.unavailable_reason("codex") or "")
    assert "disabled" in (gateway.unavailable_reason("gemini") or "")
    with pytest.raises(BackendUnavailable) as caught:
        asyncio.run(collect(gateway, Route("gemini", "gemini-2.5-pro")))
    assert caught.value.status == 503
    assert caught.value.code == "backend_unavailable"
    assert not fake_clis.ran("gemini")


def test_a_codex_that_cannot_list_its_models_is_unavailable(fake_clis: FakeClis, tmp_path: Path) -> None:
    (fake_clis.bin_dir / "codex").write_text("#!/bin/sh\necho 'not json'\n")
    gateway = make_gateway(fake_clis, tmp_path)
    assert gateway.models == ["claude", "gemini"]
    reason = gateway.unavailable_reason("codex")
    assert reason is not None
    assert reason.startswith("The codex CLI could not be set up: JSONDecodeError")
    with pytest.raises(BackendUnavailable, match="could not be set up"):
        asyncio.run(collect(gateway, Route("codex", None)))


def test_binary_gone_after_the_cold_start_is_503(fake_clis: FakeClis, tmp_path: Path) -> None:
    gateway = make_gateway(fake_clis, tmp_path)
    (fake_clis.bin_dir / "gemini").unlink()
    with pytest.raises(BackendUnavailable, match="could not be started"):
        asyncio.run(collect(gateway, Route("gemini", None)))


def test_state_is_prepared_once_at_cold_start(fake_clis: FakeClis, tmp_path: Path) -> None:
    make_gateway(fake_clis, tmp_path)
    catalog = tmp_path / "state" / "codex" / "models.json"  # from `codex debug models --bundled`
    assert json.loads(catalog.read_text()) == {"models": []}
    assert stat.S_IMODE(catalog.stat().st_mode) == 0o600
    assert not (tmp_path / "state" / "gemini" / "settings.json").exists()  # gemini's come with each run
    for backend in ("claude", "codex", "gemini"):
        home = tmp_path / "state" / backend / "home"
        assert home.is_dir()
        assert stat.S_IMODE(home.stat().st_mode) == 0o700

    # With an upstream, gemini's settings come with each run's own home: nothing is shared.
    make_gateway(fake_clis, tmp_path / "up", gemini_api_key="k")
    assert not (tmp_path / "up" / "state" / "gemini" / "home" / ".gemini").exists()


@pytest.mark.parametrize(
    ("cli", "name", "needle"),
    [
        ("claude", "claude-stream-json-error500.txt", "API Error: 500"),
        ("codex", "codex-json-error401.txt", "unexpected status 401"),
        ("gemini", "gemini-stream-json-error500.txt", "fake internal server error"),
    ],
)
def test_upstream_failure_is_502_with_the_clis_text(
    fake_clis: FakeClis, tmp_path: Path, capture: Capture, cli: str, name: str, needle: str
) -> None:
    fake_clis.script(cli, stdout="".join(capture(name)), code=1)
    gateway = make_gateway(fake_clis, tmp_path)
    route = gateway.route(cli)
    with pytest.raises(UpstreamFailed) as caught:
        asyncio.run(collect(gateway, route))
    assert caught.value.status == 502
    assert caught.value.message.startswith(f"{cli}: ")
    assert needle in caught.value.message


def test_upstream_429_is_rate_limited(fake_clis: FakeClis, tmp_path: Path) -> None:
    result = {"type": "result", "is_error": True, "api_error_status": 429, "result": "API Error: 429"}
    fake_clis.script("claude", stdout=json.dumps(result) + "\n", code=1)
    with pytest.raises(RateLimited) as caught:
        asyncio.run(collect(make_gateway(fake_clis, tmp_path), Route("claude", None)))
    assert caught.value.status == 429
    assert int(caught.value.headers["Retry-After"]) >= 1


def test_gemini_429_retry_delay_becomes_retry_after(fake_clis: FakeClis, tmp_path: Path) -> None:
    message = "[API Error: quota exhausted\nSuggested retry after 7s.]"
    result = {"type": "result", "status": "error", "error": {"type": "unknown", "message": message}}
    fake_clis.script("gemini", stdout=json.dumps(result) + "\n", code=173)
    with pytest.raises(RateLimited) as caught:
        asyncio.run(collect(make_gateway(fake_clis, tmp_path), Route("gemini", None)))
    assert caught.value.headers == {"Retry-After": "7"}
    assert "quota exhausted" in caught.value.message


def test_secrets_are_redacted_from_cli_messages(fake_clis: FakeClis, tmp_path: Path) -> None:
    text = "bad key sk-ant-SECRET-1234 and gateway key gw-SECRET-5678 " + "x" * 5000
    result = {"type": "result", "is_error": True, "api_error_status": 401, "result": text}
    fake_clis.script("claude", stdout=json.dumps(result) + "\n", code=1)
    gateway = make_gateway(fake_clis, tmp_path, claude_api_key="sk-ant-SECRET-1234", api_keys="gw-SECRET-5678")
    with pytest.raises(UpstreamFailed) as caught:
        asyncio.run(collect(gateway, Route("claude", None)))
    message = caught.value.message
    assert "SECRET" not in message
    assert message.count("***") == 2
    assert len(message) <= MESSAGE_LIMIT


def test_exit_without_an_answer_reports_the_last_stderr_line(fake_clis: FakeClis, tmp_path: Path) -> None:
    stderr = "Ripgrep is not available.\nError: Invalid auth method selected.\n    at validate (gemini.js:1:1)\n"
    fake_clis.script("gemini", stderr=stderr, code=41)
    with pytest.raises(UpstreamFailed) as caught:
        asyncio.run(collect(make_gateway(fake_clis, tmp_path), Route("gemini", None)))
    assert caught.value.message == (
        "gemini: the CLI exited with code 41 without an answer: Error: Invalid auth method selected."
    )


def test_exit_zero_without_completion_is_still_a_failure(fake_clis: FakeClis, tmp_path: Path) -> None:
    fake_clis.script("codex", stdout='{"type":"thread.started","thread_id":"t"}\n', code=0)
    with pytest.raises(UpstreamFailed, match="code 0 without an answer: no output"):
        asyncio.run(collect(make_gateway(fake_clis, tmp_path), Route("codex", None)))


def test_deadline_is_504(fake_clis: FakeClis, tmp_path: Path) -> None:
    fake_clis.script("codex", sleep=10)

    async def main() -> None:
        start = asyncio.get_running_loop().time()
        with pytest.raises(Timeout) as caught:
            await collect(make_gateway(fake_clis, tmp_path), Route("codex", None), within=0.4)
        assert asyncio.get_running_loop().time() - start < 2
        assert caught.value.status == 504

    asyncio.run(main())


def test_in_flight_limit_is_429_and_is_released(fake_clis: FakeClis, tmp_path: Path, capture: Capture) -> None:
    fake_clis.script("codex", stdout="".join(capture("codex-json.txt")), sleep=0.3)
    gateway = make_gateway(fake_clis, tmp_path, max_concurrency=1)
    route = Route("codex", None)

    async def main() -> None:
        deadline = asyncio.get_running_loop().time() + 5
        async with gateway.run(route, Conversation.of("say pong"), deadline) as first:  # holds the one slot
            with pytest.raises(RateLimited) as caught:
                await collect(gateway, route)
            assert "Retry-After" in caught.value.headers
            assert [event async for event in first][-1] == Completed(TokenUsage(10, 5, 0))
        # The slot is free again, also after a failure.
        fake_clis.script("codex", code=2)
        with pytest.raises(UpstreamFailed):
            await collect(gateway, route)
        fake_clis.script("codex", stdout="".join(capture("codex-json.txt")))
        assert (await collect(gateway, route))[-1] == Completed(TokenUsage(10, 5, 0))

    asyncio.run(main())
