"""End-to-end fixtures: the real CLIs, through the emulator, against the fake upstream on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from clinvk_core.emulator.cli import fake_upstream_settings
from clinvk_core.testing.emulator import Emulator, emulator_env
from clinvk_core.testing.fake_upstream import FakeUpstream


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
