"""Unit tests of the fake upstream over plain HTTP (no CLI involved)."""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clinvk_core.testing.fake_upstream import (
    HELPER_USAGE,
    RETRY_AFTER_SECONDS,
    FakeUpstream,
    RecordedRequest,
    Script,
    ToolCall,
    Usage,
    shell_call,
    tool_result,
)

ROOT = Path(__file__).resolve().parents[2]

ANTHROPIC = "/v1/messages?beta=true"
RESPONSES = "/v1/responses"
GEMINI_STREAM = "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
GEMINI_JSON = "/v1beta/models/gemini-2.5-pro:generateContent"


def anthropic_body(prompt: str = "hi", stream: bool = True) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "stream": stream,
        "system": [{"type": "text", "text": "SYS"}],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "<ctx/>"}, {"type": "text", "text": prompt}],
            },
            {"role": "system", "content": [{"type": "text", "text": "env"}]},
        ],
    }


def responses_body(prompt: str = "hi", stream: bool = True) -> dict[str, Any]:
    return {
        "model": "gpt-5.5",
        "stream": stream,
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "dev"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<env/>"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": prompt}]},
        ],
    }


def gemini_body(prompt: str = "hi") -> dict[str, Any]:
    return {
        "contents": [{"role": "user", "parts": [{"text": "<session_context/>"}, {"text": prompt}]}],
        "systemInstruction": {"role": "user", "parts": [{"text": "SYS"}]},
    }


ROUTER_BODY: dict[str, Any] = {
    "contents": [{"role": "user", "parts": [{"text": "say pong"}]}],
    "generationConfig": {
        "responseMimeType": "application/json",
        "responseJsonSchema": {
            "type": "OBJECT",
            "properties": {
                "complexity_reasoning": {"type": "STRING"},
                "complexity_score": {"type": "INTEGER"},
            },
            "required": ["complexity_reasoning", "complexity_score"],
        },
    },
}


def parse_sse(text: str) -> list[tuple[str | None, dict[str, Any]]]:
    """(event name, data) for each SSE event of a body."""
    events: list[tuple[str | None, dict[str, Any]]] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name: str | None = None
        data = ""
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data += line.split(":", 1)[1].strip()
        if data:
            events.append((name, json.loads(data)))
    return events


@pytest.fixture(scope="module")
def server() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeUpstream) -> FakeUpstream:
    server.reset()
    return server


@pytest.fixture
def client(fake: FakeUpstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, timeout=10) as c:
        yield c


# ---- lifecycle ---------------------------------------------------------------------------------


def test_start_picks_free_port_and_stop_releases_it() -> None:
    fake = FakeUpstream().start()
    try:
        assert fake.port != 0
        assert fake.url == f"http://127.0.0.1:{fake.port}"
        assert httpx.get(fake.url + "/_fake/requests").json() == []
    finally:
        fake.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(fake.url + "/_fake/requests", timeout=2)


def test_two_instances_are_independent() -> None:
    with FakeUpstream() as a, FakeUpstream() as b:
        a.set_script(Script(text="from a"))
        assert a.port != b.port
        ra = httpx.post(a.url + ANTHROPIC, json=anthropic_body(stream=False))
        rb = httpx.post(b.url + ANTHROPIC, json=anthropic_body(stream=False))
        assert ra.json()["content"][0]["text"] == "from a"
        assert rb.json()["content"][0]["text"] == "pong from fake"
        assert len(a.requests) == len(b.requests) == 1


# ---- Anthropic Messages --------------------------------------------------------------------------


def test_anthropic_stream_events_and_usage(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.set_script(Script(usage=Usage(input_tokens=100, cached_tokens=40, output_tokens=7)))
    r = client.post(ANTHROPIC, json=anthropic_body())
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["request-id"].startswith("req_fake_")
    events = parse_sse(r.text)
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(name == data["type"] for name, data in events)
    start = events[0][1]["message"]
    assert start["model"] == "claude-sonnet-4-5"
    assert start["usage"] == {
        "input_tokens": 60,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 40,
        "output_tokens": 1,
    }
    deltas = [d["delta"]["text"] for n, d in events if n == "content_block_delta"]
    assert deltas == ["pong ", "from ", "fake"]
    assert events[7][1]["delta"]["stop_reason"] == "end_turn"
    assert events[7][1]["usage"] == {"output_tokens": 7}


def test_anthropic_json_when_not_streaming(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.set_script(Script(text="hello there", usage=Usage(20, 5, 3)))
    r = client.post("/v1/messages", json=anthropic_body(stream=False))
    body = r.json()
    assert body["type"] == "message"
    assert body["role"] == "assistant"
    assert body["content"] == [{"type": "text", "text": "hello there"}]
    assert body["stop_reason"] == "end_turn"
    assert body["usage"] == {
        "input_tokens": 15,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 5,
        "output_tokens": 3,
    }


# ---- OpenAI Responses ----------------------------------------------------------------------------


def test_responses_stream_events_and_usage(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.set_script(Script(usage=Usage(input_tokens=100, cached_tokens=40, output_tokens=7)))
    r = client.post(RESPONSES, json=responses_body())
    assert r.status_code == 200
    events = parse_sse(r.text)
    names = [name for name, _ in events]
    assert names == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    assert all(name == data["type"] for name, data in events)
    assert "".join(d["delta"] for n, d in events if n == "response.output_text.delta") == "pong from fake"
    item = events[9][1]["item"]
    assert item["type"] == "message"
    assert item["role"] == "assistant"
    assert item["content"][0]["text"] == "pong from fake"
    completed = events[-1][1]["response"]
    assert completed["status"] == "completed"
    assert completed["model"] == "gpt-5.5"
    assert completed["output"] == [item]
    assert completed["usage"] == {
        "input_tokens": 100,
        "input_tokens_details": {"cached_tokens": 40},
        "output_tokens": 7,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 107,
    }


def test_responses_json_when_not_streaming(client: httpx.Client) -> None:
    body = client.post(RESPONSES, json=responses_body(stream=False)).json()
    assert body["object"] == "response"
    assert body["status"] == "completed"
    assert body["output"][0]["content"][0]["text"] == "pong from fake"
    assert body["usage"]["input_tokens"] == 10
    assert body["usage"]["output_tokens"] == 5


# ---- Gemini ---------------------------------------------------------------------------------------


def test_gemini_stream_chunks(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.set_script(Script(usage=Usage(input_tokens=100, cached_tokens=40, output_tokens=7)))
    r = client.post(GEMINI_STREAM, json=gemini_body())
    assert r.status_code == 200
    events = parse_sse(r.text)
    assert all(name is None for name, _ in events)
    chunks = [d for _, d in events]
    assert [c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks] == ["pong ", "from ", "fake"]
    assert all(c["candidates"][0]["content"]["role"] == "model" for c in chunks)
    assert [c["candidates"][0].get("finishReason") for c in chunks] == [None, None, "STOP"]
    assert chunks[-1]["usageMetadata"] == {
        "promptTokenCount": 100,
        "candidatesTokenCount": 7,
        "totalTokenCount": 107,
        "cachedContentTokenCount": 40,
    }
    assert chunks[-1]["modelVersion"] == "gemini-2.5-pro"


def test_gemini_generate_content_json(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.set_script(Script(text="whole answer"))
    body = client.post(GEMINI_JSON, json=gemini_body()).json()
    candidate = body["candidates"][0]
    assert candidate["content"]["parts"] == [{"text": "whole answer"}]
    assert candidate["finishReason"] == "STOP"
    assert body["usageMetadata"]["promptTokenCount"] == 10


def test_gemini_empty_text_still_finishes(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.set_script(Script(text=""))
    chunks = [d for _, d in parse_sse(client.post(GEMINI_STREAM, json=gemini_body()).text)]
    assert len(chunks) == 1
    assert chunks[0]["candidates"][0]["finishReason"] == "STOP"


def test_gemini_router_call_is_exempt_and_recorded(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.set_script(Script(status=500, text="not json"))
    r = client.post("/v1beta/models/gemini-3.5-flash-lite:generateContent", json=ROUTER_BODY)
    assert r.status_code == 200
    body = r.json()
    answer = json.loads(body["candidates"][0]["content"]["parts"][0]["text"])
    assert set(answer) == {"complexity_reasoning", "complexity_score"}
    assert 1 <= answer["complexity_score"] <= 100
    assert body["usageMetadata"]["promptTokenCount"] == HELPER_USAGE.input_tokens
    (recorded,) = fake.requests
    assert recorded.provider == "gemini"
    assert recorded.path == "/v1beta/models/gemini-3.5-flash-lite:generateContent"
    assert "complexity_score" in recorded.text()


def test_gemini_next_speaker_check_says_user(client: httpx.Client) -> None:
    schema = {
        "type": "object",
        "properties": {
            "reasoning": {"type": "string"},
            "next_speaker": {"type": "string", "enum": ["user", "model"]},
        },
    }
    body = {**gemini_body(), "generationConfig": {"responseJsonSchema": schema}}
    text = client.post(GEMINI_JSON, json=body).json()["candidates"][0]["content"]["parts"][0]["text"]
    assert json.loads(text)["next_speaker"] == "user"


def test_gemini_count_tokens(client: httpx.Client) -> None:
    r = client.post("/v1beta/models/gemini-2.5-pro:countTokens", json=gemini_body())
    assert r.status_code == 200
    assert r.json()["totalTokens"] > 0


# ---- chunking, delays, echo -------------------------------------------------------------------------


def test_explicit_chunks_win_over_text(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.set_script(Script(text="ignored", chunks=["a", "b c", " d"]))
    events = parse_sse(client.post(ANTHROPIC, json=anthropic_body()).text)
    assert [d["delta"]["text"] for n, d in events if n == "content_block_delta"] == ["a", "b c", " d"]


def test_default_chunking_keeps_whitespace(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.set_script(Script(text="  one two\nthree  "))
    events = parse_sse(client.post(RESPONSES, json=responses_body()).text)
    deltas = [d["delta"] for n, d in events if n == "response.output_text.delta"]
    assert deltas == ["  one ", "two\n", "three  "]


@pytest.mark.parametrize(
    ("path", "body"),
    [(ANTHROPIC, anthropic_body()), (RESPONSES, responses_body()), (GEMINI_STREAM, gemini_body())],
    ids=["anthropic", "openai", "gemini"],
)
def test_chunk_delay_spreads_arrivals(fake: FakeUpstream, path: str, body: dict[str, Any]) -> None:
    fake.set_script(Script(chunks=["a ", "b ", "c"], chunk_delay=0.2))
    arrivals: list[float] = []
    t0 = time.monotonic()
    with httpx.stream("POST", fake.url + path, json=body, timeout=10) as r:
        for line in r.iter_lines():
            if '"a "' in line or '"b "' in line or '"c"' in line:
                arrivals.append(time.monotonic() - t0)
    deltas = arrivals[:3]  # later lines (done/completed events) repeat the text
    assert len(deltas) == 3
    assert deltas[1] - deltas[0] >= 0.15
    assert deltas[2] - deltas[1] >= 0.15


def streamed_text(text: str) -> str:
    """The reply text carried by the deltas of any of the three providers' SSE streams."""
    parts: list[str] = []
    for _, data in parse_sse(text):
        if data.get("type") == "content_block_delta":
            parts.append(data["delta"]["text"])
        elif data.get("type") == "response.output_text.delta":
            parts.append(data["delta"])
        elif "candidates" in data:
            parts.append(data["candidates"][0]["content"]["parts"][0]["text"])
    return "".join(parts)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (ANTHROPIC, anthropic_body("who am i")),
        (RESPONSES, responses_body("who am i")),
        (GEMINI_STREAM, gemini_body("who am i")),
    ],
    ids=["anthropic", "openai", "gemini"],
)
def test_echo_appends_last_user_text(fake: FakeUpstream, client: httpx.Client, path: str, body: Any) -> None:
    fake.set_script(Script(text="heard:", echo=True))
    assert streamed_text(client.post(path, json=body).text) == "heard: who am i"
    fake.set_script(Script(chunks=["x", "y"], echo=True))
    assert streamed_text(client.post(path, json=body).text) == "xy who am i"


def test_echo_with_string_content_and_input() -> None:
    with FakeUpstream() as fake:
        fake.set_script(Script(text="e", echo=True))
        r = httpx.post(fake.url + "/v1/messages", json={"messages": [{"role": "user", "content": "plain"}]})
        assert r.json()["content"][0]["text"] == "e plain"
        r = httpx.post(fake.url + RESPONSES, json={"input": "raw input"})
        assert r.json()["output"][0]["content"][0]["text"] == "e raw input"


def test_concurrent_echo_has_no_cross_talk(fake: FakeUpstream) -> None:
    fake.set_script(Script(text="re", echo=True, chunk_delay=0.05))
    results: dict[int, str] = {}

    def worker(i: int) -> None:
        r = httpx.post(fake.url + "/v1/messages", json=anthropic_body(f"prompt-{i}", stream=False), timeout=10)
        results[i] = r.json()["content"][0]["text"]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {i: f"re prompt-{i}" for i in range(12)}
    assert len(fake.requests) == 12


# ---- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "message"),
    [
        (401, "authentication_error", "fake: invalid api key"),
        (403, "permission_error", "fake: permission denied"),
        (429, "rate_limit_error", "fake: rate limited"),
        (500, "api_error", "fake internal server error"),
        (503, "api_error", "fake: service unavailable"),
        (529, "overloaded_error", "fake: overloaded"),
    ],
)
def test_anthropic_errors(fake: FakeUpstream, client: httpx.Client, status: int, kind: str, message: str) -> None:
    fake.set_script(Script(status=status))
    r = client.post(ANTHROPIC, json=anthropic_body())
    assert r.status_code == status
    body = r.json()
    assert body["type"] == "error"
    assert body["error"] == {"type": kind, "message": message}
    assert body["request_id"] == r.headers["request-id"]
    assert (r.headers.get("retry-after") == str(RETRY_AFTER_SECONDS)) == (status == 429)


@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [
        (401, "invalid_request_error", "invalid_api_key"),
        (403, "permission_error", "unsupported_country_region_territory"),
        (429, "requests", "rate_limit_exceeded"),
        (500, "server_error", None),
        (503, "server_error", None),
    ],
)
def test_responses_errors(fake: FakeUpstream, client: httpx.Client, status: int, kind: str, code: str | None) -> None:
    fake.set_script(Script(status=status))
    r = client.post(RESPONSES, json=responses_body())
    assert r.status_code == status
    error = r.json()["error"]
    assert error["type"] == kind
    assert error["code"] == code
    assert error["message"].startswith("fake")
    assert (r.headers.get("retry-after") == str(RETRY_AFTER_SECONDS)) == (status == 429)


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (401, "UNAUTHENTICATED"),
        (403, "PERMISSION_DENIED"),
        (429, "RESOURCE_EXHAUSTED"),
        (500, "INTERNAL"),
        (503, "UNAVAILABLE"),
    ],
)
def test_gemini_errors(fake: FakeUpstream, client: httpx.Client, status: int, state: str) -> None:
    fake.set_script(Script(status=status))
    for path in (GEMINI_STREAM, GEMINI_JSON):
        r = client.post(path, json=gemini_body())
        assert r.status_code == status
        error = r.json()["error"]
        assert error["code"] == status
        assert error["status"] == state
        if status == 429:
            assert r.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
            assert error["details"][0]["retryDelay"] == f"{RETRY_AFTER_SECONDS}s"


def test_error_message_override(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.set_script(Script(status=500, error_message="custom boom"))
    assert client.post(ANTHROPIC, json={}).json()["error"]["message"] == "custom boom"
    assert client.post(RESPONSES, json={}).json()["error"]["message"] == "custom boom"
    assert client.post(GEMINI_STREAM, json={}).json()["error"]["message"] == "custom boom"


def test_failed_requests_are_recorded(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.set_script(Script(status=401))
    client.post(ANTHROPIC, json=anthropic_body("secret prompt"))
    (recorded,) = fake.requests
    assert recorded.provider == "anthropic"
    assert "secret prompt" in recorded.text()


# ---- hang ------------------------------------------------------------------------------------------


def test_hang_never_answers_and_stop_is_fast() -> None:
    fake = FakeUpstream().start()
    fake.set_script(Script(hang=True))
    outcome: list[object] = []

    def call() -> None:
        try:
            outcome.append(httpx.post(fake.url + ANTHROPIC, json=anthropic_body(), timeout=30).status_code)
        except httpx.HTTPError as exc:
            outcome.append(exc)

    callers = [threading.Thread(target=call, daemon=True) for _ in range(3)]
    for t in callers:
        t.start()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(fake.url + GEMINI_STREAM, json=gemini_body(), timeout=0.5)
    assert outcome == []
    assert len(fake.requests) == 4
    t0 = time.monotonic()
    fake.stop()
    assert time.monotonic() - t0 < 2
    for t in callers:
        t.join(5)
    assert len(outcome) == 3  # released at shutdown (503 or connection closed), never a reply


def test_hang_releases_when_client_goes_away(fake: FakeUpstream) -> None:
    fake.set_script(Script(hang=True))
    for _ in range(3):
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(fake.url + RESPONSES, json=responses_body(), timeout=0.3)
    # White-box: the hanging handlers ended with their connections (none left in the server).
    server = fake._server
    assert server is not None
    deadline = time.monotonic() + 2
    while server.server_state.tasks and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not server.server_state.tasks
    fake.set_script(Script())
    assert httpx.post(fake.url + RESPONSES, json=responses_body(stream=False), timeout=5).status_code == 200


# ---- unknown paths, recording, control API -----------------------------------------------------------


def test_unknown_path_is_404_json_and_recorded(fake: FakeUpstream, client: httpx.Client) -> None:
    r = client.head("/api/hello")
    assert r.status_code == 404
    r = client.get("/v1/models")
    assert r.status_code == 404
    assert "no route for GET /v1/models" in r.json()["error"]["message"]
    r = client.post("/v1beta/models/gemini-2.5-pro:embedContent", json={})
    assert r.status_code == 404
    assert [(q.provider, q.method, q.path) for q in fake.requests] == [
        ("unknown", "HEAD", "/api/hello"),
        ("unknown", "GET", "/v1/models"),
        ("unknown", "POST", "/v1beta/models/gemini-2.5-pro:embedContent"),
    ]


def test_recorded_request_fields(fake: FakeUpstream, client: httpx.Client) -> None:
    client.post(ANTHROPIC, json=anthropic_body("look for me"), headers={"X-Api-Key": "sk-ant-fake"})
    (recorded,) = fake.requests
    assert isinstance(recorded, RecordedRequest)
    assert (recorded.provider, recorded.method, recorded.path, recorded.query) == (
        "anthropic",
        "POST",
        "/v1/messages",
        "beta=true",
    )
    assert recorded.headers["x-api-key"] == "sk-ant-fake"
    assert recorded.body["messages"][0]["content"][1]["text"] == "look for me"
    assert "look for me" in recorded.text()
    json.loads(recorded.text())


def test_non_json_and_gzip_bodies(fake: FakeUpstream, client: httpx.Client) -> None:
    client.post(RESPONSES, content=b"not json at all")
    packed = gzip.compress(json.dumps(responses_body("zipped")).encode())
    client.post(RESPONSES, content=packed, headers={"content-encoding": "gzip", "content-type": "application/json"})
    raw, zipped = fake.requests
    assert raw.body == "not json at all"
    assert raw.text() == "not json at all"
    assert zipped.body["input"][-1]["content"][0]["text"] == "zipped"


def test_clear_and_reset(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.set_script(Script(text="custom"))
    client.post(ANTHROPIC, json=anthropic_body())
    fake.clear()
    assert fake.requests == []
    assert fake.script.text == "custom"
    fake.reset()
    assert fake.script == Script()


def test_set_script_keeps_a_copy(fake: FakeUpstream, client: httpx.Client) -> None:
    script = Script(text="first")
    fake.set_script(script)
    script.text = "mutated later"
    assert client.post("/v1/messages", json=anthropic_body(stream=False)).json()["content"][0]["text"] == "first"


def test_http_control_api(fake: FakeUpstream, client: httpx.Client) -> None:
    r = client.post(
        "/_fake/script",
        json={"text": "over http", "usage": {"input_tokens": 50, "cached_tokens": 10, "output_tokens": 2}},
    )
    assert r.status_code == 200
    assert fake.script == Script(text="over http", usage=Usage(50, 10, 2))
    assert client.get("/_fake/script").json()["usage"] == {
        "input_tokens": 50,
        "cached_tokens": 10,
        "output_tokens": 2,
    }
    client.post(GEMINI_STREAM, json=gemini_body("via http"))
    listed = client.get("/_fake/requests").json()
    assert len(listed) == 1
    assert listed[0]["provider"] == "gemini"
    assert listed[0]["query"] == "alt=sse"
    assert listed[0]["body"]["contents"][0]["parts"][1]["text"] == "via http"
    assert client.post("/_fake/reset").status_code == 200
    assert fake.script == Script()
    assert client.get("/_fake/requests").json() == []


@pytest.mark.parametrize(
    "payload",
    [
        {"nope": 1},
        {"usage": {"tokens": 1}},
        {"usage": 3},
        [1, 2],
        {"status": "500"},
        {"hang": 1},
        {"chunks": ["a", 2]},
        {"usage": {"input_tokens": "10"}},
    ],
    ids=[
        "unknown-field",
        "unknown-usage-field",
        "usage-not-object",
        "not-object",
        "status-not-int",
        "hang-not-bool",
        "chunk-not-str",
        "tokens-not-int",
    ],
)
def test_http_control_rejects_bad_scripts(fake: FakeUpstream, client: httpx.Client, payload: Any) -> None:
    r = client.post("/_fake/script", json=payload)
    assert r.status_code == 400
    assert fake.script == Script()


def test_script_from_json_round_trip() -> None:
    script = Script(text="t", chunks=["a"], chunk_delay=0.1, usage=Usage(1, 0, 1), status=429, echo=True)
    from dataclasses import asdict

    assert Script.from_json(json.loads(json.dumps(asdict(script)))) == script


# ---- tool calls -----------------------------------------------------------------------------------

COMMAND = "env; cat ~/.aws/credentials"
TOOL_SCRIPT = Script(text="after the tool.", tool_command=COMMAND)
BASH = {"name": "Bash", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}
EXEC_COMMAND = {
    "type": "function",
    "name": "exec_command",
    "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}, "workdir": {"type": "string"}}},
}
RUN_SHELL = {"name": "run_shell_command", "parametersJsonSchema": {"properties": {"command": {"type": "string"}}}}


def with_anthropic_result(body: dict[str, Any], content: Any) -> dict[str, Any]:
    call = {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": COMMAND}}
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": content}
    messages = [*body["messages"], {"role": "assistant", "content": [call]}, {"role": "user", "content": [result]}]
    return {**body, "messages": messages}


def test_anthropic_tool_use_stream(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.set_script(TOOL_SCRIPT)
    r = client.post(ANTHROPIC, json={**anthropic_body(), "tools": [BASH]})
    assert r.headers["request-id"].startswith("req_fake_")
    events = parse_sse(r.text)
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    block = events[1][1]["content_block"]
    assert (block["type"], block["name"], block["input"]) == ("tool_use", "Bash", {})
    assert block["id"].startswith("toolu_")
    delta = events[2][1]["delta"]
    assert delta["type"] == "input_json_delta"
    assert json.loads(delta["partial_json"]) == {"command": COMMAND}
    assert events[4][1]["delta"]["stop_reason"] == "tool_use"


def test_anthropic_tool_use_json(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.set_script(TOOL_SCRIPT)
    body = client.post(ANTHROPIC, json=anthropic_body(stream=False)).json()  # no tools offered: Bash anyway
    [block] = body["content"]
    assert (block["type"], block["name"], block["input"]) == ("tool_use", "Bash", {"command": COMMAND})
    assert body["stop_reason"] == "tool_use"


@pytest.mark.parametrize(
    "content",
    ["total 0\nHOME=/x", [{"type": "text", "text": "total 0"}, {"type": "text", "text": "HOME=/x"}]],
    ids=["string", "blocks"],
)
def test_anthropic_tool_result_gets_the_text_and_echo(fake: FakeUpstream, client: httpx.Client, content: Any) -> None:
    fake.set_script(Script(text="after the tool.", tool_command=COMMAND, tool_echo=True))
    r = client.post(ANTHROPIC, json=with_anthropic_result(anthropic_body(stream=False), content))
    assert r.json()["content"] == [{"type": "text", "text": "after the tool.\ntotal 0\nHOME=/x"}]


def test_responses_function_call_stream(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.set_script(TOOL_SCRIPT)
    events = parse_sse(client.post(RESPONSES, json={**responses_body(), "tools": [EXEC_COMMAND]}).text)
    assert [name for name, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    item = events[5][1]["item"]
    assert (item["type"], item["name"], item["status"]) == ("function_call", "exec_command", "completed")
    assert json.loads(item["arguments"]) == {"cmd": COMMAND}
    assert item["call_id"].startswith("call_")
    assert events[2][1]["item"]["call_id"] == item["call_id"]
    assert events[-1][1]["response"]["output"] == [item]


def test_responses_function_output_gets_the_text_and_echo(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.set_script(Script(text="after the tool.", tool_command=COMMAND, tool_echo=True))
    call = {"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": "{}"}
    output = {"type": "function_call_output", "call_id": "c1", "output": "unsupported call: exec_command"}
    body = responses_body(stream=False)
    body["input"] += [call, output]
    answer = client.post(RESPONSES, json=body).json()["output"][0]
    assert answer["type"] == "message"
    assert answer["content"][0]["text"] == "after the tool.\nunsupported call: exec_command"


def test_gemini_function_call_stream(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.set_script(TOOL_SCRIPT)
    body = {**gemini_body(), "tools": [{"functionDeclarations": [RUN_SHELL]}]}
    [chunk] = [d for _, d in parse_sse(client.post(GEMINI_STREAM, json=body).text)]
    candidate = chunk["candidates"][0]
    assert candidate["content"]["parts"] == [
        {"functionCall": {"name": "run_shell_command", "args": {"command": COMMAND}}}
    ]
    assert candidate["finishReason"] == "STOP"
    assert chunk["usageMetadata"]["promptTokenCount"] == Usage().input_tokens


@pytest.mark.parametrize(
    ("response", "echoed"),
    [({"output": "HOME=/x"}, "HOME=/x"), ({"error": "Tool not found."}, '{"error": "Tool not found."}')],
    ids=["output", "error"],
)
def test_gemini_function_response_gets_the_text_and_echo(
    fake: FakeUpstream, client: httpx.Client, response: dict[str, str], echoed: str
) -> None:
    fake.set_script(Script(text="after the tool.", tool_command=COMMAND, tool_echo=True))
    body = gemini_body()
    body["contents"] += [
        {"role": "model", "parts": [{"functionCall": {"name": "run_shell_command", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "run_shell_command", "response": response}}]},
    ]
    answer = client.post(GEMINI_JSON, json=body).json()["candidates"][0]["content"]["parts"]
    assert answer == [{"text": f"after the tool.\n{echoed}"}]


def test_gemini_helper_calls_stay_exempt_from_tool_calls(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.set_script(TOOL_SCRIPT)
    r = client.post("/v1beta/models/gemini-3.5-flash-lite:generateContent", json=ROUTER_BODY)
    assert "functionCall" not in r.text
    assert set(json.loads(r.json()["candidates"][0]["content"]["parts"][0]["text"])) == {
        "complexity_reasoning",
        "complexity_score",
    }


@pytest.mark.parametrize(
    ("provider", "tools", "expected"),
    [
        ("anthropic", [BASH], ToolCall("Bash", {"command": COMMAND})),
        ("anthropic", [], ToolCall("Bash", {"command": COMMAND})),
        ("openai", [EXEC_COMMAND], ToolCall("exec_command", {"cmd": COMMAND})),
        ("openai", [], ToolCall("exec_command", {"cmd": COMMAND})),
        (
            "openai",
            [{"type": "function", "name": "shell", "parameters": {"properties": {"command": {"type": "array"}}}}],
            ToolCall("shell", {"command": ["bash", "-lc", COMMAND]}),
        ),
        (
            "openai",
            [{"type": "function", "name": "shell_command", "parameters": {"properties": {"command": {}}}}],
            ToolCall("shell_command", {"command": COMMAND}),
        ),
        ("gemini", [{"functionDeclarations": [RUN_SHELL]}], ToolCall("run_shell_command", {"command": COMMAND})),
        ("gemini", [{"functionDeclarations": []}], ToolCall("run_shell_command", {"command": COMMAND})),
    ],
    ids=["bash", "no-bash", "exec", "no-exec", "shell-array", "shell-command", "gemini", "gemini-none"],
)
def test_shell_call_follows_the_offered_schema(provider: str, tools: list[Any], expected: ToolCall) -> None:
    assert shell_call(provider, {"tools": tools}, COMMAND) == expected


def test_tool_result_is_none_without_one() -> None:
    assert tool_result("anthropic", anthropic_body()) is None
    assert tool_result("openai", responses_body()) is None
    assert tool_result("gemini", gemini_body()) is None
    assert tool_result("gemini", "not json") is None


def test_tool_script_over_http_and_its_validation(fake: FakeUpstream, client: httpx.Client) -> None:
    assert client.post("/_fake/script", json={"tool_command": COMMAND, "tool_echo": True}).status_code == 200
    assert fake.script == Script(tool_command=COMMAND, tool_echo=True)
    assert client.post("/_fake/script", json={"tool_command": 1}).status_code == 400
    assert client.post("/_fake/script", json={"tool_echo": "yes"}).status_code == 400
    assert fake.script == Script(tool_command=COMMAND, tool_echo=True)


# ---- module entry point ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_main_runs_in_foreground_until_signal(sig: signal.Signals) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [
        sys.executable,
        "-m",
        "clinvk_core.testing.fake_upstream",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert f"http://127.0.0.1:{port}" in proc.stdout.readline()
        url = f"http://127.0.0.1:{port}"
        httpx.post(url + "/_fake/script", json={"hang": True})
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url + ANTHROPIC, json=anthropic_body(), timeout=0.3)
        t0 = time.monotonic()
        proc.send_signal(sig)
        assert proc.wait(timeout=5) == 0
        assert time.monotonic() - t0 < 3
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
