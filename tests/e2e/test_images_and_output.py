"""Images in, structured JSON out, and the settings each CLI honours, end to end with the real CLIs."""

from __future__ import annotations

import base64
import http.server
import json
import struct
import threading
import zlib
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import pytest

from clinvk_core.emulator.cli import fake_upstream_settings
from clinvk_core.testing.emulator import Emulator, emulator_env
from clinvk_core.testing.fake_upstream import (
    FakeUpstream,
    RecordedRequest,
    Script,
    generation_settings,
    received_images,
)

pytestmark = pytest.mark.e2e
BACKENDS = ["claude", "codex", "gemini"]


def png(width: int, height: int) -> bytes:
    """A real PNG of red pixels (a model, or a CLI, may look inside)."""
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


PNG = png(3, 2)
DATA_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()


def look_at(url: str) -> list[Any]:
    image = {"type": "image_url", "image_url": {"url": url, "detail": "low"}}
    return [{"role": "user", "content": [{"type": "text", "text": "What is in this picture?"}, image]}]


@pytest.mark.parametrize("stream", [False, True], ids=["buffered", "streamed"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_data_url_image_reaches_the_upstream_byte_for_byte(
    backend: str, stream: bool, client: openai.OpenAI, fake: FakeUpstream
) -> None:
    fake.set_script(Script(text="A red rectangle."))
    if stream:
        chunks = client.chat.completions.create(model=backend, messages=look_at(DATA_URL), stream=True)
        answer = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        response = client.chat.completions.create(model=backend, messages=look_at(DATA_URL))
        answer = response.choices[0].message.content or ""
    assert answer == "A red rectangle."
    [turn] = fake.model_turns(backend)
    assert received_images(turn) == [("image/png", PNG)]


@pytest.fixture(scope="module")
def image_server() -> Iterator[str]:
    """A loopback HTTP server with one PNG at /red.png (and a text file at /note.txt)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body, kind = (PNG, "image/png") if self.path == "/red.png" else (b"not an image", "text/plain")
            self.send_response(200)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def fetching(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    """An emulator allowed to fetch image URLs from anywhere (CLINVK_IMAGE_URLS=any)."""
    settings = fake_upstream_settings(fake.url) | {"CLINVK_IMAGE_URLS": "any", "CLINVK_TIMEOUT_SECONDS": "60"}
    running = Emulator(emulator_env(tmp_path_factory.mktemp("fetching"), settings))
    yield openai.OpenAI(base_url=running.base_url, api_key="x", max_retries=0, _strict_response_validation=True)
    running.stop()


def test_image_urls_are_refused_by_default(client: openai.OpenAI, image_server: str) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="claude", messages=look_at(f"{image_server}/red.png"))
    assert "CLINVK_IMAGE_URLS" in str(refused.value)


def test_image_urls_are_fetched_when_enabled(fetching: openai.OpenAI, fake: FakeUpstream, image_server: str) -> None:
    fake.set_script(Script(text="Red."))
    response = fetching.chat.completions.create(model="claude", messages=look_at(f"{image_server}/red.png"))
    assert response.choices[0].message.content == "Red."
    assert received_images(fake.model_turns("claude")[0]) == [("image/png", PNG)]
    with pytest.raises(openai.BadRequestError, match="not an image"):
        fetching.chat.completions.create(model="claude", messages=look_at(f"{image_server}/note.txt"))


FORECAST = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"day": {"type": "string"}, "high": {"type": "number"}},
                "required": ["day", "high"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["city", "days"],
    "additionalProperties": False,
}
ANSWER = {"city": "Paris", "days": [{"day": "Mon", "high": 21.5}, {"day": "Tue", "high": 19}]}
JSON_SCHEMA_FORMAT: Any = {
    "type": "json_schema",
    "json_schema": {"name": "forecast", "schema": FORECAST, "strict": True},
}


def schema_sent(request: RecordedRequest) -> Any:
    """The output schema as the CLI passed it upstream (None where it sends none)."""
    body = request.body
    if request.provider == "anthropic":
        return next((t["input_schema"] for t in body.get("tools", []) if t["name"] == "StructuredOutput"), None)
    if request.provider == "openai":
        return body.get("text", {}).get("format", {}).get("schema")
    return body.get("generationConfig", {}).get("responseJsonSchema")


@pytest.mark.parametrize("stream", [False, True], ids=["buffered", "streamed"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_json_schema_answers_validate(backend: str, stream: bool, client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.set_script(Script(text=json.dumps(ANSWER)))
    messages: Any = [{"role": "user", "content": "The forecast for Paris, as JSON."}]
    if stream:
        chunks = client.chat.completions.create(model=backend, messages=messages, response_format=JSON_SCHEMA_FORMAT,
                                                stream=True)  # fmt: skip
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        response = client.chat.completions.create(model=backend, messages=messages, response_format=JSON_SCHEMA_FORMAT)
        content = response.choices[0].message.content or ""
    value = json.loads(content)
    jsonschema.validate(value, FORECAST)
    assert value == ANSWER
    assert schema_sent(fake.model_turns(backend)[0]) == FORECAST  # each CLI sends the schema upstream


@pytest.mark.parametrize("backend", BACKENDS)
def test_json_object_returns_an_object(backend: str, client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.set_script(Script(text='{"ok": true}'))
    response = client.chat.completions.create(model=backend, messages=[{"role": "user", "content": "JSON please"}],
                                              response_format={"type": "json_object"})  # fmt: skip
    assert json.loads(response.choices[0].message.content or "") == {"ok": True}


def test_an_invalid_json_answer_is_corrected_once_then_a_502(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.set_script(Script(text="Sure! It is sunny."))
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(model="gemini", messages=[{"role": "user", "content": "forecast"}],
                                       response_format=JSON_SCHEMA_FORMAT)  # fmt: skip
    assert failed.value.status_code == 502
    assert "does not match the requested JSON schema" in str(failed.value)
    turns = fake.model_turns("gemini")
    assert len(turns) == 2  # the answer, then one corrective turn
    assert "does not match the required JSON schema" in turns[1].text()


def test_codex_refuses_a_strict_schema_it_cannot_hold(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"a": {}}}  # open, and "a" optional: not strict
    loose: Any = {"type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": schema}}
    with pytest.raises(openai.BadRequestError, match="strict schema rules"):
        client.chat.completions.create(
            model="codex", messages=[{"role": "user", "content": "q"}], response_format=loose
        )


@pytest.mark.parametrize("backend", BACKENDS)
def test_settings_reach_the_upstream_where_the_cli_has_them(
    backend: str, client: openai.OpenAI, fake: FakeUpstream
) -> None:
    fake.set_script(Script(text="ok"))
    client.chat.completions.create(model=backend, messages=[{"role": "user", "content": "q"}], max_tokens=321,
                                   temperature=0.25, top_p=0.5, reasoning_effort="high")  # fmt: skip
    sent = generation_settings(fake.model_turns(backend)[0])
    expected = {
        "claude": {"max_tokens": 321, "temperature": None, "top_p": None, "effort": "high"},
        "codex": {"max_tokens": None, "temperature": None, "top_p": None, "effort": "high"},
        "gemini": {"max_tokens": 321, "temperature": 0.25, "top_p": 0.5, "effort": None},
    }
    assert sent == expected[backend]


@pytest.mark.parametrize("backend", ["claude", "codex"])
def test_a_cut_answer_finishes_with_length(backend: str, client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.set_script(Script(text="cut short", finish="length"))
    response = client.chat.completions.create(model=backend, messages=[{"role": "user", "content": "q"}], max_tokens=5)
    assert (response.choices[0].finish_reason, response.choices[0].message.content) == ("length", "cut short")
    assert len(fake.model_turns(backend)) == 1  # claude does not ask the model to go on


@pytest.mark.parametrize("backend", ["claude", "codex"])
def test_reasoning_only_when_asked_and_never_in_the_content(
    backend: str, client: openai.OpenAI, fake: FakeUpstream
) -> None:
    fake.set_script(Script(text="42.", reasoning="Six times seven."))
    plain = client.chat.completions.create(model=backend, messages=[{"role": "user", "content": "6*7?"}])
    assert plain.choices[0].message.content == "42."
    assert "reasoning_content" not in (plain.choices[0].message.model_extra or {})
    chunks = list(client.chat.completions.create(model=backend, messages=[{"role": "user", "content": "6*7?"}],
                                                 stream=True, extra_body={"include_reasoning": True}))  # fmt: skip
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = "".join((d.model_extra or {}).get("reasoning_content", "") for d in deltas)
    assert reasoning == "Six times seven."
    assert "".join(d.content or "" for d in deltas) == "42."


def test_n_choices_are_n_runs(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.set_script(Script(text="pong"))
    response = client.chat.completions.create(model="codex", messages=[{"role": "user", "content": "ping"}], n=2)
    assert [(c.index, c.message.content) for c in response.choices] == [(0, "pong"), (1, "pong")]
    assert len(fake.model_turns("codex")) == 2
    assert response.usage is not None
    assert response.usage.prompt_tokens == 20  # both runs counted


def test_logprobs_are_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="logprobs"):
        client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "q"}], logprobs=True)
