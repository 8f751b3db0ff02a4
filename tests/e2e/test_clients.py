"""The clients people point at an OpenAI endpoint, each run to its end against the emulator.

LangChain, pydantic-ai and the OpenAI Agents SDK drive tool loops (and structured output) exactly as
their users write them; the fake upstream plays the model behind the real CLI.
"""

from __future__ import annotations

import asyncio

import openai
import pytest
from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled
from langchain_core.messages import BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import SecretStr
from pydantic_ai import Agent as PydanticAgent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

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
