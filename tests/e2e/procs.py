"""What a test can see of a running emulator from the outside: its CLI processes, fds, memory, workspaces."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from clinvk_core.warm import STARTED_AHEAD


def _ppid_and_state(pid: int) -> tuple[int, str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "(comm)": state ppid ...
    return int(fields[1]), fields[0]


def descendants(root: int) -> list[int]:
    """Every process below ``root``, zombies included (a zombie still counts: it was not reaped)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (info := _ppid_and_state(int(entry))) is not None:
            parents[int(entry)] = info[0]
    found: list[int] = []
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def leftovers(root: int, home: Path, state: Path | None = None) -> list[str]:
    """What is still there below ``root`` (processes with state and command) and in the state dir
    (workspaces: ``runs/``, and ``warm/`` ones a request took).

    CLIs a warm pool keeps (their workspace marked as started ahead) are not leftovers; the warm tests
    check them. For assertion messages: a failure says what was left, not just that something was.
    """
    state = state or home / ".local" / "state" / "clinvk"
    warm = state / "warm"
    found = [str(path) for path in run_dirs(home, state)]
    found += [
        str(path) for path in (sorted(warm.iterdir()) if warm.exists() else []) if not (path / STARTED_AHEAD).exists()
    ]
    for pid in descendants(root):
        if started_ahead(pid) or any(started_ahead(up) for up in _ancestors(pid, root)):
            continue
        info = _ppid_and_state(pid)
        found.append(f"pid {pid} state {info[1] if info else '?'}: {command_line(pid)[:200]}")
    return found


def started_ahead(pid: int) -> bool:
    """Whether the process belongs to a warm pool: its workspace says so (and no request has taken it)."""
    return (_cwd(pid).parent / STARTED_AHEAD).exists()


def _cwd(pid: int) -> Path:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return Path("/nonexistent")


def _ancestors(pid: int, root: int) -> list[int]:
    """The processes between ``root`` and ``pid``."""
    found = []
    while (info := _ppid_and_state(pid)) is not None and info[0] not in (root, 0, 1):
        pid = info[0]
        found.append(pid)
    return found


def command_line(pid: int) -> str:
    """The process's argv joined by spaces ("?" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"


def assert_settles(root: int, home: Path, timeout: float = 5, state: Path | None = None) -> None:
    """Within ``timeout``, no process is left below ``root`` and no workspace in its state dir."""
    assert wait_until(lambda: not leftovers(root, home, state), timeout), leftovers(root, home, state)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError(f"no VmRSS for {pid}")


def run_dirs(home: Path, state: Path | None = None) -> list[Path]:
    """The per-request workspaces currently on disk under the emulator's state dir."""
    runs = (state or home / ".local" / "state" / "clinvk") / "runs"
    return sorted(runs.iterdir()) if runs.exists() else []


def idle_fds(pid: int, home: Path) -> int:
    """The emulator's open fds once it is idle: its last CLI reaped and that run's workspace removed.

    A run is cleaned up just after its answer is sent, so counting at once can catch that run's pipes.
    """
    assert_settles(pid, home)
    return open_fds(pid)


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()
