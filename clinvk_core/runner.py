"""Process lifetime: one CLI process per request, in its own process group, always reaped.

The runner knows nothing about any particular CLI: it writes the invocation's files,
starts the argv with the prompt on stdin (then closed), hands out stdout lines until
the deadline, and on the way out kills the whole process tree (the CLI's group, and
any process below it that left the group) and removes the run's directory, whatever
happened (success, error, timeout, client gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

from clinvk_core.backends.base import Invocation, RunPaths

STDOUT_LINE_LIMIT = 32 * 1024 * 1024  # a claude result line carries the whole answer
STDERR_TAIL_BYTES = 8 * 1024


class DeadlineExceeded(Exception):
    """The CLI did not finish before the request's deadline."""


class SpawnFailed(Exception):
    """The CLI could not be started (missing binary, permissions...)."""


_live_groups: set[int] = set()


def kill_all() -> None:
    """SIGKILL every CLI process tree still running (used at shutdown)."""
    for pgid in list(_live_groups):
        _kill_tree(pgid)


def _kill_tree(leader: int) -> None:
    """SIGKILL the process group ``leader`` leads, and the groups of every process below it.

    A tool a CLI starts in a session of its own (all three CLIs start tools so) is out of the CLI's
    group, and killing the CLI alone would leave it running under init. It is found below the
    CLI while the CLI still lives, so the tree is read first, then every group in it is killed.
    """
    below = _groups_below(leader) - {leader, os.getpgrp()}  # never the gateway's own group
    for pgid in [leader, *below]:  # the CLI first: it spawns no more
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def _groups_below(pid: int) -> set[int]:
    import psutil  # here, not at the top: ~30 ms that a handler's cold start need not pay

    try:
        below = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return set()
    groups = set()
    for process in below:
        with contextlib.suppress(ProcessLookupError):
            groups.add(os.getpgid(process.pid))
    return groups


@contextlib.contextmanager
def workspace(runs_dir: Path, state: Path) -> Iterator[RunPaths]:
    """A private (0700) directory for one run, with an empty working directory inside; removed after."""
    runs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="run-", dir=runs_dir))
    paths = RunPaths(workdir=scratch / "work", scratch=scratch, state=state)
    try:
        paths.workdir.mkdir(mode=0o700)
        paths.tmp.mkdir(mode=0o700)
        yield paths
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class CliProcess:
    """A running CLI: its stdout lines, its exit code and the tail of its stderr.

    Started for a turn, it gets the turn's input at once (:func:`spawn`). Started ahead of a request
    (:func:`start`), it waits with its stdin open: :meth:`begin` hands it a turn later, or
    :meth:`write` talks to it line by line, for as long as it lives.
    """

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self._deadline: float | None = None
        self._stderr = bytearray()
        self._tasks = [asyncio.create_task(self._drain_stderr())]

    def begin(self, stdin: str, deadline: float) -> None:
        """The turn: ``stdin`` written, then closed (codex blocks until EOF); lines read until ``deadline``."""
        self._deadline = deadline
        self._tasks.append(asyncio.create_task(self._feed(stdin.encode("utf-8", "replace"))))

    async def write(self, data: bytes) -> None:
        """More input for a CLI that stays open (a line-based protocol)."""
        stdin = self._proc.stdin
        assert stdin is not None
        stdin.write(data)
        await stdin.drain()

    @property
    def running(self) -> bool:
        return self._proc.returncode is None

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def stderr_tail(self) -> str:
        return self._stderr.decode("utf-8", "replace")

    async def lines(self) -> AsyncIterator[str]:
        """Stdout, line by line as the CLI writes it; raises DeadlineExceeded at the deadline."""
        assert self._proc.stdout is not None
        while True:
            try:
                raw = await asyncio.wait_for(self._proc.stdout.readline(), self._remaining())
            except TimeoutError:
                raise DeadlineExceeded from None
            except ValueError:  # a line over the limit: skip it, keep reading
                continue
            if not raw:
                return
            yield raw.decode("utf-8", "replace")

    async def wait(self) -> int:
        """The exit code, waiting at most until the deadline."""
        try:
            return await asyncio.wait_for(self._proc.wait(), self._remaining())
        except TimeoutError:
            raise DeadlineExceeded from None

    async def close(self) -> None:
        """Kill the CLI's whole process tree and reap the CLI, even while being cancelled.

        Called once the turn is over (or abandoned): the CLI has nothing left to say that
        anyone waits for, and its children (node, tools) must not outlive it.
        """
        _kill_tree(self._proc.pid)  # synchronous: done even if the wait below is cancelled
        _live_groups.discard(self._proc.pid)
        for task in self._tasks:
            task.cancel()
        await asyncio.shield(self._reap())

    async def _reap(self) -> None:
        await self._proc.wait()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _remaining(self) -> float | None:
        if self._deadline is None:
            return None  # no turn yet: the CLI waits, and so does its reader
        return max(0.0, self._deadline - asyncio.get_running_loop().time())

    async def _feed(self, data: bytes) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await self.write(data)
        assert self._proc.stdin is not None
        self._proc.stdin.close()  # codex blocks until stdin reaches EOF

    async def _drain_stderr(self) -> None:
        stderr = self._proc.stderr
        assert stderr is not None
        while chunk := await stderr.read(65536):
            self._stderr += chunk
            del self._stderr[:-STDERR_TAIL_BYTES]


def write_files(files: Mapping[Path, str | bytes]) -> None:
    """An invocation's files, private (0600, new directories 0700); text is written as UTF-8."""
    for path, content in files.items():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(content.encode("utf-8") if isinstance(content, str) else content)


async def start(invocation: Invocation, *, cwd: Path, env: Mapping[str, str]) -> CliProcess:
    """Start the CLI in a new process group, its stdin open; the caller closes it (:meth:`CliProcess.close`)."""
    write_files(invocation.files)
    try:
        proc = await asyncio.create_subprocess_exec(
            *invocation.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,  # its own process group, killed as a whole
            limit=STDOUT_LINE_LIMIT,
        )
    except OSError as error:
        raise SpawnFailed(f"{Path(invocation.argv[0]).name}: {error.strerror or error}") from error
    _live_groups.add(proc.pid)
    return CliProcess(proc)


@contextlib.asynccontextmanager
async def spawn(
    invocation: Invocation, *, cwd: Path, env: Mapping[str, str], deadline: float
) -> AsyncIterator[CliProcess]:
    """Start the CLI for one turn, its input given at once; on exit from the block it is gone, whatever happened.

    ``deadline`` is in event-loop time (``loop.time()``).
    """
    cli = await start(invocation, cwd=cwd, env=env)
    cli.begin(invocation.stdin, deadline)
    try:
        yield cli
    finally:
        await cli.close()
