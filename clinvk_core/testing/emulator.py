"""``clinvk-local`` as a child process, the way a user runs it: for the e2e tests and ``make bench``."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

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
    """The emulator's environment: no CLINVK_* from the outside, an empty HOME, loopback only.

    ``E2E_WARM_BACKENDS``, when set, is its ``CLINVK_WARM_BACKENDS`` (``make e2e-cold`` sets it empty)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINVK_")}
    env |= {"HOME": str(home), "NO_PROXY": "*", "no_proxy": "*"}
    if "E2E_WARM_BACKENDS" in os.environ:
        env["CLINVK_WARM_BACKENDS"] = os.environ["E2E_WARM_BACKENDS"]
    return env | extra


class Emulator:
    """A running ``clinvk-local`` process; its output goes to a file next to its HOME (``output()``)."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/openai/v1"
        home = Path(env["HOME"])
        self.home = home
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
        """SIGTERM, then its exit status (uvicorn re-raises the signal: -15 after a clean shutdown)."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=20)
