"""The measurements of `make bench`, each returning rows for the report."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from bench.harness import Bench, Tweak, rss_kib, run_bare, without
from bench.stats import Summary, summarize
from clinvk_core.backends import BACKENDS as BACKENDS_BY_NAME
from clinvk_core.backends import Invocation, RunRequest
from clinvk_core.config import PROJECT_ROOT, BackendName
from clinvk_core.conversation import Conversation
from clinvk_core.testing.fake_upstream import Script

BACKENDS: tuple[BackendName, ...] = ("claude", "codex", "gemini")
PROMPT = "Say pong."
WARMUP = 2


# --- overhead: the gateway vs the bare CLI, interleaved ------------------------------------------------


@dataclass(frozen=True)
class Overhead:
    backend: str
    stream: bool
    bare: Summary
    gateway: Summary

    @property
    def added(self) -> float:
        return self.gateway.median - self.bare.median

    @property
    def ratio(self) -> float:
        return self.gateway.median / self.bare.median


def gateway_turn(client: httpx.Client, backend: str, stream: bool, **fields: Any) -> float:
    """Seconds until the whole answer is in: the JSON body, or the stream's [DONE]."""
    body = {"model": backend, "messages": [{"role": "user", "content": PROMPT}], "stream": stream, **fields}
    start = time.perf_counter()
    if not stream:
        response = client.post("/chat/completions", json=body)
        response.raise_for_status()
        return time.perf_counter() - start
    with client.stream("POST", "/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if line == "data: [DONE]":
                return time.perf_counter() - start
    raise RuntimeError("stream ended without [DONE]")


def overhead(bench: Bench, runs: int) -> list[Overhead]:
    emulator = bench.emulator()
    rows = []
    try:
        with httpx.Client(base_url=emulator.base_url, timeout=120) as client:
            for backend in BACKENDS:
                for stream in (False, True):
                    bare, gateway = [], []
                    for i in range(WARMUP + runs):  # A, B, A, B...: drift hits both sides alike
                        a = bench.bare(backend, PROMPT).answer_at
                        b = gateway_turn(client, backend, stream)
                        if i >= WARMUP:
                            bare.append(a)
                            gateway.append(b)
                    rows.append(Overhead(backend, stream, summarize(bare), summarize(gateway)))
    finally:
        emulator.stop()
    return rows


# --- warm: CLIs started ahead of the request, against cold runs and the bare CLI ------------------------


@dataclass(frozen=True)
class WarmRow:
    backend: str
    bare: Summary  # the bare CLI, to its end-of-turn line
    cold_first: Summary  # through the gateway, CLI started for the request: first token
    cold_end: Summary  # ... [DONE]
    warm_first: Summary  # CLI started ahead: first token
    warm_end: Summary  # ... [DONE]
    warm_upstream: Summary  # CLI started ahead: until its model request reaches the upstream (what bounds it)


def stream_timings(client: httpx.Client, backend: str) -> tuple[float, float, float]:
    """(start, seconds to the first content delta, seconds to [DONE]) of one streamed turn."""
    body = {"model": backend, "messages": [{"role": "user", "content": PROMPT}], "stream": True}
    start = time.perf_counter()
    first = None
    with client.stream("POST", "/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if first is None and '"content":"' in line and '"content":""' not in line:
                first = time.perf_counter() - start
            if line == "data: [DONE]":
                return start, first or 0.0, time.perf_counter() - start
    raise RuntimeError("stream ended without [DONE]")


def warm_vs_cold(bench: Bench, runs: int, warm_backends: tuple[BackendName, ...]) -> list[WarmRow]:
    """Per warm backend, interleaved: the bare CLI, a turn through a cold gateway, one through a warm one
    whose pool is full again (a request that finds its CLI started, as on an idle Lambda instance)."""
    cold = bench.emulator()
    warm = bench.emulator(CLINVK_WARM_BACKENDS=",".join(warm_backends))
    rows = []
    try:
        with (
            httpx.Client(base_url=cold.base_url, timeout=120) as to_cold,
            httpx.Client(base_url=warm.base_url, timeout=120) as to_warm,
        ):
            for backend in warm_backends:
                samples: dict[str, list[float]] = {key: [] for key in ("bare", "cf", "ce", "wf", "we", "wu")}
                for i in range(WARMUP + runs):
                    bare = bench.bare(backend, PROMPT).answer_at
                    _, cold_first, cold_end = stream_timings(to_cold, backend)
                    _pools_ready(to_warm)
                    start, warm_first, warm_end = stream_timings(to_warm, backend)
                    upstream = min(r.received_at for r in bench.fake.requests if r.received_at >= start) - start
                    if i >= WARMUP:
                        for key, value in zip(samples, (bare, cold_first, cold_end, warm_first, warm_end, upstream),
                                              strict=True):  # fmt: skip
                            samples[key].append(value)
                rows.append(WarmRow(backend, *(summarize(values) for values in samples.values())))
    finally:
        cold.stop()
        warm.stop()
    return rows


def _pools_ready(client: httpx.Client) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        health = client.get(str(client.base_url).replace("/openai/v1", "/health")).json()
        if all(pool["ready"] == pool["size"] for pool in health["warm"].values()):
            return
        time.sleep(0.02)
    raise RuntimeError(f"the warm pools did not fill: {health['warm']}")


# --- client tools: the same turn with and without one declared tool -------------------------------------

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city right now.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@dataclass(frozen=True)
class ToolCost:
    backend: str
    plain: Summary
    with_tool: Summary

    @property
    def added(self) -> float:
        return self.with_tool.median - self.plain.median


def tool_bridge(bench: Bench, runs: int) -> list[ToolCost]:
    """What offering one client tool costs a turn the model answers in text: the CLI connects to the
    bridge, lists the tool and declares it upstream before it asks the model."""
    emulator = bench.emulator()
    rows = []
    try:
        with httpx.Client(base_url=emulator.base_url, timeout=120) as client:
            for backend in BACKENDS:
                plain, with_tool = [], []
                for i in range(WARMUP + runs):  # interleaved, as above
                    a = gateway_turn(client, backend, False)
                    b = gateway_turn(client, backend, False, tools=[WEATHER_TOOL])
                    if i >= WARMUP:
                        plain.append(a)
                        with_tool.append(b)
                rows.append(ToolCost(backend, summarize(plain), summarize(with_tool)))
    finally:
        emulator.stop()
    return rows


# --- relay delay: a CLI line written -> the SSE chunk received ---------------------------------------------

STAND_IN = """#!{python}
# A stand-in claude: each text delta carries the time it was written, in ns.
import json, sys, time
sys.stdin.read()
def out(obj):
    sys.stdout.write(json.dumps(obj) + "\\n")
    sys.stdout.flush()
out({{"type": "system", "subtype": "init", "session_id": "bench"}})
for _ in range({deltas}):
    time.sleep(0.01)
    delta = {{"type": "text_delta", "text": f"{{time.time_ns()}} "}}
    out({{"type": "stream_event", "parent_tool_use_id": None,
         "event": {{"type": "content_block_delta", "index": 0, "delta": delta}}}})
out({{"type": "result", "subtype": "success", "is_error": False, "result": "",
     "usage": {{"input_tokens": 1, "output_tokens": 1}}}})
"""


def _stand_in(bench: Bench, deltas: int) -> Path:
    bin_dir = Path(tempfile.mkdtemp(dir=bench.root))
    (bin_dir / "claude").write_text(STAND_IN.format(python=sys.executable, deltas=deltas), encoding="utf-8")
    (bin_dir / "claude").chmod(0o755)
    return bin_dir


def relay(bench: Bench, runs: int, deltas: int = 20) -> Summary:
    bin_dir = _stand_in(bench, deltas)
    emulator = bench.emulator(CLINVK_BIN_DIR=str(bin_dir), CLINVK_BACKENDS="claude")
    delays: list[float] = []
    try:
        with httpx.Client(base_url=emulator.base_url, timeout=60) as client:
            for i in range(WARMUP + runs):
                body = {"model": "claude", "messages": [{"role": "user", "content": "x"}], "stream": True}
                with client.stream("POST", "/chat/completions", json=body) as response:
                    for line in response.iter_lines():
                        received = time.time_ns()
                        if line.startswith("data: {") and '"content":"1' in line:
                            written = int(json.loads(line[6:])["choices"][0]["delta"]["content"])
                            if i >= WARMUP:
                                delays.append((received - written) / 1e9)
    finally:
        emulator.stop()
    return summarize(delays)


def floor(bench: Bench, runs: int) -> list[Overhead]:
    """The overhead again, on a stand-in CLI that answers at once and always alike: no CLI noise in it."""
    bin_dir = _stand_in(bench, deltas=3)
    emulator = bench.emulator(CLINVK_BIN_DIR=str(bin_dir), CLINVK_BACKENDS="claude")
    stand_in = Invocation(argv=(str(bin_dir / "claude"),), env={}, stdin="x")
    parse = (
        BACKENDS_BY_NAME["claude"].parser(RunRequest(Conversation.of("x"))).feed
    )  # timed to its end-of-turn line too
    rows = []
    try:
        with httpx.Client(base_url=emulator.base_url, timeout=60) as client:
            for stream in (False, True):
                bare, gateway = [], []
                for i in range(WARMUP + runs):
                    a = run_bare(stand_in, dict(os.environ), bench.root, parse).answer_at
                    b = gateway_turn(client, "claude", stream)
                    if i >= WARMUP:
                        bare.append(a)
                        gateway.append(b)
                rows.append(Overhead("stand-in", stream, summarize(bare), summarize(gateway)))
    finally:
        emulator.stop()
    return rows


# --- cold start: import of each handler module, then its first request -------------------------------------

COLD = """
import json, time
t0 = time.perf_counter()
import handlers.{module} as module
t1 = time.perf_counter()
from clinvk_core.emulator.lambda_events import LambdaContext, rest_api_event
event = rest_api_event(method="{method}", path="{path}", resource="{path}", path_parameters={{}}, query_string="",
                       headers=[("content-type", "application/json")], body={body!r}, source_ip="127.0.0.1")
result = module.handler(event, LambdaContext("{module}", 900))
t2 = time.perf_counter()
assert result["statusCode"] == 200, result
print(json.dumps([t1 - t0, t2 - t1]))
"""
CHAT_BODY = json.dumps({"model": "codex", "messages": [{"role": "user", "content": PROMPT}]}).encode()
COLD_CASES = [
    ("models", "GET", "/openai/v1/models", b""),
    ("health", "GET", "/health", b""),
    ("chat_completions", "POST", "/openai/v1/chat/completions", CHAT_BODY),
]


@dataclass(frozen=True)
class ColdStart:
    module: str
    import_time: Summary
    first_request: Summary


FRAMEWORK = "import time; t = time.perf_counter(); import fastapi, mangum; print(time.perf_counter() - t)"


def framework_import(runs: int) -> Summary:
    """What FastAPI and Mangum alone cost to import, for scale: the floor under every handler's import."""
    samples = [
        float(subprocess.run([sys.executable, "-c", FRAMEWORK], capture_output=True, text=True, check=True).stdout)
        for _ in range(runs)
    ]
    return summarize(samples)


def cold_start(bench: Bench, runs: int) -> list[ColdStart]:
    # Bytecode is compiled at image build time on Lambda; do the same here before measuring.
    subprocess.run([sys.executable, "-m", "compileall", "-q", sys.prefix, str(PROJECT_ROOT / "clinvk_core"),
                    str(PROJECT_ROOT / "handlers")], check=False, capture_output=True)  # fmt: skip
    env = bench.emulator_env()
    rows = []
    for module, method, path, body in COLD_CASES:
        imports, firsts = [], []
        for _ in range(runs):
            code = COLD.format(module=module, method=method, path=path, body=body)
            output = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                    check=True, cwd=PROJECT_ROOT).stdout  # fmt: skip
            first_import, first_request = json.loads(output)
            imports.append(first_import)
            firsts.append(first_request)
        rows.append(ColdStart(module, summarize(imports), summarize(firsts)))
    return rows


# --- scaling: concurrent streams against an upstream that takes 1 s -----------------------------------------


@dataclass(frozen=True)
class Scale:
    concurrency: int
    throughput: float  # requests per second
    latency: Summary
    errors: int
    rss_per_request_kib: float


def scaling(bench: Bench, levels: tuple[int, ...] = (1, 2, 4, 8, 16, 32), rounds: int = 2) -> list[Scale]:
    emulator = bench.emulator(CLINVK_MAX_CONCURRENCY="64")
    rows = []
    try:
        asyncio.run(_concurrent(emulator.base_url, 1, 1))  # warm-up: what the first request loads, loaded once
        bench.fake.set_script(Script(chunks=["one ", "second"], chunk_delay=1.0))
        idle = rss_kib(emulator.process.pid)
        for level in levels:
            peak = [idle]
            stop = threading.Event()

            def sample(peak: list[int] = peak, stop: threading.Event = stop) -> None:
                while not stop.is_set():
                    peak[0] = max(peak[0], rss_kib(emulator.process.pid))
                    time.sleep(0.02)

            sampler = threading.Thread(target=sample)
            sampler.start()
            start = time.perf_counter()
            latencies, errors = asyncio.run(_concurrent(emulator.base_url, level, rounds))
            wall = time.perf_counter() - start
            stop.set()
            sampler.join()
            rows.append(Scale(level, level * rounds / wall, summarize(latencies), errors, (peak[0] - idle) / level))
    finally:
        bench.fake.reset()
        emulator.stop()
    return rows


async def _concurrent(url: str, level: int, rounds: int) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=level)) as client:

        async def one() -> None:
            nonlocal errors
            body = {"model": "codex", "messages": [{"role": "user", "content": PROMPT}], "stream": True}
            start = time.perf_counter()
            async with client.stream("POST", "/chat/completions", json=body) as response:
                lines = [line async for line in response.aiter_lines()]
            if response.status_code != 200 or "data: [DONE]" not in lines:
                errors += 1
            latencies.append(time.perf_counter() - start)

        for _ in range(rounds):
            await asyncio.gather(*(one() for _ in range(level)))
    return latencies, errors


# --- start-up cuts, each measured both ways in the same run ---------------------------------------------


@dataclass(frozen=True)
class Cut:
    name: str
    backend: BackendName
    before: Summary  # without the cut
    after: Summary  # with it (what clinvk runs)
    note: str = ""


def _launcher(invocation: Invocation, env: dict[str, str]) -> tuple[Invocation, dict[str, str]]:
    launcher = PROJECT_ROOT / "node_modules" / ".bin" / "codex"
    return replace(invocation, argv=(str(launcher), *invocation.argv[1:])), env


CUTS: list[tuple[str, BackendName, Tweak]] = [
    ("codex: exec the native binary, not the Node launcher", "codex", _launcher),
    ("gemini: GEMINI_CLI_NO_RELAUNCH=true (no self re-spawn)", "gemini",
     lambda inv, env: (inv, {k: v for k, v in env.items() if k != "GEMINI_CLI_NO_RELAUNCH"})),
    ("gemini: always -m (no router call)", "gemini", lambda inv, env: (without(inv, "-m", values=1), env)),
    ('claude: --tools "" in chat mode', "claude", lambda inv, env: (without(inv, "--tools", values=1), env)),
]  # fmt: skip


def startup_cuts(bench: Bench, runs: int) -> list[Cut]:
    rows = []
    for name, backend, tweak in CUTS:
        before: list[float] = []
        after: list[float] = []
        sizes: dict[str, int] = {}
        for i in range(WARMUP + runs):
            for label, run_tweak in (("before", tweak), ("after", None)):
                bench.fake.clear()
                seconds = bench.bare(backend, PROMPT, run_tweak).answer_at
                sizes[label] = sum(len(r.text()) for r in bench.fake.requests)
                if i >= WARMUP:
                    (before if label == "before" else after).append(seconds)
        note = f"upstream bytes per turn: {sizes['before']} -> {sizes['after']}"
        rows.append(Cut(name, backend, summarize(before), summarize(after), note))
    return rows
