"""A child process in its own process group, and the one way node_agent ends one.

Every process node_agent supervises (the renderer, a local pool's task, a mount tool, a
version probe) is started here: its own session on POSIX, its own process group on Windows
(CREATE_NEW_PROCESS_GROUP). Ending it is notify-then-terminate, as Open Job Description
cancels an action: `notify` (SIGTERM to the group; CTRL_BREAK on Windows), a grace period,
then `terminate` (SIGKILL to the group and to every descendant seen, those that left the
group with setsid included, found with psutil).

On POSIX a watchdog (node_agent.reaper) can run beside the child: it kills the child's tree
if this process dies, even by SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:  # psutil is imported where used: after the child started (issue 16)
    import psutil

_File = int | IO[bytes] | None


class State(Enum):
    """Where a supervised child is: running, or how it ended."""

    RUNNING = "running"
    EXITED = "exited"  # ended by itself
    TIMED_OUT = "timed_out"  # ran longer than allowed: ended by the supervisor
    STALLED = "stalled"  # no output nor progress for too long: ended by the supervisor
    CANCELLED = "cancelled"  # asked to stop (SIGTERM to node-agent, a terminated job)


def _group_kwargs() -> dict[str, object]:
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
    return {"start_new_session": True}


class ProcessGroup:
    """One started child and its process group."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.child_cpu_s = 0.0  # the child's and its waited-for children's (POSIX, at exit)
        self._seen: dict[int, psutil.Process] = {}
        self._reaper: subprocess.Popen[bytes] | None = None

    def start_watchdog(self) -> None:
        """Start node_agent.reaper beside the child: it kills the tree if we die (POSIX)."""
        self._reaper = _start_reaper(self.pid)

    @classmethod
    def spawn(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path | str | None,
        stdout: _File,
        stderr: _File,
        stdin: _File = subprocess.DEVNULL,
    ) -> ProcessGroup:
        """Start argv (never through a shell) in its own group; OSError when it cannot start."""
        proc = subprocess.Popen(  # type: ignore[call-overload]
            list(argv),
            env=dict(env),
            cwd=None if cwd is None else str(cwd),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            **_group_kwargs(),
        )
        return cls(proc)

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def poll(self) -> int | None:
        """Non-blocking wait; on POSIX also records the CPU time of the child and of what it
        waited for (os.wait4)."""
        if self.proc.returncode is not None or os.name == "nt":
            return self.proc.poll()
        try:
            pid, status, ru = os.wait4(self.pid, os.WNOHANG)
        except ChildProcessError:
            return self.proc.poll()
        if pid == 0:
            return None
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.child_cpu_s = ru.ru_utime + ru.ru_stime
        return self.proc.returncode

    def wait(self, timeout: float | None = None, wake: threading.Event | None = None) -> int | None:
        """The exit code once the child ended, None after `timeout` or as soon as `wake` is set."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.0005
        while (rc := self.poll()) is None:
            if wake is not None and wake.is_set():
                return None
            left = 0.05 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(delay, left, 0.05))
            delay *= 2
        return rc

    def _remember_descendants(self) -> None:
        import psutil

        try:
            for p in psutil.Process(self.pid).children(recursive=True):
                self._seen.setdefault(p.pid, p)
        except psutil.Error:
            pass

    def notify(self) -> None:
        """Ask the group to stop: SIGTERM (POSIX) or CTRL_BREAK (Windows)."""
        self._remember_descendants()
        if os.name == "nt":
            try:
                self.proc.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
            except OSError:
                pass
            return
        try:
            os.killpg(self.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass

    def terminate(self) -> int:
        """Kill the group and every descendant seen (setsid ones too), then reap the child."""
        import psutil

        self._remember_descendants()
        if os.name != "nt":
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for p in self._seen.values():
            try:
                p.kill()  # psutil checks the pid was not reused since it was seen
            except psutil.Error:
                pass
        try:
            self.proc.kill()
        except OSError:
            pass
        rc = self.wait()
        return self.proc.wait() if rc is None else rc

    def stop(self, grace_s: float) -> int:
        """Notify, give the child `grace_s` to end, then terminate what is left of the tree."""
        self.notify()
        self.wait(grace_s)
        return self.terminate()

    def close(self) -> None:
        """Tell the watchdog the child was dealt with (it then exits without killing)."""
        _stop_reaper(self._reaper)
        self._reaper = None


def watch(
    group: ProcessGroup,
    check: Callable[[], State],
    *,
    grace_s: float,
    wake: threading.Event | None = None,
    interval: float = 0.2,
) -> State:
    """Wait until the child ends (State.EXITED). At once, then every `interval` (and as soon
    as `wake` is set), `check` says whether it should be ended: any state but RUNNING stops it (notify, `grace_s`,
    terminate) and is returned. If this thread is interrupted, the tree is stopped too."""
    try:
        while group.poll() is None:
            state = check()
            if state is not State.RUNNING:
                group.stop(grace_s)
                return state
            group.wait(interval, wake)
    except BaseException:
        group.stop(min(grace_s, 2.0))
        raise
    return State.EXITED


def _start_reaper(pid: int) -> subprocess.Popen[bytes] | None:
    """Start the watchdog that outlives us (POSIX; Windows relies on the task's job object)."""
    if os.name == "nt":
        return None
    return subprocess.Popen(
        [sys.executable, "-m", "node_agent.reaper", str(pid)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )


def _stop_reaper(reaper: subprocess.Popen[bytes] | None) -> None:
    if reaper is None or reaper.stdin is None:
        return
    try:
        reaper.stdin.write(b"done")
        reaper.stdin.close()
        reaper.wait(10)
    except (OSError, subprocess.TimeoutExpired):
        reaper.kill()
