"""On Lambda the CLI is stopped before Lambda would kill the function, and the client gets a clean 504.

Both ways a function learns its deadline: the Web Adapter's ``x-amzn-lambda-context`` header (the
streaming chat function) and Mangum's ``scope["aws.context"]`` (a buffered invocation). The CLI is a
stand-in that never answers; the configured timeout is far away, so only Lambda's deadline can stop it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
from fastapi.testclient import TestClient

from clinvk_core.emulator.lambda_events import LambdaContext, proxy_result, rest_api_event
from clinvk_core.web import LAMBDA_CONTEXT_HEADER, LAMBDA_SAFETY_MARGIN_SECONDS, request_deadline

from .coldstart import cold_start
from .conftest import FakeClis, make_fake_clis

LEFT_AFTER_MARGIN = 1.0  # seconds the CLI may run before the function must answer
REQUEST = {"model": "claude", "messages": [{"role": "user", "content": "think for a long time"}]}


def lwa_header(deadline_ms: int) -> str:
    """The header as the Web Adapter writes it: the Rust runtime's Context serialized by serde."""
    return json.dumps(
        {
            "request_id": "8f5e1e22-6b8c-4a0b-9d2e-1c2b3a4d5e6f",
            "deadline": deadline_ms,
            "invoked_function_arn": "arn:aws:lambda:eu-west-1:123456789012:function:clinvk-chat",
            "xray_trace_id": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
            "client_context": None,
            "identity": None,
            "tenant_id": None,
            "env_config": {
                "function_name": "clinvk-chat",
                "memory": 1769,
                "version": "$LATEST",
                "log_stream": "2026/11/25/[$LATEST]0123456789abcdef",
                "log_group": "/aws/lambda/clinvk-chat",
            },
            "invocation_id": None,
        }
    )


def budget(headers: dict[str, str], timeout: float = 300) -> float:
    async def main() -> float:
        return request_deadline({}, headers, timeout) - asyncio.get_running_loop().time()

    return asyncio.run(main())


def now_ms() -> int:
    return int(time.time() * 1000)


def test_the_web_adapter_header_sets_the_deadline() -> None:
    header = lwa_header(now_ms() + 60_000)
    assert budget({LAMBDA_CONTEXT_HEADER: header}) == pytest.approx(60 - LAMBDA_SAFETY_MARGIN_SECONDS, abs=0.1)
    assert budget({LAMBDA_CONTEXT_HEADER: header}, timeout=10) == pytest.approx(10, abs=0.05)


@pytest.mark.parametrize(
    "context",
    [
        {"deadline": 0},  # lambda_runtime's default Context: the adapter outside Lambda
        {"deadline": -5},
        {"deadline": True},
        {"deadline": None, "request_id": "r"},
        {"deadline": "1795647259000"},
    ],
)
def test_a_header_without_a_usable_deadline_leaves_the_timeout(context: dict[str, Any]) -> None:
    assert budget({LAMBDA_CONTEXT_HEADER: json.dumps(context)}, timeout=42) == pytest.approx(42, abs=0.05)


@pytest.fixture(scope="module")
def clis(tmp_path_factory: pytest.TempPathFactory) -> FakeClis:
    return make_fake_clis(tmp_path_factory.mktemp("deadline") / "clis")


@pytest.fixture(scope="module")
def chat(clis: FakeClis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    settings = {
        "CLINVK_BIN_DIR": str(clis.bin_dir),
        "CLINVK_STATE_DIR": str(tmp_path_factory.mktemp("state")),
        "CLINVK_TIMEOUT_SECONDS": "600",  # far away: only Lambda's deadline can stop the CLI
    }
    with cold_start(settings) as modules:
        yield modules["handlers.chat_completions"]


@pytest.fixture
def hanging_cli(clis: FakeClis) -> Iterator[FakeClis]:
    clis.script("claude", sleep=60)
    yield clis
    clis.reset("claude")


def web_adapter_headers() -> dict[str, str]:
    deadline = now_ms() + int((LAMBDA_SAFETY_MARGIN_SECONDS + LEFT_AFTER_MARGIN) * 1000)
    return {LAMBDA_CONTEXT_HEADER: lwa_header(deadline)}


def assert_stopped_in_time(started: float, clis: FakeClis, alive: Callable[[int], bool]) -> None:
    elapsed = time.monotonic() - started
    assert LEFT_AFTER_MARGIN - 0.2 < elapsed < LEFT_AFTER_MARGIN + 3, elapsed
    assert clis.ran("claude")
    deadline = time.monotonic() + 3
    while alive(clis.pid("claude")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(clis.pid("claude"))


def test_streaming_behind_the_web_adapter_ends_with_a_timeout_event(
    chat: ModuleType, hanging_cli: FakeClis, alive: Callable[[int], bool]
) -> None:
    started = time.monotonic()
    with TestClient(chat.app).stream(
        "POST", "/openai/v1/chat/completions", json={**REQUEST, "stream": True}, headers=web_adapter_headers()
    ) as response:
        assert response.status_code == 200
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert_stopped_in_time(started, hanging_cli, alive)
    last = json.loads(events[-1].removeprefix("data: "))
    assert last["error"]["code"] == "timeout"
    assert "data: [DONE]" not in events


def test_buffered_behind_the_web_adapter_is_a_504(
    chat: ModuleType, hanging_cli: FakeClis, alive: Callable[[int], bool]
) -> None:
    started = time.monotonic()
    response = TestClient(chat.app).post("/openai/v1/chat/completions", json=REQUEST, headers=web_adapter_headers())
    assert_stopped_in_time(started, hanging_cli, alive)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "timeout"


def test_a_mangum_invocation_follows_the_lambda_context(
    chat: ModuleType, hanging_cli: FakeClis, alive: Callable[[int], bool]
) -> None:
    event = rest_api_event(
        method="POST",
        path="/openai/v1/chat/completions",
        resource="/openai/v1/chat/completions",
        path_parameters={},
        query_string="",
        headers=[("content-type", "application/json"), ("host", "example.execute-api.eu-west-1.amazonaws.com")],
        body=json.dumps(REQUEST).encode(),
        source_ip="203.0.113.7",
    )
    context = LambdaContext("ChatCompletionsFunction", LAMBDA_SAFETY_MARGIN_SECONDS + LEFT_AFTER_MARGIN)
    started = time.monotonic()
    status, _, body = proxy_result(chat.handler(event, context))
    assert_stopped_in_time(started, hanging_cli, alive)
    assert status == 504
    assert json.loads(body)["error"]["code"] == "timeout"
    assert context.get_remaining_time_in_millis() > 0  # answered before Lambda's own deadline
