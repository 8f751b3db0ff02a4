"""The interface every CLI backend implements: pure rendering of a run and parsing of its output.

A backend holds all the knowledge about one CLI and does no I/O: the gateway passes in the
:class:`RunRequest`, paths and settings, gets back an :class:`Invocation`, and feeds the CLI's
stdout lines to the run's :class:`OutputParser`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from clinvk_core.config import BackendName, ToolMode, Upstream
from clinvk_core.conversation import Conversation, ImagePart, ToolSpec, loads_valid_unicode
from clinvk_core.events import Event, TokenUsage, ToolCallArguments, ToolCallDone, ToolCallStarted

TOOL_SERVER = "clinvk"  # the name the bridge's MCP server has in every CLI's configuration
_IMAGE_SUFFIX = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp"}


@dataclass(frozen=True)
class RunRequest:
    """One turn for a CLI: the conversation, the model, and where its client tools are served."""

    conversation: Conversation
    model: str | None = None
    tool_server_url: str | None = None  # the bridge session's MCP endpoint, when the turn offers tools

    @property
    def tools(self) -> tuple[ToolSpec, ...]:
        return self.conversation.tools if self.tool_server_url else ()


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
    files: Mapping[Path, str | bytes] = field(default_factory=dict)  # written (0600) before the start


@dataclass(frozen=True)
class BackendSettings:
    """The slice of the gateway settings a backend needs."""

    upstream: Upstream = field(default_factory=Upstream)
    tool_mode: ToolMode = "chat"
    max_retries: int = 1


WarmKind = Literal["prespawn", "server"]
"""How a CLI is started ahead of requests: one process per coming request, waiting for its input
(``prespawn``); or one long-lived process that opens a session per request (``server``)."""


@dataclass(frozen=True)
class Call:
    """A JSON-RPC request (or, with ``notify``, a notification) to make of a long-lived CLI."""

    method: str
    params: dict[str, Any]
    notify: bool = False


@dataclass(frozen=True)
class RpcDialect:
    """How a long-lived CLI speaks JSON-RPC, one object a line."""

    jsonrpc: bool  # whether messages carry "jsonrpc": "2.0" (codex's app server leaves it out)
    handshake: tuple[Call, ...]  # made once, when the process has started
    session_of: Callable[[dict[str, Any]], str | None]  # the session a notification belongs to
    answer: Callable[[dict[str, Any]], Any]  # the result for a request the CLI makes of us


class WarmSession(ABC):
    """One request's session on a long-lived CLI, as a pure state machine: the calls to make, events out."""

    key: str | None = None  # the session's id, once the opening call has answered

    @property
    def files(self) -> Mapping[Path, str | bytes]:
        """Files the session reads (images...), written into the request's workspace before it opens."""
        return {}

    @abstractmethod
    def opening(self) -> Call:
        """The call that opens the session."""

    @abstractmethod
    def on_result(self, call: Call, result: Any) -> tuple[list[Call], list[Event]]:
        """What to call next, and what happened, once ``call`` answered ``result``."""

    @abstractmethod
    def on_notification(self, message: dict[str, Any]) -> list[Event]:
        """Events in a notification of this session."""

    def usage_so_far(self) -> TokenUsage | None:
        return None

    def cancel(self) -> Call | None:
        """What stops the session's turn early (the client left, the deadline passed)."""
        return None

    def closing(self) -> Call | None:
        """What releases the session once its request is over."""
        return None


class Backend(ABC):
    """One CLI. Subclasses are stateless singletons registered in ``clinvk_core.backends``."""

    name: ClassVar[BackendName]
    executable: ClassVar[str]
    warm_kind: ClassVar[WarmKind | None] = None
    # Whether the parser ends a turn of client tool calls itself, where the model's message ends. Else the
    # turn ends when the tool bridge sees the CLI call one, which such a CLI does only once all are shown.
    ends_calls_in_stream: ClassVar[bool] = False
    # Variables of the CLI's own (vendor) configuration, passed through from the gateway's
    # environment only when no upstream is configured, so a local login keeps working.
    passthrough_env: ClassVar[tuple[str, ...]] = ()

    def binary_candidates(self, launcher: Path) -> list[Path]:
        """Paths to try, best first, given the launcher found in the bin dir or on PATH."""
        return [launcher]

    @abstractmethod
    def login_files(self, env: Mapping[str, str], login: Mapping[str, Any]) -> dict[Path, str]:
        """The files of a subscription ``login`` (JSON), where the CLI reads them under ``env``."""

    def setup_argv(self, binary: Path) -> tuple[str, ...] | None:
        """A command run once at cold start whose output :meth:`state_files` needs (None: nothing to run)."""
        return None

    def state_files(self, settings: BackendSettings, setup_output: str | None) -> dict[str, str]:
        """Files written once, at cold start, under the backend's state dir."""
        return {}

    @abstractmethod
    def invocation(self, binary: Path, request: RunRequest, paths: RunPaths, settings: BackendSettings) -> Invocation:
        """The argv, environment, stdin and files for one run."""

    @abstractmethod
    def parser(self, request: RunRequest) -> OutputParser:
        """A parser for the output of one run of ``request``."""

    def refusal(self, conversation: Conversation) -> str | None:
        """Why this CLI cannot honour ``conversation`` as asked (a 400), or None when it can."""
        return None

    # --- started ahead of requests (see WarmKind) ---

    def warm_invocation(
        self, binary: Path, paths: RunPaths, settings: BackendSettings, model: str | None
    ) -> Invocation:
        """The CLI as it is started ahead of requests, for ``model``."""
        raise NotImplementedError(f"{self.name} has no warm mode")

    def warm_serves(self, settings: BackendSettings) -> bool:
        """Whether a CLI started ahead can serve requests at all under ``settings`` (else none is started)."""
        return self.warm_kind is not None

    def warm_refusal(self, request: RunRequest, settings: BackendSettings) -> str | None:
        """Why a CLI started ahead cannot serve ``request`` (it then runs cold); None when it can."""
        return f"{self.name} has no warm mode"

    def warm_input(self, request: RunRequest, settings: BackendSettings) -> str:
        """``prespawn``: what the waiting process reads for ``request`` (then its stdin closes)."""
        raise NotImplementedError(f"{self.name} is not started ahead per request")

    def rpc_dialect(self) -> RpcDialect:
        """``server``: how the long-lived process speaks."""
        raise NotImplementedError(f"{self.name} has no long-lived mode")

    def warm_session(self, request: RunRequest, paths: RunPaths, settings: BackendSettings) -> WarmSession:
        """``server``: the session that serves ``request`` (``paths``: the request's own workspace)."""
        raise NotImplementedError(f"{self.name} has no long-lived mode")


class OutputParser(ABC):
    """Turns one run's stdout lines into events; holds what the turn so far has said."""

    def feed(self, line: str) -> list[Event]:
        """Events in one line of the CLI's machine-readable output (stray non-JSON lines: none)."""
        obj = json_object(line)
        return [] if obj is None else self.parse(obj)

    @abstractmethod
    def parse(self, obj: dict[str, Any]) -> list[Event]:
        """Events in one JSON object the CLI printed."""

    def usage_so_far(self) -> TokenUsage | None:
        """The tokens of the turn up to now, for a turn ended before the CLI's own end (a client tool call)."""
        return None


def whole_call(index: int, name: str, arguments: dict[str, Any]) -> list[Event]:
    """The events of a client tool call that a CLI reports in one piece."""
    text = json.dumps(arguments, ensure_ascii=False)
    return [ToolCallStarted(index, name), ToolCallArguments(index, text), ToolCallDone(index, name, text)]


def image_files(conversation: Conversation) -> dict[str, ImagePart]:
    """The conversation's images by the relative file name a CLI that reads images from files gets
    (``images/1.png``...), in order."""
    return {
        f"images/{index + 1}{_IMAGE_SUFFIX.get(image.media_type, '')}": image
        for index, image in enumerate(conversation.images)
    }


def config_dir(env: Mapping[str, str], variable: str, under_home: str) -> Path:
    """Where a CLI keeps its files: its own ``variable``, else ``~/under_home`` of the environment it runs in."""
    return Path(env.get(variable) or Path(env.get("HOME") or Path.home()) / under_home)


def json_object(line: str) -> dict[str, Any] | None:
    """The line as a JSON object, or None for anything else (CLIs print stray text lines)."""
    try:
        value = loads_valid_unicode(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def as_int(value: object) -> int:
    """A token count from CLI output; anything missing or odd counts as 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
