"""Load and soak through the emulator: concurrency without cross-talk or leaks, steady memory and fds.

Bounded and loopback-only: 50 concurrent streams once (plus once against a lower in-flight limit), then
300 sequential requests. The soak prints what it measured.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from clinvk_core.emulator.cli import fake_upstream_settings
from clinvk_core.testing.emulator import Emulator, emulator_env
from clinvk_core.testing.fake_upstream import FakeUpstream, Script
from tests.e2e.procs import assert_settles, idle_fds, open_fds, rss_kib, wait_until

pytestmark = pytest.mark.e2e
BACKENDS = ["claude", "codex", "gemini"]
CONCURRENT = 50


def start(fake: FakeUpstream, home: Path, **settings: str) -> Emulator:
    env = fake_upstream_settings(fake.url) | {"CLINVK_TIMEOUT_SECONDS": "120"} | settings
    return Emulator(emulator_env(home, env))


@pytest.fixture
def roomy(fake: FakeUpstream, tmp_path: Path) -> Iterator[Emulator]:
    emulator = start(fake, tmp_path, CLINVK_MAX_CONCURRENCY=str(CONCURRENT))
    yield emulator
    emulator.stop()


async def stream_all(base_url: str) -> list[tuple[str, str | BaseException]]:
    """CONCURRENT streaming requests at once, spread over the backends: (marker, answer or error)."""
    client = openai.AsyncOpenAI(
        base_url=base_url, api_key="x", max_retries=0, timeout=180, _strict_response_validation=True
    )

    async def one(index: int) -> str:
        marker = f"marker-{index}-{uuid.uuid4().hex}"
        stream = await client.chat.completions.create(
            model=BACKENDS[index % len(BACKENDS)], messages=[{"role": "user", "content": marker}], stream=True
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    markers = [f"marker-{i}" for i in range(CONCURRENT)]
    results = await asyncio.gather(*(one(i) for i in range(CONCURRENT)), return_exceptions=True)
    await client.close()
    return list(zip(markers, results, strict=True))


def test_fifty_concurrent_streams_each_get_their_own_answer(
    roomy: Emulator, fake: FakeUpstream, tmp_path: Path
) -> None:
    fake.set_script(Script(text="echo:", echo=True, chunk_delay=0.05))
    fds_before = open_fds(roomy.process.pid)
    results = asyncio.run(stream_all(roomy.base_url))
    errors = [result for _, result in results if isinstance(result, BaseException)]
    assert errors == []
    for marker, answer in results:
        assert isinstance(answer, str)
        assert answer.startswith("echo: ")
        assert f"{marker}-" in answer  # its own marker, nobody else's
        assert answer.count("marker-") == 1
    assert_settles(roomy.process.pid, tmp_path)
    assert wait_until(lambda: open_fds(roomy.process.pid) <= fds_before, 5)


def test_over_the_limit_only_documented_429s(fake: FakeUpstream, tmp_path: Path) -> None:
    emulator = start(fake, tmp_path, CLINVK_MAX_CONCURRENCY="10")
    try:
        fake.set_script(Script(text="echo:", echo=True, chunk_delay=0.2))
        results = asyncio.run(stream_all(emulator.base_url))
        answered = [(m, r) for m, r in results if isinstance(r, str)]
        refused = [r for _, r in results if isinstance(r, BaseException)]
        assert all(isinstance(r, openai.RateLimitError) for r in refused)
        assert len(answered) >= 10
        assert len(refused) >= 1
        assert all(f"{marker}-" in answer for marker, answer in answered)
        assert_settles(emulator.process.pid, tmp_path)
    finally:
        emulator.stop()


def test_soak_no_fd_growth_and_bounded_memory(fake: FakeUpstream, tmp_path: Path) -> None:
    emulator = start(fake, tmp_path)
    pid = emulator.process.pid
    try:
        with httpx.Client(base_url=emulator.base_url, timeout=60) as client:

            def ask(i: int) -> None:
                body = {"model": "codex", "messages": [{"role": "user", "content": f"request {i}"}]}
                assert client.post("/chat/completions", json=body).status_code == 200

            for i in range(30):  # warm-up: caches, pools, first imports
                ask(i)
            fds_warm, rss_warm = idle_fds(pid, tmp_path), rss_kib(pid)
            for i in range(30, 300):
                ask(i)
            fds_end, rss_end = idle_fds(pid, tmp_path), rss_kib(pid)
        print(f"\nsoak: fds {fds_warm} -> {fds_end}, RSS {rss_warm} KiB -> {rss_end} KiB after 300 requests")
        assert fds_end <= fds_warm
        assert rss_end <= rss_warm * 1.10
    finally:
        emulator.stop()
