"""End-to-end fixtures: the real CLIs, through the emulator, against the fake upstream on loopback."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from clinvk_core.emulator.cli import fake_upstream_settings
from clinvk_core.testing.fake_upstream import FakeUpstream

REPO = Path(__file__).resolve().parents[2]
CLINVK_LOCAL = Path(sys.executable).parent / "clinvk-local"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the test process dies (Linux prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def emulator_env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    """The emulator's environment: no CLINVK_* from the outside, an empty HOME, loopback only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINVK_")}
    env |= {"HOME": str(home), "NO_PROXY": "*", "no_proxy": "*"}
    return env | extra


class Emulator:
    """A running ``clinvk-local`` process; its output goes to a file next to its HOME (``output()``)."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/openai/v1"
        home = Path(env["HOME"])
        self.log_path = home.with_name(f"{home.name}-clinvk-local-{self.port}.log")
        with self.log_path.open("wb") as log:  # a file, never a pipe nobody drains
            self.process = subprocess.Popen(
                [str(CLINVK_LOCAL), "--port", str(self.port), *args],
                env=env,
                cwd="/",
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # no orphan if the test run is killed
            )
        self._wait_ready()

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"clinvk-local exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("clinvk-local did not become ready in 30 s")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=20)


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture(autouse=True)
def fresh_script(request: pytest.FixtureRequest) -> None:
    """Every e2e test starts with the default script and an empty request log."""
    if "fake" in request.fixturenames:
        upstream: FakeUpstream = request.getfixturevalue("fake")
        upstream.reset()


@pytest.fixture(scope="session")
def emulator(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    home = tmp_path_factory.mktemp("home")
    settings = fake_upstream_settings(fake.url) | {"CLINVK_TIMEOUT_SECONDS": "60"}
    running = Emulator(emulator_env(home, settings))
    yield running
    running.stop()


@pytest.fixture
def client(emulator: Emulator) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=emulator.base_url, api_key="not-needed", max_retries=0, _strict_response_validation=True
    )
