"""The Anthropic Messages API end to end: the official ``anthropic`` SDK -> emulator -> real CLI -> fake upstream."""

from __future__ import annotations

import base64
from typing import Any

import anthropic
import pytest
from anthropic.types import MessageParam, ToolParam

from clinvk_core.testing.emulator import Emulator
from clinvk_core.testing.fake_upstream import (
    FakeUpstream,
    Script,
    ScriptedCall,
    Usage,
    generation_settings,
    received_images,
)

BACKENDS = ["claude", "codex", "gemini"]
# A 1x1 PNG, as a client would send a screenshot.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
WEATHER: ToolParam = {
    "name": "get_weather",
    "description": "The weather now in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
pytestmark = pytest.mark.e2e


@pytest.fixture
def client(emulator: Emulator) -> anthropic.Anthropic:
    base_url = emulator.base_url.removesuffix("/openai/v1") + "/anthropic"
    return anthropic.Anthropic(base_url=base_url, api_key="x", max_retries=0, _strict_response_validation=True)


def ask(text: str) -> list[MessageParam]:
    return [{"role": "user", "content": text}]


def test_models_are_the_backends(client: anthropic.Anthropic) -> None:
    assert [model.id for model in client.models.list()] == BACKENDS
    assert client.models.retrieve("claude/sonnet").id == "claude/sonnet"


@pytest.mark.parametrize("backend", BACKENDS)
def test_create_and_stream_with_the_system_prompt_and_exact_usage(
    backend: str, client: anthropic.Anthropic, fake: FakeUpstream
) -> None:
    fake.set_script(Script(chunks=["The answer ", "is ", "42."], usage=Usage(input_tokens=123, cached_tokens=23,
                                                                            output_tokens=7)))  # fmt: skip
    created = client.messages.create(model=backend, max_tokens=256, system="SYSTEM-MARKER-1", messages=ask("Q?"))
    assert [(block.type, getattr(block, "text", None)) for block in created.content] == [("text", "The answer is 42.")]
    assert (created.model, created.stop_reason, created.stop_sequence) == (backend, "end_turn", None)
    assert created.id.startswith("msg_")
    usage = created.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (100, 23, 0)
    assert usage.output_tokens == 7
    (request,) = fake.model_turns(backend)
    assert "SYSTEM-MARKER-1" in request.text()

    with client.messages.stream(model=backend, max_tokens=256, system="SYSTEM-MARKER-1", messages=ask("Q?")) as s:
        deltas = list(s.text_stream)
        final = s.get_final_message()
    assert "".join(deltas) == "The answer is 42."
    if backend != "codex":  # codex delivers each message whole
        assert len(deltas) == 3
    assert final.model_dump(exclude={"id"}) == created.model_dump(exclude={"id"})


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_tool_loop(backend: str, client: anthropic.Anthropic, fake: FakeUpstream) -> None:
    fake.set_script(Script(text="It is sunny in Paris.", tool_calls=[ScriptedCall("get_weather", {"city": "Paris"})]))
    messages = ask("What is the weather in Paris?")
    with client.messages.stream(model=backend, max_tokens=256, tools=[WEATHER], messages=messages) as stream:
        called = stream.get_final_message()
    assert called.stop_reason == "tool_use"
    (use,) = [block for block in called.content if block.type == "tool_use"]
    assert (use.name, use.input) == ("get_weather", {"city": "Paris"})  # the client's own name
    assert use.id.startswith("toolu_")

    messages += [
        {"role": "assistant", "content": called.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "RESULT-22C-SUNNY"}]},
    ]
    answered = client.messages.create(model=backend, max_tokens=256, tools=[WEATHER], messages=messages)
    assert answered.stop_reason == "end_turn"
    assert getattr(answered.content[0], "text", None) == "It is sunny in Paris."
    first, second = fake.model_turns(backend)
    assert "get_weather" in first.text()  # offered to the model as a tool of the CLI's own
    assert "RESULT-22C-SUNNY" not in first.text()
    assert "RESULT-22C-SUNNY" in second.text()  # the fake saw the result


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_image_block_reaches_the_upstream_byte_for_byte(
    backend: str, client: anthropic.Anthropic, fake: FakeUpstream
) -> None:
    source = {"type": "base64", "media_type": "image/png", "data": base64.b64encode(PNG).decode()}
    content: Any = [{"type": "image", "source": source}, {"type": "text", "text": "What is in this image?"}]
    created = client.messages.create(model=backend, max_tokens=64, messages=[{"role": "user", "content": content}])
    assert created.stop_reason == "end_turn"
    assert received_images(fake.model_turns(backend)[0]) == [("image/png", PNG)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_settings_thinking_and_a_cut_answer(backend: str, client: anthropic.Anthropic, fake: FakeUpstream) -> None:
    fake.set_script(Script(text="cut short", finish="length", reasoning="Six times seven."))
    sampling = {"temperature": 0.25, "top_p": 0.5}  # fields this SDK no longer has; older clients send them
    with client.messages.stream(model=backend, max_tokens=321, messages=ask("6*7?"), thinking={"type": "adaptive"},
                                output_config={"effort": "high"}, extra_body=sampling) as stream:  # fmt: skip
        final = stream.get_final_message()
    shown = {"claude": "Six times seven.", "codex": "Six times seven.", "gemini": None}  # gemini shows none
    # gemini's headless output does not say why the model stopped: a cut answer reads as a whole one.
    stop = {"claude": "max_tokens", "codex": "max_tokens", "gemini": "end_turn"}
    thinking = [block.thinking for block in final.content if block.type == "thinking"]
    assert thinking == ([shown[backend]] if shown[backend] else [])
    assert [getattr(block, "text", None) for block in final.content if block.type == "text"] == ["cut short"]
    assert final.stop_reason == stop[backend]
    expected = {
        "claude": {"max_tokens": 321, "temperature": None, "top_p": None, "effort": "high"},
        "codex": {"max_tokens": None, "temperature": None, "top_p": None, "effort": "high"},
        "gemini": {"max_tokens": 321, "temperature": 0.25, "top_p": 0.5, "effort": None},
    }
    assert generation_settings(fake.model_turns(backend)[0]) == expected[backend]


def test_a_failure_after_the_headers_raises_in_the_sdk(client: anthropic.Anthropic, fake: FakeUpstream) -> None:
    fake.set_script(Script(status=401, error_message="fake: key revoked"))
    with (
        pytest.raises(anthropic.APIStatusError, match="fake: key revoked") as failed,
        client.messages.stream(model="claude", max_tokens=64, messages=ask("hi")) as stream,
    ):
        stream.get_final_message()
    assert (failed.value.status_code, failed.value.type) == (200, "api_error")  # an event of a 200 stream


def test_errors_are_anthropic_errors(client: anthropic.Anthropic, fake: FakeUpstream) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="llama-3", max_tokens=8, messages=ask("hi"))
    assert missing.value.type == "not_found_error"
    assert "gemini" in (missing.value.api_message or "")
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model="claude", max_tokens=8, messages=[{"role": "assistant", "content": "prefill"}])
    assert bad.value.type == "invalid_request_error"
    with pytest.raises(anthropic.APIStatusError) as count:
        client.messages.count_tokens(model="gemini", messages=ask("hi"))
    assert count.value.status_code == 501
    assert fake.requests == []
