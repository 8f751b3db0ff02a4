"""The README's promise: `make demo` (clinvk-local --fake-upstream) + the SDK snippet prints an answer."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clinvk_core.config import PROJECT_ROOT
from clinvk_core.testing.emulator import Emulator, emulator_env

pytestmark = pytest.mark.e2e
README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    running = Emulator(emulator_env(tmp_path_factory.mktemp("demo-home"), {}), "--fake-upstream")
    yield running
    # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly.
    assert running.stop() in (0, -signal.SIGTERM)


def test_readme_commands() -> None:
    assert "make demo" in README
    assert "make test" in README
    assert 'base_url="http://localhost:8080/openai/v1"' in README
    assert "make test" in (PROJECT_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "clinvk-local --fake-upstream" in (PROJECT_ROOT / "Makefile").read_text(encoding="utf-8")


def test_readme_snippets_print_models_and_answers(demo: Emulator, tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    first = next(index for index, block in enumerate(blocks) if "OpenAI(" in block)
    snippet = blocks[first] + blocks[first + 1]  # the Responses API example goes on with the same client
    assert "previous_response_id" in blocks[first + 1]
    script = tmp_path / "snippet.py"
    script.write_text(snippet.replace("http://localhost:8080/openai/v1", demo.base_url), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True, cwd=tmp_path
    )
    lines = result.stdout.splitlines()
    assert lines[:3] == ["claude", "codex", "gemini"]
    assert lines[3:] == ["pong from fake"] * 3


def test_readme_anthropic_snippet_prints_an_answer(demo: Emulator, tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    snippet = next(block for block in blocks if "anthropic.Anthropic(" in block)
    script = tmp_path / "anthropic_snippet.py"
    base_url = demo.base_url.removesuffix("/openai/v1") + "/anthropic"
    script.write_text(snippet.replace("http://localhost:8080/anthropic", base_url), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True, cwd=tmp_path
    )
    assert result.stdout.splitlines() == ["pong from fake"]
    assert "ANTHROPIC_BASE_URL=http://localhost:8080/anthropic" in README  # the Claude Code recipe
