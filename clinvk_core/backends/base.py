"""The interface every CLI backend implements: pure argv/env building and line parsing.

A backend holds all the knowledge about one CLI and does no I/O: the gateway
passes in paths and settings, gets back an :class:`Invocation`, and feeds the
CLI's stdout lines to :meth:`Backend.parse_line`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from clinvk_core.config import BackendName, ToolMode, Upstream
from clinvk_core.events import Event


@dataclass(frozen=True)
class RunRequest:
    """What one chat request asks of a CLI, already reduced to text."""

    prompt: str
    system_prompt: str | None = None
    model: str | None = None


@dataclass(frozen=True)
class RunPaths:
    """Where one run may write.

    ``workdir`` is the CLI's empty working directory and ``scratch`` a private
    directory for this run's own files (both removed afterwards); ``state`` is
    the backend's persistent directory under the state root. When an upstream is
    configured, ``home`` holds what the CLI keeps between runs (settings, caches)
    and ``run_home`` is the HOME the CLI and its tools see.
    """

    workdir: Path
    scratch: Path
    state: Path

    @property
    def home(self) -> Path:
        return self.state / "home"

    @property
    def run_home(self) -> Path:
        """This run's own HOME: what a CLI or a tool puts under ``~`` goes away with the run."""
        return self.scratch

    @property
    def tmp(self) -> Path:
        return self.scratch / "tmp"


@dataclass(frozen=True)
class Invocation:
    """Everything needed to start the CLI once."""

    argv: tuple[str, ...]
    env: Mapping[str, str]  # only this backend's variables; the runner adds the base allowlist
    stdin: str
    files: Mapping[Path, str] = field(default_factory=dict)  # written (0600) before the start


@dataclass(frozen=True)
class BackendSettings:
    """The slice of the gateway settings a backend needs."""

    upstream: Upstream = field(default_factory=Upstream)
    tool_mode: ToolMode = "chat"
    max_retries: int = 1


class Backend(ABC):
    """One CLI. Subclasses are stateless singletons registered in ``clinvk_core.backends``."""

    name: ClassVar[BackendName]
    executable: ClassVar[str]
    # Variables of the CLI's own (vendor) configuration, passed through from the gateway's
    # environment only when no upstream is configured, so a local login keeps working.
    passthrough_env: ClassVar[tuple[str, ...]] = ()

    def binary_candidates(self, launcher: Path) -> list[Path]:
        """Paths to try, best first, given the launcher found in the bin dir or on PATH."""
        return [launcher]

    @abstractmethod
    def login_files(self, env: Mapping[str, str], login: Mapping[str, Any]) -> dict[Path, str]:
        """The files of a subscription ``login`` (JSON), where the CLI reads them under ``env``."""

    def state_files(self, settings: BackendSettings) -> dict[str, str]:
        """Files written once, at cold start, under the backend's state dir."""
        return {}

    @abstractmethod
    def invocation(self, binary: Path, request: RunRequest, paths: RunPaths, settings: BackendSettings) -> Invocation:
        """The argv, environment and stdin for one run."""

    def parse_line(self, line: str, model: str | None) -> list[Event]:
        """Events in one line of the CLI's machine-readable output (``model``: the one passed to it)."""
        obj = json_object(line)
        return [] if obj is None else self.parse_object(obj, model)

    @abstractmethod
    def parse_object(self, obj: dict[str, Any], model: str | None) -> list[Event]:
        """Events in one JSON object the CLI printed (CLIs also print stray non-JSON lines: skipped)."""


def config_dir(env: Mapping[str, str], variable: str, under_home: str) -> Path:
    """Where a CLI keeps its files: its own ``variable``, else ``~/under_home`` of the environment it runs in."""
    return Path(env.get(variable) or Path(env.get("HOME") or Path.home()) / under_home)


def json_object(line: str) -> dict[str, Any] | None:
    """The line as a JSON object, or None for anything else (CLIs print stray text lines)."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def as_int(value: object) -> int:
    """A token count from CLI output; anything missing or odd counts as 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
