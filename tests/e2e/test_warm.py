"""CLIs started ahead of requests keep every guarantee of a CLI started for the request.

claude: processes started ahead, one per coming request; codex: one long-lived app server, a thread per
request. Each test proves one guarantee with the real CLIs, through the emulator, against the fake.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from clinvk_core.childenv import BASE_ALLOWLIST
from clinvk_core.emulator.cli import fake_upstream_settings
from clinvk_core.testing.emulator import Emulator, emulator_env
from clinvk_core.testing.fake_upstream import FakeUpstream, Script
from tests.e2e.procs import assert_settles, descendants, open_fds, rss_kib, started_ahead, wait_until

pytestmark = pytest.mark.e2e
WARM = ["claude", "codex"]


def warm_dir(emulator: Emulator) -> Path:
    return emulator.home / ".local" / "state" / "clinvk" / "warm"


def cwd_of(pid: int) -> Path:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return Path("/gone")


def warm_pids(emulator: Emulator) -> list[int]:
    """The CLIs started ahead (waiting, or serving a request), the emulator's children."""
    root = warm_dir(emulator)
    return [pid for pid in descendants(emulator.process.pid) if cwd_of(pid).is_relative_to(root)]


def pools(emulator: Emulator) -> dict[str, dict[str, int]]:
    status: dict[str, dict[str, int]] = httpx.get(f"http://127.0.0.1:{emulator.port}/health").json()["warm"]
    return status


def pools_ready(emulator: Emulator, timeout: float = 30) -> None:
    """Every pool holds as many ready CLIs as it should."""
    assert wait_until(lambda: all(p["ready"] == p["size"] for p in pools(emulator).values()), timeout), pools(emulator)


def log_lines(emulator: Emulator) -> list[dict[str, Any]]:
    lines = []
    for line in emulator.output().splitlines():
        if line.startswith('{"request_id"'):
            lines.append(json.loads(line))
    return lines


def turn_after(emulator: Emulator, backend: str, after: int) -> dict[str, Any]:
    """The log line of ``backend``'s turn after the first ``after`` lines (written once its clean-up is
    done, just after the answer)."""

    def found() -> list[dict[str, Any]]:
        return [line for line in log_lines(emulator)[after:] if line.get("backend") == backend]

    assert wait_until(lambda: bool(found()), 2)
    return found()[-1]


def ask(emulator: Emulator, backend: str, text: str, *, system: str | None = None, stream: bool = False) -> str:
    client = openai.OpenAI(base_url=emulator.base_url, api_key="x", max_retries=0, _strict_response_validation=True)
    messages: Any = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    if not stream:
        return client.chat.completions.create(model=backend, messages=messages).choices[0].message.content or ""
    chunks = client.chat.completions.create(model=backend, messages=messages, stream=True)
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


@pytest.mark.parametrize("backend", WARM)
def test_requests_are_served_by_cli_started_ahead(backend: str, emulator: Emulator, fake: FakeUpstream) -> None:
    pools_ready(emulator)
    fake.set_script(Script(text="warm pong"))
    before = len(log_lines(emulator))
    assert ask(emulator, backend, "ping") == "warm pong"
    assert turn_after(emulator, backend, before)["warm"] is True


@pytest.mark.parametrize("backend", WARM)
def test_no_conversation_state_crosses_requests(backend: str, emulator: Emulator, fake: FakeUpstream) -> None:
    """A canary of one request never reaches another's upstream request: in sequence, and at once."""
    fake.set_script(Script(text="ok", chunk_delay=0.05))
    canaries = [f"canary-{uuid.uuid4().hex}" for _ in range(4)]
    pools_ready(emulator)
    ask(emulator, backend, f"first {canaries[0]}", system=f"system {canaries[0]}")
    ask(emulator, backend, f"second {canaries[1]}", stream=True)
    threads = [threading.Thread(target=ask, args=(emulator, backend, f"at once {canary}"),
                                kwargs={"system": f"system {canary}", "stream": i % 2 == 0})
               for i, canary in enumerate(canaries[2:])]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    requests = [r.text() for r in fake.requests_of(backend)]
    assert len(requests) == 4
    for canary in canaries:
        assert sum(canary in text for text in requests) == 1, canary  # in its own request only


@pytest.mark.parametrize("backend", WARM)
def test_disconnect_ends_that_turn_within_a_second_and_only_that_turn(
    backend: str, emulator: Emulator, fake: FakeUpstream
) -> None:
    fake.set_script(Script(text="still here", hang_on="HANG-ME"))
    pools_ready(emulator)
    with httpx.stream("POST", f"{emulator.base_url}/chat/completions",
                      json={"model": backend, "stream": True,
                            "messages": [{"role": "user", "content": "HANG-ME"}]}) as response:  # fmt: skip
        lines = response.iter_lines()
        next(lines)
        assert wait_until(lambda: fake.hanging == 1, 10)
        assert ask(emulator, backend, "another request") == "still here"  # the other request is not disturbed
    left = time.monotonic()
    assert wait_until(lambda: fake.hanging == 0, 2)  # the CLI gave up its upstream request: the turn ended
    assert time.monotonic() - left < 1.0
    assert_settles(emulator.process.pid, emulator.home)
    assert ask(emulator, backend, "and after") == "still here"


@pytest.fixture(scope="module")
def short_deadline(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """A 4 s deadline; both backends' tests share it (each waits for its pools to be full again first)."""
    settings = fake_upstream_settings(fake.url) | {"CLINVK_TIMEOUT_SECONDS": "4"}
    running = Emulator(emulator_env(tmp_path_factory.mktemp("short-deadline") / "home", settings))
    yield running
    running.stop()


@pytest.mark.parametrize("backend", WARM)
def test_the_deadline_ends_the_turn(backend: str, short_deadline: Emulator, fake: FakeUpstream) -> None:
    pools_ready(short_deadline)
    fake.set_script(Script(text="after", hang_on="HANG-ME"))
    started = time.monotonic()
    response = httpx.post(f"{short_deadline.base_url}/chat/completions", timeout=30,
                          json={"model": backend, "messages": [{"role": "user", "content": "HANG-ME"}]})  # fmt: skip
    assert response.status_code == 504
    assert time.monotonic() - started < 6
    assert wait_until(lambda: fake.hanging == 0, 1)
    assert ask(short_deadline, backend, "next") == "after"


@pytest.fixture
def own(fake: FakeUpstream, tmp_path: Path) -> Iterator[Emulator]:
    """An emulator of the test's own, for tests that break or stop its CLIs."""
    settings = fake_upstream_settings(fake.url) | {"CLINVK_TIMEOUT_SECONDS": "60", "CLINVK_WARM_MAX_SESSIONS": "50"}
    running = Emulator(emulator_env(tmp_path / "home", settings))
    yield running
    if running.process.poll() is None:
        running.stop()


@pytest.mark.parametrize("backend", WARM)
def test_a_crash_mid_request_is_a_502_and_the_next_request_works(
    backend: str, own: Emulator, fake: FakeUpstream
) -> None:
    pools_ready(own)
    fake.set_script(Script(text="alive", hang_on="HANG-ME"))
    answer: dict[str, httpx.Response] = {}

    def hanging() -> None:
        body = {"model": backend, "messages": [{"role": "user", "content": "HANG-ME"}]}
        answer["response"] = httpx.post(f"{own.base_url}/chat/completions", json=body, timeout=60)

    thread = threading.Thread(target=hanging)
    thread.start()
    assert wait_until(lambda: fake.hanging == 1, 10)
    busy = [pid for pid in warm_pids(own) if _serving(pid, backend)]
    assert busy, "no warm CLI is serving the request"
    for pid in busy:
        os.killpg(pid, signal.SIGKILL)
    thread.join(30)
    assert answer["response"].status_code == 502
    assert ask(own, backend, "next") == "alive"
    pools_ready(own)
    before = len(log_lines(own))
    assert ask(own, backend, "and the one after, warm again") == "alive"
    assert turn_after(own, backend, before)["warm"] is True


def _serving(pid: int, backend: str) -> bool:
    """Whether a warm process is ``backend``'s one serving requests (claude: the one a request took)."""
    command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    if backend == "codex":
        return "app-server" in command
    return "claude" in command and not started_ahead(pid)


def test_a_frozen_environment_serves_the_next_request(own: Emulator, fake: FakeUpstream) -> None:
    """Lambda freezes an instance between invocations: every warm CLI stopped for 30 s, then continued."""
    pools_ready(own)
    frozen = warm_pids(own)
    assert len(frozen) >= 3  # two claude processes waiting, the codex app server
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    time.sleep(30)
    for pid in frozen:
        os.kill(pid, signal.SIGCONT)
    fake.set_script(Script(text="thawed"))
    for backend in WARM:
        before = len(log_lines(own))
        assert ask(own, backend, "after the freeze") == "thawed"
        assert turn_after(own, backend, before)["warm"] is True


def test_sigterm_ends_everything_within_15_seconds(own: Emulator, fake: FakeUpstream) -> None:
    pools_ready(own)
    fake.set_script(Script(hang=True))
    threads = [threading.Thread(target=_quietly, args=(own, backend)) for backend in WARM]
    for thread in threads:
        thread.start()
    assert wait_until(lambda: fake.hanging == 2, 10)
    everything = descendants(own.process.pid)
    started = time.monotonic()
    own.process.send_signal(signal.SIGTERM)
    own.process.wait(timeout=15)
    assert time.monotonic() - started < 15
    assert wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in everything), 3)
    for thread in threads:
        thread.join(5)


def _quietly(emulator: Emulator, backend: str) -> None:
    with contextlib.suppress(openai.APIError):  # the emulator went away under the request: expected here
        ask(emulator, backend, "until the end")


BACKEND_VARIABLES = {
    "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "CLAUDE_CONFIG_DIR", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
    "CLAUDE_CODE_MAX_RETRIES", "ENABLE_TOOL_SEARCH", "CODEX_HOME", "CODEX_UPSTREAM_API_KEY",
}  # fmt: skip


def test_warm_clis_get_the_allowlisted_environment(fake: FakeUpstream, tmp_path: Path) -> None:
    canaries = {"AWS_SECRET_ACCESS_KEY": "CANARY-aws", "CLINVK_API_KEYS": "CANARY-gateway-key",
                "DATABASE_PASSWORD": "CANARY-db"}  # fmt: skip
    settings = fake_upstream_settings(fake.url) | canaries
    running = Emulator(emulator_env(tmp_path / "home", settings))
    try:
        pools_ready(running)
        for pid in warm_pids(running):
            environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
            names = {item.partition("=")[0] for item in environ}
            assert not [name for name in names if name.startswith(("AWS_", "CLINVK_"))]
            assert not [item for item in environ if "CANARY" in item]
            own = {name for name in names - BASE_ALLOWLIST - {"", "TMPDIR"} if not name.startswith("LC_")}
            assert own <= BACKEND_VARIABLES, own - BACKEND_VARIABLES  # what the backend sets, as for a cold run
    finally:
        running.stop()


def test_soak_nothing_grows(own: Emulator, fake: FakeUpstream) -> None:
    """300 requests served warm: the emulator's fds and memory, and the warm CLIs, stay where they were
    (the codex app server is replaced every 50 sessions here)."""
    fake.set_script(Script(text="soak"))
    pid = own.process.pid
    with httpx.Client(base_url=own.base_url, timeout=60) as client:

        def turn(i: int) -> None:
            body = {"model": WARM[i % 2], "messages": [{"role": "user", "content": f"request {i}"}]}
            assert client.post("/chat/completions", json=body).status_code == 200

        for i in range(30):
            turn(i)
        pools_ready(own)
        fds_before, rss_before, clis_before = open_fds(pid), rss_kib(pid), len(warm_pids(own))
        for i in range(30, 300):
            turn(i)
        pools_ready(own)
        assert wait_until(lambda: len(warm_pids(own)) <= clis_before, 10)
        fds_after, rss_after = open_fds(pid), rss_kib(pid)
    print(f"\nwarm soak: fds {fds_before} -> {fds_after}, RSS {rss_before} -> {rss_after} KiB, CLIs {clis_before}")
    assert fds_after <= fds_before
    assert rss_after <= rss_before * 1.10
    served = [line for line in log_lines(own) if line.get("path", "").endswith("/chat/completions")][-270:]
    assert all(line["warm"] for line in served if line["backend"] == "codex")  # replacements started ahead
