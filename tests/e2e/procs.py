"""What a test can see of a running emulator from the outside: its CLI processes, fds, memory, workspaces."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path


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


def leftovers(root: int, home: Path) -> list[str]:
    """What is still there below ``root`` (processes with state and command) and under ``home`` (workspaces).

    For assertion messages: a failure says what was left, not just that something was.
    """
    found = [str(path) for path in run_dirs(home)]
    for pid in descendants(root):
        info = _ppid_and_state(pid)
        found.append(f"pid {pid} state {info[1] if info else '?'}: {command_line(pid)[:200]}")
    return found


def command_line(pid: int) -> str:
    """The process's argv joined by spaces ("?" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"


def assert_settles(root: int, home: Path, timeout: float = 5) -> None:
    """Within ``timeout``, no process is left below ``root`` and no workspace under ``home``."""
    assert wait_until(lambda: not leftovers(root, home), timeout), leftovers(root, home)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError(f"no VmRSS for {pid}")


def run_dirs(home: Path) -> list[Path]:
    """The per-request workspaces currently on disk under the emulator's state dir."""
    runs = home / ".local" / "state" / "clinvk" / "runs"
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
