"""The clients people point at an OpenAI endpoint, each run to its end against the emulator.

LangChain, pydantic-ai and the OpenAI Agents SDK drive tool loops (and structured output) exactly as
their users write them; the fake upstream plays the model behind the real CLI.
"""

from __future__ import annotations

import asyncio
import json
import subprocess

import openai
import pytest
from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled
from langchain_core.messages import BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, SecretStr
from pydantic_ai import Agent as PydanticAgent
from pydantic_ai import NativeOutput
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from clinvk_core.config import PROJECT_ROOT
from clinvk_core.testing.emulator import Emulator
from clinvk_core.testing.fake_upstream import FakeUpstream, Script, ScriptedCall

pytestmark = pytest.mark.e2e
BACKENDS = ["claude", "codex", "gemini"]
set_tracing_disabled(True)  # the Agents SDK would export its traces to OpenAI: nothing leaves loopback


@tool
def get_weather(city: str) -> str:
    """The weather in a city right now."""
    return f"22C and sunny in {city}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_langchain_bind_tools_round_trip(backend: str, emulator: Emulator, fake: FakeUpstream) -> None:
    fake.set_script(Script(text="It is 22C in Paris.", tool_calls=[ScriptedCall("get_weather", {"city": "Paris"})]))
    llm = ChatOpenAI(model=backend, base_url=emulator.base_url, api_key=SecretStr("x"), max_retries=0,
                     use_responses_api=False).bind_tools([get_weather])  # fmt: skip
    messages: list[BaseMessage] = [HumanMessage("What is the weather in Paris?")]
    first = llm.invoke(messages)
    assert [(c["name"], c["args"]) for c in first.tool_calls] == [("get_weather", {"city": "Paris"})]
    messages += [
        first,
        ToolMessage(get_weather.invoke(first.tool_calls[0]["args"]), tool_call_id=first.tool_calls[0]["id"]),
    ]
    final = llm.invoke(messages)
    assert final.content == "It is 22C in Paris."
    assert "22C and sunny in Paris" in fake.requests[-1].text()


@pytest.mark.parametrize("backend", BACKENDS)
def test_pydantic_ai_agent_with_a_tool(backend: str, emulator: Emulator, fake: FakeUpstream) -> None:
    fake.set_script(Script(text="It is 22C in Paris.", tool_calls=[ScriptedCall("weather", {"city": "Paris"})]))
    provider = OpenAIProvider(openai_client=openai.AsyncOpenAI(base_url=emulator.base_url, api_key="x", max_retries=0))
    agent = PydanticAgent(OpenAIChatModel(backend, provider=provider))
    ran: list[str] = []

    @agent.tool_plain
    def weather(city: str) -> str:
        """The weather in a city right now."""
        ran.append(city)
        return f"22C and sunny in {city}"

    result = agent.run_sync("What is the weather in Paris?")
    assert result.output == "It is 22C in Paris."
    assert ran == ["Paris"]
    assert "22C and sunny in Paris" in fake.requests[-1].text()


@pytest.mark.parametrize("backend", BACKENDS)
def test_openai_agents_sdk_with_chat_completions(backend: str, emulator: Emulator, fake: FakeUpstream) -> None:
    fake.set_script(Script(text="It is 22C in Paris.", tool_calls=[ScriptedCall("weather", {"city": "Paris"})]))
    ran: list[str] = []

    @function_tool
    def weather(city: str) -> str:
        """The weather in a city right now."""
        ran.append(city)
        return f"22C and sunny in {city}"

    client = openai.AsyncOpenAI(base_url=emulator.base_url, api_key="x", max_retries=0)
    agent = Agent(name="weather", instructions="Answer briefly.", tools=[weather],
                  model=OpenAIChatCompletionsModel(model=backend, openai_client=client))  # fmt: skip
    result = asyncio.run(Runner.run(agent, "What is the weather in Paris?"))
    assert result.final_output == "It is 22C in Paris."
    assert ran == ["Paris"]


class Forecast(BaseModel):
    city: str
    highs: list[float]


FORECAST = {"city": "Paris", "highs": [21.5, 19.0]}


@pytest.mark.parametrize("backend", BACKENDS)
def test_pydantic_ai_output_type(backend: str, emulator: Emulator, fake: FakeUpstream) -> None:
    """pydantic-ai's default output mode: the model answers by calling its final_result tool."""
    fake.set_script(Script(tool_calls=[ScriptedCall("final_result", FORECAST)]))
    provider = OpenAIProvider(openai_client=openai.AsyncOpenAI(base_url=emulator.base_url, api_key="x", max_retries=0))
    agent = PydanticAgent(OpenAIChatModel(backend, provider=provider), output_type=Forecast)
    assert agent.run_sync("The forecast for Paris.").output == Forecast(city="Paris", highs=[21.5, 19.0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_pydantic_ai_native_output(backend: str, emulator: Emulator, fake: FakeUpstream) -> None:
    """pydantic-ai's NativeOutput: response_format json_schema, held to the schema by clinvk."""
    fake.set_script(Script(text=json.dumps(FORECAST)))
    provider = OpenAIProvider(openai_client=openai.AsyncOpenAI(base_url=emulator.base_url, api_key="x", max_retries=0))
    agent = PydanticAgent(OpenAIChatModel(backend, provider=provider), output_type=NativeOutput(Forecast))
    assert agent.run_sync("The forecast for Paris.").output == Forecast(city="Paris", highs=[21.5, 19.0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_langchain_with_structured_output_json_schema(backend: str, emulator: Emulator, fake: FakeUpstream) -> None:
    fake.set_script(Script(text=json.dumps(FORECAST)))
    llm = ChatOpenAI(model=backend, base_url=emulator.base_url, api_key=SecretStr("x"), max_retries=0,
                     use_responses_api=False)  # fmt: skip
    structured = llm.with_structured_output(Forecast, method="json_schema")
    assert structured.invoke("The forecast for Paris.") == Forecast(city="Paris", highs=[21.5, 19.0])


INSTRUCTOR = PROJECT_ROOT / ".venv-clients" / "bin" / "python"


@pytest.mark.parametrize("mode", ["JSON_SCHEMA", "TOOLS"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_instructor(backend: str, mode: str, emulator: Emulator, fake: FakeUpstream) -> None:
    """instructor in its own venv (make setup builds it), in JSON-schema mode and in its default tools mode."""
    calls = [ScriptedCall("Forecast", FORECAST)] if mode == "TOOLS" else None
    fake.set_script(Script(text=json.dumps(FORECAST), tool_calls=calls))
    script = PROJECT_ROOT / "tests" / "clients" / "instructor_client.py"
    done = subprocess.run([str(INSTRUCTOR), str(script), emulator.base_url, backend, mode],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert Forecast.model_validate_json(done.stdout) == Forecast(city="Paris", highs=[21.5, 19.0])
