"""One chat turn through one CLI: availability, the in-flight limit, and events out.

This is the seam between the HTTP side (which speaks OpenAI) and the CLI side
(backends + runner). Everything here is independent of the wire format.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from functools import cache, partial
from pathlib import Path
from typing import Any, TypeVar

from clinvk_core.backends import BACKENDS, Backend, BackendSettings, Invocation, OutputParser, RunPaths, RunRequest
from clinvk_core.bridge import BridgeSession, ToolBridge
from clinvk_core.childenv import child_environment
from clinvk_core.config import BACKEND_NAMES, PROJECT_ROOT, BackendName, Settings, get_settings
from clinvk_core.conversation import Conversation
from clinvk_core.errors import BackendUnavailable, InvalidRequest, ModelNotFound, RateLimited, Timeout, UpstreamFailed
from clinvk_core.events import (
    Completed,
    Event,
    Failed,
    RunStarted,
    TextDelta,
    TokenUsage,
    ToolCallDone,
    ToolCallEvent,
)
from clinvk_core.routing import Route, resolve
from clinvk_core.rpc import RpcConnection
from clinvk_core.runner import CliProcess, DeadlineExceeded, SpawnFailed, spawn, start, workspace, write_files
from clinvk_core.warm import (
    STARTED_AHEAD,
    PrespawnPool,
    Server,
    ServerPool,
    Started,
    end_session,
    session_events,
)

MESSAGE_LIMIT = 1000  # characters of CLI error text passed on to the client
DEFAULT_RETRY_AFTER_SECONDS = 5  # for an upstream 429 whose delay the CLI does not report
SERVER_START_SECONDS = 30  # a long-lived CLI that does not answer its handshake by then is not used


class Gateway:
    """The backends this instance can serve, set up once per cold start."""

    def __init__(self, settings: Settings, environ: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self._environ = dict(os.environ if environ is None else environ)
        self._binaries: dict[BackendName, Path] = {}
        self._unavailable: dict[BackendName, str] = {}
        self._backend_settings = {
            name: BackendSettings(
                upstream=settings.upstream_for(name),
                tool_mode=settings.tool_mode,
                max_retries=settings.upstream_max_retries,
            )
            for name in BACKEND_NAMES
        }
        self._secrets = [s for s in (*(b.upstream.api_key for b in self._backend_settings.values()),
                                     *(k.get_secret_value() for k in settings.api_keys)) if s]  # fmt: skip
        self._in_flight = 0
        self._bridge = ToolBridge()
        self._warm_loop: asyncio.AbstractEventLoop | None = None
        for name, backend in BACKENDS.items():
            if name not in settings.backends:
                self._unavailable[name] = (
                    f"The {name} backend is disabled on this instance (CLINVK_BACKENDS, or no credentials for it "
                    "in the secret)."
                )
            elif (binary := self._locate(backend)) is None:
                self._unavailable[name] = f"The {backend.executable} CLI is not installed (run `npm ci`)."
            elif (reason := self._prepare_state(backend, binary)) is not None:
                self._unavailable[name] = reason
            else:
                self._binaries[name] = binary
        self._pools = self._make_pools()

    @property
    def models(self) -> list[BackendName]:
        """The backends that can serve requests, in a stable order."""
        return [name for name in BACKEND_NAMES if name in self._binaries]

    def route(self, model: str) -> Route:
        return resolve(model, self.settings.model_for)

    def unavailable_reason(self, backend: BackendName) -> str | None:
        return self._unavailable.get(backend)

    def available_route(self, model: str) -> Route:
        """The route of a model this instance can serve (what GET /models/{model} answers); else a 404."""
        route = self.route(model)
        if (reason := self.unavailable_reason(route.backend)) is not None:
            raise ModelNotFound(f"The model {model!r} is not available: {reason}")
        return route

    @contextlib.asynccontextmanager
    async def run(
        self, route: Route, conversation: Conversation, deadline: float
    ) -> AsyncIterator[AsyncIterator[Event]]:
        """Start the CLI for one turn; the block iterates its events. The CLI is gone after the block.

        Raises the GatewayError subclass that fits: 503 unavailable, 429 at the in-flight
        limit; while iterating, 502 upstream failure and 504 deadline.
        """
        backend = BACKENDS[route.backend]
        if route.backend not in self._binaries:
            raise BackendUnavailable(self._unavailable[route.backend])
        if (refusal := backend.refusal(conversation)) is not None:
            raise InvalidRequest(refusal)
        if self._in_flight >= self.settings.max_concurrency:
            raise RateLimited(
                f"Too many requests in flight on this instance (limit {self.settings.max_concurrency}); retry shortly."
            )
        self._in_flight += 1
        try:
            async with self._tool_session(conversation) as bridge:
                request = RunRequest(conversation, route.model, bridge.url if bridge else None)
                async with self._turn(route, request, bridge, deadline) as events:
                    if not conversation.parallel_tool_calls:
                        events = _first_call_only(events)
                    try:
                        yield events
                    finally:
                        await events.aclose()
        finally:
            self._in_flight -= 1

    @contextlib.asynccontextmanager
    async def _turn(
        self, route: Route, request: RunRequest, bridge: BridgeSession | None, deadline: float
    ) -> AsyncIterator[AsyncGenerator[Event, None]]:
        """The turn's events, from a CLI started ahead when one can serve it, else from one started now."""
        backend = BACKENDS[route.backend]
        settings = self._backend_settings[route.backend]
        pool = self._pools.get(route.backend) if self._warm_here() else None
        if pool is not None and backend.warm_refusal(request, settings) is None:
            if isinstance(pool, PrespawnPool) and route.model == self._warm_model(route.backend):
                if (started := pool.take()) is not None:
                    async with started.stack:  # the process and its workspace, as a cold run's
                        started.cli.begin(backend.warm_input(request, settings), deadline)
                        yield self._cli_events(backend, backend.parser(request), started.cli, bridge, deadline, True)
                    return
            elif isinstance(pool, ServerPool):
                async with pool.lease() as server:
                    if server is not None:
                        async with self._session_events(backend, request, server, bridge, deadline) as events:
                            yield events
                        return
        with self.workspace(route.backend) as paths:
            invocation, env = self.invocation(route.backend, request, paths)
            try:
                async with spawn(invocation, cwd=paths.workdir, env=env, deadline=deadline) as cli:
                    yield self._cli_events(backend, backend.parser(request), cli, bridge, deadline, False)
            except SpawnFailed as error:
                raise BackendUnavailable(f"The {backend.name} CLI could not be started: {error}") from None

    @contextlib.asynccontextmanager
    async def _session_events(
        self, backend: Backend, request: RunRequest, server: Server, bridge: BridgeSession | None, deadline: float
    ) -> AsyncIterator[AsyncGenerator[Event, None]]:
        """A session of a long-lived CLI, in the request's own workspace; stopped and released afterwards."""
        with self.workspace(backend.name) as paths:
            session = backend.warm_session(request, paths, self._backend_settings[backend.name])
            write_files(session.files)
            state = _TurnState(warm=True)
            items = _with_calls(session_events(server.rpc, session, deadline), bridge)
            try:
                yield self._events(backend, items, session.usage_so_far, deadline, state, _session_ended)
            finally:
                await end_session(server.rpc, session, finished=state.completed)

    def _cli_events(
        self,
        backend: Backend,
        parser: OutputParser,
        cli: CliProcess,
        bridge: BridgeSession | None,
        deadline: float,
        warm: bool,
    ) -> AsyncGenerator[Event, None]:
        async def ended() -> str:
            code = await cli.wait()
            return _exit_message(backend.name, code, cli.stderr_tail)

        items = _with_calls(_parsed(cli.lines(), parser), bridge)
        return self._events(backend, items, parser.usage_so_far, deadline, _TurnState(warm), ended)

    def workspace(self, backend: BackendName, kind: str = "runs") -> contextlib.AbstractContextManager[RunPaths]:
        """A fresh private workspace for one run of ``backend``, removed when the block ends.

        ``kind`` is the directory it is made in: ``runs`` for a request's, ``warm`` for a CLI started ahead.
        """
        return workspace(self.settings.state_dir / kind, self._state(BACKENDS[backend]))

    def invocation(
        self, backend_name: BackendName, request: RunRequest, paths: RunPaths
    ) -> tuple[Invocation, dict[str, str]]:
        """The argv, stdin and environment :meth:`run` starts the CLI with (also what `make bench` runs bare)."""
        backend = BACKENDS[backend_name]
        settings = self._backend_settings[backend_name]
        invocation = backend.invocation(self._binaries[backend_name], request, paths, settings)
        return invocation, self._environment(backend, invocation, paths)

    def _environment(self, backend: Backend, invocation: Invocation, paths: RunPaths) -> dict[str, str]:
        """The CLI's environment, started for a turn or ahead of one: the allowlist, then its own variables."""
        configured = self._backend_settings[backend.name].upstream.configured
        return child_environment(self._environ, backend, invocation, paths, upstream_configured=configured)

    def _tool_session(self, conversation: Conversation) -> contextlib.AbstractAsyncContextManager[BridgeSession | None]:
        """The bridge session that serves the turn's client tools to its CLI (None: no tools)."""
        if not conversation.tools:
            return contextlib.nullcontext()
        return self._bridge.session(conversation.tools)

    async def _events(
        self,
        backend: Backend,
        items: AsyncIterator[list[Event] | None],
        usage_so_far: Callable[[], TokenUsage | None],
        deadline: float,
        state: _TurnState,
        ended: Callable[[], Awaitable[str]],
    ) -> AsyncGenerator[Event, None]:
        """The turn's events, failures raised as gateway errors; the turn ends early at a client tool call.

        ``items`` are the events of each line (or notification) of the CLI, and None once the bridge
        saw the CLI call a client tool: when the CLI has shown that call too, the model's turn is over
        (unless the backend ``ends_calls_in_stream``: its parser's Completed says when).
        """
        budget = deadline - asyncio.get_running_loop().time()
        streamed_text = called = False
        calls = 0
        yield RunStarted(warm=state.warm)
        try:
            async for item in items:
                called = called or item is None
                for event in item or ():
                    if isinstance(event, Failed):
                        raise self._failure(backend, event)
                    if isinstance(event, Completed):
                        state.completed = True
                        if not streamed_text and event.final_text:  # no delta came: never a 200 without text
                            yield TextDelta(event.final_text)
                    streamed_text = streamed_text or (isinstance(event, TextDelta) and bool(event.text))
                    calls += isinstance(event, ToolCallDone)
                    yield event
                    if state.completed:
                        return
                if called and calls and not backend.ends_calls_in_stream:
                    # The model ended its turn with calls of client tools: the client runs them, not the CLI.
                    yield Completed(usage_so_far(), "tool_calls")
                    return
            message = await ended()
        except DeadlineExceeded:
            raise Timeout(f"The {backend.name} CLI did not finish within {budget:.0f} s.") from None
        raise UpstreamFailed(self._redact(message))

    # --- CLIs started ahead of requests (clinvk_core/warm.py) ---

    async def start_warm(self, wait: float = 0.0) -> None:
        """Start the warm pools and wait up to ``wait`` seconds for them to be ready (at the app's start-up,
        so that on Lambda the init phase warms the CLIs). Requests start them too, if need be."""
        if self._warm_loop is None:
            self._warm_loop = asyncio.get_running_loop()
        if not self._warm_here():
            return  # started already, on another loop
        for pool in self._pools.values():
            pool.fill()
        deadline = asyncio.get_running_loop().time() + wait
        while asyncio.get_running_loop().time() < deadline:
            if all(status["ready"] == status["size"] for status in self.warm_status().values()):
                return
            await asyncio.sleep(0.02)

    def warm_status(self) -> dict[str, dict[str, int]]:
        """Per backend kept warm: how many CLIs wait ready, of how many (for /health)."""
        return {name: pool.status for name, pool in self._pools.items()}

    async def stop_warm(self) -> None:
        if self._warm_here():
            for pool in self._pools.values():
                await pool.close()
        self._warm_loop = None

    def _warm_here(self) -> bool:
        """Pools live on the loop of the app that started them (its lifespan); a run elsewhere (a Mangum
        invocation, whose loop lives only as long as it does) runs cold."""
        return self._warm_loop is asyncio.get_running_loop()

    def _warm_model(self, name: BackendName) -> str | None:
        """The model the processes started ahead of requests run: the bare backend name's."""
        return self.settings.model_for(name)

    def _make_pools(self) -> dict[BackendName, PrespawnPool | ServerPool]:
        pools: dict[BackendName, PrespawnPool | ServerPool] = {}
        for name in self.settings.warm_backends:
            if name not in self._binaries or not BACKENDS[name].warm_serves(self._backend_settings[name]):
                continue
            if BACKENDS[name].warm_kind == "prespawn":
                pools[name] = PrespawnPool(partial(self._start_ahead, name), self.settings.warm_size)
            elif BACKENDS[name].warm_kind == "server":
                pools[name] = ServerPool(partial(self._start_server, name), self.settings.warm_max_sessions)
        return pools

    async def _start_ahead(self, name: BackendName) -> Started:
        """The backend's CLI, started in a workspace of its own, waiting."""
        backend = BACKENDS[name]
        settings = self._backend_settings[name]
        stack = contextlib.AsyncExitStack()
        paths = stack.enter_context(self.workspace(name, "warm"))
        (paths.scratch / STARTED_AHEAD).touch(mode=0o600)
        try:
            invocation = backend.warm_invocation(self._binaries[name], paths, settings, self._warm_model(name))
            cli = await start(invocation, cwd=paths.workdir, env=self._environment(backend, invocation, paths))
        except BaseException:
            await stack.aclose()
            raise
        stack.push_async_callback(cli.close)
        return Started(cli, paths, stack)

    async def _start_server(self, name: BackendName) -> Server:
        started = await self._start_ahead(name)
        rpc = RpcConnection(started.cli, BACKENDS[name].rpc_dialect())
        started.stack.push_async_callback(rpc.close)
        try:
            await asyncio.wait_for(rpc.handshake(), SERVER_START_SECONDS)
        except BaseException:
            await started.close()
            raise
        return Server(started, rpc)

    def _failure(self, backend: Backend, failure: Failed) -> UpstreamFailed | RateLimited:
        message = self._redact(f"{backend.name}: {failure.message}")
        if failure.upstream_status == 429:
            return RateLimited(message, retry_after=failure.retry_after or DEFAULT_RETRY_AFTER_SECONDS)
        return UpstreamFailed(message)

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text[:MESSAGE_LIMIT]

    def _locate(self, backend: Backend) -> Path | None:
        bin_dir = self.settings.bin_dir or PROJECT_ROOT / "node_modules" / ".bin"
        launcher: Path | None = bin_dir / backend.executable
        if not (launcher and launcher.exists()) and self.settings.bin_dir is None:
            found = shutil.which(backend.executable, path=self._environ.get("PATH"))
            launcher = Path(found) if found else None
        if launcher is None:
            return None
        return next((p for p in backend.binary_candidates(launcher) if os.access(p, os.X_OK)), None)

    def _state(self, backend: Backend) -> Path:
        return self.settings.state_dir / backend.name

    def _prepare_state(self, backend: Backend, binary: Path) -> str | None:
        """Write the backend's state files; the reason it cannot run when that fails."""
        state = self._state(backend)
        home = state / "home"
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        output = None
        try:
            if (argv := backend.setup_argv(binary)) is not None:
                env = {"PATH": self._environ.get("PATH", os.defpath), "HOME": str(home), "CODEX_HOME": str(home)}
                done = subprocess.run(argv, env=env, cwd=home, capture_output=True, text=True, timeout=30, check=True)
                output = done.stdout
            files = backend.state_files(self._backend_settings[backend.name], output)
        except (OSError, subprocess.SubprocessError, ValueError, LookupError, TypeError) as error:
            return f"The {backend.executable} CLI could not be set up: {type(error).__name__}: {str(error)[:200]}"
        write_files({state / name: content for name, content in files.items()})
        return None


async def _first_call_only(events: AsyncGenerator[Event, None]) -> AsyncGenerator[Event, None]:
    """The events without the calls after the first (the client asked for no parallel calls)."""
    try:
        async for event in events:
            if not (isinstance(event, ToolCallEvent) and event.index > 0):
                yield event
    finally:
        await events.aclose()


T = TypeVar("T")


class _TurnState:
    """How the turn's CLI was started; and, afterwards, whether the CLI ended the turn itself."""

    def __init__(self, warm: bool) -> None:
        self.warm = warm
        self.completed = False


async def _parsed(lines: AsyncIterator[str], parser: OutputParser) -> AsyncIterator[list[Event]]:
    async for line in lines:
        yield parser.feed(line)


async def _session_ended() -> str:
    return "the session ended without completing the turn"


async def _with_calls(items: AsyncIterator[T], session: BridgeSession | None) -> AsyncIterator[T | None]:
    """The CLI's output, and None once when the bridge reports that the CLI called a client tool."""
    if session is None:
        async for item in items:
            yield item
        return
    called: asyncio.Future[None] | None = asyncio.ensure_future(session.wait_called())
    pending: asyncio.Future[T] | None = None
    try:
        while True:
            pending = pending or asyncio.ensure_future(anext(items))
            waiting: set[asyncio.Future[Any]] = {pending} if called is None else {pending, called}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if called is not None and called.done():
                called = None
                yield None
            if pending.done():
                finished, pending = pending, None
                try:
                    item = finished.result()
                except StopAsyncIteration:
                    return
                yield item
    finally:
        leftovers = [future for future in (pending, called) if future is not None]
        for future in leftovers:
            future.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)


def _exit_message(name: str, code: int, stderr: str) -> str:
    """A one-line reason from the CLI's stderr: its last line that is not a stack frame."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and not line.lstrip().startswith("at ")]
    reason = lines[-1] if lines else "no output"
    return f"{name}: the CLI exited with code {code} without an answer: {reason}"


@cache
def get_gateway() -> Gateway:
    """The process-wide gateway (one per Lambda cold start, shared by all handlers in the emulator)."""
    return Gateway(get_settings())
