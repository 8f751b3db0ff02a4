"""Adversarial tests: a hostile model, hostile clients, and what a request leaves behind.

Every gateway here runs with canary secrets where a deployment keeps real ones: AWS credentials, the
gateway's own API keys and an unrelated secret in its environment, a credentials file in its HOME, and
a distinct upstream key per backend. The fake upstream plays a model that answers every prompt with a
shell tool call printing the environment and ``~/.aws/credentials``; the tests then look for the
canaries in everything that left the gateway: every upstream request (headers included), every HTTP
response and the gateway's own output (its logs).
"""

from __future__ import annotations

import base64
import concurrent.futures
import fnmatch
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from clinvk_core.emulator.cli import fake_upstream_settings
from clinvk_core.testing.emulator import Emulator, emulator_env
from clinvk_core.testing.fake_upstream import PROVIDERS, FakeUpstream, RecordedRequest, Script, tool_result
from clinvk_core.warm import STARTED_AHEAD
from tests.e2e.procs import assert_settles, command_line, started_ahead, wait_until

pytestmark = pytest.mark.e2e

BACKENDS = ["claude", "codex", "gemini"]
# codex offers its tools only for a model of its catalog: this one gets the real tool list.
MODEL = {"claude": "claude", "codex": "codex/gpt-5.5", "gemini": "gemini"}

_RUN = secrets.token_hex(6)  # canaries differ per test session: no match can come from elsewhere


def canary(name: str) -> str:
    return f"canary-{name}-{_RUN}"


GATEWAY_KEY = canary("gateway-key")
HASHED_GATEWAY_KEY = canary("hashed-gateway-key")  # configured only as its digest
GATEWAY_KEY_DIGEST = hashlib.sha256(HASHED_GATEWAY_KEY.encode()).hexdigest()
SECRET_ENV = {
    "AWS_ACCESS_KEY_ID": canary("aws-access-key-id"),
    "AWS_SECRET_ACCESS_KEY": canary("aws-secret-access-key"),
    "AWS_SESSION_TOKEN": canary("aws-session-token"),
    "DATABASE_PASSWORD": canary("database-password"),
}
AWS_FILE_SECRET = canary("aws-credentials-file")
UPSTREAM_KEYS = {backend: canary(f"{backend}-upstream-key") for backend in BACKENDS}
# What must never leave the gateway in any request, response or log line. (Each backend's own upstream
# key goes to its own upstream by design; it is checked separately, see foreign_keys.)
CANARIES = [*SECRET_ENV.values(), GATEWAY_KEY, HASHED_GATEWAY_KEY, GATEWAY_KEY_DIGEST, AWS_FILE_SECRET]

# The hostile model's command. Its output says "tool-ran", which the command itself does not contain,
# so the marker in a request or answer proves the command really ran.
PROBE = "echo TOOL-RAN | tr A-Z a-z; env; cat ~/.aws/credentials"
RAN = "tool-ran"


class Gateway:
    """``clinvk-local`` with canary secrets in its environment and HOME."""

    def __init__(self, root: Path, fake: FakeUpstream, **settings: str) -> None:
        home = root / "home"
        (home / ".aws").mkdir(parents=True)
        (home / ".aws" / "credentials").write_text(f"[default]\naws_secret_access_key = {AWS_FILE_SECRET}\n")
        self.state = root / "state"
        env = fake_upstream_settings(fake.url) | {f"CLINVK_{b.upper()}_API_KEY": k for b, k in UPSTREAM_KEYS.items()}
        env |= {
            "CLINVK_API_KEYS": f"{GATEWAY_KEY},sha256:{GATEWAY_KEY_DIGEST}",
            "CLINVK_STATE_DIR": str(self.state),
            "CLINVK_TIMEOUT_SECONDS": "60",
            **SECRET_ENV,
            **settings,
        }
        self.emulator = Emulator(emulator_env(home, env))
        self.base_url = self.emulator.base_url

    @property
    def pid(self) -> int:
        return self.emulator.process.pid

    def settles(self) -> None:
        """Within a moment: no CLI of a request left (zombies count), no workspace of a request left."""
        assert_settles(self.pid, self.state.parent / "home", 5, self.state)

    def chat(self, backend: str, content: str = "run it", headers: dict[str, str] | None = None) -> httpx.Response:
        """One chat completion, with a valid key unless ``headers`` says otherwise."""
        return httpx.post(
            f"{self.base_url}/chat/completions",
            json={"model": MODEL[backend], "messages": [{"role": "user", "content": content}]},
            headers={"Authorization": f"Bearer {GATEWAY_KEY}"} if headers is None else headers,
            timeout=90,
        )

    def logs(self) -> str:
        """Everything the emulator printed so far (stdout and stderr)."""
        return self.emulator.output()

    def logged(self, response: httpx.Response) -> str:
        """The logs once the response's access-log line is in (written just after the response)."""
        request_id = response.headers["x-request-id"]
        assert wait_until(lambda: request_id in self.logs(), 5), f"no log line for {request_id}"
        return self.logs()

    def stop(self) -> None:
        self.emulator.stop()


@pytest.fixture(scope="module")
def chat_gateway(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = Gateway(tmp_path_factory.mktemp("chat"), fake)  # CLINVK_TOOL_MODE unset: chat is the default
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def agent_gateway(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = Gateway(tmp_path_factory.mktemp("agent"), fake, CLINVK_TOOL_MODE="agent")
    yield gateway
    gateway.stop()


def offered_tools(backend: str, request: RecordedRequest) -> list[str]:
    body = request.body if isinstance(request.body, dict) else {}
    tools: list[dict[str, Any]] = body.get("tools") or []
    if backend == "gemini":
        return [d["name"] for tool in tools for d in tool.get("functionDeclarations") or []]
    return [str(tool.get("name") or tool.get("type")) for tool in tools]


def upstream_traffic(requests: list[RecordedRequest]) -> str:
    """Every recorded request as text: method, path, query, headers and body."""
    return "\n".join(f"{r.method} {r.path}?{r.query} {json.dumps(r.headers)} {r.text()}" for r in requests)


def response_text(response: httpx.Response) -> str:
    return f"{json.dumps(dict(response.headers))}\n{response.text}"


def leaked(text: str) -> list[str]:
    return [value for value in CANARIES if value in text]


def foreign_keys(fake: FakeUpstream, backend: str) -> list[str]:
    """Other backends' upstream keys found in the requests this backend's CLI sent."""
    sent = upstream_traffic(fake.requests_of(backend))
    return [key for other, key in UPSTREAM_KEYS.items() if other != backend and key in sent]


def answer_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    content: str = response.json()["choices"][0]["message"]["content"]
    return content


# --- chat mode: no tool offered, none run, nothing leaks ------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_chat_mode_offers_no_tool_and_runs_none(backend: str, chat_gateway: Gateway, fake: FakeUpstream) -> None:
    fake.set_script(Script(text="done.", tool_command=PROBE, tool_echo=True))
    response = chat_gateway.chat(backend)
    answer = answer_of(response)

    first, *later = fake.model_turns(backend)
    offered = offered_tools(backend, first)
    if backend == "codex":
        # apply_patch comes with the model catalog and cannot be switched off; the read-only sandbox
        # stops it writing anything (docs/decisions.md).
        assert set(offered) <= {"apply_patch"}
    else:
        assert offered == []
    if backend == "claude":
        assert first.body["tools"] == []  # `--tools ""`: not even a declaration
    # The fake asked for the shell tool anyway: the CLI refused and sent the refusal back.
    assert later, "the CLI never answered the tool call"
    refusal = tool_result(PROVIDERS[backend], later[-1].body)
    assert refusal
    assert answer == f"done.\n{refusal}".strip()
    assert RAN not in upstream_traffic(fake.requests)
    assert RAN not in answer

    assert leaked(upstream_traffic(fake.requests)) == []
    assert foreign_keys(fake, backend) == []
    assert leaked(response_text(response)) == []
    assert leaked(chat_gateway.logged(response)) == []


# --- agent mode: the tool runs, and still finds nothing -------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_agent_mode_runs_the_tool_yet_no_secret_leaks(backend: str, agent_gateway: Gateway, fake: FakeUpstream) -> None:
    fake.set_script(Script(text="done.", tool_command=PROBE, tool_echo=True))
    response = agent_gateway.chat(backend)
    answer = answer_of(response)

    output = tool_result(PROVIDERS[backend], fake.model_turns(backend)[-1].body)
    assert output is not None
    assert RAN in output  # the command ran...
    assert "PATH=" in output  # ...`env` printed the CLI's environment...
    assert "No such file or directory" in output  # ...and ~ is the run's own home: no .aws there
    assert RAN in answer  # the model's answer carried the output back to the client

    assert leaked(upstream_traffic(fake.requests)) == []
    assert foreign_keys(fake, backend) == []
    assert leaked(response_text(response)) == []
    assert leaked(agent_gateway.logged(response)) == []


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param(
            "claude",
            marks=pytest.mark.xfail(
                strict=True,
                reason="claude passes its environment to tool commands; CLAUDE_CODE_SUBPROCESS_ENV_SCRUB=1 "
                "would drop the key but makes claude refuse to start without bubblewrap (docs/security.md)",
            ),
        ),
        "codex",
        "gemini",
    ],
)
def test_agent_mode_tool_env_lacks_the_upstream_key(backend: str, agent_gateway: Gateway, fake: FakeUpstream) -> None:
    fake.set_script(Script(text="done.", tool_command=PROBE, tool_echo=True))
    answer = answer_of(agent_gateway.chat(backend))
    assert RAN in answer
    assert UPSTREAM_KEYS[backend] not in answer


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param(
            "claude",
            marks=pytest.mark.xfail(
                strict=True, reason="no sandbox: the tool runs as the gateway's user and reads its /proc environ"
            ),
        ),
        "codex",  # its sandbox runs the command in a PID namespace of its own
        pytest.param(
            "gemini",
            marks=pytest.mark.xfail(
                strict=True, reason="no sandbox: the tool runs as the gateway's user and reads its /proc environ"
            ),
        ),
    ],
)
def test_agent_mode_tool_cannot_read_the_gateway_process(
    backend: str, agent_gateway: Gateway, fake: FakeUpstream
) -> None:
    # Every process's environment, filtered down to the canary (the command names its prefix, not its value).
    prefix = SECRET_ENV["AWS_SECRET_ACCESS_KEY"].removesuffix(_RUN)
    environs = "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\000' '\\n'"
    probe = f"echo TOOL-RAN | tr A-Z a-z; {environs} | grep -ao '{prefix}[0-9a-f]*' | sort -u"
    fake.set_script(Script(text="done.", tool_command=probe, tool_echo=True))
    answer = answer_of(agent_gateway.chat(backend))
    assert RAN in answer
    assert leaked(answer) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_agent_mode_tool_dies_with_the_request_the_client_left(
    backend: str, agent_gateway: Gateway, fake: FakeUpstream
) -> None:
    """A tool still running when the client hangs up is killed, even one the CLI started in a session of
    its own (all three CLIs start tools so): nothing keeps running under init after the request."""
    fake.set_script(Script(text="done.", tool_command="sh -c 'sleep 120'", tool_echo=True))
    body = {"model": MODEL[backend], "messages": [{"role": "user", "content": "run it"}], "stream": True}
    headers = {"Authorization": f"Bearer {GATEWAY_KEY}"}
    url = f"{agent_gateway.base_url}/chat/completions"
    with httpx.stream("POST", url, json=body, headers=headers, timeout=60) as response:
        assert response.status_code == 200
        assert wait_until(lambda: "sleep 120" in commands_under(agent_gateway.state), 30), "the tool never ran"
    # The client has hung up: the CLI and its tool are gone, wherever the tool's process group was.
    assert wait_until(lambda: working_under(agent_gateway.state) == [], 2), commands_under(agent_gateway.state)


# --- gateway API keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"x-api-key": "wrong-key"},
        {"Authorization": "Bearer"},
        {"x-api-key": ""},
        {"Authorization": f"Bearer {GATEWAY_KEY}x"},
        {"Authorization": f"Bearer {GATEWAY_KEY[:-1]}"},
        {"api-key": GATEWAY_KEY},
        {"Authorization": GATEWAY_KEY},
        {"Authorization": f"Token {GATEWAY_KEY}"},
        {"Authorization": "Basic " + base64.b64encode(f"user:{GATEWAY_KEY}".encode()).decode()},
        {"Authorization": f"Bearer sha256:{GATEWAY_KEY_DIGEST}"},  # knowing the stored hash is not enough
        {"x-api-key": GATEWAY_KEY_DIGEST},
    ],
    ids=[
        "none",
        "wrong-bearer",
        "wrong-x-api-key",
        "empty-bearer",
        "empty-x-api-key",
        "key-plus-one",
        "key-minus-one",
        "api-key-header",
        "no-scheme",
        "token-scheme",
        "basic",
        "stored-hash",
        "bare-digest",
    ],
)
def test_requests_without_a_valid_key_get_401(
    headers: dict[str, str], chat_gateway: Gateway, fake: FakeUpstream
) -> None:
    for response in (
        httpx.get(f"{chat_gateway.base_url}/models", headers=headers),
        httpx.get(f"{chat_gateway.base_url}/models/claude", headers=headers),
        chat_gateway.chat("claude", headers=headers),
    ):
        assert response.status_code == 401, response.text
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert (error["type"], error["code"]) == ("authentication_error", "invalid_api_key")
        assert leaked(response_text(response)) == []
    assert fake.requests == []  # refused before any CLI ran


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {GATEWAY_KEY}"},
        {"Authorization": f"bearer {GATEWAY_KEY}"},
        {"x-api-key": GATEWAY_KEY},
        {"Authorization": f"Bearer {HASHED_GATEWAY_KEY}"},
        {"x-api-key": HASHED_GATEWAY_KEY},
    ],
    ids=["bearer", "bearer-lowercase", "x-api-key", "hashed-bearer", "hashed-x-api-key"],
)
def test_a_valid_key_in_either_header_gets_in(headers: dict[str, str], chat_gateway: Gateway) -> None:
    response = httpx.get(f"{chat_gateway.base_url}/models", headers=headers)
    assert response.status_code == 200
    assert [model["id"] for model in response.json()["data"]] == BACKENDS
    assert leaked(response_text(response)) == []


def test_health_needs_no_key(chat_gateway: Gateway) -> None:
    response = httpx.get(f"http://127.0.0.1:{chat_gateway.emulator.port}/health")
    assert response.status_code == 200


def test_openai_sdk_raises_authentication_error_and_works_with_the_key(
    chat_gateway: Gateway, fake: FakeUpstream
) -> None:
    wrong = openai.OpenAI(base_url=chat_gateway.base_url, api_key="wrong-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        wrong.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()

    fake.set_script(Script(text="authenticated answer"))
    client = openai.OpenAI(
        base_url=chat_gateway.base_url, api_key=HASHED_GATEWAY_KEY, max_retries=0, _strict_response_validation=True
    )
    response = client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}])
    assert response.choices[0].message.content == "authenticated answer"
    assert leaked(upstream_traffic(fake.requests)) == []


def test_keys_never_reach_the_logs(chat_gateway: Gateway) -> None:
    """Whatever the key tests above sent, valid or not, no key shows up in the gateway's output."""
    responses = [
        httpx.get(f"{chat_gateway.base_url}/models", headers=headers)
        for key in (GATEWAY_KEY, HASHED_GATEWAY_KEY, f"wrong-{_RUN}")
        for headers in ({"Authorization": f"Bearer {key}"}, {"x-api-key": key})
    ]
    logs = chat_gateway.logged(responses[-1])
    assert f"wrong-{_RUN}" not in logs
    assert leaked(logs) == []
    # The log lines are there, the keys are not.
    assert '"status":401' in logs
    assert '"status":200' in logs


# --- what a request leaves behind -----------------------------------------------------------------------

# Files the CLIs keep under the state dir and change on their own between requests; everything else
# there must be exactly what it was after the first request of each backend.
CLI_CACHES = {
    "codex/home/*.sqlite-wal": "SQLite write-ahead log of a codex database (schema only: --ephemeral)",
    "codex/home/*.sqlite-shm": "SQLite shared-memory index of the same",
    "codex/home/tmp/arg0-linux/*": "codex's helper dir per process (its binary linked as apply_patch and as "
    "its sandbox): made as .tmpXXXX, renamed codex-arg0XXXX; each start removes the stale codex-arg0 ones, "
    "not a .tmp one that a codex killed in its first moments leaves (a few links, no data)",
}
# The CLIs the warm pools keep, each in a workspace of its own that comes and goes with it (the pools
# are checked by procs.leftovers: a workspace a request took is gone after the request).
WARM_POOLS = ("warm", "warm/*")
# Known gap, see test_no_conversation_stays_on_disk: gemini's home is shared by all runs, and every run
# adds a project (tmp/NAME/ with its chat recording, history/NAME/) there; a run killed while it holds
# the project registry's lock leaves the lock (the next run takes it over once 10 s stale).
GEMINI_SHARED_HOME = (
    "gemini/home/.gemini/tmp/*",
    "gemini/home/.gemini/history/*",
    "gemini/home/.gemini/projects.json.lock",
)


def state_listing(state: Path, ignore: tuple[str, ...]) -> set[str]:
    listing = {str(path.relative_to(state)) for path in state.rglob("*")}
    return {path for path in listing if not any(fnmatch.fnmatch(path, pattern) for pattern in ignore)}


def working_under(root: Path) -> list[int]:
    """Processes anywhere on the machine whose working directory is under ``root`` (orphans included),
    but for the CLIs a warm pool keeps there (their workspace says so)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and os.readlink(proc / "cwd").startswith(str(root)):
                found.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours to look at
            continue
    return [pid for pid in found if not started_ahead(pid)]


def commands_under(root: Path) -> str:
    """The command lines of the processes ``working_under(root)``, one per line."""
    return "\n".join(command_line(pid) for pid in working_under(root))


def spread(count: int) -> list[str]:
    return [BACKENDS[i % len(BACKENDS)] for i in range(count)]


def cancel_a_stream(gateway: Gateway, backend: str) -> list[Path]:
    """Start a streaming request, hang up at its first event; the workspaces requests had meanwhile
    (``runs/``, and a warm CLI's that a request took)."""
    body = {"model": MODEL[backend], "messages": [{"role": "user", "content": "slow"}], "stream": True}
    headers = {"Authorization": f"Bearer {GATEWAY_KEY}"}
    with httpx.stream("POST", f"{gateway.base_url}/chat/completions", json=body, headers=headers, timeout=60) as r:
        assert r.status_code == 200
        next(line for line in r.iter_lines() if line.startswith("data:"))
        warm = gateway.state / "warm"
        taken = [path for path in warm.iterdir() if not (path / STARTED_AHEAD).exists()] if warm.exists() else []
        return list((gateway.state / "runs").iterdir()) + taken


def test_fifty_requests_leave_no_workspace_process_or_state_behind(fake: FakeUpstream, tmp_path: Path) -> None:
    gateway = Gateway(tmp_path, fake)
    try:
        for backend in BACKENDS:  # each CLI sets up its caches on its first run
            answer_of(gateway.chat(backend))
        gateway.settles()
        ignore = (*CLI_CACHES, *GEMINI_SHARED_HOME, *WARM_POOLS)
        before = state_listing(gateway.state, ignore)

        # One workspace per request while it runs: private, and an empty working directory.
        slow = Script(chunks=[f"chunk {i} " for i in range(8)], chunk_delay=0.25)
        fake.set_script(slow)
        [workspace] = cancel_a_stream(gateway, "claude")
        assert workspace.stat().st_mode & 0o777 == 0o700
        assert (workspace / "work").stat().st_mode & 0o777 == 0o700
        assert list((workspace / "work").iterdir()) == []

        # 49 more, three at a time: successes, upstream failures, streams the client hangs up on.
        with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
            fake.set_script(Script(text="ok"))
            succeeded = list(pool.map(gateway.chat, spread(17)))
            fake.set_script(Script(status=500))
            failed = list(pool.map(gateway.chat, spread(16)))
            fake.set_script(slow)
            list(pool.map(lambda backend: cancel_a_stream(gateway, backend), spread(16)))
        assert [r.status_code for r in succeeded] == [200] * 17
        assert [r.status_code for r in failed] == [502] * 16
        assert all(leaked(response_text(r)) == [] for r in succeeded + failed)

        # Within a moment of the last hang-up: no CLI left (zombies count), no workspace left.
        gateway.settles()
        assert working_under(gateway.state) == []  # nothing escaped the process group either
        after = state_listing(gateway.state, ignore)
        assert after == before, f"new: {sorted(after - before)}, gone: {sorted(before - after)}"
        helper_dirs = [p.name for p in (gateway.state / "codex/home/tmp/arg0-linux").iterdir()]
        assert all(name.startswith(("codex-arg0", ".tmp")) for name in helper_dirs), helper_dirs
        assert len([name for name in helper_dirs if name.startswith("codex-arg0")]) <= 4  # the 3 in flight + 1
    finally:
        gateway.stop()
    logs = gateway.logs()
    assert logs.count('"path":"/openai/v1/chat/completions"') == 3 + 50
    assert leaked(logs) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_conversation_stays_on_disk(backend: str, chat_gateway: Gateway, fake: FakeUpstream) -> None:
    prompt = canary(f"{backend}-prompt")
    fake.set_script(Script(text=canary(f"{backend}-answer")))
    assert answer_of(chat_gateway.chat(backend, prompt)) == canary(f"{backend}-answer")
    assert wait_until(lambda: list((chat_gateway.state / "runs").iterdir()) == [], 5)
    texts = (prompt.encode(), canary(f"{backend}-answer").encode())
    assert [path for path in _files(chat_gateway.state) if any(text in _read(path) for text in texts)] == []


def _files(root: Path) -> list[Path]:
    """Every file under ``root`` (a warm pool may add and remove workspaces meanwhile)."""
    found = []
    for directory, _, names in os.walk(root):
        found += [Path(directory) / name for name in names]
    return found


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # removed meanwhile (a warm CLI's workspace that a request took)
        return b""
