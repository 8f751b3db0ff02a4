"""The Responses API end to end: the OpenAI SDK (strict) -> emulator -> each real CLI -> the fake upstream.

Buffered and streamed answers, exact usage, instructions as the system prompt, a conversation of three
turns through previous_response_id, a function tool's round trip, a JSON Schema answer, an image; the store's
routes, store false, and another API key's ids.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import openai
import pytest
from openai.types.responses import (
    FunctionToolParam,
    ResponseInputImageParam,
    ResponseInputMessageContentListParam,
    ResponseInputParam,
)
from openai.types.responses.response_input_param import FunctionCallOutput

from clinvk_core.emulator.cli import fake_upstream_settings
from clinvk_core.testing.emulator import Emulator, emulator_env
from clinvk_core.testing.fake_upstream import FakeUpstream, Script, ScriptedCall, Usage, received_images

BACKENDS = ["claude", "codex", "gemini"]
WEATHER: FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": False,
}
# A 1x1 PNG, as a client would send a screenshot.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("backend", BACKENDS)
def test_three_turns_buffered_and_streamed_with_exact_usage(
    backend: str, client: openai.OpenAI, fake: FakeUpstream
) -> None:
    fake.set_script(Script(text="The answer is 42.", usage=Usage(input_tokens=123, cached_tokens=23, output_tokens=7)))
    first = client.responses.create(model=backend, instructions="INSTRUCTIONS-MARKER", input="FIRST-QUESTION")
    assert (first.status, first.output_text, first.model, first.instructions) == (
        "completed", "The answer is 42.", backend, "INSTRUCTIONS-MARKER")  # fmt: skip
    assert first.id.startswith("resp_")
    assert first.usage is not None
    assert (first.usage.input_tokens, first.usage.output_tokens, first.usage.total_tokens) == (123, 7, 130)
    assert first.usage.input_tokens_details.cached_tokens == 23
    assert any("INSTRUCTIONS-MARKER" in r.text() for r in fake.requests_of(backend))

    fake.set_script(Script(chunks=["one ", "two ", "three"], usage=Usage(input_tokens=50, output_tokens=3)))
    with client.responses.stream(model=backend, input="SECOND-QUESTION", previous_response_id=first.id) as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        second = stream.get_final_response()
    assert "".join(deltas) == second.output_text == "one two three"
    if backend != "codex":  # codex delivers each message whole
        assert len(deltas) == 3
    assert second.usage is not None
    assert (second.usage.input_tokens, second.usage.output_tokens) == (50, 3)
    assert second.previous_response_id == first.id

    fake.clear()
    fake.set_script(Script(text="Third answer."))
    third = client.responses.create(model=backend, input="THIRD-QUESTION", previous_response_id=second.id)
    assert third.output_text == "Third answer."
    [sent] = [r.text() for r in fake.requests_of(backend) if "THIRD-QUESTION" in r.text()]
    for earlier in ("FIRST-QUESTION", "The answer is 42.", "SECOND-QUESTION", "one two three"):
        assert earlier in sent  # the fake saw the earlier turns
    assert "INSTRUCTIONS-MARKER" not in sent  # instructions are not carried over, as in OpenAI's API

    assert client.responses.retrieve(third.id).output_text == "Third answer."
    [item] = client.responses.input_items.list(third.id).data
    assert item.type == "message"
    assert item.content[0].type == "input_text"
    assert item.content[0].text == "THIRD-QUESTION"
    client.responses.delete(third.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(third.id)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_function_tool_round_trip(backend: str, client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.set_script(Script(text="It is 22C in Paris.", tool_calls=[ScriptedCall("get_weather", {"city": "Paris"})]))
    asked = client.responses.create(model=backend, input="What is the weather in Paris?", tools=[WEATHER])
    [call] = [item for item in asked.output if item.type == "function_call"]
    assert (call.name, json.loads(call.arguments), call.status) == ("get_weather", {"city": "Paris"}, "completed")
    assert asked.status == "completed"
    output: FunctionCallOutput = {"type": "function_call_output", "call_id": call.call_id, "output": "TOOL-RESULT-22C"}
    answered = client.responses.create(model=backend, input=[output], previous_response_id=asked.id, tools=[WEATHER])
    assert answered.output_text == "It is 22C in Paris."
    assert any("TOOL-RESULT-22C" in r.text() for r in fake.requests_of(backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_json_schema_answer(backend: str, client: openai.OpenAI, fake: FakeUpstream) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "temperature_c": {"type": "integer"}},
              "required": ["city", "temperature_c"], "additionalProperties": False}  # fmt: skip
    fake.set_script(Script(text='{"city": "Paris", "temperature_c": 22}'))
    response = client.responses.create(
        model=backend,
        input="The weather in Paris, as JSON.",
        text={"format": {"type": "json_schema", "name": "weather", "schema": schema, "strict": True}},
    )
    answer = json.loads(response.output_text)
    jsonschema.validate(answer, schema)
    assert answer == {"city": "Paris", "temperature_c": 22}
    assert any("temperature_c" in r.text() for r in fake.requests_of(backend))  # the schema reached the model


@pytest.mark.parametrize("stream", [False, True], ids=["buffered", "streamed"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_an_input_image_reaches_the_upstream_byte_for_byte(
    backend: str, stream: bool, client: openai.OpenAI, fake: FakeUpstream
) -> None:
    fake.set_script(Script(text="A red pixel."))
    image: ResponseInputImageParam = {"type": "input_image", "image_url": PNG_URL, "detail": "auto"}
    content: ResponseInputMessageContentListParam = [{"type": "input_text", "text": "What is this?"}, image]
    question: ResponseInputParam = [{"role": "user", "content": content}]
    if stream:
        with client.responses.stream(model=backend, input=question) as events:
            answer = events.get_final_response().output_text
    else:
        answer = client.responses.create(model=backend, input=question).output_text
    assert answer == "A red pixel."
    [turn] = fake.model_turns(backend)
    assert received_images(turn) == [("image/png", PNG)]


def test_store_false_leaves_nothing_behind(client: openai.OpenAI) -> None:
    response = client.responses.create(model="claude", input="hi", store=False)
    assert response.to_dict()["store"] is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="claude", input="again", previous_response_id=response.id)


@pytest.fixture(scope="module")
def keyed(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """An emulator with two gateway keys: each key's stored responses are its own."""
    home = tmp_path_factory.mktemp("keyed-home")
    settings = fake_upstream_settings(fake.url) | {"CLINVK_TIMEOUT_SECONDS": "60", "CLINVK_API_KEYS": "key-a,key-b"}
    running = Emulator(emulator_env(home, settings))
    yield running
    running.stop()


def test_another_keys_response_is_a_404(keyed: Emulator, tmp_path: Path) -> None:
    alice, bob = (openai.OpenAI(base_url=keyed.base_url, api_key=key, max_retries=0, _strict_response_validation=True)
                  for key in ("key-a", "key-b"))  # fmt: skip
    response = alice.responses.create(model="claude", input="hi")
    assert alice.responses.retrieve(response.id).id == response.id
    for read in (lambda: bob.responses.retrieve(response.id), lambda: bob.responses.input_items.list(response.id),
                 lambda: bob.responses.delete(response.id)):  # fmt: skip
        with pytest.raises(openai.NotFoundError):
            read()
    with pytest.raises(openai.BadRequestError) as caught:
        bob.responses.create(model="claude", input="mine now?", previous_response_id=response.id)
    assert caught.value.code == "previous_response_not_found"
    assert alice.responses.retrieve(response.id).id == response.id
