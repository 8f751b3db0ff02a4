"""Property: no request, however odd, makes the responses handler answer 5xx or leave the OpenAI error shape.

As for chat completions (test_fuzz_chat.py): bodies drawn as arbitrary JSON and as near-valid Responses
requests with wrong pieces (items, parts, tools, tool choice, text format, previous ids), over the recording
stand-in CLIs replaying real captures, so that valid requests run end to end and are stored; stored ids,
and made-up ones, are then read, listed and deleted.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from .conftest import Handlers
from .test_fuzz_chat import json_values

RESPONSES = "/openai/v1/responses"

# Hypothesis's text leaves out lone surrogates, which JSON's escapes can bring: add them, and NUL.
odd_text = st.text(max_size=20) | st.sampled_from(["\ud800", "a\x00b", "\udfff\ud83d"])
models = st.sampled_from(["claude", "codex", "gemini", "claude/sonnet", "gpt-5.5", "x", ""]) | json_values
roles = st.sampled_from(["user", "assistant", "system", "developer", "tool", "bot"]) | json_values
part_types = st.sampled_from(["input_text", "output_text", "refusal", "input_image", "input_file", "x"])
parts = st.fixed_dictionaries(
    {"type": part_types | json_values},
    optional={"text": odd_text | json_values, "image_url": st.sampled_from(["data:x", "https://a/b"])},
)
contents = odd_text | st.lists(parts, max_size=3) | json_values
call_ids = st.sampled_from(["call_1", "call_2", ""]) | json_values
item_types = st.sampled_from(["message", "function_call", "function_call_output", "reasoning", "item_reference"])
input_items = st.fixed_dictionaries(
    {},
    optional={
        "type": item_types | json_values,
        "role": roles,
        "content": contents,
        "call_id": call_ids,
        "name": st.sampled_from(["get_weather", "f g"]) | json_values,
        "arguments": st.sampled_from(["{}", '{"city": "Paris"}']) | odd_text | json_values,
        "output": contents,
        "id": st.text(max_size=10),
    },
)
tools = st.fixed_dictionaries(
    {"type": st.sampled_from(["function", "namespace", "web_search", "file_search", "custom"]) | json_values},
    optional={
        "name": st.sampled_from(["get_weather", "bad name", ""]) | json_values,
        "parameters": st.sampled_from([{"type": "object"}, {"type": "array"}]) | json_values,
        "tools": json_values,
        "external_web_access": st.booleans(),
    },
)
FIELDS = {
    "tools": st.lists(tools, max_size=3) | json_values,
    "tool_choice": st.sampled_from(["auto", "none", "required", {"type": "function", "name": "get_weather"},
                                    {"type": "allowed_tools", "mode": "auto", "tools": []}]) | json_values,
    "text": st.fixed_dictionaries({}, optional={"format": st.sampled_from([
        {"type": "text"}, {"type": "json_object"}, {"type": "json_schema", "name": "x", "schema": {}}]) | json_values}),
    "reasoning": st.fixed_dictionaries({}, optional={"effort": st.sampled_from(["low", "max"]) | json_values}),
    "previous_response_id": st.sampled_from(["resp_unknown", "resp_", "x"]) | json_values,
    "instructions": odd_text | json_values,
    "store": st.booleans() | json_values,
    "stream": st.booleans() | json_values,
    "max_output_tokens": st.integers(-2, 100) | json_values,
    "metadata": st.dictionaries(odd_text, odd_text, max_size=3) | json_values,
    "include": json_values,
    "unknown_field": json_values,
}  # fmt: skip
near_valid = st.fixed_dictionaries(
    {}, optional={"model": models, "input": st.text(max_size=30) | st.lists(input_items, max_size=4) | json_values}
).flatmap(
    lambda base: st.dictionaries(st.sampled_from(sorted(FIELDS)), json_values, max_size=3).flatmap(
        lambda extra: st.fixed_dictionaries({key: FIELDS[key] for key in extra}).map(lambda typed: base | typed)
    )
)
valid = st.fixed_dictionaries(
    {"model": st.sampled_from(["claude", "codex", "gemini"]),
     "input": st.sampled_from(["say pong", [{"role": "user", "content": [{"type": "input_text", "text": "pong?"}]}]])},
    optional={"stream": st.booleans(), "store": st.booleans(), "instructions": st.text(max_size=20),
              "unknown_field": json_values},
)  # fmt: skip
ids = st.sampled_from(["resp_unknown", "x", "resp_" + "a" * 300, "%00", "resp_..%2F", "/"]) | st.text(max_size=20)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=valid | near_valid | json_values, other_id=ids)
def test_no_request_gets_a_server_error(handlers: Handlers, payload: Any, other_id: str) -> None:
    handlers.clis.replay()
    with TestClient(handlers.responses, raise_server_exceptions=False) as client:
        body = json.dumps(payload)  # ASCII: lone surrogates as escapes, as a client's JSON may carry them
        response = client.post(RESPONSES, content=body, headers={"content-type": "application/json"})
        event(f"status {response.status_code}")
        assert response.status_code in (200, 400, 404), (body, response.text)
        if response.status_code != 200:
            assert_openai_error_shape(response.json())
        stored = response.json().get("id") if response.status_code == 200 and not payload.get("stream") else None
        for response_id in filter(None, (stored, other_id)):
            for method, suffix in (("GET", ""), ("GET", "/input_items"), ("DELETE", "")):
                answer = client.request(method, f"{RESPONSES}/{quote(response_id, safe='')}{suffix}")
                assert answer.status_code in (200, 404), answer.text
                if answer.status_code == 404:
                    assert_openai_error_shape(answer.json())


def assert_openai_error_shape(body: Any) -> None:
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
