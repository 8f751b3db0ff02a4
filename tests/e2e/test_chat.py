"""The chat path end to end: OpenAI SDK (strict) and LangChain -> emulator -> real CLI -> fake upstream."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from clinvk_core.testing.emulator import Emulator
from clinvk_core.testing.fake_upstream import FakeUpstream, Script, Usage

BACKENDS = ["claude", "codex", "gemini"]
pytestmark = pytest.mark.e2e


def test_models_lists_the_three_backends(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == BACKENDS
    assert client.models.retrieve("claude-sonnet-4-5").id == "claude-sonnet-4-5"
    assert client.models.retrieve("claude/sonnet").id == "claude/sonnet"  # the SDK sends claude%2Fsonnet


@pytest.mark.parametrize("backend", BACKENDS)
def test_completion_text_and_exact_usage(backend: str, client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.set_script(Script(text="The answer is 42.", usage=Usage(input_tokens=123, cached_tokens=23, output_tokens=7)))
    response = client.chat.completions.create(model=backend, messages=[{"role": "user", "content": "Question?"}])
    assert response.choices[0].message.content == "The answer is 42."
    assert response.choices[0].finish_reason == "stop"
    assert response.model == backend
    assert response.id.startswith("chatcmpl-")
    assert response.usage is not None
    assert (response.usage.prompt_tokens, response.usage.completion_tokens, response.usage.total_tokens) == (
        123,
        7,
        130,
    )
    assert response.usage.prompt_tokens_details is not None
    assert response.usage.prompt_tokens_details.cached_tokens == 23


@pytest.mark.parametrize("backend", BACKENDS)
def test_stream_chunks_finish_and_usage(backend: str, client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.set_script(Script(chunks=["one ", "two ", "three"], usage=Usage(input_tokens=50, output_tokens=3)))
    stream = client.chat.completions.create(
        model=backend,
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(content) == "one two three"
    if backend != "codex":  # codex delivers each message whole
        assert len(content) == 3
    assert all(len(c.choices) == 1 and c.usage is None for c in chunks[:-1])
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (50, 3)
    assert len({c.id for c in chunks}) == 1


@pytest.mark.parametrize("backend", ["claude", "gemini"])
def test_first_chunk_arrives_while_the_cli_is_still_answering(
    backend: str, client: openai.OpenAI, fake: FakeUpstream
) -> None:
    fake.set_script(Script(chunks=["a ", "b ", "c ", "d"], chunk_delay=0.3))
    stream = client.chat.completions.create(
        model=backend, messages=[{"role": "user", "content": "slowly"}], stream=True
    )
    arrivals = [time.monotonic() for chunk in stream if chunk.choices and chunk.choices[0].delta.content]
    assert len(arrivals) == 4
    # The upstream needs 0.9 s for the last three chunks: the first must be here long before the end.
    assert arrivals[-1] - arrivals[0] >= 0.6


@pytest.mark.parametrize("backend", BACKENDS)
def test_system_prompt_and_earlier_turns_reach_the_upstream(
    backend: str, client: openai.OpenAI, fake: FakeUpstream
) -> None:
    client.chat.completions.create(
        model=backend,
        messages=[
            {"role": "system", "content": "SYSTEM-MARKER-1"},
            {"role": "developer", "content": "DEVELOPER-MARKER-2"},
            {"role": "user", "content": "EARLIER-USER-3"},
            {"role": "assistant", "content": "EARLIER-ASSISTANT-4"},
            {"role": "user", "content": [{"type": "text", "text": "LATEST-USER-5"}]},
        ],
    )
    (body,) = [r.text() for r in fake.requests_of(backend)]
    for marker in [
        "SYSTEM-MARKER-1",
        "DEVELOPER-MARKER-2",
        "EARLIER-USER-3",
        "EARLIER-ASSISTANT-4",
        "LATEST-USER-5",
    ]:
        assert marker in body


@pytest.mark.parametrize(
    ("model", "backend", "upstream_model"),
    [
        ("claude/claude-haiku-4-5", "claude", "claude-haiku-4-5"),
        ("claude-sonnet-4-5", "claude", "claude-sonnet-4-5"),
        ("codex/gpt-5.5", "codex", "gpt-5.5"),
        ("o4-mini", "codex", "o4-mini"),
        ("gemini-2.5-flash", "gemini", "gemini-2.5-flash"),
    ],
)
def test_model_names_reach_the_cli(
    model: str, backend: str, upstream_model: str, client: openai.OpenAI, fake: FakeUpstream
) -> None:
    response = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    assert response.model == model
    (request,) = fake.requests_of(backend)
    sent = request.body.get("model") if isinstance(request.body, dict) else None
    assert upstream_model in (sent or request.path)


@pytest.mark.parametrize("backend", BACKENDS)
def test_langchain_invoke_and_stream(backend: str, emulator: Emulator, fake: FakeUpstream) -> None:
    fake.set_script(Script(chunks=["Hello ", "from ", "LangChain"]))
    # LangChain sends model names containing "codex" to the Responses API unless told not to.
    llm = ChatOpenAI(
        model=backend,
        base_url=emulator.base_url,
        api_key=SecretStr("not-needed"),
        max_retries=0,
        use_responses_api=False,
    )
    assert llm.invoke("hi").content == "Hello from LangChain"
    streamed = "".join(str(part.content) for part in llm.stream("hi"))
    assert streamed == "Hello from LangChain"


def test_unknown_model_is_a_404_naming_the_valid_ones(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="llama-3", messages=[{"role": "user", "content": "hi"}])
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"
    assert "claude" in error["message"]
    assert "gemini" in error["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b'{"model": "claude"}', "messages"),
        (b'{"model": "claude", "messages": []}', "messages"),
        (b'{"model": 7, "messages": [{"role": "user", "content": "hi"}]}', "model"),
        (b'{"model": "claude", "messages": [{"role": "system", "content": "only system"}]}', "messages"),
    ],
)
def test_bad_requests_are_openai_400s(body: bytes, param: str | None, emulator: Emulator) -> None:
    response = httpx.post(
        f"{emulator.base_url}/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
