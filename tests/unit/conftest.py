"""Shared unit fixtures: the recorded CLI outputs, and the handler apps over stand-in CLIs.

Nothing here reads outside the repository: the captures live in ``tests/fixtures/captures``,
and the handlers are imported against a throwaway state dir and a bin dir of tiny shell
scripts standing in for ``claude``, ``codex`` and ``gemini``.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from clinvk_core.backends import RunPaths
from clinvk_core.config import get_settings
from clinvk_core.gateway import get_gateway
from clinvk_core.store import get_store

CAPTURES = Path(__file__).resolve().parent.parent / "fixtures" / "captures"
HANDLER_MODULES = (
    "handlers.models",
    "handlers.health",
    "handlers.chat_completions",
    "handlers.responses",
    "handlers.anthropic_messages",
    "handlers.anthropic_models",
)
CLI_NAMES = ("claude", "codex", "gemini")
# Each CLI's recorded answer of "pong from fake": what ``FakeClis.replay`` has the stand-ins print.
ANSWERS = {"claude": "claude-stream-json-partial.txt", "codex": "codex-json.txt", "gemini": "gemini-stream-json.txt"}

# Records its pid, argv (NUL-separated), environment, working directory and stdin; then replays
# NAME.out / NAME.err, sleeps NAME.sleep seconds and exits with NAME.code, all from the control dir.
# Asked for codex's model catalog (once, at a cold start), it answers an empty one.
_FAKE_CLI = """#!/bin/sh
ctl='{control}/{name}'
if [ "$*" = "debug models --bundled" ]; then echo '{{"models": []}}'; exit 0; fi  # codex's catalog, at cold start
echo $$ > "$ctl.pid"
printf '%s\\0' "$@" > "$ctl.argv"
env -0 > "$ctl.env"
pwd > "$ctl.cwd"
cat > "$ctl.stdin"
if [ -f "$ctl.out" ]; then cat "$ctl.out"; fi
if [ -f "$ctl.err" ]; then cat "$ctl.err" >&2; fi
if [ -f "$ctl.sleep" ]; then sleep "$(cat "$ctl.sleep")"; fi
if [ -f "$ctl.code" ]; then exit "$(cat "$ctl.code")"; fi
exit 0
"""


@pytest.fixture(scope="session")
def capture() -> Callable[[str], list[str]]:
    """A capture file's lines, each with its newline, exactly as the runner hands them to a backend."""

    def read(name: str) -> list[str]:
        return (CAPTURES / name).read_text(encoding="utf-8").splitlines(keepends=True)

    return read


@pytest.fixture
def run_paths(tmp_path: Path) -> RunPaths:
    """The directories of one run, as ``runner.workspace`` lays them out (not created)."""
    return RunPaths(workdir=tmp_path / "run" / "work", scratch=tmp_path / "run", state=tmp_path / "state")


@dataclass(frozen=True)
class FakeClis:
    """Shell scripts named like the CLIs; each call is recorded, and its output scripted per test."""

    bin_dir: Path
    control: Path

    def script(self, name: str, *, stdout: str = "", stderr: str = "", code: int = 0, sleep: float = 0) -> None:
        self.reset(name)
        (self.control / f"{name}.out").write_text(stdout, encoding="utf-8")
        (self.control / f"{name}.err").write_text(stderr, encoding="utf-8")
        (self.control / f"{name}.code").write_text(str(code), encoding="utf-8")
        if sleep:
            (self.control / f"{name}.sleep").write_text(str(sleep), encoding="utf-8")

    def replay(self, *names: str) -> None:
        """The CLIs named (all of them by default) print their recorded answer (``ANSWERS``) and exit 0."""
        for name in names or CLI_NAMES:
            self.script(name, stdout=(CAPTURES / ANSWERS[name]).read_text(encoding="utf-8"))

    def reset(self, name: str) -> None:
        for suffix in ("out", "err", "code", "sleep", "argv", "env", "stdin", "cwd", "pid"):
            (self.control / f"{name}.{suffix}").unlink(missing_ok=True)

    def argv(self, name: str) -> list[str]:
        return (self.control / f"{name}.argv").read_text(encoding="utf-8").split("\0")[:-1]

    def stdin(self, name: str) -> str:
        return (self.control / f"{name}.stdin").read_text(encoding="utf-8")

    def env(self, name: str) -> dict[str, str]:
        raw = (self.control / f"{name}.env").read_text(encoding="utf-8").split("\0")[:-1]
        return dict(item.split("=", 1) for item in raw)

    def cwd(self, name: str) -> Path:
        return Path((self.control / f"{name}.cwd").read_text(encoding="utf-8").strip())

    def pid(self, name: str) -> int:
        return int((self.control / f"{name}.pid").read_text(encoding="utf-8"))

    def ran(self, name: str) -> bool:
        return (self.control / f"{name}.argv").exists()


def make_fake_clis(root: Path) -> FakeClis:
    bin_dir, control = root / "bin", root / "control"
    bin_dir.mkdir(parents=True)
    control.mkdir()
    for name in CLI_NAMES:
        script = bin_dir / name
        script.write_text(_FAKE_CLI.format(control=control, name=name), encoding="utf-8")
        script.chmod(0o755)
    return FakeClis(bin_dir, control)


@pytest.fixture
def fake_clis(tmp_path: Path) -> FakeClis:
    return make_fake_clis(tmp_path / "clis")


@dataclass(frozen=True)
class Handlers:
    """The handler modules, freshly imported (a cold start) over the fake CLIs."""

    models: FastAPI
    health: FastAPI
    chat: FastAPI
    responses: FastAPI
    anthropic: FastAPI  # /anthropic/v1/messages (and count_tokens)
    anthropic_models: FastAPI
    models_handler: Any  # the Mangum Lambda entry points
    health_handler: Any
    clis: FakeClis
    state_dir: Path
    bin_dir: Path


# Settings for the handlers' cold start: every CLINVK_* variable from the outside is dropped.
# The stand-in CLIs speak no warm protocol: every run is cold here (warm runs: tests/e2e/test_warm.py).
HANDLER_SETTINGS = {"CLINVK_TIMEOUT_SECONDS": "1", "CLINVK_KEEPALIVE_SECONDS": "0.1", "CLINVK_WARM_BACKENDS": ""}


def _forget_handlers() -> None:
    get_settings.cache_clear()
    get_gateway.cache_clear()
    get_store.cache_clear()
    for name in HANDLER_MODULES:
        sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def handlers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Handlers]:
    """Import the handlers as a Lambda cold start would, with the environment patched only meanwhile."""
    root = tmp_path_factory.mktemp("handlers")
    clis = make_fake_clis(root)
    state_dir = root / "state"
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("CLINVK_"):
                patch.delenv(name)
        patch.setenv("CLINVK_STATE_DIR", str(state_dir))
        patch.setenv("CLINVK_BIN_DIR", str(clis.bin_dir))
        for name, value in HANDLER_SETTINGS.items():
            patch.setenv(name, value)
        _forget_handlers()
        models, health, chat, responses, anthropic, anthropic_models = (
            importlib.import_module(name) for name in HANDLER_MODULES
        )
    try:
        yield Handlers(
            models=models.app,
            health=health.app,
            chat=chat.app,
            responses=responses.app,
            anthropic=anthropic.app,
            anthropic_models=anthropic_models.app,
            models_handler=models.handler,
            health_handler=health.handler,
            clis=clis,
            state_dir=state_dir,
            bin_dir=clis.bin_dir,
        )
    finally:
        _forget_handlers()  # later imports read the real environment again


def serve(handlers: Handlers, app: FastAPI) -> Iterator[TestClient]:
    """A test client of one handler app (a fixture's body), the stand-in CLIs' scripts and records forgotten."""
    for name in CLI_NAMES:
        handlers.clis.reset(name)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def pid_alive(pid: int) -> bool:
    """True while ``pid`` is a process that still runs (a zombie has already died)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = next((line.split()[1] for line in status.splitlines() if line.startswith("State:")), "")
    return state not in ("Z", "X")


@pytest.fixture(scope="session")
def alive() -> Callable[[int], bool]:
    return pid_alive
