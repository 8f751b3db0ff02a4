"""What every measurement needs: the fake upstream, emulators, and the same CLI run bare.

A bare run uses exactly the argv, environment, working directory and stdin the gateway would
(``Gateway.invocation``), so the difference between the two is the gateway alone.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

from clinvk_core.backends import BACKENDS, Invocation, RunRequest
from clinvk_core.config import BackendName, Settings
from clinvk_core.conversation import Conversation
from clinvk_core.emulator.cli import fake_upstream_settings
from clinvk_core.events import Completed, Event
from clinvk_core.gateway import Gateway
from clinvk_core.runner import write_files
from clinvk_core.testing.emulator import Emulator, emulator_env
from clinvk_core.testing.fake_upstream import FakeUpstream

Tweak = Callable[[Invocation, dict[str, str]], tuple[Invocation, dict[str, str]]]


@dataclass(frozen=True)
class BareRun:
    answer_at: float  # seconds from start to the CLI's end-of-turn line
    exit_at: float
    text: str


@dataclass
class Bench:
    """One fake upstream and a scratch root; emulators and bare runs share its state dir."""

    fake: FakeUpstream
    root: Path

    @property
    def settings(self) -> dict[str, str]:
        return fake_upstream_settings(self.fake.url) | {"CLINVK_STATE_DIR": str(self.root / "state")}

    def emulator(self, **extra: str) -> Emulator:
        """An emulator whose every CLI is started for its request, unless ``extra`` keeps some warm."""
        return Emulator(self.emulator_env() | {"CLINVK_WARM_BACKENDS": ""} | extra)

    def emulator_env(self) -> dict[str, str]:
        """The environment an emulator gets (also for processes that import the handlers themselves)."""
        return emulator_env(Path(tempfile.mkdtemp(dir=self.root)), self.settings)

    @cached_property
    def gateway(self) -> Gateway:
        fields = {name.removeprefix("CLINVK_").lower(): value for name, value in self.settings.items()}
        return Gateway(Settings.model_validate(fields), environ=emulator_env(self.root, {}))

    def bare(self, backend: BackendName, prompt: str, tweak: Tweak | None = None) -> BareRun:
        """The CLI run the gateway would start for ``backend``, run by hand (``tweak``: an A/B cut)."""
        route = self.gateway.route(backend)
        request = RunRequest(Conversation.of(prompt), route.model)
        with self.gateway.workspace(backend) as paths:
            invocation, env = self.gateway.invocation(backend, request, paths)
            if tweak:
                invocation, env = tweak(invocation, env)
            return run_bare(invocation, env, paths.workdir, BACKENDS[backend].parser(request).feed)


def without(invocation: Invocation, *flags: str, values: int = 0) -> Invocation:
    """The invocation minus ``flags`` (and the ``values`` arguments after each)."""
    argv = list(invocation.argv)
    for flag in flags:
        if flag in argv:
            at = argv.index(flag)
            del argv[at : at + 1 + values]
    return replace(invocation, argv=tuple(argv))


def run_bare(invocation: Invocation, env: dict[str, str], cwd: Path, parse: Callable[[str], list[Event]]) -> BareRun:
    write_files(invocation.files)
    start = time.perf_counter()
    process = subprocess.Popen(
        invocation.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        cwd=cwd, env=env, start_new_session=True,
    )  # fmt: skip
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write(invocation.stdin.encode())
    process.stdin.close()
    answer_at, text = float("nan"), ""
    for raw in process.stdout:
        for event in parse(raw.decode()):
            if isinstance(event, Completed):
                answer_at = time.perf_counter() - start
            text += getattr(event, "text", "")
    process.wait()
    return BareRun(answer_at, time.perf_counter() - start, text)


@contextmanager
def bench() -> Iterator[Bench]:
    root = Path(tempfile.mkdtemp(prefix="clinvk-bench-"))
    try:
        with FakeUpstream() as fake:
            yield Bench(fake, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
