"""Run a renderer as a supervised child: own process group, streamed and capped logs, timeouts.

`supervise(argv, Options(...))` runs it until it ends by itself or the supervisor ends it
(State: timed out, stalled, cancelled). Ending is node_agent.proctree's notify-then-terminate
(the one implementation, shared with the local pool and `run_captured`). A watchdog process
(node_agent.reaper) kills the renderer's tree if node-agent itself dies, even by SIGKILL.
`run_captured` runs a short command (a version probe, a mount tool) with a timeout.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from node_agent.proctree import ProcessGroup, State, watch
from node_agent.safepath import open_for_write

if TYPE_CHECKING:  # imported where used, once the renderer started: not on its start's path
    import psutil

__all__ = ["Captured", "Options", "RunResult", "State", "run_captured", "supervise"]

MAX_LINE = 64 * 1024
DEFAULT_LOG_CAP = 256 * 1024 * 1024
DRAIN_CHUNK = 256 * 1024
DRAIN_TAIL = 64 * 1024


@dataclass(frozen=True)
class Options:
    """How to run and when to end a supervised renderer."""

    env: Mapping[str, str]
    cwd: Path
    log_path: Path  # the renderer's output, redacted and capped (appended to)
    timeout_s: float  # State.TIMED_OUT after this long
    stall_s: float | None = None  # State.STALLED when neither output nor activity moved
    grace_s: float = 10.0  # between notify and terminate
    log_cap: int = DEFAULT_LOG_CAP
    redact: Callable[[str], str] | None = None
    on_line: Callable[[str], None] | None = None  # each (redacted) output line
    on_start: Callable[[int], None] | None = None  # the renderer's pid, once started
    cancel: threading.Event | None = None  # set: State.CANCELLED
    last_activity: Callable[[], float] | None = None  # monotonic time of the last progress
    watchdog: bool = True  # node_agent.reaper ends the tree if node-agent dies


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

    @property
    def state(self) -> State:
        if self.timed_out:
            return State.TIMED_OUT
        if self.stalled:
            return State.STALLED
        return State.CANCELLED if self.cancelled else State.EXITED


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

    def start(self, proc: subprocess.Popen[bytes]) -> list[threading.Thread]:
        """Pump the child's stdout and stderr in two threads."""
        pumps = [
            threading.Thread(target=self.pump, args=(proc.stdout, sys.stdout), daemon=True),
            threading.Thread(target=self.pump, args=(proc.stderr, sys.stderr), daemon=True),
        ]
        for t in pumps:
            t.start()
        return pumps

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


def _sample(ps: psutil.Process, cpu_by_pid: dict[int, float]) -> int:
    """RSS of the tree now; records each process's CPU time (kept after it exits)."""
    import psutil

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


class _Meter:
    """The supervisor's view of a running renderer: tree metrics and when to end it."""

    def __init__(self, group: ProcessGroup, opts: Options, tee: _Tee) -> None:
        self.group, self.opts, self.tee = group, opts, tee
        self.t0 = time.monotonic()
        self.peak_rss = 0
        self.cpu_by_pid: dict[int, float] = {}
        import psutil  # the child is running: its start does not wait for this

        try:
            self.ps: psutil.Process | None = psutil.Process(group.pid)
        except psutil.Error:
            self.ps = None

    def check(self) -> State:
        if self.ps is not None:
            self.peak_rss = max(self.peak_rss, _sample(self.ps, self.cpu_by_pid))
        now = time.monotonic()
        opts = self.opts
        active = max(self.tee.last_output, opts.last_activity() if opts.last_activity else 0.0)
        if now - self.t0 > opts.timeout_s:
            return State.TIMED_OUT
        if opts.stall_s is not None and now - active > opts.stall_s:
            return State.STALLED
        if opts.cancel is not None and opts.cancel.is_set():
            return State.CANCELLED
        return State.RUNNING

    def result(self, state: State, rc: int | None, started_at: float) -> RunResult:
        return RunResult(
            returncode=rc,
            signal=-rc if rc is not None and rc < 0 else None,
            timed_out=state is State.TIMED_OUT,
            stalled=state is State.STALLED,
            cancelled=state is State.CANCELLED,
            wall_s=time.monotonic() - self.t0,
            cpu_s=max(sum(self.cpu_by_pid.values()), self.group.child_cpu_s),
            peak_rss=self.peak_rss,
            log_truncated=self.tee.truncated,
            started_at=started_at,
            lines_tail=list(self.tee.tail[-50:]),
        )


def supervise(argv: Sequence[str], opts: Options) -> RunResult:
    """Run argv (never through a shell) in its own process group until it ends by itself,
    or until the supervisor ends it (notify, `grace_s`, terminate the tree): after
    `timeout_s`, when neither output nor `last_activity()` moved for `stall_s`, or when
    `cancel` is set. OSError when it cannot start."""
    opts.log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with open_for_write(opts.log_path, append=True) as log:
        group = ProcessGroup.spawn(
            argv, env=opts.env, cwd=opts.cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        if opts.on_start:
            opts.on_start(group.pid)
        tee = _Tee(log, opts.log_cap, opts.on_line, opts.redact)
        pumps = tee.start(group.proc)
        if opts.watchdog:
            group.start_watchdog()
        meter = _Meter(group, opts, tee)
        try:
            state = watch(group, meter.check, grace_s=opts.grace_s, wake=opts.cancel)
        finally:
            group.close()
        rc = group.wait()
        for t in pumps:
            t.join(5.0)  # a grandchild may hold the pipes open: do not hang on it
    return meter.result(state, rc, started)


@dataclass(frozen=True)
class Captured:
    returncode: int
    stdout: str
    stderr: str  # empty when merged into stdout


def run_captured(
    argv: Sequence[str],
    *,
    timeout_s: float,
    env: Mapping[str, str],
    cwd: Path | str | None = None,
    stdin_text: str | None = None,
    merge_stderr: bool = False,
    grace_s: float = 1.0,
) -> Captured:
    """Run a short command (a version probe, a mount tool) in its own process group and
    return its output. Output goes to unnamed files, not pipes: a daemonising child (rclone
    --daemon) may keep a pipe open long after the command itself returned. `stdin_text`
    (a secret, possibly) travels through a pipe. After `timeout_s` the tree is stopped
    (notify, `grace_s`, terminate) and subprocess.TimeoutExpired raised; OSError when it
    cannot start."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        group = ProcessGroup.spawn(
            argv,
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT if merge_stderr else err,
            stdin=subprocess.DEVNULL if stdin_text is None else subprocess.PIPE,
        )
        if stdin_text is not None:
            threading.Thread(target=_feed, args=(group.proc.stdin, stdin_text), daemon=True).start()
        deadline = time.monotonic() + timeout_s

        def check() -> State:
            return State.TIMED_OUT if time.monotonic() >= deadline else State.RUNNING

        state = watch(group, check, grace_s=grace_s, interval=timeout_s)
        if state is State.TIMED_OUT:
            raise subprocess.TimeoutExpired(list(argv), timeout_s)
        out.seek(0)
        err.seek(0)
        return Captured(
            int(group.returncode or 0),
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
        )


def _feed(pipe: IO[bytes] | None, text: str) -> None:
    if pipe is None:
        return
    try:
        pipe.write(text.encode())
        pipe.close()
    except OSError:  # it exited without reading
        pass
