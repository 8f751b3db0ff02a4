"""The handlers' HTTP surface (handlers.models, handlers.health, handlers.chat_completions).

The apps are the real handler modules, imported as a cold start would, over shell scripts that stand
in for the CLIs (see conftest.py): the error catalogue never reaches a CLI, and the success and
failure paths replay the real CLI captures through the real runner, gateway and OpenAI layer.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import openai.types.chat as sdk
import pytest
from fastapi.testclient import TestClient
from httpx2 import Response  # what starlette's TestClient returns

from clinvk_core.config import PROJECT_ROOT

from .conftest import CLI_NAMES, Handlers, serve

Capture = Callable[[str], list[str]]
CHAT = "/openai/v1/chat/completions"
USER = [{"role": "user", "content": "say pong"}]
JSON = {"content-type": "application/json"}


@pytest.fixture
def chat(handlers: Handlers) -> Iterator[TestClient]:
    yield from serve(handlers, handlers.chat)


@pytest.fixture
def models(handlers: Handlers) -> Iterator[TestClient]:
    with TestClient(handlers.models, raise_server_exceptions=False) as client:
        yield client


def assert_openai_error(response: Response, status: int, *, param: str | None = None, code: str | None = None) -> str:
    """The response is an OpenAI error body with exactly the four keys; returns the message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["error"]
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str)
    assert error["message"]
    assert error["param"] == param
    assert error["code"] == code
    assert "Traceback" not in error["message"]
    return str(error["message"])


def sse_events(response: Response) -> list[str]:
    """The ``data:`` payloads and comments of an SSE body, in order."""
    events = response.text.split("\n\n")
    assert events[-1] == ""
    return events[:-1]


def sse_data(events: list[str]) -> list[Any]:
    out: list[Any] = []
    for event in events:
        if event.startswith(":"):
            continue
        assert event.startswith("data: ")
        payload = event[len("data: ") :]
        out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "claude", "messages": USER} | fields


# --- the error catalogue: no CLI runs -----------------------------------------------------------------


def tool(name: str = "get_weather", parameters: Any = None) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name}
    if parameters is not None:
        function["parameters"] = parameters
    return {"type": "function", "function": function}


def tool_result_after(call_id: str, answered: str) -> list[dict[str, Any]]:
    call = {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    return [*USER, {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": answered, "content": "22C"}]  # fmt: skip


def image(url: str) -> dict[str, Any]:
    return body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}])


PNG_B64 = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 8).decode()
TOOL_CASES: list[tuple[str, dict[str, Any], int, str | None, str | None]] = [
    ("tool name with a space", {"json": body(tools=[tool("get weather")])}, 400, "tools[0].function.name", None),
    ("tool name over 64", {"json": body(tools=[tool("t" * 65)])}, 400, "tools[0].function.name", None),
    ("duplicate tool names", {"json": body(tools=[tool(), tool()])}, 400, "tools", None),
    ("129 tools", {"json": body(tools=[tool(f"t{i}") for i in range(129)])}, 400, "tools", None),
    ("parameters not an object schema", {"json": body(tools=[tool(parameters={"type": "array"})])}, 400,
     "tools[0].function.parameters", None),
    ("parameters not a JSON Schema", {"json": body(tools=[tool(parameters={"type": "objekt"})])}, 400,
     "tools[0].function.parameters", None),
    ("parameters a list", {"json": body(tools=[tool(parameters=[1])])}, 400, "tools[0].function.parameters", None),
    ("hosted tool type", {"json": body(tools=[{"type": "web_search_preview"}])}, 400, "tools[0].type", None),
    ("tool without function", {"json": body(tools=[{"type": "function"}])}, 400, "tools[0].type", None),
    ("tool_choice names no tool", {"json": body(tools=[tool()], tool_choice={"type": "function",
     "function": {"name": "other"}})}, 400, "tool_choice", None),
    ("tool_choice required without tools", {"json": body(tool_choice="required")}, 400, "tool_choice", None),
    ("tool_choice unknown word", {"json": body(tools=[tool()], tool_choice="always")}, 400, "tool_choice", None),
    ("duplicate functions", {"json": body(functions=[{"name": "f"}, {"name": "f"}])}, 400, "functions", None),
    ("function_call names no function", {"json": body(functions=[{"name": "f"}], function_call={"name": "g"})},
     400, "function_call", None),
    ("tool_call_id answering no call", {"json": body(messages=tool_result_after("call_1", "call_2"))}, 400,
     "messages[2].tool_call_id", None),
    ("tool message without tool_call_id", {"json": body(messages=[*USER, {"role": "tool", "content": "x"}])},
     400, "messages[1].tool_call_id", None),
    ("function message answering no call", {"json": body(messages=[*USER, {"role": "function", "name": "f",
     "content": "x"}])}, 400, "messages[1].name", None),
    ("tool call of another type", {"json": body(messages=[*USER, {"role": "assistant", "content": None,
     "tool_calls": [{"id": "c", "type": "custom", "function": {"name": "f", "arguments": "{}"}}]}])}, 400,
     "messages[1].tool_calls[0].type", None),
    ("tool call without function", {"json": body(messages=[*USER, {"role": "assistant", "content": None,
     "tool_calls": [{"id": "c", "type": "function"}]}])}, 400, "messages[1].tool_calls[0].function", None),
    ("tools not a list", {"json": body(tools={"type": "function"})}, 400, "tools", None),
]  # fmt: skip
IMAGE_CASES: list[tuple[str, dict[str, Any], int, str | None, str | None]] = [
    ("image URL fetched only when enabled", {"json": image("https://example.com/a.png")}, 400,
     "messages[0].content[0].image_url", None),
    ("image data: URL not base64", {"json": image("data:image/png;base64,%%%")}, 400,
     "messages[0].content[0].image_url", None),
    ("image of an unsupported type", {"json": image(f"data:image/bmp;base64,{PNG_B64}")}, 400,
     "messages[0].content[0].image_url", None),
    ("image bytes not an image", {"json": image("data:image/png;base64,aGVsbG8=")}, 400,
     "messages[0].content[0].image_url", None),
    ("image larger than the body limit", {"json": image("data:image/png;base64," + "A" * 7_000_000)}, 413, None,
     "request_too_large"),
    ("image URL of another scheme", {"json": image("file:///etc/passwd")}, 400, "messages[0].content[0].image_url",
     None),
    ("image_url not an object", {"json": body(messages=[{"role": "user", "content": [{"type": "image_url",
     "image_url": "data:x"}]}])}, 400, "messages[0].content", None),
    ("21 images", {"json": body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url":
     {"url": f"data:image/png;base64,{PNG_B64}"}}] * 21}])}, 400, "messages[0].content[20].image_url", None),
]  # fmt: skip
FORMAT_CASES: list[tuple[str, dict[str, Any], int, str | None, str | None]] = [
    ("response_format of an unknown type", {"json": body(response_format={"type": "xml"})}, 400,
     "response_format.type", None),
    ("json_schema without a name", {"json": body(response_format={"type": "json_schema", "json_schema":
     {"schema": {"type": "object"}}})}, 400, "response_format.json_schema", None),
    ("json_schema with an invalid schema", {"json": body(response_format={"type": "json_schema", "json_schema":
     {"name": "x", "schema": {"type": "objekt"}}})}, 400, "response_format.json_schema.schema", None),
    ("reasoning_effort unknown", {"json": body(reasoning_effort="max-ultra")}, 400, "reasoning_effort", None),
    ("temperature out of range", {"json": body(temperature=2.5)}, 400, "temperature", None),
    ("top_p out of range", {"json": body(top_p=1.5)}, 400, "top_p", None),
    ("max_tokens zero", {"json": body(max_tokens=0)}, 400, "max_tokens", None),
    ("max_completion_tokens negative", {"json": body(max_completion_tokens=-1)}, 400, "max_completion_tokens", None),
]  # fmt: skip


CATALOGUE: list[tuple[str, dict[str, Any], int, str | None, str | None]] = [
    ("malformed JSON", {"content": b'{"model": "claude", "messages": [', "headers": JSON}, 400, None, None),
    ("JSON array body", {"content": b"[]", "headers": JSON}, 400, None, None),
    ("JSON string body", {"content": b'"hello"', "headers": JSON}, 400, None, None),
    ("empty body", {"content": b"", "headers": JSON}, 400, None, None),
    ("missing model", {"json": {"messages": USER}}, 400, "model", None),
    ("model not a string", {"json": body(model=42)}, 400, "model", None),
    ("model null", {"json": body(model=None)}, 400, "model", None),
    ("missing messages", {"json": {"model": "claude"}}, 400, "messages", None),
    ("messages empty", {"json": body(messages=[])}, 400, "messages", None),
    ("messages not a list", {"json": body(messages="say pong")}, 400, "messages", None),
    ("messages an object", {"json": body(messages={"role": "user", "content": "x"})}, 400, "messages", None),
    ("message without role", {"json": body(messages=[{"content": "x"}])}, 400, "messages[0].role", None),
    ("message without content", {"json": body(messages=[{"role": "user"}])}, 400, "messages[0].content", None),
    ("message not an object", {"json": body(messages=["x"])}, 400, "messages[0]", None),
    ("unknown role", {"json": body(messages=[{"role": "bot", "content": "x"}])}, 400, "messages[0].role", None),
    ("no user message", {"json": body(messages=[{"role": "system", "content": "s"}])}, 400, "messages", None),
    (
        "null content on user",
        {"json": body(messages=[{"role": "user", "content": None}])},
        400,
        "messages[0].content",
        None,
    ),
    ("n=9", {"json": body(n=9)}, 400, "n", None),
    ("logprobs", {"json": body(logprobs=True)}, 400, "logprobs", None),
    ("top_logprobs", {"json": body(top_logprobs=2)}, 400, "top_logprobs", None),
    *TOOL_CASES,
    *IMAGE_CASES,
    *FORMAT_CASES,
    ('stream "yes"', {"json": body(stream="yes")}, 400, "stream", None),
    ("temperature a string", {"json": body(temperature="hot")}, 400, "temperature", None),
    ("stream_options not an object", {"json": body(stream=True, stream_options=True)}, 400, "stream_options", None),
    ("unknown model", {"json": body(model="llama-3")}, 404, "model", "model_not_found"),
    ("backend name with empty model", {"json": body(model="claude/")}, 404, "model", "model_not_found"),
    ("huge unknown model name", {"json": body(model="m" * 100_000)}, 404, "model", "model_not_found"),
    ("empty model name", {"json": body(model="")}, 404, "model", "model_not_found"),
    ("invalid UTF-8", {"content": b'{"model": "claude", "messages": "\xff\xfe"}', "headers": JSON}, 400, None, None),
    (
        "JSON sent as text/plain",
        {"content": json.dumps(body()), "headers": {"content-type": "text/plain"}},
        400,
        None,
        None,
    ),
    ("form body", {"data": {"model": "claude"}}, 400, None, None),
    (
        "deeply nested JSON",
        {"content": b'{"model": "claude", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "headers": JSON},
        400,
        None,
        None,
    ),
    ("role null", {"json": body(messages=[{"role": None, "content": "x"}])}, 400, "messages[0].role", None),
    ("content a number", {"json": body(messages=[{"role": "user", "content": 42}])}, 400, "messages[0].content", None),
    (
        "content part without type",
        {"json": body(messages=[{"role": "user", "content": [{"text": "x"}]}])},
        400,
        "messages[0].content",
        None,
    ),
    (
        "content part of an unknown type",
        {"json": body(messages=[{"role": "user", "content": [{"type": "hologram"}]}])},
        400,
        "messages[0].content",
        None,
    ),
    (
        "text part without text",
        {"json": body(messages=[{"role": "user", "content": [{"type": "text"}]}])},
        400,
        "messages[0].content",
        None,
    ),
    (
        "input_audio part",
        {
            "json": body(
                messages=[
                    {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}
                ]
            )
        },
        400,
        "messages[0].content",
        None,
    ),
    ("n=0", {"json": body(n=0)}, 400, "n", None),
    ("n a float", {"json": body(n=1.5)}, 400, "n", None),
    ("max_tokens a string", {"json": body(max_tokens="100")}, 400, "max_tokens", None),
    ("stop a number", {"json": body(stop=5)}, 400, "stop", None),
    ("logit_bias a list", {"json": body(logit_bias=[1, 2])}, 400, "logit_bias", None),
    ("metadata with a number", {"json": body(metadata={"k": 1})}, 400, "metadata.k", None),
    ("user a number", {"json": body(user=7)}, 400, "user", None),
    ("seed a string", {"json": body(seed="7")}, 400, "seed", None),
    (
        "include_usage a string",
        {"json": body(stream=True, stream_options={"include_usage": "yes"})},
        400,
        "stream_options.include_usage",
        None,
    ),
    ("tool_choice a number", {"json": body(tool_choice=1)}, 400, "tool_choice", None),
    ("too many messages", {"json": body(messages=[{"role": "user", "content": "x"}] * 2001)}, 400, "messages", None),
    (
        "conversation over the prompt limit",
        {"json": body(messages=[{"role": "user", "content": "x" * 2_000_001}])},
        400,
        "messages",
        "context_length_exceeded",
    ),
    (
        "system prompt over the argv limit",
        {"json": body(messages=[{"role": "system", "content": "s" * 100_001}, *USER])},
        400,
        "messages",
        "context_length_exceeded",
    ),
]


@pytest.mark.parametrize(
    ("request_kwargs", "status", "param", "code"),
    [case[1:] for case in CATALOGUE],
    ids=[case[0] for case in CATALOGUE],
)
def test_error_catalogue(
    chat: TestClient,
    handlers: Handlers,
    request_kwargs: dict[str, Any],
    status: int,
    param: str | None,
    code: str | None,
) -> None:
    response = chat.post(CHAT, **request_kwargs)
    message = assert_openai_error(response, status, param=param, code=code)
    assert response.json()["error"]["type"] == "invalid_request_error"
    if code == "model_not_found":
        for valid in ("claude", "codex", "gemini"):
            assert valid in message
    assert not any(handlers.clis.ran(name) for name in CLI_NAMES)


def test_ignored_fields_are_accepted(chat: TestClient, handlers: Handlers, capture: Capture) -> None:
    handlers.clis.script("claude", stdout="".join(capture("claude-stream-json-partial.txt")))
    extra = {
        "temperature": 0.2,
        "top_p": 0.9,
        "n": 1,
        "stop": ["\n\n"],
        "presence_penalty": 0,
        "frequency_penalty": 0.5,
        "logit_bias": {"50256": -100},
        "user": "u-1",
        "seed": 7,
        "metadata": {"k": "v"},
        "store": False,
        "parallel_tool_calls": False,
        "max_tokens": 100,
        "response_format": {"type": "text"},
        "some_future_field": {"anything": [1, 2]},
    }
    response = chat.post(CHAT, json=body(**extra))
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "pong from fake"


def test_body_over_the_limit_is_413(chat: TestClient) -> None:
    oversized = b'{"model": "claude", "messages": [], "pad": "' + b"x" * (6 * 1024 * 1024) + b'"}'
    response = chat.post(CHAT, content=oversized, headers=JSON)
    assert assert_openai_error(response, 413, code="request_too_large")


def test_chunked_body_over_the_limit_is_413(chat: TestClient) -> None:
    """No Content-Length (chunked upload): the limit is enforced while reading."""

    def chunks() -> Iterator[bytes]:
        yield b'{"model": "claude", "messages": [], "pad": "'
        for _ in range(7):
            yield b"x" * (1024 * 1024)
        yield b'"}'

    response = chat.post(CHAT, content=chunks(), headers=JSON)
    assert "content-length" not in response.request.headers
    assert_openai_error(response, 413, code="request_too_large")


def test_body_that_is_not_utf8_is_400(chat: TestClient) -> None:
    response = chat.post(CHAT, content=b'{"model": "claude\xff\xfe"}', headers=JSON)
    assert_openai_error(response, 400)


def test_wrong_method_and_unknown_path(chat: TestClient, models: TestClient) -> None:
    message = assert_openai_error(chat.get(CHAT), 405, code="method_not_allowed")
    assert "GET" in message
    assert_openai_error(models.post("/openai/v1/models"), 405, code="method_not_allowed")
    assert_openai_error(models.get("/openai/v1/nope"), 404, code="not_found")
    assert_openai_error(chat.post("/v1/chat/completions", json=body()), 404, code="not_found")


# --- models and health --------------------------------------------------------------------------------


def test_list_models(models: TestClient) -> None:
    response = models.get("/openai/v1/models")
    assert response.status_code == 200
    assert response.json() == {
        "object": "list",
        "data": [{"id": name, "object": "model", "created": 1704067200, "owned_by": "clinvk"} for name in CLI_NAMES],
    }


@pytest.mark.parametrize(
    "model", ["claude", "claude-sonnet-4-5", "gpt-5.5", "o4-mini", "gemini-2.5-pro", "claude/sonnet", "codex/gpt-5.5"]
)
def test_retrieve_model(models: TestClient, model: str) -> None:
    response = models.get(f"/openai/v1/models/{quote(model, safe='')}")  # as the SDK sends it: claude%2Fsonnet
    assert response.status_code == 200
    assert response.json() == {"id": model, "object": "model", "created": 1704067200, "owned_by": "clinvk"}


@pytest.mark.parametrize("model", ["unknown", "nobody/sonnet", "claude/"])
def test_retrieve_unknown_model(models: TestClient, model: str) -> None:
    assert_openai_error(models.get(f"/openai/v1/models/{model}"), 404, param="model", code="model_not_found")


def test_health(handlers: Handlers) -> None:
    with TestClient(handlers.health) as client:
        response = client.get("/health")
    assert response.status_code == 200
    # No pool here (CLINVK_WARM_BACKENDS is empty for the stand-in CLIs): nothing kept warm to show.
    assert response.json() == {"status": "ok", "backends": dict.fromkeys(CLI_NAMES, "available"), "warm": {}}


# --- through the stand-in CLIs: the real runner, gateway and OpenAI layer -----------------------------


def test_claude_completion(chat: TestClient, handlers: Handlers, capture: Capture) -> None:
    clis = handlers.clis
    clis.script("claude", stdout="".join(capture("claude-stream-json-partial.txt")))
    messages = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "say pong"},
    ]
    started = int(time.time())
    response = chat.post(CHAT, json={"model": "claude", "messages": messages})
    assert response.status_code == 200, response.text
    parsed = sdk.ChatCompletion.model_validate(response.json(), strict=True)
    assert parsed.id.startswith("chatcmpl-")
    assert started <= parsed.created <= int(time.time())
    assert parsed.model == "claude"
    assert parsed.choices[0].message.content == "pong from fake"
    assert parsed.choices[0].finish_reason == "stop"
    assert parsed.usage is not None
    assert (parsed.usage.prompt_tokens, parsed.usage.completion_tokens, parsed.usage.total_tokens) == (10, 5, 15)
    assert parsed.usage.prompt_tokens_details is not None
    assert parsed.usage.prompt_tokens_details.cached_tokens == 0

    argv = clis.argv("claude")
    assert argv[argv.index("--system-prompt") + 1] == "Be terse."
    assert argv[argv.index("--tools") + 1] == ""
    assert "--model" not in argv  # the bare backend name: the CLI's own default model
    assert clis.stdin("claude") == "say pong"

    env = clis.env("claude")
    assert not [name for name in env if name.startswith(("CLINVK_", "AWS_"))]
    cwd = clis.cwd("claude")
    assert not cwd.is_relative_to(PROJECT_ROOT)
    assert cwd.is_relative_to(handlers.state_dir)
    assert not cwd.exists()  # the run's directory is gone after the answer
    assert not handlers.state_dir.joinpath("runs").exists() or not any(handlers.state_dir.joinpath("runs").iterdir())

    again = chat.post(CHAT, json={"model": "claude", "messages": messages}).json()
    assert again["id"] != parsed.id


def test_model_is_echoed_and_passed_to_the_cli(chat: TestClient, handlers: Handlers, capture: Capture) -> None:
    handlers.clis.script("claude", stdout="".join(capture("claude-stream-json-partial.txt")))
    response = chat.post(CHAT, json=body(model="claude/claude-haiku-4-5"))
    assert response.json()["model"] == "claude/claude-haiku-4-5"
    argv = handlers.clis.argv("claude")
    assert argv[argv.index("--model") + 1] == "claude-haiku-4-5"


def test_gemini_counts_only_the_requested_models_tokens(chat: TestClient, handlers: Handlers, capture: Capture) -> None:
    handlers.clis.script("gemini", stdout="".join(capture("gemini-stream-json.txt")))
    response = chat.post(CHAT, json=body(model="gemini/gemini-3.8-flash"))
    assert response.status_code == 200, response.text
    parsed = sdk.ChatCompletion.model_validate(response.json(), strict=True)
    assert parsed.choices[0].message.content == "pong from fake"
    assert parsed.usage is not None
    assert (parsed.usage.prompt_tokens, parsed.usage.completion_tokens) == (10, 5)
    argv = handlers.clis.argv("gemini")
    assert argv[argv.index("-m") + 1] == "gemini-3.8-flash"


def test_codex_stream_with_usage(chat: TestClient, handlers: Handlers, capture: Capture) -> None:
    handlers.clis.script("codex", stdout="".join(capture("codex-json.txt")))
    request = body(model="gpt-5.5", stream=True, stream_options={"include_usage": True})
    with chat.stream("POST", CHAT, json=request) as response:
        response.read()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    data = sse_data(sse_events(response))
    assert data[-1] == "[DONE]"
    chunks = [sdk.ChatCompletionChunk.model_validate(item, strict=True) for item in data[:-1]]
    assert len({chunk.id for chunk in chunks}) == 1
    assert {chunk.model for chunk in chunks} == {"gpt-5.5"}
    *with_choices, last = chunks
    for chunk in with_choices:
        assert len(chunk.choices) == 1
        assert chunk.usage is None
    assert with_choices[0].choices[0].delta.role == "assistant"
    assert with_choices[0].choices[0].delta.content == ""
    assert "".join(c.choices[0].delta.content or "" for c in with_choices) == "pong from fake"
    assert [c.choices[0].finish_reason for c in with_choices] == [None] * (len(with_choices) - 1) + ["stop"]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (10, 5, 15)
    argv = handlers.clis.argv("codex")
    assert argv[argv.index("--model") + 1] == "gpt-5.5"
    assert argv[-1] == "-"
    assert handlers.clis.stdin("codex") == "say pong"


@pytest.mark.parametrize("stream", [False, True])
def test_a_lone_surrogate_from_a_cli_is_a_replacement_character(
    chat: TestClient, handlers: Handlers, capture: Capture, stream: bool
) -> None:
    # JSON may escape a lone surrogate, and UTF-8 cannot carry one to the client.
    lines = "".join(capture("codex-json.txt")).replace("pong from fake", "pong \\ud800")
    handlers.clis.script("codex", stdout=lines)
    response = chat.post(CHAT, json=body(model="codex", stream=stream))
    assert response.status_code == 200
    if stream:
        deltas = [item["choices"] for item in sse_data(sse_events(response))[:-1]]
        assert "".join(choice[0]["delta"].get("content") or "" for choice in deltas if choice) == "pong \ufffd"
    else:
        assert response.json()["choices"][0]["message"]["content"] == "pong \ufffd"


def test_stream_without_include_usage_has_no_usage_chunk(
    chat: TestClient, handlers: Handlers, capture: Capture
) -> None:
    handlers.clis.script("claude", stdout="".join(capture("claude-stream-json-partial.txt")))
    with chat.stream("POST", CHAT, json=body(stream=True)) as response:
        response.read()
    data = sse_data(sse_events(response))
    assert data[-1] == "[DONE]"
    chunks = [sdk.ChatCompletionChunk.model_validate(item, strict=True) for item in data[:-1]]
    assert all(len(chunk.choices) == 1 and chunk.usage is None for chunk in chunks)
    assert [c.choices[0].delta.content for c in chunks[1:-1]] == ["pong ", "from ", "fake"]


@pytest.mark.parametrize(
    ("cli", "model", "name", "needle"),
    [
        ("claude", "claude", "claude-stream-json-error500.txt", "API Error: 500 fake internal server error"),
        ("claude", "claude", "claude-json-error401.txt", "API Error: 401 fake: invalid api key"),
        ("codex", "codex", "codex-json-error401.txt", "unexpected status 401 Unauthorized"),
        ("codex", "codex", "codex-json-error500.txt", "experiencing high demand"),
        ("gemini", "gemini", "gemini-stream-json-error401.txt", "fake: invalid api key"),
        ("gemini", "gemini", "gemini-stream-json-error500.txt", "fake internal server error"),
    ],
)
def test_upstream_failures_are_502_with_the_clis_message(
    chat: TestClient, handlers: Handlers, capture: Capture, cli: str, model: str, name: str, needle: str
) -> None:
    handlers.clis.script(cli, stdout="".join(capture(name)), code=1)
    response = chat.post(CHAT, json=body(model=model))
    message = assert_openai_error(response, 502, code="upstream_error")
    assert response.json()["error"]["type"] == "upstream_error"
    assert needle in message
    assert message.startswith(f"{cli}: ")


def test_upstream_429_is_rate_limited_with_retry_after(chat: TestClient, handlers: Handlers) -> None:
    result = {"type": "result", "is_error": True, "api_error_status": 429, "result": "API Error: 429 slow down"}
    handlers.clis.script("claude", stdout=json.dumps(result) + "\n", code=1)
    response = chat.post(CHAT, json=body())
    assert "slow down" in assert_openai_error(response, 429, code="rate_limit_exceeded")
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert int(response.headers["retry-after"]) >= 1


def test_cli_exit_without_answer_reports_its_stderr(chat: TestClient, handlers: Handlers) -> None:
    stderr = "Warning: 256-color support not detected.\nError: config is broken\n    at main (x.js:1:2)\n"
    handlers.clis.script("gemini", stderr=stderr, code=41)
    message = assert_openai_error(chat.post(CHAT, json=body(model="gemini")), 502, code="upstream_error")
    assert "41" in message
    assert "Error: config is broken" in message
    assert "x.js" not in message  # stack frames are dropped


def test_stream_failure_after_headers_is_one_error_event(
    chat: TestClient, handlers: Handlers, capture: Capture
) -> None:
    handlers.clis.script("codex", stdout="".join(capture("codex-json-error401.txt")), code=1)
    with chat.stream("POST", CHAT, json=body(model="codex", stream=True)) as response:
        response.read()
    assert response.status_code == 200
    data = sse_data(sse_events(response))
    assert "[DONE]" not in data
    first, error = data
    assert sdk.ChatCompletionChunk.model_validate(first, strict=True).choices[0].delta.role == "assistant"
    assert set(error) == {"error"}
    assert set(error["error"]) == {"message", "type", "param", "code"}
    assert error["error"]["code"] == "upstream_error"
    assert "unexpected status 401" in error["error"]["message"]


def test_stalled_cli_times_out_with_504(chat: TestClient, handlers: Handlers) -> None:
    handlers.clis.script("claude", sleep=10)
    start = time.monotonic()
    response = chat.post(CHAT, json=body())
    elapsed = time.monotonic() - start
    assert_openai_error(response, 504, code="timeout")
    assert response.json()["error"]["type"] == "timeout"
    assert elapsed < 3  # CLINVK_TIMEOUT_SECONDS=1, not the CLI's 10 s


def test_stalled_stream_sends_keepalives_then_a_timeout_event(chat: TestClient, handlers: Handlers) -> None:
    handlers.clis.script("claude", sleep=10)
    start = time.monotonic()
    with chat.stream("POST", CHAT, json=body(stream=True)) as response:
        response.read()
    assert time.monotonic() - start < 3
    events = sse_events(response)
    assert sum(1 for event in events if event.startswith(":")) >= 3  # CLINVK_KEEPALIVE_SECONDS=0.1
    data = sse_data(events)
    assert data[-1]["error"]["code"] == "timeout"
    assert "[DONE]" not in data


def test_answer_is_not_delayed_by_a_cli_that_lingers_after_its_result(
    chat: TestClient, handlers: Handlers, capture: Capture
) -> None:
    """chat._complete: "answer now; the CLI's exit and clean-up need not delay it"."""
    handlers.clis.script("claude", stdout="".join(capture("claude-stream-json-partial.txt")), sleep=1.2)
    start = time.monotonic()
    response = chat.post(CHAT, json=body())
    elapsed = time.monotonic() - start
    assert response.json()["choices"][0]["message"]["content"] == "pong from fake"
    assert elapsed < 0.8, f"the answer waited {elapsed:.1f} s for the CLI to exit"


def test_stream_is_not_delayed_by_a_cli_that_lingers_and_the_cli_is_gone_after(
    chat: TestClient, handlers: Handlers, capture: Capture
) -> None:
    """The client has its [DONE] at once; by the end of the ASGI call the CLI is killed and reaped.

    The test client, like uvicorn and Mangum, reports the finished exchange as a disconnect: the
    clean-up after the answer must not be cancelled by it (a process left unreaped, a transport
    finalized after its event loop closed).
    """
    handlers.clis.script("claude", stdout="".join(capture("claude-stream-json-partial.txt")), sleep=10)
    start = time.monotonic()
    try:
        with chat.stream("POST", CHAT, json=body(stream=True)) as response:
            text = response.read().decode()
        assert text.endswith("data: [DONE]\n\n")
        assert time.monotonic() - start < 1.0
        assert not Path(f"/proc/{handlers.clis.pid('claude')}").exists(), "the CLI was not reaped"
        assert list((handlers.state_dir / "runs").iterdir()) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(handlers.clis.pid("claude"), signal.SIGKILL)


def test_chat_app_answers_the_web_adapters_readiness_check(handlers: Handlers) -> None:
    with TestClient(handlers.chat) as client:
        response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
