"""The chat, responses and Anthropic messages events of events/ through their function's Lambda handler, each
in a fresh process (a cold start, as ``sam local invoke -e`` does), with the real CLIs answering from the fake
upstream."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clinvk_core.config import PROJECT_ROOT
from clinvk_core.emulator.cli import fake_upstream_settings
from clinvk_core.testing.emulator import emulator_env
from clinvk_core.testing.fake_upstream import FakeUpstream, Script

pytestmark = pytest.mark.e2e

# Invokes handlers.<argv[2]>.handler with the event file argv[1], as Lambda would, and prints the result.
INVOKE = """
import importlib, json, sys
from clinvk_core.emulator.lambda_events import LambdaContext
handler = importlib.import_module("handlers." + sys.argv[2]).handler
event = json.load(open(sys.argv[1], encoding="utf-8"))
print(json.dumps(handler(event, LambdaContext("Function", 120))))
"""
ANSWER = "Hello from the fake upstream."
EVENTS = {"rest": "claude", "http": "codex", "url": "gemini"}  # the model each event asks for, in both functions


def invoke(module: str, event: str, kind: str, backend: str, fake: FakeUpstream, tmp_path: Path) -> dict[str, Any]:
    """The Lambda handler's result for ``events/<event>-<kind>.json`` (which asks for ``backend``), in a fresh
    process, the fake answering ``ANSWER``."""
    fake.set_script(Script(text=ANSWER))
    event_file = PROJECT_ROOT / "events" / f"{event}-{kind}.json"
    assert json.loads(json.loads(event_file.read_text(encoding="utf-8"))["body"])["model"] == backend
    (tmp_path / "home").mkdir()
    settings = fake_upstream_settings(fake.url) | {"CLINVK_STATE_DIR": str(tmp_path / "state")}
    env = emulator_env(tmp_path / "home", settings | {"CLINVK_TIMEOUT_SECONDS": "60"})
    done = subprocess.run(
        [sys.executable, "-c", INVOKE, str(event_file), module],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["statusCode"] == 200, result
    return result


@pytest.mark.parametrize(("kind", "backend"), EVENTS.items())
def test_a_chat_event_gets_a_real_completion(kind: str, backend: str, fake: FakeUpstream, tmp_path: Path) -> None:
    result = invoke("chat_completions", "chat-completions", kind, backend, fake, tmp_path)
    if kind == "url":  # the Function URL event asks for a stream
        text = result["body"]
        deltas = [
            json.loads(line.removeprefix("data: "))["choices"]
            for line in text.splitlines()
            if line.startswith("data: {")
        ]
        content = "".join(choices[0]["delta"].get("content") or "" for choices in deltas if choices)
        assert text.endswith("data: [DONE]\n\n")
    else:
        completion = json.loads(result["body"])
        assert completion["model"] == backend
        content = completion["choices"][0]["message"]["content"]
    assert content.strip() == ANSWER
    assert fake.requests_of(backend)  # the real CLI called it


@pytest.mark.parametrize(("kind", "backend"), EVENTS.items())
def test_a_responses_event_gets_a_real_response(kind: str, backend: str, fake: FakeUpstream, tmp_path: Path) -> None:
    result = invoke("responses", "responses-create", kind, backend, fake, tmp_path)
    if kind == "url":  # the Function URL event asks for a stream
        events = [
            json.loads(line.removeprefix("data: ")) for line in result["body"].splitlines() if line[:6] == "data: "
        ]
        assert [events[0]["type"], events[-1]["type"]] == ["response.created", "response.completed"]
        response = events[-1]["response"]
    else:
        response = json.loads(result["body"])
    assert (response["status"], response["model"]) == ("completed", backend)
    assert response["output"][-1]["content"][0]["text"].strip() == ANSWER
    assert fake.requests_of(backend)  # the real CLI called it


@pytest.mark.parametrize(("kind", "backend"), EVENTS.items())
def test_an_anthropic_messages_event_gets_a_real_message(
    kind: str, backend: str, fake: FakeUpstream, tmp_path: Path
) -> None:
    result = invoke("anthropic_messages", "anthropic-messages", kind, backend, fake, tmp_path)
    if kind == "url":  # the Function URL event asks for a stream
        events = [event.split("\n") for event in result["body"].split("\n\n")[:-1]]
        data = [json.loads(lines[1].removeprefix("data: ")) for lines in events]
        text = "".join(item["delta"].get("text", "") for item in data if item["type"] == "content_block_delta")
        assert data[-1] == {"type": "message_stop"}
    else:
        message = json.loads(result["body"])
        assert (message["type"], message["model"], message["stop_reason"]) == ("message", backend, "end_turn")
        text = message["content"][0]["text"]
    assert text.strip() == ANSWER
    assert fake.requests_of(backend)  # the real CLI called it
