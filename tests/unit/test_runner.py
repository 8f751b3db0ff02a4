"""Process lifetime with real tiny processes (``clinvk_core.runner``): lines, stdin, deadline, kill, clean-up."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from clinvk_core.backends import Invocation
from clinvk_core.runner import CliProcess, DeadlineExceeded, SpawnFailed, kill_all, spawn, workspace

ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
Alive = Callable[[int], bool]


def sh(script: str, stdin: str = "", files: dict[Path, str] | None = None) -> Invocation:
    return Invocation(argv=("/bin/sh", "-c", script), env={}, stdin=stdin, files=files or {})


def deadline_in(seconds: float) -> float:
    return asyncio.get_running_loop().time() + seconds


async def wait_dead(pid: int, alive: Alive, within: float = 3.0) -> bool:
    """True once ``pid`` no longer runs (gone, or a zombie of a parent that is not ours)."""
    end = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > end:
            return False
        await asyncio.sleep(0.02)
    return True


def test_lines_arrive_as_written(tmp_path: Path) -> None:
    async def main() -> list[tuple[str, float]]:
        seen: list[tuple[str, float]] = []
        loop = asyncio.get_running_loop()
        script = "echo first; sleep 0.3; echo second"
        async with spawn(sh(script), cwd=tmp_path, env=ENV, deadline=deadline_in(5)) as cli:
            async for line in cli.lines():
                seen.append((line, loop.time()))
            assert await cli.wait() == 0
        return seen

    seen = asyncio.run(main())
    assert [line for line, _ in seen] == ["first\n", "second\n"]
    assert seen[1][1] - seen[0][1] >= 0.25  # the first line was not held back until the end


def test_stdin_is_delivered_then_closed(tmp_path: Path) -> None:
    text = "line one\nzwei é 🚀\n" + "x" * 200_000 + "\nlast line without newline"

    async def main() -> tuple[str, int]:
        async with spawn(sh("cat", stdin=text), cwd=tmp_path, env=ENV, deadline=deadline_in(5)) as cli:
            out = "".join([line async for line in cli.lines()])
            return out, await cli.wait()  # cat exits only when stdin reaches EOF

    assert asyncio.run(main()) == (text, 0)


def test_cwd_env_and_exit_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> tuple[list[str], int]:
        invocation = sh('pwd; echo "$ONLY_THIS"; echo "${LEAKED:-none}"; exit 7')
        env = {**ENV, "ONLY_THIS": "yes"}
        async with spawn(invocation, cwd=tmp_path, env=env, deadline=deadline_in(5)) as cli:
            return [line async for line in cli.lines()], await cli.wait()

    monkeypatch.setenv("LEAKED", "from-the-parent")  # only the env given is the child's
    lines, code = asyncio.run(main())
    assert lines == [f"{tmp_path}\n", "yes\n", "none\n"]
    assert code == 7


def test_stderr_tail_is_kept(tmp_path: Path) -> None:
    async def main() -> tuple[int, str]:
        script = "head -c 20000 /dev/zero | tr '\\0' a >&2; echo 'the real reason' >&2; exit 3"
        async with spawn(sh(script), cwd=tmp_path, env=ENV, deadline=deadline_in(5)) as cli:
            assert [line async for line in cli.lines()] == []
            return await cli.wait(), cli.stderr_tail

    code, tail = asyncio.run(main())
    assert code == 3
    assert tail.endswith("the real reason\n")
    assert len(tail.encode()) <= 8 * 1024  # only the tail is kept


GROUP_SCRIPT = "sleep 30 & echo $!; echo ready; sleep 30"


async def _read_grandchild(cli: CliProcess) -> int:
    lines = cli.lines()
    grandchild = int(await anext(lines))
    assert await anext(lines) == "ready\n"
    return grandchild


def test_deadline_kills_the_whole_group(tmp_path: Path, alive: Alive) -> None:
    async def main() -> tuple[int, int, float]:
        start = time.monotonic()
        pids: list[int] = []
        with pytest.raises(DeadlineExceeded):
            async with spawn(sh(GROUP_SCRIPT), cwd=tmp_path, env=ENV, deadline=deadline_in(0.5)) as cli:
                pids.append(cli.pid)
                pids.append(await _read_grandchild(cli))
                async for _ in cli.lines():
                    pass
        elapsed = time.monotonic() - start
        child, grandchild = pids
        assert await wait_dead(grandchild, alive)
        return child, grandchild, elapsed

    child, grandchild, elapsed = asyncio.run(main())
    assert 0.4 <= elapsed < 2.0  # at the deadline, not after the 30 s sleep
    assert not Path(f"/proc/{child}").exists()  # our child: killed and reaped, no zombie
    assert not alive(grandchild)


def test_wait_raises_at_the_deadline(tmp_path: Path) -> None:
    async def main() -> None:
        async with spawn(sh("exec sleep 30"), cwd=tmp_path, env=ENV, deadline=deadline_in(0.3)) as cli:
            await cli.wait()

    start = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        asyncio.run(main())
    assert time.monotonic() - start < 2.0


def test_cancellation_kills_the_whole_group(tmp_path: Path, alive: Alive) -> None:
    async def main() -> tuple[int, int]:
        pids: list[int] = []
        ready = asyncio.Event()

        async def request() -> None:
            async with spawn(sh(GROUP_SCRIPT), cwd=tmp_path, env=ENV, deadline=deadline_in(30)) as cli:
                pids.append(cli.pid)
                pids.append(await _read_grandchild(cli))
                ready.set()
                async for _ in cli.lines():
                    pass

        task = asyncio.create_task(request())
        await asyncio.wait_for(ready.wait(), 5)
        start = time.monotonic()
        task.cancel()  # the client went away
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - start < 1.0  # killed at once when cancelled
        assert await wait_dead(pids[1], alive)
        return pids[0], pids[1]

    child, grandchild = asyncio.run(main())
    assert not Path(f"/proc/{child}").exists()
    assert not alive(grandchild)


def test_an_error_in_the_block_kills_the_group(tmp_path: Path, alive: Alive) -> None:
    async def main() -> tuple[int, int]:
        pids: list[int] = []
        with pytest.raises(RuntimeError, match="parser blew up"):
            async with spawn(sh(GROUP_SCRIPT), cwd=tmp_path, env=ENV, deadline=deadline_in(30)) as cli:
                pids.append(cli.pid)
                pids.append(await _read_grandchild(cli))
                raise RuntimeError("parser blew up")
        assert await wait_dead(pids[1], alive)
        return pids[0], pids[1]

    child, grandchild = asyncio.run(main())
    assert not Path(f"/proc/{child}").exists()
    assert not alive(grandchild)


def test_cancellation_after_a_normal_end_still_kills_the_group(tmp_path: Path, alive: Alive) -> None:
    """The block ended normally and close() is reaping the CLI when a client that disconnects cancels the
    task: the group is killed before close() awaits anything, so it is gone all the same."""

    async def main() -> list[int]:
        pids: list[int] = []
        ready = asyncio.Event()

        async def request() -> None:
            async with spawn(sh(GROUP_SCRIPT), cwd=tmp_path, env=ENV, deadline=deadline_in(30)) as cli:
                pids.append(cli.pid)
                pids.append(await _read_grandchild(cli))
                ready.set()
            # leaving the block normally: close() kills the group, then awaits the reaping

        task = asyncio.create_task(request())
        await asyncio.wait_for(ready.wait(), 5)
        await asyncio.sleep(0.2)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return pids

    pids = asyncio.run(main())
    gc.collect()  # a transport a cancelled task left open is finalized here, not mid-report
    try:
        deadline = time.monotonic() + 1.0
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not alive(pids[0]), "the CLI survived the cancellation"
        assert not alive(pids[1]), "the CLI's child survived the cancellation"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pids[0], signal.SIGKILL)  # do not leave the processes behind if the test failed


def test_after_a_normal_end_leftover_children_are_killed(tmp_path: Path, alive: Alive) -> None:
    """The CLI exits but leaves a background child behind: the group sweep still removes it."""

    async def main() -> int:
        script = "sleep 30 >/dev/null 2>&1 & echo $!"
        async with spawn(sh(script), cwd=tmp_path, env=ENV, deadline=deadline_in(5)) as cli:
            [line] = [line async for line in cli.lines()]
            assert await cli.wait() == 0
        grandchild = int(line)
        assert await wait_dead(grandchild, alive)
        return grandchild

    assert not alive(asyncio.run(main()))


def test_a_process_that_left_the_group_is_killed_with_it(tmp_path: Path, alive: Alive) -> None:
    """A tool started in a session of its own (as the CLIs' shell tools are) is out of reach of the group kill."""

    escaped: list[int] = []

    async def main() -> bool:
        script = "setsid sh -c 'echo $$; exec sleep 30 >/dev/null 2>&1' </dev/null & sleep 30"
        async with spawn(sh(script), cwd=tmp_path, env=ENV, deadline=deadline_in(10)) as cli:
            escaped.append(int(await anext(cli.lines())))  # printed from inside its new session
            assert os.getsid(escaped[0]) == escaped[0] != os.getsid(cli.pid)  # not the CLI's session or group
        return await wait_dead(escaped[0], alive)

    try:
        assert asyncio.run(main()), "the process that left the CLI's group outlived the run"
    finally:
        for pid in escaped:  # never leave it behind, even when the test fails
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_kill_all_kills_running_groups(tmp_path: Path) -> None:
    async def main() -> int:
        async with spawn(sh("echo up; sleep 30"), cwd=tmp_path, env=ENV, deadline=deadline_in(10)) as cli:
            lines = cli.lines()
            assert await anext(lines) == "up\n"
            kill_all()  # what the emulator does at shutdown
            assert [line async for line in lines] == []
            return await cli.wait()

    start = time.monotonic()
    assert asyncio.run(main()) == -9
    assert time.monotonic() - start < 3.0


def test_files_are_written_0600_before_the_start(tmp_path: Path) -> None:
    target = tmp_path / "system.md"

    async def main() -> list[str]:
        invocation = sh(f"cat '{target}'", files={target: "the system prompt\nwith é"})
        async with spawn(invocation, cwd=tmp_path, env=ENV, deadline=deadline_in(5)) as cli:
            return [line async for line in cli.lines()]

    assert asyncio.run(main()) == ["the system prompt\n", "with é"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_missing_binary_is_spawn_failed(tmp_path: Path) -> None:
    async def main() -> None:
        invocation = Invocation(argv=(str(tmp_path / "no-such-cli"), "-p"), env={}, stdin="")
        async with spawn(invocation, cwd=tmp_path, env=ENV, deadline=deadline_in(5)):
            pytest.fail("the block must not run")

    with pytest.raises(SpawnFailed, match="no-such-cli"):
        asyncio.run(main())


def test_non_executable_binary_is_spawn_failed(tmp_path: Path) -> None:
    binary = tmp_path / "not-executable"
    binary.write_text("#!/bin/sh\necho hi\n")

    async def main() -> None:
        invocation = Invocation(argv=(str(binary),), env={}, stdin="")
        async with spawn(invocation, cwd=tmp_path, env=ENV, deadline=deadline_in(5)):
            pytest.fail("the block must not run")

    with pytest.raises(SpawnFailed):
        asyncio.run(main())


def test_invalid_utf8_output_does_not_break_reading(tmp_path: Path) -> None:
    async def main() -> list[str]:
        async with spawn(sh(r"printf 'a\377b\n'"), cwd=tmp_path, env=ENV, deadline=deadline_in(5)) as cli:
            return [line async for line in cli.lines()]

    assert asyncio.run(main()) == ["a\ufffdb\n"]


def test_workspace_layout_and_removal(tmp_path: Path) -> None:
    runs, state = tmp_path / "state" / "runs", tmp_path / "state" / "claude"
    with workspace(runs, state) as paths:
        assert paths.state == state
        assert paths.scratch.parent == runs
        assert paths.workdir.parent == paths.scratch
        assert paths.tmp.parent == paths.scratch
        for directory in (runs, paths.scratch, paths.workdir, paths.tmp):
            assert directory.is_dir()
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert list(paths.workdir.iterdir()) == []  # the CLI starts in an empty directory
        (paths.workdir / "made-by-the-cli.txt").write_text("x")
        (paths.tmp / "nested" / "deeper").mkdir(parents=True)
        scratch = paths.scratch
    assert not scratch.exists()
    assert list(runs.iterdir()) == []


def test_workspace_is_removed_when_the_body_raises(tmp_path: Path) -> None:
    scratch: Path | None = None
    with pytest.raises(ValueError, match="boom"), workspace(tmp_path / "runs", tmp_path / "state") as paths:
        scratch = paths.scratch
        (paths.workdir / "file").write_text("x")
        raise ValueError("boom")
    assert scratch is not None
    assert not scratch.exists()


def test_workspaces_are_distinct(tmp_path: Path) -> None:
    with workspace(tmp_path, tmp_path / "s") as one, workspace(tmp_path, tmp_path / "s") as two:
        assert one.scratch != two.scratch
