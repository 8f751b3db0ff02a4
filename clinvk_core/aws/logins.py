"""The CLIs' login files (a subscription login instead of an API key), written where each CLI reads them.

A login is used only when the backend has no upstream base URL or key, so the CLI runs with its
normal home: the one the gateway's environment gives it (``HOME``, or the CLI's own variable such as
``CODEX_HOME``). Where that is, is asked of the real child-environment builder, so this module never
guesses the gateway's layout; each CLI's own file naming is its backend's (``Backend.login_files``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clinvk_core.backends import BACKENDS, BackendSettings, RunPaths, RunRequest
from clinvk_core.childenv import child_environment
from clinvk_core.config import BackendName, Settings
from clinvk_core.conversation import Conversation

EMPTY = Conversation(turns=())

FILE_MODE = 0o600
DIR_MODE = 0o700


def cli_environment(name: BackendName, settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment the CLI gets when it runs with its own login (no upstream configured)."""
    backend = BACKENDS[name]
    state = settings.state_dir / name
    paths = RunPaths(workdir=state / "work", scratch=state / "scratch", state=state)
    invocation = backend.invocation(
        Path(backend.executable), RunRequest(EMPTY), paths, BackendSettings(tool_mode=settings.tool_mode)
    )
    return child_environment(environ, backend, invocation, paths, upstream_configured=False)


def login_files(name: BackendName, env: Mapping[str, str], login: Mapping[str, Any]) -> dict[Path, str]:
    """The files that make up ``login`` for CLI ``name``, at the paths that CLI reads given ``env``."""
    return BACKENDS[name].login_files(env, login)


def write_if_absent(path: Path, content: str) -> bool:
    """Write a private file (0600, new directories 0700) unless one is there; True if written.

    An existing file wins: it is the user's own login locally, or one the CLI has since
    refreshed (OAuth refresh tokens rotate, so the secret's copy may be the stale one).
    """
    _make_private_dirs(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(content)
    return True


def _make_private_dirs(directory: Path) -> None:
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        path.mkdir(mode=DIR_MODE, exist_ok=True)
