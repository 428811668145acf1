"""`node-agent job watch`: a job's tasks, frames and nodes as they change, until it ends.
On a terminal a rich live view; otherwise (a pipe, a CI log) one plain line per change."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Protocol

from node_agent.jobclient.model import JobView, TaskView, make_inert
from node_agent.jobclient.outputs import JobBlobs


class Backend(Protocol):
    job_id: str
    where: str

    def snapshot(self) -> JobView: ...

    def blobs(self) -> JobBlobs | None: ...


def observe(backend: Backend, with_storage: bool = True) -> JobView:
    """One look at the job: the backend's view, plus what only storage knows."""
    from node_agent.jobclient.batchrest import enrich

    view = backend.snapshot()
    blobs = backend.blobs() if with_storage else None
    if blobs is not None:
        enrich(view, blobs)
    return make_inert(view)


def _frames(t: TaskView) -> str:
    if not t.frames:
        return ""
    a, b = min(t.frames), max(t.frames)
    return f"frame {a}" if a == b else f"frames {a}-{b}"


def task_line(t: TaskView) -> str:
    """One line for a task's state: what a TD reads in a log."""
    where = f" on {t.node}" if t.node else ""
    if t.state == "failed":
        logs = ", ".join(x for x in (t.stderr, t.renderer_log) if x)
        return (
            f"task {t.id} ({_frames(t)}) FAILED{where} after {t.attempts} attempt(s): "
            f"exit {t.exit_code} {t.exit_name}: {t.reason}" + (f" [{logs}]" if logs else "")
        )
    if t.state == "done":
        return f"task {t.id} ({_frames(t)}) done{where} after {t.attempts} attempt(s)"
    retry = f", attempt {t.attempts}" if t.attempts > 1 and t.state == "running" else ""
    extra = ""
    if t.exit_code:  # an earlier attempt failed; Batch retries it
        extra = f" (last attempt exit {t.exit_code} {t.exit_name}" + (
            f": {t.reason})" if t.reason else ")"
        )
    return f"task {t.id} ({_frames(t)}) {t.state}{where}{retry}{extra}"


def summary_line(view: JobView) -> str:
    c = view.counts()
    parts = [f"{n} {s}" for s, n in c.items() if n]
    frames = f"{len(view.frames_uploaded)}/{view.frames_total} frames uploaded"
    return f"job {view.job_id}: " + ", ".join(parts) + f"; {frames}"


def result_line(view: JobView) -> str:
    code = view.result()
    why = f" ({view.ended_reason})" if view.ended_reason else ""
    if code == 0:
        return f"job {view.job_id} ended: ok, {len(view.frames_uploaded)}/{view.frames_total} frames{why}"
    bad = ", ".join(t.id for t in view.failed()) or "no task failed"
    return f"job {view.job_id} ended: FAILED (exit {code}; failed tasks: {bad}){why}"


class PlainView:
    """One line per change of a task or node; a summary line when counts change."""

    def __init__(self, out: Callable[[str], None]) -> None:
        self.out = out
        self.seen: dict[str, str] = {}

    def show(self, view: JobView) -> None:
        changed = False
        for n in view.nodes:
            line = f"node {n.id}: job prep {n.prep}" + (
                f" (exit {n.prep_exit}: {n.prep_reason})" if n.prep == "failed" else ""
            )
            if not n.usable:
                line = f"node {n.id}: unusable ({n.reason})"
            changed |= self._say(f"node:{n.id}", line)
        for t in view.tasks:
            changed |= self._say(f"task:{t.id}", task_line(t))
        self._say("summary", summary_line(view))

    def _say(self, key: str, line: str) -> bool:
        if self.seen.get(key) == line:
            return False
        self.seen[key] = line
        self.out(line)
        return True

    def close(self) -> None:
        pass


class RichView:
    """A live table (rich) redrawn on each look: progress, per-task rows, node job prep."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console()
        self.live = Live(console=self.console, auto_refresh=False, transient=False)
        self.live.start()

    def show(self, view: JobView) -> None:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        colors = {"done": "green", "failed": "red", "running": "cyan", "preparing": "yellow"}
        table = Table(title=summary_line(view), expand=False)
        for col in ("task", "frames", "state", "node", "tries", "exit", "reason / log"):
            table.add_column(col, overflow="fold")
        for t in view.tasks:
            c = colors.get(t.state, "white")
            table.add_row(
                t.id,
                _frames(t).removeprefix("frames ").removeprefix("frame "),
                f"[{c}]{t.state}[/{c}]",
                t.node,
                str(t.attempts),
                f"{t.exit_code} {t.exit_name}" if t.exit_code else "",
                (t.reason + (f"\n{t.stderr}" if t.state == "failed" else "")) if t.reason else "",
            )
        nodes = Table(title="nodes")
        for col in ("node", "job prep", "release", "note"):
            nodes.add_column(col)
        for n in view.nodes:
            note = n.prep_reason if n.prep == "failed" else ("" if n.usable else n.reason)
            nodes.add_row(n.id, n.prep, n.release, note)
        bar = ProgressBar(total=max(view.frames_total, 1), completed=len(view.frames_uploaded))
        self.live.update(Group(bar, table, nodes), refresh=True)

    def close(self) -> None:
        self.live.stop()


def watch(
    backend: Backend,
    *,
    poll_s: float = 5.0,
    timeout_s: float | None = None,
    fancy: bool | None = None,
    out: Callable[[str], None] = print,
    wait_for_job_s: float = 60.0,
) -> JobView:
    """Look every `poll_s` until the job ends (or `timeout_s`); the last view."""
    fancy = sys.stdout.isatty() if fancy is None else fancy
    shown: PlainView | RichView = PlainView(out)
    if fancy:
        try:
            shown = RichView()
        except ImportError:  # rich is optional: plain lines on a terminal too
            pass
    t0 = time.monotonic()
    try:
        while True:
            exists = getattr(backend, "exists", None)
            if exists is not None and not exists():
                if time.monotonic() - t0 > wait_for_job_s:
                    raise backend.missing()  # type: ignore[attr-defined]
                time.sleep(min(poll_s, 1.0))
                continue
            view = observe(backend)
            shown.show(view)
            if view.finished:
                break
            if timeout_s is not None and time.monotonic() - t0 > timeout_s:
                break
            time.sleep(poll_s)
    finally:
        shown.close()
    out(result_line(view))
    for t in view.failed():
        out(f"  {task_line(t)}")
    return view
