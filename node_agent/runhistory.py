"""Every phase run on a node (start task, job prep, render tasks, job release), recorded at
the edge (runtime.start_phase / run_edge) in `state/phase-runs.jsonl`, so that `status`
and `doctor` show a node's whole history: also the runs that failed before the renderer
started (renderer missing, storage 403), which leave no render summary.

One JSON line when a phase starts (`state: running`) and one when it ends (exit code, exit
name, duration, the first line of the cause); readers merge them by `id`, so a run that was
killed (Batch's task timeout, a reboot) stays visible as `running` with its start time.
Lines are appended with O_APPEND under an advisory lock (POSIX), each well below the size
the kernel writes in one piece; the file is cut to its newest KEEP_LINES when it grows past
MAX_BYTES. A line that does not parse, or whose fields have the wrong types, is skipped and
counted (doctor reports it).

Every phase runs as root and a task can write the node's state folder: the file is opened
without following a link (a link or any other non-file at its name is replaced, its target
untouched), and only its newest READ_MAX bytes are ever read (a huge or sparse file costs
neither memory nor time).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FILE_NAME = "phase-runs.jsonl"
MAX_BYTES = 2 * 2**20
KEEP_LINES = 2000
CAUSE_MAX = 400  # characters of the first line of the cause
READ_MAX = 2 * MAX_BYTES  # the most of the file a reader or the trim reads (its end)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def history_path(state_dir: Path) -> Path:
    return state_dir / FILE_NAME


def _now_iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@dataclass
class PhaseRun:
    """One phase run as `status` and `doctor` show it."""

    id: str
    phase: str
    job: str | None
    task: str | None
    started_at: str
    state: str = "running"  # running | done
    finished_at: str | None = None
    duration_s: float | None = None
    exit_code: int | None = None
    exit_name: str | None = None
    cause: str | None = None
    log: str | None = None
    pid: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return "/".join(p for p in (self.job, self.task) if p) or "-"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextlib.contextmanager
def _locked(fh: Any) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: appends of one short line are not interleaved
        yield
        return
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _not_a_file_replaced(path: Path) -> None:
    """A link, FIFO, socket or device at the history's name is removed (never followed or
    opened: a FIFO would block the phase), its target untouched; a folder is left (the open
    then fails and recording is skipped)."""
    from node_agent.logs import get_logger

    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        return
    what = f"a symbolic link (to {os.readlink(path)})" if stat.S_ISLNK(st.st_mode) else "not a file"
    get_logger("runhistory").warning("%s was %s: replaced, not followed", path, what)
    os.unlink(path)


def _open_regular(path: Path, flags: int) -> int:
    """os.open of `path` as a regular file, never through a link (ELOOP) nor blocking."""
    fd = os.open(path, flags | _NOFOLLOW | _NONBLOCK, 0o644)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path} is not a regular file")
    return fd


def _tail(fd: int) -> bytes:
    """The newest READ_MAX bytes of the open file, from its first whole line."""
    size = os.fstat(fd).st_size
    start = max(0, size - READ_MAX)
    os.lseek(fd, start, os.SEEK_SET)
    chunks, left = [], size - start
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    data = b"".join(chunks)
    if start:  # cut into a line: drop its remainder
        data = data.split(b"\n", 1)[1] if b"\n" in data else b""
    return data


def _append(path: Path, doc: dict[str, Any]) -> None:
    line = (json.dumps(doc, separators=(",", ":")) + "\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    _not_a_file_replaced(path)
    fd = _open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    with os.fdopen(fd, "ab") as fh, _locked(fh):
        fh.write(line)
        fh.flush()
        if os.fstat(fh.fileno()).st_size > MAX_BYTES:
            _trim(path)


def _trim(path: Path) -> None:
    """Keep the newest KEEP_LINES lines (called with the lock held): only the end of
    the file is read; the copy is made under a fresh name (O_EXCL, no link followed)."""
    rd = _open_regular(path, os.O_RDONLY)
    try:
        kept = _tail(rd).splitlines(keepends=True)[-KEEP_LINES:]
    finally:
        os.close(rd)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
    try:
        with os.fdopen(out, "wb") as fh:
            fh.write(b"".join(kept))
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


class Recorder:
    """The run of one phase: `start()` when the phase has its node, `finish()` at the edge.
    Recording never fails the phase: a write error is ignored (the node may be full)."""

    def __init__(
        self, state_dir: Path, phase: str, job: str | None, task: str | None, log: Path | None
    ) -> None:
        self.path = history_path(state_dir)
        self.t0 = time.time()
        self.run = PhaseRun(
            id=uuid.uuid4().hex[:12],
            phase=phase,
            job=job,
            task=task,
            started_at=_now_iso(self.t0),
            log=str(log) if log else None,
            pid=os.getpid(),
        )
        self.done = False

    def start(self) -> None:
        self._write(self.run.as_dict())

    def finish(self, exit_code: int, exit_name: str, cause: str | None) -> None:
        if self.done:
            return
        self.done = True
        t = time.time()
        first = (cause or "").strip().splitlines()
        self.run.state = "done"
        self.run.finished_at = _now_iso(t)
        self.run.duration_s = round(t - self.t0, 2)
        self.run.exit_code = exit_code
        self.run.exit_name = exit_name
        self.run.cause = first[0][:CAUSE_MAX] if first else None
        self._write(self.run.as_dict())

    def _write(self, doc: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            _append(self.path, doc)


@dataclass
class History:
    runs: list[PhaseRun]  # newest first
    bad_lines: int = 0
    error: str | None = None  # the file could not be read


_FIELDS = set(PhaseRun.__dataclass_fields__)


def _opt(value: Any, kind: type | tuple[type, ...]) -> bool:
    return value is None or (isinstance(value, kind) and not isinstance(value, bool))


def _well_typed(r: PhaseRun) -> bool:
    """Each field of the type the readers format it as (a damaged or forged line is not)."""
    return (
        isinstance(r.phase, str)
        and isinstance(r.started_at, str)
        and r.state in ("running", "done")
        and all(_opt(v, str) for v in (r.job, r.task, r.finished_at, r.exit_name, r.cause, r.log))
        and _opt(r.duration_s, (int, float))
        and _opt(r.exit_code, int)
        and _opt(r.pid, int)
        and isinstance(r.extra, dict)
    )


def read_history(state_dir: Path) -> History:
    """Every run recorded on the node, newest first; a start line and its end line merged."""
    path = history_path(state_dir)
    try:
        fd = _open_regular(path, os.O_RDONLY)
        try:
            raw = _tail(fd)
        finally:
            os.close(fd)
    except FileNotFoundError:
        return History([])
    except OSError as e:
        return History([], error=f"{path}: {e.strerror or e}")
    runs: dict[str, PhaseRun] = {}
    bad = 0
    for line in raw.splitlines():
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
            if not isinstance(doc, dict) or not isinstance(doc.get("id"), str):
                raise ValueError("not a run record")
            run = PhaseRun(**{k: v for k, v in doc.items() if k in _FIELDS})
            if not _well_typed(run):
                raise ValueError("a field of the wrong type")
        except (ValueError, TypeError):
            bad += 1
            continue
        runs[run.id] = run  # the end line comes after the start line
    # newest first; runs started in the same second keep their order in the file, reversed
    ordered = sorted(reversed(list(runs.values())), key=lambda r: r.started_at, reverse=True)
    return History(ordered, bad)
