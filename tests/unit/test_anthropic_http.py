"""The Anthropic handlers' HTTP surface (handlers.anthropic_messages, handlers.anthropic_models).

The apps are the real handler modules over the stand-in CLIs of conftest.py: the error catalogue never
reaches a CLI, and the success and failure paths replay real CLI captures through the real runner and
gateway. Where a client is needed, it is the official ``anthropic`` SDK over the app (strict validation).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import pytest
from anthropic.types import Message, MessageParam
from fastapi.testclient import TestClient
from httpx2 import Response

from clinvk_core.config import PROJECT_ROOT
from clinvk_core.emulator.server import Emulator
from clinvk_core.emulator.template import functions, load_template

from .coldstart import cold_start
from .conftest import CLI_NAMES, Handlers, serve
from .test_anthropic_translate import PNG_B64

Capture = Callable[[str], list[str]]
MESSAGES = "/anthropic/v1/messages"
COUNT = "/anthropic/v1/messages/count_tokens"
USER: list[MessageParam] = [{"role": "user", "content": "say pong"}]
JSON = {"content-type": "application/json"}


@pytest.fixture
def app(handlers: Handlers) -> Iterator[TestClient]:
    yield from serve(handlers, handlers.anthropic)


@pytest.fixture
def models(handlers: Handlers) -> Iterator[TestClient]:
    with TestClient(handlers.anthropic_models, raise_server_exceptions=False) as client:
        yield client


def sdk(app: TestClient) -> anthropic.Anthropic:
    """The official client, talking to the app in process."""
    return anthropic.Anthropic(
        base_url="http://testserver/anthropic", api_key="x", max_retries=0, http_client=app,
        _strict_response_validation=True,
    )  # fmt: skip


def assert_anthropic_error(response: Response, status: int, kind: str) -> str:
    """An Anthropic error body, exactly; returns its message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"type", "error"}
    assert body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == kind
    message = body["error"]["message"]
    assert isinstance(message, str)
    assert message
    assert "Traceback" not in message
    return str(message)


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "claude", "max_tokens": 64, "messages": USER} | fields


def messages(*items: Any) -> dict[str, Any]:
    return body(messages=list(items))


TOOL = {"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}
CALL = {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]}


def result(call_id: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": "22C"}]}


def image(source: dict[str, Any]) -> dict[str, Any]:
    return messages({"role": "user", "content": [{"type": "image", "source": source}]})


# (name, request, status, error type, a piece of the message)
CATALOGUE: list[tuple[str, dict[str, Any], int, str, str]] = [
    ("malformed JSON", {"content": b'{"model": "claude", "messages": [', "headers": JSON}, 400,
     "invalid_request_error", "not valid JSON"),
    ("JSON array body", {"content": b"[]", "headers": JSON}, 400, "invalid_request_error", "JSON object"),
    ("empty body", {"content": b"", "headers": JSON}, 400, "invalid_request_error", ""),
    ("invalid UTF-8", {"content": b'{"model": "claude\xff"}', "headers": JSON}, 400, "invalid_request_error", ""),
    ("form body", {"data": {"model": "claude"}}, 400, "invalid_request_error", ""),
    ("missing model", {"json": {"max_tokens": 8, "messages": USER}}, 400, "invalid_request_error", "'model'"),
    ("model not a string", {"json": body(model=42)}, 400, "invalid_request_error", "'model'"),
    ("missing max_tokens", {"json": {"model": "claude", "messages": USER}}, 400, "invalid_request_error",
     "'max_tokens'"),
    ("max_tokens a string", {"json": body(max_tokens="8")}, 400, "invalid_request_error", "'max_tokens'"),
    ("max_tokens zero", {"json": body(max_tokens=0)}, 400, "invalid_request_error", "max_tokens"),
    ("missing messages", {"json": {"model": "claude", "max_tokens": 8}}, 400, "invalid_request_error", "'messages'"),
    ("messages empty", {"json": body(messages=[])}, 400, "invalid_request_error", "'messages'"),
    ("messages not a list", {"json": body(messages="hi")}, 400, "invalid_request_error", "'messages'"),
    ("message without role", {"json": messages({"content": "x"})}, 400, "invalid_request_error",
     "'messages[0].role'"),
    ("unknown role", {"json": messages({"role": "tool", "content": "x"})}, 400, "invalid_request_error",
     "'messages[0].role'"),
    ("message without content", {"json": messages({"role": "user"})}, 400, "invalid_request_error",
     "'messages[0].content'"),
    ("content null", {"json": messages({"role": "user", "content": None})}, 400, "invalid_request_error",
     "'messages[0].content'"),
    ("content empty", {"json": messages({"role": "user", "content": []})}, 400, "invalid_request_error",
     "must not be empty"),
    ("a block without type", {"json": messages({"role": "user", "content": [{"text": "x"}]})}, 400,
     "invalid_request_error", "'messages[0].content'"),
    ("last message from the assistant", {"json": messages(*USER, {"role": "assistant", "content": "Sure"})}, 400,
     "invalid_request_error", "last message must be a user message"),
    ("tool_result answering no tool_use", {"json": messages(*USER, CALL, result("toolu_2"))}, 400,
     "invalid_request_error", "answers no tool_use"),
    ("tool_use in a user message", {"json": messages({"role": "user", "content": CALL["content"]})}, 400,
     "invalid_request_error", "'tool_use' are not supported"),
    ("document block", {"json": messages({"role": "user", "content": [{"type": "document", "source":
     {"type": "text", "media_type": "text/plain", "data": "x"}}]})}, 400, "invalid_request_error",
     "'document' are not supported"),
    ("server tool", {"json": body(tools=[{"type": "web_search_20250305", "name": "web_search"}])}, 400,
     "invalid_request_error", "only custom tools"),
    ("custom tool without input_schema", {"json": body(tools=[{"name": "f"}])}, 400, "invalid_request_error",
     "input_schema"),
    ("tool name with a space", {"json": body(tools=[{**TOOL, "name": "get weather"}])}, 400,
     "invalid_request_error", "Invalid tool name"),
    ("tool_choice any without tools", {"json": body(tool_choice={"type": "any"})}, 400, "invalid_request_error",
     "no tool is offered"),
    ("tool_choice naming no tool", {"json": body(tools=[TOOL], tool_choice={"type": "tool", "name": "x"})}, 400,
     "invalid_request_error", "not one of the offered tools"),
    ("image not base64", {"json": image({"type": "base64", "media_type": "image/png", "data": "%%%"})}, 400,
     "invalid_request_error", "not valid base64"),
    ("image of an unsupported type", {"json": image({"type": "base64", "media_type": "image/bmp",
     "data": PNG_B64})}, 400, "invalid_request_error", "Unsupported image type"),
    ("image URL not fetched", {"json": image({"type": "url", "url": "https://example.com/a.png"})}, 400,
     "invalid_request_error", "does not fetch image URLs"),
    ("21 images", {"json": messages({"role": "user", "content": [{"type": "image", "source": {"type": "base64",
     "media_type": "image/png", "data": PNG_B64}}] * 21})}, 400, "invalid_request_error", "Too many images"),
    ('stream "yes"', {"json": body(stream="yes")}, 400, "invalid_request_error", "'stream'"),
    ("temperature over 1", {"json": body(temperature=1.5)}, 400, "invalid_request_error", "temperature"),
    ("top_p a string", {"json": body(top_p="high")}, 400, "invalid_request_error", "'top_p'"),
    ("stop_sequences a string", {"json": body(stop_sequences="END")}, 400, "invalid_request_error",
     "'stop_sequences'"),
    ("thinking a string", {"json": body(thinking="on")}, 400, "invalid_request_error", "'thinking'"),
    ("unknown effort", {"json": body(output_config={"effort": "ultra"})}, 400, "invalid_request_error", "effort"),
    ("remote MCP servers", {"json": body(mcp_servers=[{"type": "url", "url": "https://x", "name": "x"}])}, 400,
     "invalid_request_error", "mcp_servers"),
    ("too many messages", {"json": body(messages=USER * 2001)}, 400, "invalid_request_error", "Too many messages"),
    ("system prompt over 100 KB", {"json": body(system="s" * 100_001)}, 400, "invalid_request_error",
     "system prompt is too long"),
    ("unknown model", {"json": body(model="llama-3")}, 404, "not_found_error", "claude, codex, gemini"),
    ("backend name with an empty model", {"json": body(model="claude/")}, 404, "not_found_error", "does not exist"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("request_kwargs", "status", "kind", "needle"),
    [case[1:] for case in CATALOGUE],
    ids=[case[0] for case in CATALOGUE],
)
def test_error_catalogue(
    app: TestClient, handlers: Handlers, request_kwargs: dict[str, Any], status: int, kind: str, needle: str
) -> None:
    response = app.post(MESSAGES, **request_kwargs)
    assert needle in assert_anthropic_error(response, status, kind)
    assert not any(handlers.clis.ran(name) for name in CLI_NAMES)


def test_what_clients_send_and_clinvk_ignores_is_accepted(app: TestClient, handlers: Handlers) -> None:
    """What the SDKs and Claude Code send: headers, query, betas, cache_control, thinking, metadata..."""
    handlers.clis.replay("claude")
    cached = {"type": "ephemeral", "ttl": "5m"}
    request = body(
        system=[{"type": "text", "text": "Be terse.", "cache_control": cached}],
        messages=[{"role": "user", "content": [{"type": "text", "text": "say pong", "cache_control": cached}]}],
        metadata={"user_id": "u-1"},
        thinking={"type": "adaptive", "display": "omitted"},
        context_management={"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        output_config={"effort": "high"},
        service_tier="auto",
        top_k=5,
        temperature=0.2,
        container=None,
        some_future_field={"anything": [1, 2]},
    )
    headers = {"anthropic-version": "2023-06-01", "anthropic-beta": "claude-code-20250219,some-future-beta-2099-01-01",
               "x-app": "cli"}  # fmt: skip
    response = app.post(f"{MESSAGES}?beta=true", json=request, headers=headers)
    assert response.status_code == 200, response.text
    assert Message.model_validate(response.json(), strict=True).content[0].type == "text"
    argv = handlers.clis.argv("claude")
    assert argv[argv.index("--system-prompt") + 1] == "Be terse."
    assert argv[argv.index("--effort") + 1] == "high"


def test_body_over_the_limit_is_413(app: TestClient) -> None:
    oversized = b'{"model": "claude", "messages": [], "pad": "' + b"x" * (6 * 1024 * 1024) + b'"}'
    assert_anthropic_error(app.post(MESSAGES, content=oversized, headers=JSON), 413, "request_too_large")


def test_wrong_method_and_unknown_path(app: TestClient, models: TestClient) -> None:
    assert "GET" in assert_anthropic_error(app.get(MESSAGES), 405, "invalid_request_error")
    assert_anthropic_error(models.post("/anthropic/v1/models"), 405, "invalid_request_error")
    assert_anthropic_error(app.post("/anthropic/v1/complete", json=body()), 404, "not_found_error")


def test_the_emulator_answers_unknown_anthropic_routes_in_anthropics_shape(handlers: Handlers) -> None:
    emulator = Emulator(functions(load_template(PROJECT_ROOT / "template.yaml")))
    with TestClient(emulator, raise_server_exceptions=False) as client:
        assert_anthropic_error(client.get("/anthropic/v1/nope"), 404, "not_found_error")
        assert_anthropic_error(client.get(MESSAGES), 405, "invalid_request_error")
        assert set(client.get("/openai/v1/nope").json()) == {"error"}  # the OpenAI side keeps its own shape


def test_keys_are_checked_and_x_api_key_or_bearer_pass(handlers: Handlers) -> None:
    handlers.clis.replay("claude")
    settings = {"CLINVK_BIN_DIR": str(handlers.bin_dir), "CLINVK_STATE_DIR": str(handlers.state_dir),
                "CLINVK_API_KEYS": "sk-gateway"}  # fmt: skip
    with cold_start(settings) as modules, TestClient(modules["handlers.anthropic_messages"].app) as client:
        assert "Missing API key" in assert_anthropic_error(client.post(MESSAGES, json=body()), 401,
                                                           "authentication_error")  # fmt: skip
        wrong = client.post(MESSAGES, json=body(), headers={"x-api-key": "sk-wrong"})
        assert "sk-wrong" not in assert_anthropic_error(wrong, 401, "authentication_error")
        wrong_key = anthropic.Anthropic(base_url="http://testserver/anthropic", api_key="sk-wrong", max_retries=0,
                                        http_client=client)  # fmt: skip
        with pytest.raises(anthropic.AuthenticationError):
            wrong_key.messages.create(model="claude", max_tokens=8, messages=USER)
        assert client.post(MESSAGES, json=body(), headers={"x-api-key": "sk-gateway"}).status_code == 200
        bearer = {"authorization": "Bearer sk-gateway"}
        assert client.post(MESSAGES, json=body(), headers=bearer).status_code == 200


# --- models ---------------------------------------------------------------------------------------


def test_models_list_and_pages(models: TestClient) -> None:
    page = models.get("/anthropic/v1/models?limit=1000&beta=true").json()
    assert page == {
        "data": [{"type": "model", "id": name, "display_name": name, "created_at": "2024-01-01T00:00:00Z",
                  "lifecycle": "active"} for name in CLI_NAMES],
        "has_more": False, "first_id": "claude", "last_id": "gemini",
    }  # fmt: skip
    client = sdk(models)
    assert [model.id for model in client.models.list(limit=1)] == list(CLI_NAMES)  # the SDK pages through
    before = models.get("/anthropic/v1/models?before_id=gemini&limit=1").json()
    assert ([m["id"] for m in before["data"]], before["has_more"]) == (["codex"], True)
    assert_anthropic_error(models.get("/anthropic/v1/models?after_id=llama"), 400, "invalid_request_error")
    assert_anthropic_error(models.get("/anthropic/v1/models?limit=0"), 400, "invalid_request_error")


@pytest.mark.parametrize("model", ["claude", "claude-sonnet-4-5", "gpt-5.5", "claude/sonnet", "gemini/gemini-2.5-pro"])
def test_retrieve_model(models: TestClient, model: str) -> None:
    info = sdk(models).models.retrieve(model)  # the SDK sends claude%2Fsonnet
    assert (info.id, info.type) == (model, "model")


def test_retrieve_unknown_model(models: TestClient) -> None:
    assert "does not exist" in assert_anthropic_error(models.get("/anthropic/v1/models/llama"), 404, "not_found_error")


# --- count_tokens ---------------------------------------------------------------------------------


def test_count_tokens_is_a_clear_501_and_not_an_estimate(app: TestClient, handlers: Handlers) -> None:
    response = app.post(f"{COUNT}?beta=true", json={"model": "gemini", "messages": USER, "tools": [TOOL]})
    message = assert_anthropic_error(response, 501, "api_error")
    assert "does not estimate" in message
    assert response.headers["x-should-retry"] == "false"
    with pytest.raises(anthropic.APIStatusError) as raised:
        sdk(app).messages.count_tokens(model="gemini", messages=USER)
    assert raised.value.status_code == 501
    assert_anthropic_error(app.post(COUNT, json={"model": "gemini"}), 400, "invalid_request_error")
    assert_anthropic_error(app.post(COUNT, json={"model": "llama", "messages": USER}), 404, "not_found_error")
    assert not any(handlers.clis.ran(name) for name in CLI_NAMES)


# --- through the stand-in CLIs --------------------------------------------------------------------


# The gemini capture's main model is gemini-3.8-flash: its tokens, not its router's, are the answer's.
@pytest.mark.parametrize(("backend", "model"), [("claude", "claude"), ("codex", "codex"),
                                                ("gemini", "gemini/gemini-3.8-flash")])  # fmt: skip
def test_a_message_and_its_stream(app: TestClient, handlers: Handlers, backend: str, model: str) -> None:
    handlers.clis.replay(backend)
    client = sdk(app)
    created = client.messages.create(model=model, max_tokens=64, system="Be terse.", messages=USER)
    assert created.id.startswith("msg_")
    assert (created.model, created.stop_reason, created.stop_sequence) == (model, "end_turn", None)
    assert [(block.type, getattr(block, "text", None)) for block in created.content] == [("text", "pong from fake")]
    usage = created.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens) == (10, 5, 0)
    with client.messages.stream(model=model, max_tokens=64, messages=USER) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "pong from fake"
    assert final.model_dump(exclude={"id"}) == created.model_dump(exclude={"id"})


def test_the_stream_on_the_wire(app: TestClient, handlers: Handlers) -> None:
    handlers.clis.replay("claude")
    with app.stream("POST", MESSAGES, json=body(stream=True)) as response:
        text = response.read().decode()
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    events = [event.split("\n") for event in text.split("\n\n")[:-1]]
    names = [lines[0].removeprefix("event: ") for lines in events]
    assert names[0] == "message_start"
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    start = json.loads(events[0][1].removeprefix("data: "))["message"]
    assert (start["content"], start["stop_reason"], start["usage"]["input_tokens"]) == ([], None, 0)
    for name, lines in zip(names, events, strict=True):
        assert json.loads(lines[1].removeprefix("data: "))["type"] == name


def test_stop_sequences_cut_the_answer(app: TestClient, handlers: Handlers) -> None:
    handlers.clis.replay("gemini")
    created = sdk(app).messages.create(
        model="gemini/gemini-3.8-flash", max_tokens=64, messages=USER, stop_sequences=[" from"]
    )
    assert (created.content[0].type, created.stop_reason, created.stop_sequence) == ("text", "stop_sequence", " from")
    assert getattr(created.content[0], "text", None) == "pong"


def test_the_app_answers_the_web_adapters_readiness_check(app: TestClient) -> None:
    assert app.get("/health").json()["status"] == "ok"


# --- failures -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cli", "capture_name", "needle"),
    [
        ("claude", "claude-stream-json-error500.txt", "fake internal server error"),
        ("codex", "codex-json-error401.txt", "unexpected status 401 Unauthorized"),
        ("gemini", "gemini-stream-json-error401.txt", "fake: invalid api key"),
    ],
)
def test_upstream_failures_are_502_api_errors_with_the_clis_message(
    app: TestClient, handlers: Handlers, capture: Capture, cli: str, capture_name: str, needle: str
) -> None:
    handlers.clis.script(cli, stdout="".join(capture(capture_name)), code=1)
    message = assert_anthropic_error(app.post(MESSAGES, json=body(model=cli)), 502, "api_error")
    assert needle in message
    assert message.startswith(f"{cli}: ")


def test_upstream_429_is_a_rate_limit_error_with_retry_after(app: TestClient, handlers: Handlers) -> None:
    line = {"type": "result", "is_error": True, "api_error_status": 429, "result": "API Error: 429 slow down"}
    handlers.clis.script("claude", stdout=json.dumps(line) + "\n", code=1)
    response = app.post(MESSAGES, json=body())
    assert "slow down" in assert_anthropic_error(response, 429, "rate_limit_error")
    assert int(response.headers["retry-after"]) >= 1


def test_stalled_cli_is_a_504_timeout_error(app: TestClient, handlers: Handlers) -> None:
    handlers.clis.script("claude", sleep=10)
    assert_anthropic_error(app.post(MESSAGES, json=body()), 504, "timeout_error")  # CLINVK_TIMEOUT_SECONDS=1


def test_a_failure_after_the_headers_is_one_error_event(app: TestClient, handlers: Handlers, capture: Capture) -> None:
    handlers.clis.script("codex", stdout="".join(capture("codex-json-error401.txt")), code=1)
    with app.stream("POST", MESSAGES, json=body(model="codex", stream=True)) as response:
        text = response.read().decode()
    assert response.status_code == 200
    first, error = text.split("\n\n")[:-1]
    assert first.startswith("event: message_start\n")
    name, data = error.split("\n")
    assert name == "event: error"
    payload = json.loads(data.removeprefix("data: "))
    assert payload["type"] == "error"
    assert payload["error"]["type"] == "api_error"
    assert "unexpected status 401" in payload["error"]["message"]
    # The SDK raising on it is tested end to end: it stops reading at the event, which the test client
    # answers by cancelling the app, its clean-up included, as no real server does.


def test_a_silent_cli_gets_pings_then_a_timeout_error_event(app: TestClient, handlers: Handlers) -> None:
    handlers.clis.script("claude", sleep=10)
    with app.stream("POST", MESSAGES, json=body(stream=True)) as response:
        events = response.read().decode().split("\n\n")[:-1]
    assert sum(1 for event in events if event.startswith("event: ping\n")) >= 3  # CLINVK_KEEPALIVE_SECONDS=0.1
    assert events[-1].startswith("event: error\n")
    assert '"type":"timeout_error"' in events[-1]


def test_a_missing_backend_is_a_503_overloaded_error_not_worth_a_retry(handlers: Handlers) -> None:
    settings = {"CLINVK_BIN_DIR": str(handlers.bin_dir), "CLINVK_STATE_DIR": str(handlers.state_dir),
                "CLINVK_BACKENDS": "claude"}  # fmt: skip
    with cold_start(settings) as modules, TestClient(modules["handlers.anthropic_messages"].app) as client:
        response = client.post(MESSAGES, json=body(model="gemini"))
        assert "disabled" in assert_anthropic_error(response, 503, "overloaded_error")
        assert response.headers["x-should-retry"] == "false"
