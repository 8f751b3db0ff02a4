"""Faults, deadlines, disconnects, back-pressure and shutdown, with the real CLIs and the fake's error modes.

Every fault the upstream or the CLI can produce maps to one documented status (docs/errors.md); after
each run, no CLI process and no workspace is left behind.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from clinvk_core.emulator.cli import fake_upstream_settings
from clinvk_core.testing.emulator import Emulator, emulator_env
from clinvk_core.testing.fake_upstream import RETRY_AFTER_SECONDS, FakeUpstream, Script
from tests.e2e.procs import assert_settles, descendants, run_dirs, wait_until

pytestmark = pytest.mark.e2e
BACKENDS = ["claude", "codex", "gemini"]
USER = [{"role": "user", "content": "hi"}]


class Gateway:
    """An emulator started for this module's tests, with the settings they need."""

    def __init__(self, home: Path, settings: dict[str, str]) -> None:
        self.home = home
        self.emulator = Emulator(emulator_env(home, settings))
        self.url = self.emulator.base_url
        self.pid = self.emulator.process.pid

    def chat(self, **body: object) -> httpx.Response:
        return httpx.post(f"{self.url}/chat/completions", json={"messages": USER} | body, timeout=60)

    def settles(self, timeout: float) -> None:
        """No CLI process below the emulator and no workspace on disk, within ``timeout``."""
        assert_settles(self.pid, self.home, timeout)


@pytest.fixture(scope="module")
def roomy(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """Time enough for any CLI on a busy machine, frequent keep-alives, two CLIs in flight at most."""
    settings = fake_upstream_settings(fake.url) | {
        "CLINVK_TIMEOUT_SECONDS": "60",
        "CLINVK_KEEPALIVE_SECONDS": "0.5",
        "CLINVK_MAX_CONCURRENCY": "2",
    }
    gateway = Gateway(tmp_path_factory.mktemp("roomy-home"), settings)
    yield gateway
    gateway.emulator.stop()


@pytest.fixture(scope="module")
def tight(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A 4 s deadline, for the tests of what happens at it."""
    settings = fake_upstream_settings(fake.url) | {"CLINVK_TIMEOUT_SECONDS": "4", "CLINVK_KEEPALIVE_SECONDS": "0.5"}
    gateway = Gateway(tmp_path_factory.mktemp("tight-home"), settings)
    yield gateway
    gateway.emulator.stop()


def error_of(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    error: dict[str, object] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


# --- upstream faults, per backend -------------------------------------------------------------------------

# What each CLI says about the fake's errors (clis.md + captures): the client gets the CLI's own text.
UPSTREAM_TEXT = {
    ("claude", 401): "fake: invalid api key",
    ("codex", 401): "fake: invalid api key",
    ("gemini", 401): "fake: invalid api key",
    ("claude", 403): "fake: permission denied",
    ("codex", 403): "fake: permission denied",
    ("gemini", 403): "fake: permission denied",
    ("claude", 500): "fake internal server error",
    ("codex", 500): "experiencing high demand",  # codex replaces a 500's message with its own
    ("gemini", 500): "fake internal server error",
    ("claude", 503): "503",
    ("codex", 503): "503",
    ("gemini", 503): "fake: service unavailable",
}


@pytest.mark.parametrize(("backend", "status"), sorted(UPSTREAM_TEXT))
def test_upstream_error_is_a_502_with_the_clis_message(
    backend: str, status: int, roomy: Gateway, fake: FakeUpstream
) -> None:
    fake.set_script(Script(status=status))
    error = error_of(roomy.chat(model=backend), 502)
    assert error["type"] == "upstream_error"
    assert UPSTREAM_TEXT[(backend, status)] in str(error["message"])
    roomy.settles(3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_upstream_429_is_a_429_with_retry_after(backend: str, roomy: Gateway, fake: FakeUpstream) -> None:
    fake.set_script(Script(status=429))
    response = roomy.chat(model=backend)
    error = error_of(response, 429)
    assert error["type"] == "rate_limit_error"
    # gemini reports the upstream's delay; claude and codex do not, and a default stands in.
    expected = RETRY_AFTER_SECONDS if backend == "gemini" else 5
    assert response.headers["retry-after"] == str(expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_failure_after_the_headers_is_one_error_event(backend: str, roomy: Gateway, fake: FakeUpstream) -> None:
    fake.set_script(Script(status=500))
    response = roomy.chat(model=backend, stream=True)
    assert response.status_code == 200
    events = [e for e in response.text.split("\n\n") if e.startswith("data: ")]
    assert json.loads(events[0][6:])["choices"][0]["delta"]["role"] == "assistant"
    error = json.loads(events[-1][6:])["error"]
    assert error["type"] == "upstream_error"
    assert len(events) == 2  # role chunk, error; no [DONE]
    client = openai.OpenAI(base_url=roomy.url, api_key="x", max_retries=0)
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(model=backend, messages=USER, stream=True))  # type: ignore[arg-type]


# --- deadlines and keep-alives ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_stalled_upstream_is_a_504_at_the_deadline(backend: str, tight: Gateway, fake: FakeUpstream) -> None:
    fake.set_script(Script(hang=True))
    start = time.monotonic()
    error = error_of(tight.chat(model=backend), 504)
    assert 3.5 <= time.monotonic() - start < 8
    assert error["code"] == "timeout"
    tight.settles(3)


def test_stalled_stream_gets_keepalives_then_a_timeout_event(tight: Gateway, fake: FakeUpstream) -> None:
    fake.set_script(Script(hang=True))
    response = tight.chat(model="claude", stream=True)
    events = response.text.split("\n\n")
    assert ": keep-alive" in events
    error = json.loads(next(e for e in events if e.startswith('data: {"error"'))[6:])["error"]
    assert error["code"] == "timeout"
    tight.settles(3)


def test_keepalives_while_the_cli_is_silent_between_chunks(roomy: Gateway, fake: FakeUpstream) -> None:
    fake.set_script(Script(chunks=["slow ", "answer"], chunk_delay=1.5))
    response = roomy.chat(model="gemini", stream=True)
    events = response.text.split("\n\n")
    assert ": keep-alive" in events
    assert events[-2] == "data: [DONE]"


# --- client disconnect, back-pressure ----------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_stream_disconnect_kills_the_cli_at_once(backend: str, roomy: Gateway, fake: FakeUpstream) -> None:
    fake.set_script(Script(hang=True))
    with httpx.stream(
        "POST", f"{roomy.url}/chat/completions", json={"model": backend, "messages": USER, "stream": True}
    ) as response:
        lines = response.iter_lines()  # kept: a dropped iterator closes the connection
        next(lines)  # the role chunk: the CLI runs
        assert wait_until(lambda: fake.hanging == 1, 5)
    closed = time.monotonic()
    roomy.settles(3)
    assert time.monotonic() - closed < 1.0


def test_buffered_request_disconnect_kills_the_cli(roomy: Gateway, fake: FakeUpstream) -> None:
    fake.set_script(Script(hang=True))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{roomy.url}/chat/completions", json={"model": "codex", "messages": USER}, timeout=1.5)
    closed = time.monotonic()
    roomy.settles(3)
    assert time.monotonic() - closed < 1.0


def test_over_the_in_flight_limit_is_an_immediate_429(roomy: Gateway, fake: FakeUpstream) -> None:
    fake.set_script(Script(hang=True))
    release = threading.Event()

    def occupy() -> None:
        with httpx.stream(
            "POST", f"{roomy.url}/chat/completions", json={"model": "codex", "messages": USER, "stream": True}
        ) as r:
            lines = r.iter_lines()
            next(lines)
            release.wait(10)

    holders = [threading.Thread(target=occupy) for _ in range(2)]
    for holder in holders:
        holder.start()
    assert wait_until(lambda: len(run_dirs(roomy.home)) == 2, 5)
    start = time.monotonic()
    response = roomy.chat(model="claude")
    assert time.monotonic() - start < 1
    assert error_of(response, 429)["type"] == "rate_limit_error"
    assert int(response.headers["retry-after"]) >= 1
    release.set()
    for holder in holders:
        holder.join()
    roomy.settles(3)


# --- missing, disabled and crashing CLIs ------------------------------------------------------------------

CRASHING_CLI = """#!/bin/sh
echo 'this is not json'
echo 'Segmentation fault (core dumped)' >&2
exit 139
"""


@pytest.fixture(scope="module")
def broken(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """claude crashes, codex is not installed, gemini is disabled."""
    bin_dir = tmp_path_factory.mktemp("bin")
    (bin_dir / "claude").write_text(CRASHING_CLI, encoding="utf-8")
    (bin_dir / "claude").chmod(0o755)
    settings = fake_upstream_settings(fake.url) | {"CLINVK_BIN_DIR": str(bin_dir), "CLINVK_BACKENDS": "claude,codex"}
    # claude's warm pools never fill (its CLIs started ahead crash at once): each streaming app's start-up would
    # wait its whole CLINVK_WARM_START_SECONDS (8 s, one app after the other) for them. A second is ample.
    gateway = Gateway(tmp_path_factory.mktemp("broken-home"), settings | {"CLINVK_WARM_START_SECONDS": "1"})
    assert wait_until(lambda: not descendants(gateway.pid), 5), descendants(gateway.pid)  # they have crashed
    yield gateway
    gateway.emulator.stop()


def test_crashing_cli_is_a_502_with_its_last_words(broken: Gateway) -> None:
    error = error_of(broken.chat(model="claude"), 502)
    assert "139" in str(error["message"])
    assert "Segmentation fault" in str(error["message"])


@pytest.mark.parametrize(("model", "reason"), [("codex", "not installed"), ("gemini", "disabled")])
def test_missing_or_disabled_cli_is_a_503(model: str, reason: str, broken: Gateway) -> None:
    answer = broken.chat(model=model)
    error = error_of(answer, 503)
    assert error["code"] == "backend_unavailable"
    assert answer.headers["x-should-retry"] == "false"  # the SDKs give up at once: a retry cannot help
    assert reason in str(error["message"])
    assert error_of(broken.chat(model=model, stream=True), 503)["code"] == "backend_unavailable"
    assert httpx.get(f"{broken.url}/models/{model}").status_code == 404
    assert [m["id"] for m in httpx.get(f"{broken.url}/models").json()["data"]] == ["claude"]


# --- shutdown ----------------------------------------------------------------------------------------------


def test_sigterm_kills_in_flight_clis_and_exits(fake: FakeUpstream, tmp_path: Path) -> None:
    fake.set_script(Script(hang=True))
    gateway = Gateway(tmp_path, fake_upstream_settings(fake.url))
    threads = [
        threading.Thread(target=lambda m=model: _swallow(lambda: gateway.chat(model=m, stream=True)))
        for model in BACKENDS
    ]
    for thread in threads:
        thread.start()
    assert wait_until(lambda: fake.hanging == 3, 10)  # a CLI of each backend waits for its model
    clis = descendants(gateway.pid)  # warm ones included: nothing outlives the emulator
    assert clis
    start = time.monotonic()
    gateway.emulator.process.send_signal(signal.SIGTERM)
    gateway.emulator.process.wait(timeout=15)
    assert time.monotonic() - start < 15
    assert wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in clis), 3)
    for thread in threads:
        thread.join(timeout=5)


def _swallow(call: Callable[[], object]) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the emulator went away under the request: expected here
        call()
