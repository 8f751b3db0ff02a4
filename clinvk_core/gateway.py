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
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from clinvk_core.backends import BACKENDS, Backend, BackendSettings, Invocation, OutputParser, RunPaths, RunRequest
from clinvk_core.bridge import BridgeSession, ToolBridge
from clinvk_core.childenv import child_environment
from clinvk_core.config import BACKEND_NAMES, PROJECT_ROOT, BackendName, Settings, get_settings
from clinvk_core.conversation import Conversation
from clinvk_core.errors import BackendUnavailable, InvalidRequest, RateLimited, Timeout, UpstreamFailed
from clinvk_core.events import Completed, Event, Failed, TextDelta, ToolCallDone, ToolCallEvent
from clinvk_core.routing import Route, resolve
from clinvk_core.runner import CliProcess, DeadlineExceeded, SpawnFailed, spawn, workspace, write_files

MESSAGE_LIMIT = 1000  # characters of CLI error text passed on to the client
DEFAULT_RETRY_AFTER_SECONDS = 5  # for an upstream 429 whose delay the CLI does not report


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

    @property
    def models(self) -> list[BackendName]:
        """The backends that can serve requests, in a stable order."""
        return [name for name in BACKEND_NAMES if name in self._binaries]

    def route(self, model: str) -> Route:
        return resolve(model, self.settings.model_for)

    def unavailable_reason(self, backend: BackendName) -> str | None:
        return self._unavailable.get(backend)

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
            with self.workspace(route.backend) as paths:
                async with self._tool_session(conversation) as session:
                    request = RunRequest(conversation, route.model, session.url if session else None)
                    invocation, env = self.invocation(route.backend, request, paths)
                    try:
                        async with spawn(invocation, cwd=paths.workdir, env=env, deadline=deadline) as cli:
                            events = self._events(backend, backend.parser(request), cli, session, deadline)
                            if not conversation.parallel_tool_calls:
                                events = _first_call_only(events)
                            try:
                                yield events
                            finally:
                                await events.aclose()
                    except SpawnFailed as error:
                        raise BackendUnavailable(f"The {backend.name} CLI could not be started: {error}") from None
        finally:
            self._in_flight -= 1

    def workspace(self, backend: BackendName) -> contextlib.AbstractContextManager[RunPaths]:
        """A fresh private workspace for one run of ``backend``, removed when the block ends."""
        return workspace(self.settings.state_dir / "runs", self._state(BACKENDS[backend]))

    def invocation(
        self, backend_name: BackendName, request: RunRequest, paths: RunPaths
    ) -> tuple[Invocation, dict[str, str]]:
        """The argv, stdin and environment :meth:`run` starts the CLI with (also what `make bench` runs bare)."""
        backend = BACKENDS[backend_name]
        settings = self._backend_settings[backend_name]
        invocation = backend.invocation(self._binaries[backend_name], request, paths, settings)
        env = child_environment(
            self._environ, backend, invocation, paths, upstream_configured=settings.upstream.configured
        )
        return invocation, env

    def _tool_session(self, conversation: Conversation) -> contextlib.AbstractAsyncContextManager[BridgeSession | None]:
        """The bridge session that serves the turn's client tools to its CLI (None: no tools)."""
        if not conversation.tools:
            return contextlib.nullcontext()
        return self._bridge.session(conversation.tools)

    async def _events(
        self,
        backend: Backend,
        parser: OutputParser,
        cli: CliProcess,
        session: BridgeSession | None,
        deadline: float,
    ) -> AsyncGenerator[Event, None]:
        budget = deadline - asyncio.get_running_loop().time()
        completed = streamed_text = called = False
        calls = 0
        try:
            async for line in _lines_and_calls(cli.lines(), session):
                if line is None:  # the CLI called a client tool and now waits for it
                    called = True
                for event in parser.feed(line) if line is not None else ():
                    if isinstance(event, Failed):
                        raise self._failure(backend, event)
                    if isinstance(event, Completed):
                        completed = True
                        if not streamed_text and event.final_text:  # no delta came: never a 200 without text
                            yield TextDelta(event.final_text)
                    streamed_text = streamed_text or (isinstance(event, TextDelta) and bool(event.text))
                    calls += isinstance(event, ToolCallDone)
                    yield event
                if called and calls:
                    # The model ended its turn with calls of client tools: the client runs them, not the CLI.
                    yield Completed(parser.usage_so_far(), "tool_calls")
                    return
            code = await cli.wait()
        except DeadlineExceeded:
            raise Timeout(f"The {backend.name} CLI did not finish within {budget:.0f} s.") from None
        if not completed:
            raise UpstreamFailed(self._redact(_exit_message(backend.name, code, cli.stderr_tail)))

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


async def _lines_and_calls(lines: AsyncIterator[str], session: BridgeSession | None) -> AsyncIterator[str | None]:
    """The CLI's stdout lines, and None once when the bridge reports that the CLI called a client tool."""
    if session is None:
        async for line in lines:
            yield line
        return
    called: asyncio.Future[None] | None = asyncio.ensure_future(session.wait_called())
    pending: asyncio.Future[str] | None = None
    try:
        while True:
            pending = pending or asyncio.ensure_future(anext(lines))
            waiting: set[asyncio.Future[Any]] = {pending} if called is None else {pending, called}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if called is not None and called.done():
                called = None
                yield None
            if pending.done():
                finished, pending = pending, None
                try:
                    line = finished.result()
                except StopAsyncIteration:
                    return
                yield line
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
