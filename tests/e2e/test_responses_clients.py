"""Real clients of the Responses API against the emulator: the OpenAI Agents SDK, LangChain, and the codex CLI
itself (answered by the claude backend), each doing what its users do, as it does by default."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from agents import Agent, OpenAIProvider, RunConfig, Runner, function_tool
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from clinvk_core.config import PROJECT_ROOT
from clinvk_core.testing.emulator import Emulator
from clinvk_core.testing.fake_upstream import FakeUpstream, Script, ScriptedCall

CODEX = PROJECT_ROOT / "node_modules" / "@openai" / "codex-linux-x64" / "vendor" / "x86_64-unknown-linux-musl" / "bin"
pytestmark = pytest.mark.e2e


class Paths:
    """The paths a client's HTTP client requested (an httpx event hook)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, request: httpx2.Request) -> None:
        self.seen.append(request.url.path)

    async def hook(self, request: httpx2.Request) -> None:
        self(request)


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "run_streamed"])
def test_an_agents_sdk_agent_calls_its_tool_and_answers(
    streamed: bool, emulator: Emulator, fake: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_AGENTS_DISABLE_TRACING", "1")  # nothing leaves the machine
    fake.set_script(Script(text="It is 22C in Paris.", tool_calls=[ScriptedCall("get_weather", {"city": "Paris"})]))
    asked: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        asked.append(city)
        return f"TOOL-RESULT: 22C in {city}"

    paths = Paths()
    client = openai.AsyncOpenAI(
        base_url=emulator.base_url,
        api_key="not-needed",
        max_retries=0,
        _strict_response_validation=True,
        http_client=httpx2.AsyncClient(event_hooks={"request": [paths.hook]}),
    )
    agent = Agent(name="weather", instructions="Answer with the weather.", tools=[get_weather], model="claude")
    config = RunConfig(model_provider=OpenAIProvider(openai_client=client), tracing_disabled=True)  # Responses API

    async def run() -> Any:
        if not streamed:
            return (await Runner.run(agent, "What is the weather in Paris?", run_config=config)).final_output
        result = Runner.run_streamed(agent, "What is the weather in Paris?", run_config=config)
        kinds = [event.type async for event in result.stream_events()]
        assert "raw_response_event" in kinds
        return result.final_output

    assert asyncio.run(run()) == "It is 22C in Paris."
    assert asked == ["Paris"]
    assert any("TOOL-RESULT: 22C in Paris" in request.text() for request in fake.requests)
    assert paths.seen == ["/openai/v1/responses"] * 2  # both turns through the Responses API


@pytest.mark.parametrize("use_responses_api", [True, None], ids=["use_responses_api", "codex_name_switches"])
def test_langchain_with_a_codex_model_invokes_and_streams(
    use_responses_api: bool | None, emulator: Emulator, fake: FakeUpstream
) -> None:
    fake.set_script(Script(chunks=["Hello ", "from ", "LangChain"]))
    paths = Paths()
    llm = ChatOpenAI(
        model="codex",
        base_url=emulator.base_url,
        api_key=SecretStr("not-needed"),
        max_retries=0,
        use_responses_api=use_responses_api,
        http_client=httpx2.Client(event_hooks={"request": [paths]}),
    )
    assert llm.invoke("hi").text == "Hello from LangChain"
    assert "".join(chunk.text for chunk in llm.stream("hi")) == "Hello from LangChain"
    assert paths.seen == ["/openai/v1/responses"] * 2


def test_the_codex_cli_completes_a_turn_answered_by_claude(
    emulator: Emulator, fake: FakeUpstream, tmp_path: Path
) -> None:
    fake.set_script(Script(text="Hello from claude, through clinvk."))
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "CODEX_HOME": str(home),
           "GW_KEY": "not-needed", "NO_PROXY": "*", "LANG": "C.UTF-8"}  # fmt: skip
    provider = (
        f'model_providers.gw={{name="gw",base_url="{emulator.base_url}",env_key="GW_KEY",wire_api="responses",'
        "supports_websockets=false,request_max_retries=0,stream_max_retries=0}"
    )
    argv = [str(CODEX / "codex"), "exec", "--json", "--skip-git-repo-check", "--ephemeral", "-m", "claude",
            "-c", "model_provider=gw", "-c", provider, "-c", "analytics.enabled=false",
            "-c", "check_for_update_on_startup=false", "Say hello."]  # fmt: skip
    done = subprocess.run(argv, env=env, cwd=work, capture_output=True, text=True, timeout=120, check=False,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    messages = [
        e["item"]["text"] for e in events if e["type"] == "item.completed" and e["item"]["type"] == "agent_message"
    ]
    assert messages == ["Hello from claude, through clinvk."]
    assert [e["type"] for e in events][-1] == "turn.completed"
    # claude answered, from what codex sent to /responses: its own developer instructions as the system prompt.
    [answered] = [request for request in fake.requests if request.provider == "anthropic"]
    assert "Say hello." in answered.text()
    assert "You are a coding agent running in the Codex CLI" in answered.text()
