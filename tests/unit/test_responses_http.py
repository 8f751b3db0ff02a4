"""handlers.responses over the stand-in CLIs (conftest.py): every bad input a 400 in the OpenAI shape without
running a CLI; answers checked with the SDK's types in strict mode; the store behind GET, input_items, DELETE
and previous_response_id; owners kept apart."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openai.types.responses import Response, ResponseItemList

from clinvk_core.errors import InvalidRequest, StoreUnavailable
from clinvk_core.openai.responses.items import stored
from clinvk_core.openai.responses.stored import MAX_CHAIN, Keeper, history, retrieve
from clinvk_core.store import ResponseStore, StoredResponse, StoreError
from clinvk_core.store.sqlite import SqliteStore

from .coldstart import cold_start
from .conftest import CLI_NAMES, Handlers, make_fake_clis, serve
from .test_openai_http import assert_openai_error, sse_events
from .test_responses_render import EVENT_CLASSES

Capture = Callable[[str], list[str]]
RESPONSES = "/openai/v1/responses"
JSON = {"content-type": "application/json"}
CLAUDE = "claude-stream-json-partial.txt"  # answers "pong from fake"
WEATHER = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}
CALL = {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"}


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "claude", "input": "say pong"} | fields


def items(*extra: dict[str, Any]) -> dict[str, Any]:
    return body(input=[{"role": "user", "content": "hi"}, *extra])


def message(role: str, *parts: dict[str, Any]) -> dict[str, Any]:
    return body(input=[{"role": role, "content": list(parts)}])


@pytest.fixture
def responses(handlers: Handlers) -> Iterator[TestClient]:
    yield from serve(handlers, handlers.responses)


@pytest.fixture
def claude(handlers: Handlers, capture: Capture) -> Handlers:
    handlers.clis.script("claude", stdout="".join(capture(CLAUDE)))
    return handlers


BAD_INPUTS: list[tuple[str, dict[str, Any], int, str | None, str | None]] = [
    ("malformed JSON", {"content": b'{"model": "claude", "input": ', "headers": JSON}, 400, None, None),
    ("missing model", {"json": {"input": "hi"}}, 400, "model", None),
    ("unknown model", {"json": body(model="llama-3")}, 404, "model", "model_not_found"),
    ("missing input", {"json": {"model": "claude"}}, 400, "input", None),
    ("input a number", {"json": body(input=7)}, 400, "input", None),
    ("input items not objects", {"json": body(input=["hi"])}, 400, "input", None),
    ("input empty", {"json": body(input=[])}, 400, "input", None),
    ("item of a hosted tool's type", {"json": items({"type": "web_search_call", "id": "ws_1"})}, 400,
     "input[1].type", None),
    ("item_reference", {"json": items({"type": "item_reference", "id": "msg_1"})}, 400, "input[1].type", None),
    ("item type not a string", {"json": body(input=[{"type": []}])}, 400, "input[0].type", None),
    ("message without role", {"json": body(input=[{"content": "hi"}])}, 400, "input[0].role", None),
    ("message of role tool", {"json": body(input=[{"role": "tool", "content": "hi"}])}, 400, "input[0].role", None),
    ("message without content", {"json": body(input=[{"role": "user"}])}, 400, "input[0].content", None),
    ("message with no parts", {"json": message("user")}, 400, "input[0].content", None),
    ("text part without text", {"json": message("user", {"type": "input_text"})}, 400, "input[0].content[0].text",
     None),
    ("audio part", {"json": message("user", {"type": "input_audio", "input_audio": {}})}, 400,
     "input[0].content[0].type", None),
    ("file part", {"json": message("user", {"type": "input_file", "file_id": "file_1"})}, 400,
     "input[0].content[0].type", None),
    ("image from the assistant", {"json": message("assistant", {"type": "input_image", "image_url": "data:x"})},
     400, "input[0].content[0].type", None),
    ("image as a file id", {"json": message("user", {"type": "input_image", "file_id": "file_1"})}, 400,
     "input[0].content[0].image_url", None),
    ("image URL not fetched", {"json": message("user", {"type": "input_image", "image_url": "https://x.dev/a.png"})},
     400, "input[0].content[0].image_url", None),
    ("image detail unknown", {"json": message("user", {"type": "input_image", "image_url": "data:x", "detail": "x"})},
     400, "input[0].content[0].detail", None),
    ("orphan function_call_output", {"json": items({"type": "function_call_output", "call_id": "call_9",
     "output": "22C"})}, 400, "input[1].call_id", None),
    ("orphan output after a reasoning item", {"json": items({"type": "reasoning", "id": "rs_1", "summary": []},
     {"type": "function_call_output", "call_id": "call_9", "output": "22C"})}, 400, "input[2].call_id", None),
    ("function_call without call_id", {"json": items({"type": "function_call", "name": "f", "arguments": "{}"})},
     400, "input[1].call_id", None),
    ("function_call_output without output", {"json": items(CALL, {"type": "function_call_output",
     "call_id": "call_1"})}, 400, "input[2].output", None),
    ("function_call_output with an image", {"json": items(CALL, {"type": "function_call_output", "call_id": "call_1",
     "output": [{"type": "input_image", "image_url": "data:x"}]})}, 400, "input[2].output[0].type", None),
    ("ends with the assistant", {"json": items({"role": "assistant", "content": "pong"})}, 400, "input", None),
    ("ends with a call", {"json": items(CALL)}, 400, "input", None),
    ("only a system message", {"json": body(input=[{"role": "system", "content": "s"}])}, 400, "input", None),
    ("unknown previous_response_id", {"json": body(previous_response_id="resp_unknown")}, 400,
     "previous_response_id", "previous_response_not_found"),
    ("malformed previous_response_id", {"json": body(previous_response_id="chatcmpl-1")}, 400,
     "previous_response_id", "previous_response_not_found"),
    ("hosted web_search", {"json": body(tools=[{"type": "web_search"}])}, 400, "tools[0].type", None),
    ("hosted live web_search", {"json": body(tools=[{"type": "web_search", "external_web_access": True}])}, 400,
     "tools[0].type", None),
    ("file_search", {"json": body(tools=[{"type": "file_search", "vector_store_ids": ["vs_1"]}])}, 400,
     "tools[0].type", None),
    ("code_interpreter", {"json": body(tools=[{"type": "code_interpreter", "container": {"type": "auto"}}])}, 400,
     "tools[0].type", None),
    ("computer_use_preview", {"json": body(tools=[{"type": "computer_use_preview", "display_width": 1,
     "display_height": 1, "environment": "linux"}])}, 400, "tools[0].type", None),
    ("remote MCP server", {"json": body(tools=[{"type": "mcp", "server_label": "x", "server_url": "https://x"}])},
     400, "tools[0].type", None),
    ("custom tool", {"json": body(tools=[{"type": "custom", "name": "apply_patch"}])}, 400, "tools[0].type", None),
    ("chat's nested function shape", {"json": body(tools=[{"type": "function", "function": {"name": "f"}}])}, 400,
     "tools[0].name", None),
    ("tool name with a space", {"json": body(tools=[WEATHER | {"name": "get weather"}])}, 400, "tools[0].name",
     None),
    ("parameters not an object schema", {"json": body(tools=[WEATHER | {"parameters": {"type": "array"}}])}, 400,
     "tools[0].parameters", None),
    ("duplicate tools", {"json": body(tools=[WEATHER, WEATHER])}, 400, "tools", None),
    ("namespace without tools", {"json": body(tools=[{"type": "namespace", "name": "ns"}])}, 400, "tools[0]", None),
    ("namespace of a bad name", {"json": body(tools=[{"type": "namespace", "name": "n s", "tools": []}])}, 400,
     "tools[0]", None),
    ("namespace of numbers", {"json": body(tools=[{"type": "namespace", "name": "ns", "tools": [1]}])}, 400,
     "tools[0].tools[0].type", None),
    ("namespace of a hosted tool", {"json": body(tools=[{"type": "namespace", "name": "ns", "description": "",
     "tools": [{"type": "custom", "name": "x"}]}])}, 400, "tools[0].tools[0].type", None),
    ("tool_choice names no tool", {"json": body(tools=[WEATHER], tool_choice={"type": "function", "name": "x"})},
     400, "tool_choice", None),
    ("tool_choice of a hosted tool", {"json": body(tools=[WEATHER], tool_choice={"type": "web_search_preview"})},
     400, "tool_choice", None),
    ("tool_choice allows no offered tool", {"json": body(tools=[WEATHER], tool_choice={"type": "allowed_tools",
     "mode": "auto", "tools": [{"type": "function", "name": "x"}]})}, 400, "tool_choice", None),
    ("tool_choice required without tools", {"json": body(tool_choice="required")}, 400, "tool_choice", None),
    ("text.format unknown", {"json": body(text={"format": {"type": "xml"}})}, 400, "text.format.type", None),
    ("json_schema without a name", {"json": body(text={"format": {"type": "json_schema", "schema": {}}})}, 400,
     "text.format", None),
    ("json_schema invalid", {"json": body(text={"format": {"type": "json_schema", "name": "x",
     "schema": {"type": "objekt"}}})}, 400, "text.format.schema", None),
    ("reasoning.effort unknown", {"json": body(reasoning={"effort": "ultra-max"})}, 400, "reasoning.effort", None),
    ("max_output_tokens zero", {"json": body(max_output_tokens=0)}, 400, "max_output_tokens", None),
    ("temperature out of range", {"json": body(temperature=3)}, 400, "temperature", None),
    ("metadata of 17 pairs", {"json": body(metadata={f"k{i}": "v" for i in range(17)})}, 400, "metadata", None),
    ("metadata value not a string", {"json": body(metadata={"k": 1})}, 400, "metadata.k", None),
    ("background", {"json": body(background=True)}, 400, "background", None),
    ("conversation", {"json": body(conversation="conv_1")}, 400, "conversation", None),
    ("prompt template", {"json": body(prompt={"id": "pmpt_1"})}, 400, "prompt", None),
    ("logprobs through include", {"json": body(include=["message.output_text.logprobs"])}, 400, "include", None),
    ("top_logprobs", {"json": body(top_logprobs=3)}, 400, "top_logprobs", None),
    ("stream not a boolean", {"json": body(stream="yes")}, 400, "stream", None),
    ("store not a boolean", {"json": body(store="no")}, 400, "store", None),
    ("conversation over the prompt limit", {"json": body(input="x" * 2_000_001)}, 400, "input",
     "context_length_exceeded"),
    ("instructions over the argv limit", {"json": body(instructions="s" * 100_001)}, 400, "input",
     "context_length_exceeded"),
    ("body over the limit", {"content": b'{"model": "claude", "input": "' + b"x" * (6 * 1024 * 1024) + b'"}',
     "headers": JSON}, 413, None, "request_too_large"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("request_kwargs", "status", "param", "code"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_inputs_are_openai_errors_and_run_no_cli(
    responses: TestClient,
    handlers: Handlers,
    request_kwargs: dict[str, Any],
    status: int,
    param: str | None,
    code: str | None,
) -> None:
    response = responses.post(RESPONSES, **request_kwargs)
    assert_openai_error(response, status, param=param, code=code)
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert not any(handlers.clis.ran(name) for name in CLI_NAMES)


@pytest.mark.parametrize(
    ("path", "status", "param"),
    [
        ("/resp_unknown", 404, None),
        ("/resp_unknown/input_items", 404, None),
        ("/not-a-response-id", 404, None),
        ("/resp_unknown?stream=true", 400, "stream"),
        ("/resp_unknown/input_items?limit=0", 400, "limit"),
        ("/resp_unknown/input_items?order=sideways", 400, "order"),
    ],
)
def test_reading_what_is_not_stored(responses: TestClient, path: str, status: int, param: str | None) -> None:
    code = "not_found" if status == 404 else None
    assert_openai_error(responses.get(RESPONSES + path), status, param=param, code=code)
    assert_openai_error(responses.delete(RESPONSES + "/resp_unknown"), 404, code="not_found")


def test_text_no_cli_can_take_is_replaced_not_a_500(responses: TestClient, claude: Handlers) -> None:
    odd = "a\x00b\ud800c"  # NUL (no argv holds it) and a lone surrogate (legal in JSON escapes, not in UTF-8)
    nul = "a\x00b"
    call = CALL | {"call_id": nul, "name": nul, "arguments": nul}
    output = {"type": "function_call_output", "call_id": nul, "output": nul}
    conversation = [{"role": "developer", "content": nul}, {"role": "user", "content": nul}, call, output]
    payload = body(instructions=odd, tools=[WEATHER | {"description": odd}], input=conversation)
    created = responses.post(RESPONSES, content=json.dumps(payload), headers=JSON)  # \ud800 escaped, as JSON allows
    assert created.status_code == 200, created.text
    assert created.json()["status"] == "completed"
    assert "a\ufffdb\ufffdc\n\na\ufffdb" in claude.clis.argv("claude")  # instructions, then the developer's
    in_an_item = body(input=[{"role": "user", "content": [{"type": "input_text", "text": odd}]}], metadata={odd: odd})
    kept = responses.post(RESPONSES, content=json.dumps(in_an_item), headers=JSON).json()
    assert kept["metadata"] == {"a\x00b\ufffdc": "a\x00b\ufffdc"}  # answered, stored and listed as U+FFFD
    listed = responses.get(f"{RESPONSES}/{kept['id']}/input_items").json()
    assert listed["data"][0]["content"][0]["text"] == "a\x00b\ufffdc"


def create(client: TestClient, **fields: Any) -> dict[str, Any]:
    response = client.post(RESPONSES, json=body(**fields))
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    Response.model_validate(data, strict=True)
    return data


def test_a_stored_response_reads_back_lists_its_input_and_deletes(responses: TestClient, claude: Handlers) -> None:
    conversation = [{"role": "developer", "content": "DEV"}, {"role": "user", "content": "say pong"}]
    created = create(responses, instructions="Be terse.", metadata={"run": "7"}, input=conversation)
    assert (created["status"], created["store"], created["output"][0]["content"][0]["text"]) == (
        "completed", True, "pong from fake")  # fmt: skip
    assert (created["instructions"], created["metadata"]) == ("Be terse.", {"run": "7"})
    argv = claude.clis.argv("claude")
    assert "Be terse.\n\nDEV" in argv  # instructions, then developer messages: the system prompt
    assert responses.get(f"{RESPONSES}/{created['id']}").json() == created
    listed = responses.get(f"{RESPONSES}/{created['id']}/input_items").json()
    page = ResponseItemList.model_validate(listed, strict=True)
    assert [(item.type, getattr(item, "role", None)) for item in page.data] == [("message", "user"),
                                                                                ("message", "developer")]  # fmt: skip
    oldest = responses.get(f"{RESPONSES}/{created['id']}/input_items", params={"order": "asc", "limit": 1}).json()
    assert ([item["id"] for item in oldest["data"]], oldest["has_more"]) == ([page.data[1].id], True)
    after = responses.get(
        f"{RESPONSES}/{created['id']}/input_items", params={"order": "asc", "after": oldest["last_id"]}
    )
    assert [item["id"] for item in after.json()["data"]] == [page.data[0].id]
    assert_openai_error(responses.get(f"{RESPONSES}/{created['id']}/input_items", params={"after": "msg_x"}), 400,
                        param="after")  # fmt: skip
    deleted = responses.delete(f"{RESPONSES}/{created['id']}")
    assert deleted.json() == {"id": created["id"], "object": "response", "deleted": True}
    assert_openai_error(responses.get(f"{RESPONSES}/{created['id']}"), 404, code="not_found")
    assert_openai_error(responses.delete(f"{RESPONSES}/{created['id']}"), 404, code="not_found")


def test_previous_response_id_sends_the_earlier_turns(responses: TestClient, claude: Handlers) -> None:
    first = create(responses, input="FIRST-QUESTION", tools=[WEATHER])
    second = create(responses, input="SECOND-QUESTION", previous_response_id=first["id"])
    assert second["previous_response_id"] == first["id"]
    create(responses, input="THIRD-QUESTION", previous_response_id=second["id"], instructions="NEW-INSTRUCTIONS")
    prompt = claude.clis.stdin("claude")
    assert prompt.index("FIRST-QUESTION") < prompt.index("SECOND-QUESTION") < prompt.index("THIRD-QUESTION")
    assert prompt.count("pong from fake") == 2  # the two earlier answers
    assert "NEW-INSTRUCTIONS" in claude.clis.argv("claude")


def test_previous_function_calls_are_answered_by_function_call_output(responses: TestClient, claude: Handlers) -> None:
    first = create(responses, input="weather?", tools=[WEATHER])
    # The first turn's stored output has no call (the stand-in answers text): store one as a client would see it.
    store = claude_store(responses)
    record = store.get(first["id"], "")
    assert record is not None
    with_call = record.response | {"output": [CALL | {"id": "fc_1", "status": "completed"}], "id": "resp_withcall"}
    store.put(StoredResponse("resp_withcall", "", record.created_at, record.expires_at, (), with_call,
                             record.input_items))  # fmt: skip
    output = {"type": "function_call_output", "call_id": "call_1", "output": "22C"}
    create(responses, input=[output], previous_response_id="resp_withcall", tools=[WEATHER])
    prompt = claude.clis.stdin("claude")
    assert '<tool_call call_id="call_1" name="get_weather">{}</tool_call>' in prompt
    assert '<tool_result call_id="call_1" name="get_weather">\n22C\n</tool_result>' in prompt


def claude_store(client: TestClient) -> ResponseStore:
    import handlers.responses

    return handlers.responses.store


def test_store_false_keeps_nothing(responses: TestClient, claude: Handlers) -> None:
    created = create(responses, store=False)
    assert created["store"] is False
    assert_openai_error(responses.get(f"{RESPONSES}/{created['id']}"), 404, code="not_found")
    assert_openai_error(responses.post(RESPONSES, json=body(previous_response_id=created["id"])), 400,
                        param="previous_response_id", code="previous_response_not_found")  # fmt: skip


def test_a_response_over_the_size_limit_answers_but_is_not_stored(responses: TestClient, claude: Handlers) -> None:
    noise = os.urandom(600_000).hex()  # 1.2 MB of text that compresses to ~600 KB: over the 390 KiB limit
    created = create(responses, input=noise)
    assert created["store"] is False
    assert created["output"][0]["content"][0]["text"] == "pong from fake"
    assert_openai_error(responses.get(f"{RESPONSES}/{created['id']}"), 404, code="not_found")


def test_a_stream_is_typed_events_and_its_response_is_stored(responses: TestClient, claude: Handlers) -> None:
    response = responses.post(RESPONSES, json=body(stream=True))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events: list[Any] = []
    for raw in sse_events(response):
        if raw.startswith(":"):
            continue  # keep-alive
        kind, data = raw.split("\n")
        event = json.loads(data.removeprefix("data: "))
        assert kind == f"event: {event['type']}"
        events.append(EVENT_CLASSES[event["type"]].model_validate(event, strict=True))
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    final = events[-1].response
    assert final.output_text == "pong from fake"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "pong from fake"
    kept = Response.model_validate(responses.get(f"{RESPONSES}/{final.id}").json(), strict=True)
    assert (kept.output_text, [item.id for item in kept.output]) == (final.output_text, [i.id for i in final.output])


def test_a_cli_failure_mid_stream_is_an_error_event_and_a_failed_response(
    responses: TestClient, handlers: Handlers, capture: Capture
) -> None:
    handlers.clis.script("claude", stdout="".join(capture("claude-stream-json-error500.txt")), code=1)
    response = responses.post(RESPONSES, json=body(stream=True))
    kinds = [raw.split("\n")[0] for raw in sse_events(response) if not raw.startswith(":")]
    assert kinds[-2:] == ["event: error", "event: response.failed"]
    assert_openai_error(responses.post(RESPONSES, json=body()), 502, code="upstream_error")


def test_a_stalled_stream_sends_keepalives_then_fails_at_the_deadline(
    responses: TestClient, handlers: Handlers
) -> None:
    handlers.clis.script("claude", sleep=10)
    start = time.monotonic()
    with responses.stream("POST", RESPONSES, json=body(stream=True)) as response:
        response.read()
    assert time.monotonic() - start < 3  # CLINVK_TIMEOUT_SECONDS=1, not the CLI's 10 s
    events = sse_events(response)
    assert sum(1 for event in events if event == ": keep-alive") >= 3  # CLINVK_KEEPALIVE_SECONDS=0.1
    error, failed = (json.loads(event.split("\n")[1].removeprefix("data: ")) for event in events[-2:])
    assert (error["type"], error["code"]) == ("error", "timeout")
    assert (failed["type"], failed["response"]["status"]) == ("response.failed", "failed")


def test_the_answer_is_not_delayed_by_a_cli_that_lingers_after_its_turn(
    responses: TestClient, handlers: Handlers, capture: Capture
) -> None:
    handlers.clis.script("claude", stdout="".join(capture(CLAUDE)), sleep=1.2)
    start = time.monotonic()
    assert create(responses)["output"][0]["content"][0]["text"] == "pong from fake"
    assert time.monotonic() - start < 1.0


def test_another_api_key_cannot_see_or_continue_a_stored_response(tmp_path: Any, capture: Capture) -> None:
    clis = make_fake_clis(tmp_path / "clis")
    clis.script("claude", stdout="".join(capture(CLAUDE)))
    settings = {"CLINVK_STATE_DIR": str(tmp_path / "state"), "CLINVK_BIN_DIR": str(clis.bin_dir),
                "CLINVK_API_KEYS": "key-a,key-b"}  # fmt: skip
    with cold_start(settings) as modules, TestClient(modules["handlers.responses"].app) as client:
        alice, bob = ({"authorization": f"Bearer {key}"} for key in ("key-a", "key-b"))
        created = client.post(RESPONSES, json=body(), headers=alice).json()
        path = f"{RESPONSES}/{created['id']}"
        assert client.get(path, headers=alice).status_code == 200
        assert_openai_error(client.get(path, headers=bob), 404, code="not_found")
        assert_openai_error(client.get(f"{path}/input_items", headers=bob), 404, code="not_found")
        assert_openai_error(client.delete(path, headers=bob), 404, code="not_found")
        continued = client.post(RESPONSES, json=body(previous_response_id=created["id"]), headers=bob)
        assert_openai_error(continued, 400, param="previous_response_id", code="previous_response_not_found")
        assert client.get(path, headers=alice).status_code == 200  # still there for its owner


def test_a_conversation_goes_back_a_bounded_way_and_breaks_where_a_response_is_gone(tmp_path: Any) -> None:
    store = SqliteStore(tmp_path / "responses.sqlite3")
    now = int(time.time())
    for turn in range(MAX_CHAIN + 1):
        message = {"id": f"msg_{turn}", "type": "message", "role": "user", "content": [{"type": "input_text",
                   "text": f"turn {turn}"}]}  # fmt: skip
        earlier = tuple(f"resp_{t}" for t in reversed(range(turn)))
        store.put(StoredResponse(f"resp_{turn}", "", now, now + 60, earlier, {"output": []}, [message]))
    conversation = history(store, f"resp_{MAX_CHAIN - 1}", "")
    texts = [stored(item)["content"][0]["text"] for _, item in conversation.items]
    assert texts == [f"turn {t}" for t in range(MAX_CHAIN)]
    assert conversation.ids == tuple(f"resp_{t}" for t in reversed(range(MAX_CHAIN)))
    with pytest.raises(InvalidRequest) as too_long:
        history(store, f"resp_{MAX_CHAIN}", "")
    assert too_long.value.param == "previous_response_id"
    store.delete("resp_3", "")
    with pytest.raises(InvalidRequest) as broken:
        history(store, "resp_5", "")
    assert (broken.value.param, broken.value.code) == ("previous_response_id", "previous_response_not_found")
    assert "'resp_3'" in broken.value.message


class FailingStore(ResponseStore):
    """A store whose every call fails, as DynamoDB does when it cannot be reached."""

    def put(self, record: StoredResponse) -> None:
        raise StoreError("The DynamoDB store failed: ServiceUnavailable")

    def get(self, response_id: str, owner: str) -> StoredResponse | None:
        raise StoreError("The DynamoDB store failed: ServiceUnavailable")

    def get_many(self, response_ids: Sequence[str], owner: str) -> dict[str, StoredResponse]:
        raise StoreError("The DynamoDB store failed: ServiceUnavailable")

    def delete(self, response_id: str, owner: str) -> bool:
        raise StoreError("The DynamoDB store failed: ServiceUnavailable")


def test_a_failing_store_answers_with_store_false_and_its_reads_are_503() -> None:
    keeper = Keeper(FailingStore(), "", (), [], 3600)
    answered = asyncio.run(keeper.keep({"id": "resp_1", "created_at": 1, "store": True}))
    assert answered["store"] is False
    with pytest.raises(StoreUnavailable) as caught:
        retrieve(FailingStore(), "resp_1", "")
    assert (caught.value.status, caught.value.code) == (503, "store_unavailable")
