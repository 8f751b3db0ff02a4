"""CLIs started ahead of requests, so that a request finds its CLI already running.

Two shapes, as the backend says (``Backend.warm_kind``):

* ``prespawn`` (claude): processes started ahead, one per coming request, each in a workspace of its
  own and waiting for its input. A request takes one and the pool starts the next. After the request
  the process is killed and its workspace removed, exactly like a cold run's.
* ``server`` (codex): one long-lived process per backend, a fresh session (thread) per request with the
  request's own working directory. It is restarted when it dies and replaced after a number of
  sessions; a request whose session it cannot open runs cold.

The pool decides nothing about a request: the gateway asks, and falls back to a cold run when the
pool has nothing ready (never an error).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from clinvk_core.backends import RunPaths
from clinvk_core.backends.base import Call, WarmSession
from clinvk_core.events import Completed, Event, Failed
from clinvk_core.rpc import RpcClosed, RpcConnection, RpcFailed
from clinvk_core.runner import CliProcess, DeadlineExceeded

log = logging.getLogger("clinvk")
CLEAN_UP_SECONDS = 1.0  # what a session's cancel and close may take before it is given up
STARTED_AHEAD = ".started-ahead"
"""A file in the workspace of a CLI that belongs to a pool (waiting, or serving sessions): it says, to
anyone looking at the state dir, that the process there is kept on purpose. A request that takes the
process removes it: from then on it is that request's, and goes with it."""


@dataclass
class Started:
    """A CLI started ahead: the process, its workspace, and what closes both."""

    cli: CliProcess
    paths: RunPaths
    stack: AsyncExitStack = field(default_factory=AsyncExitStack)

    async def close(self) -> None:
        await self.stack.aclose()


Starter = Callable[[], Coroutine[Any, Any, Started]]


class PrespawnPool:
    """``size`` processes waiting for a request each; refilled in the background as they are taken."""

    def __init__(self, start: Starter, size: int) -> None:
        self._start = start
        self._size = size
        self._ready: deque[Started] = deque()
        self._starting = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def fill(self) -> None:
        while len(self._ready) + self._starting < self._size:
            self._starting += 1
            _in_background(self._tasks, self._add())

    @property
    def status(self) -> dict[str, int]:
        return {"ready": sum(started.cli.running for started in self._ready), "size": self._size}

    def take(self) -> Started | None:
        """A live process, or None (the request then runs cold); the pool starts the next one."""
        taken = None
        while self._ready and taken is None:
            candidate = self._ready.popleft()
            if candidate.cli.running:
                taken = candidate
            else:
                _in_background(self._tasks, candidate.close())
        self.fill()
        if taken is not None:
            (taken.paths.scratch / STARTED_AHEAD).unlink(missing_ok=True)
        return taken

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while self._ready:
            await self._ready.popleft().close()

    async def _add(self) -> None:
        try:
            self._ready.append(await self._start())
        except Exception as error:  # the next request runs cold; the one after tries again
            log.warning("a CLI could not be started ahead: %s", type(error).__name__)
        finally:
            self._starting -= 1


@dataclass(eq=False)  # each one is its own: kept in sets by identity
class Server:
    """A long-lived CLI and the JSON-RPC connection to it."""

    started: Started
    rpc: RpcConnection
    sessions: int = 0  # opened so far
    active: int = 0

    @property
    def usable(self) -> bool:
        return not self.rpc.closed and self.started.cli.running


ServerStarter = Callable[[], Coroutine[Any, Any, Server]]


class ServerPool:
    """One long-lived CLI for a backend: started ahead, restarted when it dies, replaced after ``max_sessions``.

    A replacement is started ahead too: the old server takes sessions until the new one is ready, and
    closes once its last session has ended.
    """

    def __init__(self, start: ServerStarter, max_sessions: int) -> None:
        self._start = start
        self._max_sessions = max_sessions
        self._current: Server | None = None
        self._starting: asyncio.Task[Server] | None = None
        self._retired: set[Server] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def status(self) -> dict[str, int]:
        current = self._usable()
        return {"ready": int(current is not None), "size": 1, "sessions": current.sessions if current else 0}

    def fill(self) -> None:
        """Start a server unless one is usable or starting; a used-up one gets its replacement started."""
        current = self._usable()
        if self._starting is None and (current is None or current.sessions >= self._max_sessions):
            self._starting = asyncio.create_task(self._start())
            self._starting.add_done_callback(self._started)

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[Server | None]:
        """The running server for one session (None: none is ready, run cold)."""
        server = self._usable()
        if server is not None:
            server.sessions += 1
            server.active += 1
        self.fill()
        if server is None:
            yield None
            return
        try:
            yield server
        finally:
            server.active -= 1
            if server in self._retired and server.active == 0:
                self._close(server)

    async def close(self) -> None:
        if self._starting is not None:
            self._starting.cancel()
            with contextlib.suppress(BaseException):
                await self._starting
        for server in [*self._retired, *([self._current] if self._current else [])]:
            await server.started.close()
        self._retired.clear()
        self._current = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _usable(self) -> Server | None:
        """The current server, if it can open sessions."""
        return self._current if self._current is not None and self._current.usable else None

    def _started(self, task: asyncio.Task[Server]) -> None:
        self._starting = None
        if task.cancelled():
            return
        if (error := task.exception()) is not None:
            log.warning("a long-lived CLI could not be started: %s", type(error).__name__)
            return
        old, self._current = self._current, task.result()
        if old is None:
            return
        if old.active == 0:
            self._close(old)
        else:
            self._retired.add(old)

    def _close(self, server: Server) -> None:
        self._retired.discard(server)
        _in_background(self._tasks, server.started.close())


def _in_background(tasks: set[asyncio.Task[None]], work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` as a task held in ``tasks`` until it ends (a pool's close cancels what is left)."""
    task = asyncio.create_task(work)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def session_events(
    rpc: RpcConnection, session: WarmSession, deadline: float
) -> AsyncGenerator[list[Event], None]:
    """Drive ``session`` on ``rpc`` to the end of its turn: its calls in order, the events of each answer
    and notification (as a parser gives those of each line).

    Raises DeadlineExceeded at ``deadline``; a CLI that goes away mid-turn is a Failed event.
    """
    loop = asyncio.get_running_loop()
    calls: deque[Call] = deque([session.opening()])
    current: tuple[Call, asyncio.Future[object]] | None = None
    inbox = None
    getter: asyncio.Future[dict[str, object] | None] | None = None
    try:
        while True:
            if current is None and calls:
                call = calls.popleft()
                current = (call, asyncio.ensure_future(rpc.call(call)))
            if inbox is None and session.key is not None:
                inbox = rpc.subscribe(session.key)
            if inbox is not None and getter is None:
                getter = asyncio.ensure_future(inbox.get())
            waiting = {future for future in (current[1] if current else None, getter) if future is not None}
            if not waiting:
                return
            done, _ = await asyncio.wait(waiting, timeout=max(0.0, deadline - loop.time()),
                                         return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            if not done:
                raise DeadlineExceeded
            events: list[Event] = []
            if current is not None and current[1] in done:
                call, answer = current
                current = None
                try:
                    more, events = session.on_result(call, answer.result())
                except (RpcFailed, RpcClosed) as error:
                    events = [_gone(error)]
                    more = []
                calls.extend(more)
            if getter is not None and getter in done:
                message, getter = getter.result(), None
                events += [_gone(RpcClosed())] if message is None else session.on_notification(message)
            yield events
            if any(isinstance(event, Completed | Failed) for event in events):
                return
    finally:
        for future in (current[1] if current else None, getter):
            if future is not None:
                future.cancel()
        if session.key is not None:
            rpc.unsubscribe(session.key)


def _gone(error: Exception) -> Failed:
    if isinstance(error, RpcClosed):
        return Failed("the CLI's long-lived process ended during the turn")
    return Failed(f"the CLI refused the session: {error}")


async def end_session(rpc: RpcConnection, session: WarmSession, finished: bool) -> None:
    """Stop the session's turn if it is still going (the client left, the deadline passed), then release it.

    Best effort, bounded: a CLI that does not answer in time is not waited for.
    """
    for call in ([] if finished else [session.cancel()]) + [session.closing()]:
        if call is None or rpc.closed:
            continue
        with contextlib.suppress(RpcFailed, RpcClosed, TimeoutError):
            await asyncio.wait_for(rpc.call(call), CLEAN_UP_SECONDS)
