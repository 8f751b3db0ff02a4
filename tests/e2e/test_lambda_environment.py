"""The chat function in Lambda's filesystem: everything read-only but one temp dir, HOME not writable.

As root, ``unshare --mount`` gives the server its own mount namespace, in which the temp dir is
bind-mounted onto itself (it stays writable) and then ``/`` and ``/dev/shm`` are remounted read-only.
The server is started the way template.yaml starts the chat function behind the Lambda Web Adapter
(uvicorn on the ASGI app), with the state dir inside the writable dir as on Lambda. The network
namespace is the test's own, so the fake upstream started here is reachable on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from clinvk_core.config import PROJECT_ROOT
from clinvk_core.emulator.cli import fake_upstream_settings
from clinvk_core.emulator.template import functions, load_template
from clinvk_core.testing.emulator import emulator_env, free_port
from clinvk_core.testing.fake_upstream import FakeUpstream, Script
from clinvk_core.web import LAMBDA_CONTEXT_HEADER
from tests.e2e.procs import run_dirs, wait_until

pytestmark = pytest.mark.e2e

BACKENDS = ("claude", "codex", "gemini")
ANSWER = "Answered from a read-only root."

# Runs in the new mount namespace: make it Lambda-like, prove it is, then become the server.
NAMESPACE_SCRIPT = """
set -e
mount --bind "$WRITABLE" "$WRITABLE"
mount -o remount,bind,ro /
mount -o remount,bind,ro /dev/shm 2>/dev/null || true
if touch /.clinvk-probe 2>/dev/null; then echo "/ is writable" >&2; exit 90; fi
if touch "$HOME/.clinvk-probe" 2>/dev/null; then echo "HOME is writable" >&2; exit 91; fi
touch "$WRITABLE/.clinvk-probe"
exec "$@"
"""


def new_mount_namespace() -> list[str]:
    """The command prefix that runs a shell script in a private mount namespace; skips the test, saying
    why, where a read-only one cannot be made."""
    if os.geteuid() != 0:
        pytest.skip("simulating Lambda's read-only filesystem needs root (unshare --mount, mount --bind)")
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare (util-linux) is not installed")
    prefix = [unshare, "--mount", "--propagation", "private", "/bin/sh", "-c"]
    probe = subprocess.run(
        [*prefix, "mount -o remount,bind,ro / && ! touch /.clinvk-probe"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip(f"a read-only mount namespace is not permitted here: {probe.stderr.strip() or probe.returncode}")
    return prefix


@dataclass
class LambdaLikeServer:
    process: subprocess.Popen[str]
    url: str
    writable: Path


def chat_server_argv(port: int) -> list[str]:
    """The chat function's EntryPoint + Command from template.yaml, on this test's port and Python."""
    template = load_template(PROJECT_ROOT / "template.yaml")
    [chat] = [f for f in functions(template) if f.module == "handlers.chat_completions"]
    config = template["Resources"][chat.name]["Properties"]["ImageConfig"]
    entrypoint, command = list(config["EntryPoint"]), list(config["Command"])
    assert entrypoint[0] == "python3"
    command[command.index("--port") + 1] = str(port)
    return [sys.executable, *entrypoint[1:], *command]


@pytest.fixture(scope="module", params=["home-under-tmp", "home-read-only"])
def server(
    request: pytest.FixtureRequest, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LambdaLikeServer]:
    namespace = new_mount_namespace()
    tmp_path = tmp_path_factory.mktemp("lambda")
    writable = tmp_path / "lambda-tmp"  # Lambda's /tmp
    writable.mkdir()
    if request.param == "home-under-tmp":  # as template.yaml sets it; it does not exist at cold start
        home = writable / "clinvk" / "home"
    else:
        home = tmp_path / "read-only-home"  # outside the writable dir: read-only in the namespace
        home.mkdir()
    port = free_port()
    settings = fake_upstream_settings(fake.url) | {
        "CLINVK_STATE_DIR": str(writable / "clinvk"),
        "CLINVK_TIMEOUT_SECONDS": "60",
    }
    env = emulator_env(home, settings) | {
        "WRITABLE": str(writable),
        "TMPDIR": str(writable),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    process = subprocess.Popen(
        [*namespace, NAMESPACE_SCRIPT, "sh", *chat_server_argv(port)],
        env=env,
        cwd="/",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    running = LambdaLikeServer(process, f"http://127.0.0.1:{port}", writable)
    try:
        wait_until_it_answers(running)
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_it_answers(server: LambdaLikeServer) -> None:
    """Like the Web Adapter's readiness check: any HTTP answer below 500 means the app is up."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            output = server.process.stdout.read() if server.process.stdout else ""
            pytest.fail(f"the server exited with {server.process.returncode}:\n{output}")
        try:
            if httpx.get(f"{server.url}/health", timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    pytest.fail("the server did not answer within 30 s")


def lambda_headers() -> dict[str, str]:
    """What the Web Adapter adds: the invocation context, with Lambda's deadline (epoch ms)."""
    deadline = int(time.time() * 1000) + 120_000
    return {LAMBDA_CONTEXT_HEADER: json.dumps({"request_id": "r-1", "deadline": deadline})}


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_cli_answers_with_only_tmp_writable(backend: str, server: LambdaLikeServer, fake: FakeUpstream) -> None:
    fake.set_script(Script(text=ANSWER))
    request = {"model": backend, "messages": [{"role": "user", "content": "Are you read-only?"}]}
    url = f"{server.url}/openai/v1/chat/completions"

    response = httpx.post(url, json=request, headers=lambda_headers(), timeout=90)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"].strip() == ANSWER

    content = []
    with httpx.stream("POST", url, json={**request, "stream": True}, headers=lambda_headers(), timeout=90) as stream:
        assert stream.status_code == 200
        for line in stream.iter_lines():
            if line.startswith("data: {"):
                choices = json.loads(line.removeprefix("data: "))["choices"]
                content += [choices[0]["delta"].get("content") or ""] if choices else []
    assert "".join(content).strip() == ANSWER

    state = server.writable / "clinvk"
    assert (state / backend).is_dir()  # the backend's state went where Lambda lets it
    # Per-request workspaces removed (state/runs is absent when CLIs started ahead served every turn); the
    # run's clean-up may finish just after the answer.
    assert wait_until(lambda: not run_dirs(server.writable, state), 5), run_dirs(server.writable, state)
