"""Function calling end to end: the client's tools become each CLI's real tools, calls come back.

OpenAI SDK (strict) and real clients -> emulator -> real CLI (its MCP client) -> tool bridge; the fake
upstream plays a model that calls the declared tools, then answers once the results come back.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionMessageFunctionToolCall

from clinvk_core.testing.emulator import Emulator
from clinvk_core.testing.fake_upstream import FakeUpstream, RecordedRequest, Script, ScriptedCall
from tests.e2e.procs import assert_settles

pytestmark = pytest.mark.e2e
BACKENDS = ["claude", "codex", "gemini"]
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "City name"},
        "unit": {"type": "string", "enum": ["C", "F"]},
    },
    "required": ["city"],
    "additionalProperties": False,
}
TIME_SCHEMA = {"type": "object", "properties": {"tz": {"type": "string"}}}
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {"name": "get_weather", "description": "Weather now", "parameters": WEATHER_SCHEMA},
    },
    {"type": "function", "function": {"name": "get_time", "description": "Time now", "parameters": TIME_SCHEMA}},
]
QUESTION: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER_CALL = ScriptedCall("get_weather", {"city": "Paris", "unit": "C"})


def declared_tools(request: RecordedRequest) -> dict[str, dict[str, Any]]:
    """Every tool the upstream request declares, by the name the model sees, with its parameters schema."""
    body = request.body
    found: dict[str, dict[str, Any]] = {}
    for tool in body.get("tools") or []:
        if request.provider == "gemini":
            for declaration in tool.get("functionDeclarations", []):
                found[declaration["name"]] = declaration.get("parametersJsonSchema") or {}
        elif tool.get("type") == "namespace":
            found |= {f"{tool['name']}.{inner['name']}": inner.get("parameters") for inner in tool["tools"]}
        else:
            found[tool["name"]] = tool.get("input_schema") or tool.get("parameters") or {}
    return found


def client_tool_names(request: RecordedRequest) -> dict[str, dict[str, Any]]:
    """The client's tools among the declared ones, by the client's own name."""
    prefixes = ("mcp__clinvk__", "mcp__clinvk.", "mcp_clinvk_")
    return {
        name.removeprefix(prefix): schema
        for name, schema in declared_tools(request).items()
        for prefix in prefixes
        if name.startswith(prefix)
    }


def function_calls(completion: ChatCompletion) -> list[tuple[str, dict[str, Any]]]:
    calls = completion.choices[0].message.tool_calls or []
    return [
        (call.function.name, json.loads(call.function.arguments))
        for call in calls
        if isinstance(call, ChatCompletionMessageFunctionToolCall)
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_scripted_call_comes_back_as_tool_calls_and_the_result_closes_the_loop(
    backend: str, client: openai.OpenAI, fake: FakeUpstream, emulator: Emulator
) -> None:
    fake.set_script(Script(text="It is 22C in Paris.", tool_calls=[WEATHER_CALL]))
    first = client.chat.completions.create(model=backend, messages=QUESTION, tools=TOOLS)

    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert function_calls(first) == [("get_weather", {"city": "Paris", "unit": "C"})]
    [call] = choice.message.tool_calls or []
    assert call.id.startswith("call_")
    [request] = fake.requests_of(backend)
    schemas = client_tool_names(request)
    assert set(schemas) == {"get_weather", "get_time"}
    if backend == "gemini":  # gemini adds a wait_for_previous boolean to every tool (docs/tools.md)
        schemas = {n: {**s, "properties": {k: v for k, v in s["properties"].items() if k != "wait_for_previous"}}
                   for n, s in schemas.items()}  # fmt: skip
    assert schemas == {"get_weather": WEATHER_SCHEMA, "get_time": TIME_SCHEMA}  # the client's schemas, exactly
    others = set(declared_tools(request)) - {n for n in declared_tools(request) if "clinvk" in n}
    # chat mode: none of the CLI's own tools; codex always adds its MCP resource helpers (docs/tools.md)
    assert others == ({"list_mcp_resources", "list_mcp_resource_templates", "read_mcp_resource"}
                      if backend == "codex" else set())  # fmt: skip
    assert_settles(emulator.process.pid, emulator.home)  # the CLI is gone after a tool-call answer

    fake.clear()
    result = {"role": "tool", "tool_call_id": call.id, "content": "22C, sunny"}
    history = [*QUESTION, choice.message.model_dump(exclude_none=True), result]
    final = client.chat.completions.create(model=backend, messages=history, tools=TOOLS)
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == "It is 22C in Paris."
    seen = fake.requests_of(backend)[-1].text()
    for expected in (call.id, "get_weather", "Paris", "22C, sunny"):
        assert expected in seen


@pytest.mark.parametrize("backend", BACKENDS)
def test_streamed_call_deltas_add_up_to_the_buffered_answer(
    backend: str, client: openai.OpenAI, fake: FakeUpstream
) -> None:
    fake.set_script(Script(tool_calls=[WEATHER_CALL]))
    buffered = client.chat.completions.create(model=backend, messages=QUESTION, tools=TOOLS)
    with client.chat.completions.stream(model=backend, messages=QUESTION, tools=TOOLS) as stream:
        chunks = list(stream)
        streamed = stream.get_final_completion()
    deltas = [c.chunk for c in chunks if c.type == "chunk" and c.chunk.choices]
    starts = [d.choices[0].delta.tool_calls[0] for d in deltas if d.choices[0].delta.tool_calls]
    assert starts[0].id is not None
    assert starts[0].function is not None
    assert starts[0].function.name == "get_weather"  # the name in the call's first delta
    assert streamed.choices[0].finish_reason == buffered.choices[0].finish_reason == "tool_calls"
    assert function_calls(streamed) == function_calls(buffered)
    assert (streamed.choices[0].message.content or None) == buffered.choices[0].message.content


@pytest.mark.parametrize("backend", BACKENDS)
def test_parallel_calls(backend: str, client: openai.OpenAI, fake: FakeUpstream) -> None:
    # The second call streams well after the first: claude may call the first before the model's message ends.
    both = [WEATHER_CALL, ScriptedCall("get_time", {"tz": "UTC"})]
    fake.set_script(Script(tool_calls=both, chunk_delay=0.3))
    calls = function_calls(client.chat.completions.create(model=backend, messages=QUESTION, tools=TOOLS))
    if backend == "codex":  # codex runs one call at a time: only the first shows before it waits
        assert calls == [("get_weather", {"city": "Paris", "unit": "C"})]
    else:
        assert calls == [("get_weather", {"city": "Paris", "unit": "C"}), ("get_time", {"tz": "UTC"})]
    one = client.chat.completions.create(model=backend, messages=QUESTION, tools=TOOLS, parallel_tool_calls=False)
    assert function_calls(one) == [("get_weather", {"city": "Paris", "unit": "C"})]


@pytest.mark.parametrize("backend", BACKENDS)
def test_tool_choice_none_declares_no_client_tool(backend: str, client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.set_script(Script(text="no tools here", tool_calls=[WEATHER_CALL]))
    response = client.chat.completions.create(model=backend, messages=QUESTION, tools=TOOLS, tool_choice="none")
    assert response.choices[0].message.content == "no tools here"  # no declared tool: the fake answers text
    assert not any(client_tool_names(r) for r in fake.requests_of(backend))


RICH_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 1, "pattern": "^[A-Z]"},
        "unit": {"enum": ["C", "F"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7, "default": 1},
        "when": {"type": "string", "format": "date-time"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "where": {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/Point"}]},
        "note": {"type": ["string", "null"]},
    },
    "$defs": {"Point": {"type": "object", "properties": {"lat": {"type": "number"}}}},
    "required": ["city"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("backend", BACKENDS)
def test_what_each_cli_does_to_a_rich_schema(backend: str, client: openai.OpenAI, fake: FakeUpstream) -> None:
    """claude passes it unchanged; gemini says nullability its own way and adds wait_for_previous; codex keeps
    the structure but drops the validation keywords its JSON Schema subset lacks (docs/tools.md)."""
    fake.set_script(Script(tool_calls=[WEATHER_CALL]))
    tools: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": RICH_SCHEMA}}]
    client.chat.completions.create(model=backend, messages=QUESTION, tools=tools)
    seen = client_tool_names(fake.requests_of(backend)[0])["get_weather"]
    expected: dict[str, Any] = json.loads(json.dumps(RICH_SCHEMA))
    properties = expected["properties"]
    if backend == "gemini":
        properties["note"] = {"type": "string", "nullable": True}
        properties["wait_for_previous"] = seen["properties"]["wait_for_previous"]
    elif backend == "codex":
        properties |= {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["C", "F"]},
            "days": {"type": "integer"},
            "when": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
        }
    assert seen == expected


def test_gemini_required_tool_choice_is_its_function_calling_mode(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.set_script(Script(tool_calls=[WEATHER_CALL]))
    choice: Any = {"type": "function", "function": {"name": "get_weather"}}
    client.chat.completions.create(model="gemini", messages=QUESTION, tools=TOOLS, tool_choice=choice)
    config = fake.requests_of("gemini")[-1].body["toolConfig"]["functionCallingConfig"]
    assert config == {"mode": "ANY", "allowedFunctionNames": ["mcp_clinvk_get_weather"]}


def test_legacy_functions_get_a_function_call(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.set_script(Script(text="22C.", tool_calls=[WEATHER_CALL]))
    functions: Any = [{"name": "get_weather", "parameters": WEATHER_SCHEMA}]
    first = client.chat.completions.create(model="claude", messages=QUESTION, functions=functions)
    assert first.choices[0].finish_reason == "function_call"
    called = first.choices[0].message.function_call
    assert called is not None
    assert (called.name, json.loads(called.arguments)) == ("get_weather", {"city": "Paris", "unit": "C"})
    history = [*QUESTION, first.choices[0].message.model_dump(exclude_none=True),
               {"role": "function", "name": "get_weather", "content": "22C"}]  # fmt: skip
    final = client.chat.completions.create(model="claude", messages=history, functions=functions)
    assert final.choices[0].message.content == "22C."


def test_gemini_429_without_a_stated_delay_is_a_429_with_retry_after(emulator: Emulator, fake: FakeUpstream) -> None:
    import httpx

    fake.set_script(Script(status=429, retry_delay=False))
    response = httpx.post(f"{emulator.base_url}/chat/completions", json={"model": "gemini", "messages": QUESTION},
                          timeout=60)  # fmt: skip
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["error"]["type"] == "rate_limit_error"
