"""Claude Code itself as the client of /anthropic, driven by gemini or codex.

The chain: the pinned ``claude`` CLI (client, print mode) -> the emulator's /anthropic -> the gemini (or
codex) CLI -> the fake upstream. The fake plays the backend's model: it calls Claude Code's own ``Bash``
tool, which reaches the backend's CLI as a client tool of clinvk's bridge (``mcp_clinvk_Bash``...), comes
back to Claude Code as a ``tool_use``, runs there, and its output goes back up the chain to the model.

Nothing may leave loopback: the client's proxy is a listener that records every connection, and
NO_PROXY lets only loopback through; the test fails if anything knocked.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clinvk_core.config import PROJECT_ROOT
from clinvk_core.testing.emulator import Emulator
from clinvk_core.testing.fake_upstream import FakeUpstream, Script, ScriptedCall

CLAUDE = PROJECT_ROOT / "node_modules" / ".bin" / "claude"
COMMAND = "echo CLINVK-$((6*7))"  # its output, CLINVK-42, is nowhere in the request: only running it makes it
pytestmark = pytest.mark.e2e


class Tripwire:
    """A proxy that forwards nothing: it records whoever tries to reach beyond loopback."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self.knocks: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(2)
                try:
                    self.knocks.append(connection.recv(200))
                except OSError as error:
                    self.knocks.append(repr(error).encode())

    def close(self) -> None:
        self._socket.close()


@pytest.fixture
def tripwire() -> Iterator[Tripwire]:
    wire = Tripwire()
    yield wire
    wire.close()


def run_claude_code(emulator: Emulator, model: str, prompt: str, root: Path, proxy: str) -> list[dict[str, Any]]:
    """One print-mode turn of Claude Code against the emulator; its stream-json lines."""
    home, work = root / "client-home", root / "work"
    home.mkdir()
    work.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{emulator.port}/anthropic",
        "ANTHROPIC_API_KEY": "x",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "HTTPS_PROXY": proxy,
        "HTTP_PROXY": proxy,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    argv = [str(CLAUDE), "-p", "--model", model, "--allowedTools", "Bash", "--output-format", "stream-json",
            "--verbose", prompt]  # fmt: skip
    done = subprocess.run(argv, env=env, cwd=work, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def blocks(lines: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The content blocks of type ``kind`` in Claude Code's own transcript."""
    return [
        block
        for line in lines
        if line.get("type") in ("assistant", "user")
        for block in line["message"]["content"]
        if isinstance(block, dict) and block.get("type") == kind
    ]


@pytest.mark.parametrize("backend", ["gemini", "codex"])
def test_claude_code_runs_its_own_tool_for_a_backend_model(
    backend: str, emulator: Emulator, fake: FakeUpstream, tripwire: Tripwire, tmp_path: Path
) -> None:
    call = ScriptedCall("Bash", {"command": COMMAND, "description": "Print a marker"})
    fake.set_script(Script(text="Done: the marker was printed.", tool_calls=[call]))
    lines = run_claude_code(emulator, backend, "Print the marker with Bash.", tmp_path, tripwire.url)

    (use,) = blocks(lines, "tool_use")
    assert (use["name"], use["input"]["command"]) == ("Bash", COMMAND)  # the backend's call, as Claude Code's own
    (result,) = blocks(lines, "tool_result")
    assert result["tool_use_id"] == use["id"]
    assert "CLINVK-42" in json.dumps(result["content"])  # Claude Code ran it
    final = lines[-1]
    assert (final["type"], final["subtype"], final["is_error"]) == ("result", "success", False)
    assert final["result"] == "Done: the marker was printed."

    calls = [r for r in fake.requests_of(backend) if "responseJsonSchema" not in r.text()]
    first, second = calls  # the model's turn that called the tool, and the one after its result
    assert "Claude" in first.text()  # Claude Code's system prompt reached the backend's model
    assert "Bash" in json.dumps(first.body.get("tools"))  # and its tools, as tools of the backend's CLI
    assert "CLINVK-42" not in first.text()
    assert "CLINVK-42" in second.text()  # the tool's output came back up the chain
    assert tripwire.knocks == []  # nothing tried to leave loopback
