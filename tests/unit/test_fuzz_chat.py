"""Property: no request body, however odd, makes the chat handler answer 5xx or leave the OpenAI error shape.

Bodies are drawn both as arbitrary JSON and as near-valid chat requests with wrong pieces; the CLIs are
the recording stand-ins of conftest.py, replaying real captures, so valid requests run end to end.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from .conftest import Handlers

CHAT = "/openai/v1/chat/completions"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
models = st.sampled_from(["claude", "codex", "gemini", "claude/sonnet", "gpt-5.5", "o4-mini", "x", ""]) | json_values
roles = st.sampled_from(["system", "developer", "user", "assistant", "tool", "function", "bot"]) | json_values
parts = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image_url", "x"]) | json_values},
    optional={"text": st.text(max_size=30) | json_values},
)
contents = st.text(max_size=60) | st.lists(parts, max_size=3) | json_values
messages = st.lists(
    st.fixed_dictionaries({}, optional={"role": roles, "content": contents, "name": json_values}), max_size=4
)
OPENAI_FIELDS = ["stream", "stream_options", "n", "temperature", "max_tokens", "stop", "tools", "response_format",
                 "user", "seed", "metadata", "logit_bias", "tool_choice", "unknown_field", "functions",
                 "function_call", "parallel_tool_calls", "logprobs", "reasoning_effort"]  # fmt: skip
chat_requests = st.fixed_dictionaries({}, optional={"model": models, "messages": messages | json_values}).flatmap(
    lambda base: st.dictionaries(st.sampled_from(OPENAI_FIELDS), json_values, max_size=3).map(
        lambda extra: base | extra
    )
)


# Tools: near-valid definitions, choices, calls and results, with wrong pieces mixed in.
names = st.sampled_from(["get_weather", "f", "a-b_c", "", "bad name", "x" * 65, "get_weather"]) | json_values
schemas = st.sampled_from(
    [None, {}, {"type": "object", "properties": {"city": {"type": "string"}}}, {"type": "string"}, {"type": 7},
     {"type": "object", "properties": []}, {"$ref": "#/nowhere"}]
) | json_values  # fmt: skip
functions = st.fixed_dictionaries({"name": names}, optional={"description": json_values, "parameters": schemas})
tools = st.lists(
    st.fixed_dictionaries({"type": st.sampled_from(["function", "web_search", "custom"]) | json_values},
                          optional={"function": functions | json_values}),
    max_size=3,
)  # fmt: skip
tool_choices = st.sampled_from(["auto", "none", "required", "any"]) | st.fixed_dictionaries(
    {"type": st.just("function"), "function": st.fixed_dictionaries({"name": names})}
)
call_ids = st.sampled_from(["call_1", "call_2", ""]) | json_values
calls = st.lists(
    st.fixed_dictionaries({"id": call_ids, "type": st.just("function"),
                           "function": st.fixed_dictionaries({"name": names, "arguments": st.text(max_size=20)})}),
    max_size=2,
)  # fmt: skip
images = st.sampled_from(
    ["data:image/png;base64,iVBORw0KGgoAAAAA", "data:image/png;base64,@@", "data:,x", "https://example.com/a.png",
     "file:///etc/passwd", "data:image/gif;base64,R0lGODlh"]
) | json_values  # fmt: skip
tool_messages = st.lists(
    st.one_of(
        st.fixed_dictionaries({"role": st.just("assistant"), "content": st.none() | st.text(max_size=10)},
                              optional={"tool_calls": calls, "function_call": json_values}),
        st.fixed_dictionaries({"role": st.just("tool"), "content": contents}, optional={"tool_call_id": call_ids}),
        st.fixed_dictionaries({"role": st.just("function"), "content": contents, "name": names}),
        st.fixed_dictionaries({"role": st.just("user"), "content": st.lists(
            st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.fixed_dictionaries({"url": images})}),
            max_size=2)}),
    ),
    max_size=4,
).map(lambda turns: [{"role": "user", "content": "q"}, *turns])  # fmt: skip
formats = st.sampled_from(
    [{"type": "text"}, {"type": "json_object"}, {"type": "json_schema"}, {"type": "json_schema", "json_schema": {}},
     {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": True}},
     {"type": "xml"}]
) | json_values  # fmt: skip
tool_requests = st.fixed_dictionaries(
    {"model": st.sampled_from(["claude", "codex", "gemini"]), "messages": tool_messages},
    optional={"tools": tools, "tool_choice": tool_choices, "functions": st.lists(functions, max_size=2),
              "response_format": formats, "parallel_tool_calls": st.booleans() | json_values, "n": st.integers(-1, 9)},
)  # fmt: skip


valid_messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "developer", "assistant", "user"]), "content": st.text()}
    ),
    max_size=3,
).map(lambda earlier: [*earlier, {"role": "user", "content": "say pong"}])
valid_requests = st.fixed_dictionaries(
    {"model": st.sampled_from(["claude", "codex", "gemini", "claude/sonnet", "gpt-5.5", "gemini-2.5-pro"]),
     "messages": valid_messages},
    optional={"stream": st.booleans(), "temperature": st.floats(0, 2), "unknown_field": json_values},
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=valid_requests | tool_requests | chat_requests | json_values)
def test_no_body_gets_a_server_error(handlers: Handlers, payload: Any) -> None:
    handlers.clis.replay()
    with TestClient(handlers.chat, raise_server_exceptions=False) as client:
        response = client.post(CHAT, content=json.dumps(payload), headers={"content-type": "application/json"})
    event(f"status {response.status_code}")
    assert response.status_code in (200, 400, 404, 502), response.text
    if response.status_code != 200:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        if response.status_code == 502:
            # A JSON answer was asked for, and the stand-ins' replayed answers are not JSON (checked twice).
            assert payload.get("response_format", {}).get("type") in ("json_object", "json_schema")
            assert error["type"] == "upstream_error"
            assert "does not match the requested JSON schema" in error["message"]
        else:
            assert error["type"] == "invalid_request_error"
