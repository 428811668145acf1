"""Run a renderer as a supervised child: own session, streamed and capped logs, timeouts.

Cancel is notify-then-terminate: SIGTERM to the group, a grace period, then SIGKILL of
the whole group and of any descendant that left it (found with psutil). A reaper process
(node_agent.reaper) kills the renderer's tree if node-agent itself dies, even by SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psutil

MAX_LINE = 64 * 1024
DEFAULT_LOG_CAP = 256 * 1024 * 1024
DRAIN_CHUNK = 256 * 1024
DRAIN_TAIL = 64 * 1024


@dataclass
class RunResult:
    returncode: int | None
    signal: int | None
    timed_out: bool
    stalled: bool
    cancelled: bool
    wall_s: float
    cpu_s: float
    peak_rss: int
    log_truncated: bool
    started_at: float
    lines_tail: list[str] = field(default_factory=list)


class _Tee:
    """Copies lines, redacted, to a console stream and a capped log file; keeps recent lines.

    Under the cap every line is redacted, written and inspected (`on_line`). Past it the
    stream is drained in big chunks, so a renderer that prints gigabytes costs the node
    neither disk nor much CPU: only the last line of each chunk is inspected (progress and
    failure classes keep working) and the last DRAIN_TAIL bytes are inspected at the end.
    """

    def __init__(
        self,
        log: IO[bytes],
        cap: int,
        on_line: Callable[[str], None] | None,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        self.log = log
        self.redact = redact
        self.cap = cap
        self.written = 0
        self.truncated = False
        self.on_line = on_line
        self.tail: list[str] = []
        self.last_output = time.monotonic()
        self.lock = threading.Lock()

    def pump(self, src: IO[bytes], console: IO[str]) -> None:
        for raw in iter(lambda: src.readline(MAX_LINE), b""):
            if len(raw) == MAX_LINE and not raw.endswith(b"\n"):
                raw = raw + b" [line cut]\n"
                # drop the rest of this over-long line
                while True:
                    rest = src.readline(MAX_LINE)
                    if not rest or rest.endswith(b"\n"):
                        break
            line = self._inspect(raw.decode("utf-8", "replace").rstrip("\r\n"))
            with self.lock:
                if self.written >= self.cap:
                    self._cap_note(console)
                    break
                self.log.write((line + "\n").encode())
                self.written += len(raw)
                console.write(line + "\n")
                console.flush()
        else:
            return
        self._drain(src)

    def _inspect(self, line: str) -> str:
        """Redact one line, remember it, feed it to `on_line`; returns the redacted line."""
        if self.redact is not None:
            line = self.redact(line)  # a renderer may print a secret (its entitlement token)
        self.last_output = time.monotonic()
        with self.lock:
            self.tail.append(line)
            if len(self.tail) > 200:
                del self.tail[:100]
        if self.on_line:
            self.on_line(line)
        return line

    def _cap_note(self, console: IO[str]) -> None:
        if not self.truncated:
            self.truncated = True
            note = f"[node-agent: log capped at {self.cap} bytes; further output dropped]\n"
            self.log.write(note.encode())
            self.log.flush()
            console.write(note)
            console.flush()

    def _drain(self, src: IO[bytes]) -> None:
        read = getattr(src, "read1", src.read)
        tail = b""
        while chunk := read(DRAIN_CHUNK):
            self.last_output = time.monotonic()
            tail = (tail + chunk)[-DRAIN_TAIL:]
            end = tail.rfind(b"\n")
            start = tail.rfind(b"\n", 0, end) + 1 if end > 0 else -1
            if start >= 0 and end - start < MAX_LINE:
                self._inspect(tail[start:end].decode("utf-8", "replace").rstrip("\r"))
        lines = tail.split(b"\n")[1:]  # the first one may be cut
        for raw in lines[-50:]:
            if raw.strip():
                self._inspect(raw[:MAX_LINE].decode("utf-8", "replace").rstrip("\r"))


def kill_tree(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """Notify the group, wait `grace_s`, then kill the group and every descendant."""
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    if os.name == "nt":
        proc.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
    else:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        pass
    try:
        descendants += psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        pass
    if os.name != "nt":
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for p in [*descendants]:
        try:
            p.kill()
        except psutil.Error:
            pass
    try:
        proc.kill()
    except OSError:
        pass
    proc.wait()


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


def _sample(ps: psutil.Process, cpu_by_pid: dict[int, float]) -> int:
    """RSS of the tree now; records each process's CPU time (kept after it exits)."""
    rss = 0
    try:
        procs = [ps, *ps.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            rss += p.memory_info().rss
            c = p.cpu_times()
            cpu_by_pid[p.pid] = c.user + c.system + c.children_user + c.children_system
        except psutil.Error:
            pass
    return rss


def _reap(proc: subprocess.Popen[bytes]) -> tuple[int | None, float]:
    """Non-blocking wait; on POSIX also the CPU time of the renderer and what it waited for."""
    if os.name == "nt":
        return proc.poll(), 0.0
    try:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
    except ChildProcessError:
        return proc.poll(), 0.0
    if pid == 0:
        return None, 0.0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, ru.ru_utime + ru.ru_stime


def run_supervised(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    log_path: Path,
    timeout_s: float,
    stall_s: float | None = None,
    grace_s: float = 10.0,
    log_cap: int = DEFAULT_LOG_CAP,
    on_line: Callable[[str], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    cancel: threading.Event | None = None,
    last_activity: Callable[[], float] | None = None,
    redact: Callable[[str], str] | None = None,
) -> RunResult:
    """Run argv (never through a shell) and supervise it until it ends.

    Ends it (notify, `grace_s`, kill the tree) on timeout, when neither output nor
    `last_activity()` (monotonic) moved for `stall_s`, or when `cancel` is set.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, object] = {}
    if os.name == "nt":
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
    else:
        kwargs["start_new_session"] = True
    started = time.time()
    t0 = time.monotonic()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(  # type: ignore[call-overload]
            list(argv),
            env=dict(env),
            cwd=str(cwd),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            **kwargs,
        )
        if on_start:
            on_start(proc.pid)
        tee = _Tee(log, log_cap, on_line, redact)
        pumps = [
            threading.Thread(target=tee.pump, args=(proc.stdout, sys.stdout), daemon=True),
            threading.Thread(target=tee.pump, args=(proc.stderr, sys.stderr), daemon=True),
        ]
        for t in pumps:
            t.start()
        reaper = _start_reaper(proc.pid)
        try:
            ps = psutil.Process(proc.pid)
        except psutil.Error:
            ps = None
        peak_rss = 0
        cpu_by_pid: dict[int, float] = {}
        timed_out = stalled = cancelled = False
        child_cpu = 0.0
        try:
            while True:
                rc, child_cpu = _reap(proc)
                if rc is not None:
                    break
                if ps is not None:
                    peak_rss = max(peak_rss, _sample(ps, cpu_by_pid))
                now = time.monotonic()
                active = max(tee.last_output, last_activity() if last_activity else 0.0)
                if now - t0 > timeout_s:
                    timed_out = True
                elif stall_s is not None and now - active > stall_s:
                    stalled = True
                elif cancel is not None and cancel.is_set():
                    cancelled = True
                if timed_out or stalled or cancelled:
                    kill_tree(proc, grace_s)
                    break
                if cancel is not None:
                    cancel.wait(0.2)
                else:
                    time.sleep(0.2)
        except BaseException:
            kill_tree(proc, min(grace_s, 2.0))
            raise
        finally:
            _stop_reaper(reaper)
        rc = proc.wait()
        for t in pumps:
            t.join(5.0)  # a grandchild may hold the pipes open: do not hang on it
    cpu = max(sum(cpu_by_pid.values()), child_cpu)
    sig = -rc if rc is not None and rc < 0 else None
    return RunResult(
        returncode=rc,
        signal=sig,
        timed_out=timed_out,
        stalled=stalled,
        cancelled=cancelled,
        wall_s=time.monotonic() - t0,
        cpu_s=cpu,
        peak_rss=peak_rss,
        log_truncated=tee.truncated,
        started_at=started,
        lines_tail=list(tee.tail[-50:]),
    )
