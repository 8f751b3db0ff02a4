"""Property: no request body, however odd, makes the Anthropic handler answer 5xx or leave Anthropic's error shape.

Bodies are drawn as arbitrary JSON and as near-valid Messages requests with wrong pieces (every block type,
tools, tool choices, system turns); the CLIs are the recording stand-ins of conftest.py replaying real
captures, so valid requests run end to end. count_tokens answers 501 to every valid request.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from .conftest import Handlers
from .test_anthropic_translate import PNG_B64
from .test_fuzz_chat import json_values

MESSAGES = "/anthropic/v1/messages"
COUNT = "/anthropic/v1/messages/count_tokens"

models = st.sampled_from(["claude", "codex", "gemini", "claude/sonnet", "gpt-5.5", "x", ""]) | json_values
roles = st.sampled_from(["user", "assistant", "system", "tool"]) | json_values
ids = st.sampled_from(["toolu_1", "toolu_2"]) | json_values
blocks = st.one_of(
    st.fixed_dictionaries({"type": st.just("text")}, optional={"text": st.text(max_size=30) | json_values}),
    st.fixed_dictionaries(
        {"type": st.just("image")},
        optional={
            "source": st.fixed_dictionaries(
                {"type": st.sampled_from(["base64", "url", "file"]) | json_values},
                optional={
                    "media_type": st.sampled_from(["image/png", "image/bmp"]),
                    "data": st.sampled_from([PNG_B64, "%%"]) | json_values,
                    "url": st.text(max_size=20),
                },
            )
        },
    ),
    st.fixed_dictionaries(
        {"type": st.just("tool_use")},
        optional={"id": ids, "name": st.sampled_from(["get_weather", "x y"]) | json_values, "input": json_values},
    ),
    st.fixed_dictionaries(
        {"type": st.just("tool_result")},
        optional={"tool_use_id": ids, "content": st.text(max_size=20) | json_values, "is_error": json_values},
    ),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["thinking", "redacted_thinking", "document", "tool_addition", "tool_reference"])},
        optional={"thinking": json_values, "tool": json_values, "tool_name": json_values},
    ),
    json_values,
)
contents = st.text(max_size=40) | st.lists(blocks, max_size=3) | json_values
messages = st.lists(st.fixed_dictionaries({}, optional={"role": roles, "content": contents}), max_size=4)
tools = st.lists(
    st.fixed_dictionaries(
        {"name": st.sampled_from(["get_weather", "f", "bad name"]) | json_values},
        optional={
            "input_schema": st.just({"type": "object", "properties": {}}) | json_values,
            "type": st.sampled_from(["custom", "web_search_20250305"]) | json_values,
            "defer_loading": json_values,
        },
    ),
    max_size=3,
)
FIELDS = [
    *("stream", "system", "tool_choice", "stop_sequences", "temperature", "top_p", "top_k", "metadata"),
    *("thinking", "output_config", "context_management", "service_tier", "mcp_servers", "unknown_field"),
]
base_requests = st.fixed_dictionaries(
    {},
    optional={
        "model": models,
        "max_tokens": st.integers(-1, 100) | json_values,
        "messages": messages | json_values,
        "tools": tools | json_values,
    },
)
requests = base_requests.flatmap(
    lambda base: st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=3).map(lambda extra: base | extra)
)
earlier_turns = st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]), "content": st.text()}),
    max_size=3,
)
valid_requests = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["claude", "codex", "gemini", "gemini-2.5-pro"]),
        "max_tokens": st.integers(1, 100),
        "messages": earlier_turns.map(lambda earlier: [*earlier, {"role": "user", "content": "say pong"}]),
    },
    optional={
        "stream": st.booleans(),
        "temperature": st.floats(0, 1),
        "system": st.text(max_size=20),
        "unknown_field": json_values,
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=valid_requests | requests | json_values, count=st.booleans())
def test_no_body_gets_a_server_error(handlers: Handlers, payload: Any, count: bool) -> None:
    handlers.clis.replay()
    with TestClient(handlers.anthropic, raise_server_exceptions=False) as client:
        path = COUNT if count else MESSAGES
        response = client.post(path, content=json.dumps(payload), headers={"content-type": "application/json"})
    event(f"{path.rsplit('/', 1)[1]} {response.status_code}")
    assert response.status_code in ((400, 404, 501) if count else (200, 400, 404)), response.text
    if response.status_code != 200:
        body = response.json()
        assert set(body) == {"type", "error"}
        assert set(body["error"]) == {"type", "message"}
        assert body["error"]["type"] in ("invalid_request_error", "not_found_error", "api_error")
