"""A job's state as the job client shows it, from either backend (local pool or Batch)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from node_agent.errors import ExitCode

TaskStateName = Literal["queued", "preparing", "running", "done", "failed"]
PrepStateName = Literal["not started", "running", "done", "failed"]
STATES: tuple[TaskStateName, ...] = ("queued", "preparing", "running", "done", "failed")


def exit_name(code: int | None) -> str:
    """node_agent's name for an exit code (the README table), 'unknown' for others."""
    if code is None:
        return ""
    try:
        return ExitCode(code).name.lower()
    except ValueError:
        return "unknown"


@dataclass
class Span:
    """One run of something on a node: a start task, job prep, a task attempt, job release."""

    node: str
    kind: str  # starttask | jobpreparation | task | jobrelease
    name: str  # the task id for tasks, else the kind
    start: float | None  # epoch seconds; None when unknown
    end: float | None  # None while it runs
    exit_code: int | None = None
    attempt: int = 0
    approximate: bool = False  # times derived, not recorded (say so in the report)


@dataclass
class TaskView:
    id: str
    frames: list[int]
    state: TaskStateName = "queued"
    node: str = ""
    attempts: int = 0
    exit_code: int | None = None
    reason: str = ""  # one line: why it failed (or the latest attempt's failure)
    stderr: str = ""  # path or URL of stderr.txt
    renderer_log: str = ""  # path or URL of renderer.log
    start: float | None = None
    end: float | None = None
    log_tail: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0

    @property
    def exit_name(self) -> str:
        return exit_name(self.exit_code)


@dataclass
class NodeView:
    id: str
    prep: PrepStateName = "not started"
    prep_exit: int | None = None
    prep_reason: str = ""
    release: PrepStateName = "not started"
    usable: bool = True
    reason: str = ""  # why a node is unusable (its start task's failure)


@dataclass
class JobView:
    job_id: str
    tasks: list[TaskView]
    nodes: list[NodeView]
    finished: bool = False  # the job ended (completed / terminated)
    result_code: int | None = None  # the job's result once finished (0 = every task done)
    ended_reason: str = ""  # why the job ended when it was not "all tasks done"
    spans: list[Span] = field(default_factory=list)
    frames_total: int = 0
    frames_uploaded: set[int] = field(default_factory=set)
    bytes_synced: int | None = None  # None: not known to this backend
    bytes_uploaded: int = 0
    outputs_url: str = ""

    def counts(self) -> dict[str, int]:
        c: dict[str, int] = dict.fromkeys(STATES, 0)
        for t in self.tasks:
            c[t.state] += 1
        return c

    def failed(self) -> list[TaskView]:
        return [t for t in self.tasks if t.state == "failed"]

    def result(self) -> int:
        """The exit code `job watch` ends with: the job's own result when the backend says it,
        else 0 when every task is done, the first failed task's code, or FAILED."""
        if self.result_code is not None:
            return self.result_code
        bad = self.failed()
        if not bad:
            return 0 if all(t.state == "done" for t in self.tasks) else int(ExitCode.FAILED)
        return bad[0].exit_code or int(ExitCode.FAILED)


LINE_MAX = 400  # characters of one log line shown (a renderer can write megabytes in one)


def tail(text: str, lines: int = 12) -> list[str]:
    """The last non-empty lines of a log, each cut to LINE_MAX characters."""
    rows = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    return [r if len(r) <= LINE_MAX else r[: LINE_MAX - 3] + "..." for r in rows[-lines:]]


# C0 and C1 controls (ESC starts a terminal sequence: OSC 52 writes the clipboard, CSI
# moves the cursor; 0x9b is a one-byte CSI) and the bidirectional overrides and isolates
# that make text read in another order (CVE-2021-42574): a log line is shown, never obeyed.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def inert(text: str) -> str:
    """`text` with every terminal control and bidi override shown as its escape (\\x1b)."""
    return _CONTROL.sub(
        lambda m: (
            f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}"
        ),
        text,
    )


def make_inert(view: JobView) -> JobView:
    """Every string of the view that comes from a task, a node or storage made inert (what
    `watch` prints to a terminal and `report` shows): done once, where a view is observed."""
    for t in view.tasks:
        t.id, t.node, t.reason = inert(t.id), inert(t.node), inert(t.reason)
        t.stderr, t.renderer_log = inert(t.stderr), inert(t.renderer_log)
        t.log_tail = [inert(x) for x in t.log_tail]
    for n in view.nodes:
        n.id, n.prep_reason, n.reason = inert(n.id), inert(n.prep_reason), inert(n.reason)
    for s in view.spans:
        s.node, s.kind, s.name = inert(s.node), inert(s.kind), inert(s.name)
    view.ended_reason = inert(view.ended_reason)
    return view
