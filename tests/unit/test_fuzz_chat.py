"""Property: no request body, however odd, makes the chat handler answer 5xx or leave the OpenAI error shape.

Bodies are drawn both as arbitrary JSON and as near-valid chat requests with wrong pieces; the CLIs are
the recording stand-ins of conftest.py, replaying real captures, so valid requests run end to end.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from .conftest import Handlers

Capture = Callable[[str], list[str]]
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
                 "user", "seed", "metadata", "logit_bias", "tool_choice", "unknown_field"]  # fmt: skip
chat_requests = st.fixed_dictionaries({}, optional={"model": models, "messages": messages | json_values}).flatmap(
    lambda base: st.dictionaries(st.sampled_from(OPENAI_FIELDS), json_values, max_size=3).map(
        lambda extra: base | extra
    )
)


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
@given(payload=valid_requests | chat_requests | json_values)
def test_no_body_gets_a_server_error(handlers: Handlers, capture: Capture, payload: Any) -> None:
    for name, capture_file in [
        ("claude", "claude-stream-json-partial.txt"),
        ("codex", "codex-json.txt"),
        ("gemini", "gemini-stream-json.txt"),
    ]:
        handlers.clis.script(name, stdout="".join(capture(capture_file)))
    with TestClient(handlers.chat, raise_server_exceptions=False) as client:
        response = client.post(CHAT, content=json.dumps(payload), headers={"content-type": "application/json"})
    event(f"status {response.status_code}")
    assert response.status_code in (200, 400, 404), response.text
    if response.status_code != 200:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == "invalid_request_error"
