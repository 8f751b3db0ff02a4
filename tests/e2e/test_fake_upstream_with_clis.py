"""Drive the real claude, codex and gemini CLIs against the fake upstream (loopback only).

Each CLI runs with a fresh HOME/state dir, an empty cwd outside the repo, the prompt on stdin and
every retry disabled, so a run takes 0.3-2.5 s. These tests pin down that the fake is good enough
for the real clients, and the client behaviour the gateway relies on (usage mapping, errors,
system prompt placement, no tools).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from clinvk_core.testing.fake_upstream import PROVIDERS, FakeUpstream, RecordedRequest, Script, Usage

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CLAUDE = ROOT / "node_modules" / ".bin" / "claude"
GEMINI = ROOT / "node_modules" / ".bin" / "gemini"
CODEX = ROOT / "node_modules" / "@openai" / "codex-linux-x64" / "vendor" / "x86_64-unknown-linux-musl" / "bin" / "codex"
BINARIES = {"claude": CLAUDE, "codex": CODEX, "gemini": GEMINI}
CLIS = ["claude", "codex", "gemini"]

GEMINI_SETTINGS: dict[str, Any] = {
    "security": {"auth": {"selectedType": "gemini-api-key"}},
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
    "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False, "maxAttempts": 1},
}

# codex config that leaves the request with no tools at all (see test_tools_can_be_removed).
CODEX_NO_TOOLS = [
    "web_search=disabled",
    "features.view_image=false",
    "features.shell_tool=false",
    "features.goals=false",
    "features.multi_agent=false",
    "tools.experimental_request_user_input.enabled=false",
]


@dataclass
class Run:
    """One finished CLI run: stdout lines with their arrival times (s since start), parsed when JSON."""

    returncode: int
    lines: list[tuple[float, Any]]
    stderr: str
    seconds: float
    requests: list[RecordedRequest] = field(default_factory=list)

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [obj for _, obj in self.lines if isinstance(obj, dict) and obj.get("type") == kind]

    def timed(self, kind: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, obj) for t, obj in self.lines if isinstance(obj, dict) and obj.get("type") == kind]

    def describe(self) -> str:
        out = "\n".join(json.dumps(obj)[:400] for _, obj in self.lines)
        head = f"exit {self.returncode} after {self.seconds:.2f}s"
        return f"{head}\nstdout:\n{out}\nstderr:\n{self.stderr[-2000:]}"


def cli_command(
    cli: str, url: str, state: Path, args: Sequence[str], settings: dict[str, Any] | None
) -> tuple[list[str], dict[str, str]]:
    """argv and a minimal environment (nothing inherited but PATH) pointing `cli` at the fake."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(state), "LANG": "C.UTF-8"}
    env["TMPDIR"] = str(state / "tmp")
    (state / "tmp").mkdir()
    if cli == "claude":
        env |= {
            "ANTHROPIC_BASE_URL": url,
            "ANTHROPIC_API_KEY": "sk-ant-fake",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "CLAUDE_CODE_MAX_RETRIES": "0",
            "CLAUDE_CONFIG_DIR": str(state / "claude"),
        }
        argv = [
            str(CLAUDE),
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--include-partial-messages",
        ]
        argv += ["--tools", "", "--no-session-persistence", "--model", "claude-sonnet-4-5", *args]
    elif cli == "codex":
        env |= {"CODEX_HOME": str(state / "codex"), "UP_KEY": "sk-fake"}
        (state / "codex").mkdir()
        provider = (
            f'model_providers.up={{name="up",base_url="{url}/v1",env_key="UP_KEY",wire_api="responses",'
            "supports_websockets=false,request_max_retries=0,stream_max_retries=0}"
        )
        argv = [str(CODEX), "exec", "--json", "--skip-git-repo-check", "--ephemeral", "-s", "read-only"]
        argv += ["-m", "gpt-5.5", "-c", "model_provider=up", "-c", provider, "-c", "analytics.enabled=false"]
        argv += ["-c", "features.plugins=false", "-c", "check_for_update_on_startup=false", *args, "-"]
    else:
        env |= {
            "GEMINI_API_KEY": "fake",
            "GOOGLE_GEMINI_BASE_URL": url,
            "GEMINI_CLI_HOME": str(state / "gemini"),
            "GEMINI_CLI_NO_RELAUNCH": "true",
        }
        (state / "gemini" / ".gemini").mkdir(parents=True)
        (state / "gemini" / ".gemini" / "settings.json").write_text(json.dumps({**GEMINI_SETTINGS, **(settings or {})}))
        argv = [str(GEMINI), "-o", "stream-json", "--skip-trust", *args]
        if "--no-model" in argv:
            argv.remove("--no-model")
        else:
            argv += ["-m", "gemini-2.5-pro"]
    return argv, env


def start_cli(
    cli: str,
    fake: FakeUpstream,
    tmp_path: Path,
    prompt: str,
    args: Sequence[str],
    env: dict[str, str] | None,
    settings: dict[str, Any] | None,
) -> subprocess.Popen[str]:
    if not BINARIES[cli].exists():
        pytest.skip(f"{cli} is not installed under node_modules")
    state = tmp_path / f"state-{cli}"
    work = tmp_path / f"work-{cli}"
    state.mkdir()
    work.mkdir()
    argv, cli_env = cli_command(cli, fake.url, state, args, settings)
    proc = subprocess.Popen(
        argv,
        cwd=work,
        env=cli_env | (env or {}),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    proc.stdin.write(prompt)
    proc.stdin.close()
    return proc


def run_cli(
    cli: str,
    fake: FakeUpstream,
    tmp_path: Path,
    *,
    prompt: str = "say pong",
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    settings: dict[str, Any] | None = None,
    timeout: float = 60,
) -> Run:
    """Run `cli` to completion, timestamping each stdout line as it arrives."""
    proc = start_cli(cli, fake, tmp_path, prompt, args, env, settings)
    stderr: list[str] = []
    assert proc.stdout is not None
    assert proc.stderr is not None
    err_reader = threading.Thread(target=lambda: stderr.append(proc.stderr.read() if proc.stderr else ""))
    err_reader.start()
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    t0 = time.monotonic()
    lines: list[tuple[float, Any]] = []
    try:
        for line in proc.stdout:
            arrived = time.monotonic() - t0
            try:
                lines.append((arrived, json.loads(line)))
            except ValueError:
                lines.append((arrived, line.rstrip("\n")))
        returncode = proc.wait()
    finally:
        killer.cancel()
        err_reader.join(10)
    seconds = time.monotonic() - t0
    assert seconds < timeout, f"{cli} timed out after {timeout}s"
    return Run(returncode, lines, "".join(stderr), seconds, fake.requests)


def reply_text(cli: str, run: Run) -> str:
    """The final reply text as each CLI reports it."""
    if cli == "claude":
        return str(run.events("result")[-1]["result"])
    if cli == "codex":
        items = [e["item"] for e in run.events("item.completed") if e["item"]["type"] == "agent_message"]
        return "".join(str(i["text"]) for i in items)
    return "".join(str(m["content"]) for m in run.events("message") if m.get("role") == "assistant")


def text_deltas(cli: str, run: Run) -> list[tuple[float, str]]:
    """(arrival time, text) of each streamed text delta (claude and gemini only)."""
    if cli == "claude":
        return [
            (t, str(e["event"]["delta"]["text"]))
            for t, e in run.timed("stream_event")
            if e["event"]["type"] == "content_block_delta" and e["event"]["delta"]["type"] == "text_delta"
        ]
    return [(t, str(m["content"])) for t, m in run.timed("message") if m.get("role") == "assistant" and m.get("delta")]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeUpstream) -> FakeUpstream:
    server.reset()
    return server


# ---- a normal turn ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cli", CLIS)
def test_reply_arrives_and_request_is_recorded(cli: str, fake: FakeUpstream, tmp_path: Path) -> None:
    run = run_cli(cli, fake, tmp_path, prompt="say pong, marker-7731")
    assert run.returncode == 0, run.describe()
    assert reply_text(cli, run) == "pong from fake", run.describe()
    (request,) = run.requests  # exactly one upstream call: no helper or "home" calls
    assert request.provider == PROVIDERS[cli]
    assert request.method == "POST"
    assert "marker-7731" in request.text()
    if cli != "gemini":
        assert request.body["stream"] is True
    if cli == "claude":
        assert (request.path, request.query) == ("/v1/messages", "beta=true")
        assert request.headers["x-api-key"] == "sk-ant-fake"
        assert request.body["model"] == "claude-sonnet-4-5"
        assert run.events("result")[-1]["is_error"] is False
    elif cli == "codex":
        assert request.path == "/v1/responses"
        assert request.headers["authorization"] == "Bearer sk-fake"
        assert request.body["model"] == "gpt-5.5"
        assert len(run.events("turn.completed")) == 1
    else:
        assert request.path == "/v1beta/models/gemini-2.5-pro:streamGenerateContent"
        assert request.query == "alt=sse"
        assert request.headers["x-goog-api-key"] == "fake"
        assert run.events("result")[-1]["status"] == "success"


@pytest.mark.parametrize("cli", CLIS)
def test_echo_reaches_the_cli(cli: str, fake: FakeUpstream, tmp_path: Path) -> None:
    fake.set_script(Script(text="you said:", echo=True))
    run = run_cli(cli, fake, tmp_path, prompt="unique-prompt-42")
    assert reply_text(cli, run) == "you said: unique-prompt-42", run.describe()


@pytest.mark.parametrize("cli", CLIS)
def test_chunks_arrive_spread_in_time(cli: str, fake: FakeUpstream, tmp_path: Path) -> None:
    chunks = ["alpha ", "beta ", "gamma ", "delta"]
    fake.set_script(Script(chunks=chunks, chunk_delay=0.3))
    run = run_cli(cli, fake, tmp_path)
    assert run.returncode == 0, run.describe()
    assert reply_text(cli, run) == "alpha beta gamma delta"
    if cli == "codex":  # `codex exec --json` has no deltas: the text arrives whole in item.completed
        assert len([e for e in run.events("item.completed") if e["item"]["type"] == "agent_message"]) == 1
        return
    deltas = text_deltas(cli, run)
    assert [text for _, text in deltas] == chunks, run.describe()
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(deltas)]
    assert all(gap >= 0.15 for gap in gaps), gaps


# ---- usage ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("cli", CLIS)
def test_usage_with_cached_tokens(cli: str, fake: FakeUpstream, tmp_path: Path) -> None:
    fake.set_script(Script(usage=Usage(input_tokens=100, cached_tokens=40, output_tokens=7)))
    run = run_cli(cli, fake, tmp_path)
    assert run.returncode == 0, run.describe()
    if cli == "claude":
        result = run.events("result")[-1]
        usage = result["usage"]
        assert (usage["input_tokens"], usage["cache_read_input_tokens"]) == (60, 40)
        assert (usage["cache_creation_input_tokens"], usage["output_tokens"]) == (0, 7)
        model_usage = result["modelUsage"]["claude-sonnet-4-5"]
        assert (
            model_usage["inputTokens"],
            model_usage["cacheReadInputTokens"],
            model_usage["outputTokens"],
        ) == (
            60,
            40,
            7,
        )
    elif cli == "codex":
        usage = run.events("turn.completed")[-1]["usage"]
        assert (usage["input_tokens"], usage["cached_input_tokens"], usage["output_tokens"]) == (100, 40, 7)
    else:
        stats = run.events("result")[-1]["stats"]
        expected = {"input_tokens": 100, "input": 60, "cached": 40, "output_tokens": 7, "total_tokens": 107}
        assert {k: stats[k] for k in expected} == expected
        assert {k: stats["models"]["gemini-2.5-pro"][k] for k in expected} == expected


# ---- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 429, 500])
@pytest.mark.parametrize("cli", CLIS)
def test_error_status_makes_cli_fail(cli: str, status: int, fake: FakeUpstream, tmp_path: Path) -> None:
    fake.set_script(Script(status=status))
    run = run_cli(cli, fake, tmp_path, timeout=30)
    assert run.returncode != 0, run.describe()
    assert len(run.requests) == 1  # retries are off everywhere
    assert run.seconds < 15
    if cli == "claude":
        result = run.events("result")[-1]
        assert result["is_error"] is True
        assert result["api_error_status"] == status
        assert run.returncode == 1
    elif cli == "codex":
        (failed,) = run.events("turn.failed")
        assert failed["error"]["message"]
        assert run.returncode == 1
        if status == 401:
            assert "401 Unauthorized: fake: invalid api key" in failed["error"]["message"]
        if status == 429:
            assert failed["error"]["message"] == "exceeded retry limit, last status: 429 Too Many Requests"
    else:
        result = run.events("result")[-1]
        assert result["status"] == "error"
        assert run.returncode == status % 256  # 145, 173, 244
        if status == 429:
            assert "Suggested retry after 7s." in result["error"]["message"]


# ---- hang -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("cli", CLIS)
def test_hang_leaves_cli_waiting(cli: str, fake: FakeUpstream, tmp_path: Path) -> None:
    fake.set_script(Script(hang=True))
    proc = start_cli(cli, fake, tmp_path, "say pong", (), None, None)
    try:
        deadline = time.monotonic() + 30
        while not fake.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(fake.requests) == 1
        time.sleep(1.0)
        assert proc.poll() is None  # still waiting for an answer
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert proc.stdout is not None
    assert proc.stderr is not None
    with proc.stdout, proc.stderr:
        assert "pong from fake" not in proc.stdout.read()


# ---- system prompts, tools, helper calls ---------------------------------------------------------------


@pytest.mark.parametrize("cli", CLIS)
def test_system_prompt_lands_in_request(cli: str, fake: FakeUpstream, tmp_path: Path) -> None:
    env: dict[str, str] = {}
    if cli == "claude":
        args = ["--system-prompt", "SYS-MARKER", "--append-system-prompt", "APPEND-MARKER"]
    elif cli == "codex":
        args = ["-c", 'developer_instructions="SYS-MARKER"']
    else:
        args = []
        (tmp_path / "system.md").write_text("SYS-MARKER only\n")
        env["GEMINI_SYSTEM_MD"] = str(tmp_path / "system.md")
    run = run_cli(cli, fake, tmp_path, args=args, env=env)
    assert run.returncode == 0, run.describe()
    body = run.requests[-1].body
    if cli == "claude":
        texts = [block["text"] for block in body["system"]]
        assert texts[-1] == "SYS-MARKER\n\nAPPEND-MARKER"  # replaces the long default prompt
        assert "SYS-MARKER" not in json.dumps(body["messages"])
    elif cli == "codex":
        developer = [item for item in body["input"] if item.get("role") == "developer"]
        assert developer[1]["content"][0] == {"type": "input_text", "text": "SYS-MARKER"}
        assert developer[0]["content"][0]["text"].startswith("You are Codex")  # base prompt stays
    else:
        assert body["systemInstruction"]["parts"] == [{"text": "SYS-MARKER only"}]


@pytest.mark.parametrize("cli", CLIS)
def test_tools_can_be_removed(cli: str, fake: FakeUpstream, tmp_path: Path) -> None:
    args: list[str] = []
    settings: dict[str, Any] | None = None
    if cli == "codex":
        # apply_patch comes from the model catalog; a catalog entry without it removes the tool.
        catalog = tmp_path / "catalog.json"
        dump = subprocess.run(
            [str(CODEX), "debug", "models", "--bundled"],
            env={"PATH": os.environ.get("PATH", ""), "CODEX_HOME": str(tmp_path), "HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        models = [m for m in json.loads(dump.stdout)["models"] if m["slug"] == "gpt-5.5"]
        catalog.write_text(json.dumps({"models": [{**models[0], "apply_patch_tool_type": None}]}))
        for item in [*CODEX_NO_TOOLS, f'model_catalog_json="{catalog}"']:
            args += ["-c", item]
    elif cli == "gemini":
        settings = {"tools": {"core": []}}
    run = run_cli(cli, fake, tmp_path, args=args, settings=settings)
    assert run.returncode == 0, run.describe()
    assert reply_text(cli, run) == "pong from fake"
    body = run.requests[-1].body
    if cli == "gemini":
        assert body["tools"] == [{"functionDeclarations": []}]
    else:
        assert body["tools"] == []


def test_gemini_without_model_makes_router_call(fake: FakeUpstream, tmp_path: Path) -> None:
    fake.set_script(Script(usage=Usage(input_tokens=100, cached_tokens=40, output_tokens=7)))
    run = run_cli("gemini", fake, tmp_path, args=["--no-model"])
    assert run.returncode == 0, run.describe()
    assert reply_text("gemini", run) == "pong from fake"
    router, main = run.requests
    assert router.path.endswith(":generateContent")
    assert "complexity_score" in router.text()
    assert main.path.endswith(":streamGenerateContent")
    stats = run.events("result")[-1]["stats"]
    assert len(stats["models"]) == 2  # the router call is counted too
    assert stats["input_tokens"] > 100
