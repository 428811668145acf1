"""Run a renderer as a supervised child: own session, streamed and capped logs, timeouts.

Cancel is notify-then-terminate: SIGTERM to the group, a grace period, then SIGKILL of
the whole group and of any descendant that left it (found with psutil).
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


@dataclass
class RunResult:
    returncode: int | None
    signal: int | None
    timed_out: bool
    stalled: bool
    wall_s: float
    cpu_s: float
    peak_rss: int
    log_truncated: bool
    started_at: float
    lines_tail: list[str] = field(default_factory=list)


class _Tee:
    """Copies lines to a console stream and a capped log file; remembers recent lines."""

    def __init__(self, log: IO[bytes], cap: int, on_line: Callable[[str], None] | None) -> None:
        self.log = log
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
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.last_output = time.monotonic()
            with self.lock:
                if self.written < self.cap:
                    self.log.write(raw)
                    self.written += len(raw)
                    console.write(line + "\n")
                    console.flush()
                elif not self.truncated:
                    self.truncated = True
                    note = f"[node-agent: log capped at {self.cap} bytes; further output dropped]\n"
                    self.log.write(note.encode())
                    console.write(note)
                self.tail.append(line)
                if len(self.tail) > 200:
                    del self.tail[:100]
            if self.on_line:
                self.on_line(line)


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
) -> RunResult:
    """Run argv (never through a shell) and supervise it until it ends."""
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
            list(argv), env=dict(env), cwd=str(cwd), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs,
        )
        if on_start:
            on_start(proc.pid)
        tee = _Tee(log, log_cap, on_line)
        pumps = [
            threading.Thread(target=tee.pump, args=(proc.stdout, sys.stdout), daemon=True),
            threading.Thread(target=tee.pump, args=(proc.stderr, sys.stderr), daemon=True),
        ]
        for t in pumps:
            t.start()
        try:
            ps = psutil.Process(proc.pid)
        except psutil.Error:
            ps = None
        peak_rss = 0
        cpu_by_pid: dict[int, float] = {}
        timed_out = stalled = False
        try:
            while proc.poll() is None:
                if ps is not None:
                    rss = 0
                    try:
                        for p in [ps, *ps.children(recursive=True)]:
                            try:
                                rss += p.memory_info().rss
                                c = p.cpu_times()
                                cpu_by_pid[p.pid] = c.user + c.system
                            except psutil.Error:
                                pass
                    except psutil.Error:
                        pass
                    peak_rss = max(peak_rss, rss)
                now = time.monotonic()
                if now - t0 > timeout_s:
                    timed_out = True
                elif stall_s is not None and now - tee.last_output > stall_s:
                    stalled = True
                if timed_out or stalled:
                    kill_tree(proc, grace_s)
                    break
                time.sleep(0.2)
        except BaseException:
            kill_tree(proc, min(grace_s, 2.0))
            raise
        rc = proc.wait()
        for t in pumps:
            t.join(5.0)  # a grandchild may hold the pipes open: do not hang on it
    child_cpu = 0.0
    if os.name != "nt":
        ru = __import__("resource").getrusage(__import__("resource").RUSAGE_CHILDREN)
        child_cpu = ru.ru_utime + ru.ru_stime
    cpu = max(sum(cpu_by_pid.values()), child_cpu)
    sig = -rc if rc is not None and rc < 0 else None
    return RunResult(
        returncode=rc, signal=sig, timed_out=timed_out, stalled=stalled,
        wall_s=time.monotonic() - t0, cpu_s=cpu, peak_rss=peak_rss,
        log_truncated=tee.truncated, started_at=started, lines_tail=list(tee.tail[-50:]),
    )
