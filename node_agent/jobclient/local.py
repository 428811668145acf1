"""The local pool backend: a job's state read from the folder `node-agent local run
--workdir` writes (<workdir>/localpool/): job-<job>.json (the job JSON it runs),
run-<job>.json (written when the run ends), nodes/*/events.jsonl (one line per finished
run of a start task, job prep, task attempt or job release) and each node's task folders
(stdout.txt, stderr.txt, renderer.log, summary.json). Fields added to these files later are
ignored; a field this reader needs and does not find is treated as unknown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from node_agent.azurite import is_local_url
from node_agent.errors import SpecError, UsageError
from node_agent.jobclient.model import JobView, NodeView, Span, TaskView, tail
from node_agent.jobclient.outputs import JobBlobs
from node_agent.jobclient.taskfiles import (
    EVENTS_BYTES,
    as_dict,
    as_int,
    first_reason,
    iso_time,
    newest_mtime,
    read_json,
    read_text,
    task_frames,
    uploaded_bytes,
)
from node_agent.redact import Redactor
from node_agent.safepath import check_component
from node_agent.spec import JobSpec, load_spec, spec_from_data

POOL_DIR = "localpool"


class _Node:
    """One node folder of the local pool."""

    def __init__(self, root: Path, job_id: str) -> None:
        self.root = root
        self.events_file = root / "events.jsonl"
        self.events = []
        for line in read_text(self.events_file, EVENTS_BYTES).splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict) and ev.get("job", job_id) == job_id:
                self.events.append(ev)
        self.id = next((str(e["node"]) for e in self.events if e.get("node")), root.name)
        self.job_dir = root / "workitems" / job_id / "job-1"

    def task_dir(self, name: str) -> Path:
        return self.job_dir / name


class LocalBackend:
    """`--local WORKDIR`: the local pool in WORKDIR (the `--workdir` of `local run`)."""

    def __init__(
        self,
        workdir: Path,
        job_id: str,
        spec_path: Path | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        check_component(job_id, "JOB")
        self.redactor = redactor  # learns the spec's storage secret when its storage is used
        self.workdir = workdir
        self.pool = workdir / POOL_DIR
        self.job_id = job_id
        self.job_file = self.pool / f"job-{job_id}.json"
        self.run_file = self.pool / f"run-{job_id}.json"
        self.spec_path = spec_path
        self.where = str(self.pool)
        self._blobs: JobBlobs | None = None

    def exists(self) -> bool:
        return self.job_file.is_file()

    def missing(self) -> UsageError:
        return UsageError(
            f"--local {self.workdir}: no {self.job_file.name} in {self.pool} "
            f"(is '{self.job_id}' a job `node-agent local run --workdir {self.workdir}` ran?)"
        )

    def spec(self) -> JobSpec | None:
        """The job's spec: --spec, else the copy a node keeps while the job is on it."""
        if self.spec_path is not None:
            return load_spec(self.spec_path)
        for node_dir in sorted((self.pool / "nodes").glob("*")):
            copy = node_dir / "shared" / "node_agent" / "jobs" / self.job_id / "spec.json"
            try:
                return spec_from_data(json.loads(copy.read_text(encoding="utf-8")), str(copy))
            except (OSError, ValueError, SpecError):
                continue
        return None

    def blobs(self) -> JobBlobs | None:
        """Where the job's outputs are: from its spec, else (job release removed the spec
        copies) File Conventions' container on the Azurite the job JSON names."""
        if self._blobs is None:
            self._blobs = self._find_blobs()
        return self._blobs

    def _find_blobs(self) -> JobBlobs | None:
        spec = self.spec()
        if spec is not None:
            return JobBlobs.of_spec(spec, self.job_id, self.redactor)
        prep = read_json(self.job_file).get("job", {}).get("jobPreparationTask", {})
        for rf in prep.get("resourceFiles", []):
            url = str(rf.get("httpUrl", ""))
            if is_local_url(url):
                parts = urlparse(url)
                account = parts.path.strip("/").split("/")[0]
                return JobBlobs.of_emulator(
                    f"{parts.scheme}://{parts.netloc}/{account}", self.job_id
                )
        return None

    def record(self) -> dict[str, Any] | None:
        """run-<job>.json when it belongs to the latest run of the job (the job JSON is
        rewritten when a run starts), i.e. the run ended."""
        run_t, job_t = newest_mtime(self.run_file), newest_mtime(self.job_file)
        if run_t is None or job_t is None or run_t < job_t:
            return None
        return read_json(self.run_file) or None

    def finished(self) -> bool:
        return self.exists() and self.record() is not None

    def snapshot(self) -> JobView:
        if not self.exists():
            raise self.missing()
        doc = read_json(self.job_file)
        job = doc.get("job", {})
        defs = doc.get("tasks", [])
        record = self.record()
        nodes = [_Node(p, self.job_id) for p in sorted((self.pool / "nodes").glob("*"))]
        if record is not None:  # the run's own list: authoritative once it ended
            by_node: dict[str, list[dict[str, Any]]] = {}
            for ev in record.get("runs", []):
                by_node.setdefault(str(ev.get("node")), []).append(ev)
            for n in nodes:
                n.events = by_node.get(n.id, n.events)
        view = JobView(self.job_id, [], [], finished=record is not None)
        view.spans = self._spans(nodes)
        self._nodes(view, nodes, record)
        for t in defs:
            view.tasks.append(self._task(t, job, nodes, record))
        view.frames_total = sum(len(t.frames) for t in view.tasks)
        self._totals(view, nodes)
        if record is not None:
            view.result_code = int(record.get("exit_code", 0))
            view.ended_reason = _ended_reason(record)
        return view

    def _nodes(self, view: JobView, nodes: list[_Node], record: dict[str, Any] | None) -> None:
        unusable = {str(u.get("node")): u for u in (record or {}).get("unusable_nodes", [])}
        for n in nodes:
            nv = NodeView(n.id)
            start = [e for e in n.events if e.get("kind") == "starttask"]
            if start and start[-1].get("exit_code", 0) != 0:
                nv.usable = False
                nv.reason = str(unusable.get(n.id, {}).get("reason", "")) or first_reason(
                    n.root / "startup" / "stderr.txt"
                )
            for kind, attr in (("jobpreparation", "prep"), ("jobrelease", "release")):
                evs = [e for e in n.events if e.get("kind") == kind]
                if evs:
                    code = as_int(evs[-1].get("exit_code"))
                    setattr(nv, attr, "done" if code == 0 else "failed")
                    if kind == "jobpreparation":
                        nv.prep_exit = code
                        if code:
                            nv.prep_reason = first_reason(n.task_dir(kind) / "stderr.txt")
                elif n.task_dir(kind).is_dir() and record is None:
                    setattr(nv, attr, "running")
            view.nodes.append(nv)

    def _task(
        self,
        t: dict[str, Any],
        job: dict[str, Any],
        nodes: list[_Node],
        record: dict[str, Any] | None,
    ) -> TaskView:
        tid = str(t.get("id"))
        tv = TaskView(tid, task_frames(t))
        runs = [(n, e) for n in nodes for e in n.events if e.get("kind") == "task"]
        mine = [(n, e) for n, e in runs if e.get("task_id") == tid]
        mine.sort(key=lambda ne: as_int(ne[1].get("attempt")))
        tv.attempts = len(mine)
        retries = as_int(as_dict(t.get("constraints")).get("maxTaskRetryCount"))
        if mine:
            node, last = mine[-1]
            tv.node = node.id
            tv.exit_code = as_int(last.get("exit_code"))
            if tv.exit_code == 0:
                tv.state = "done"
            elif record is not None or (retries != -1 and tv.attempts > retries):
                tv.state = "failed"
            self._details(tv, node)
        if tv.state not in ("done", "failed") and record is None:
            for n in nodes:  # an attempt in flight: its folder is newer than the node's events
                d = n.task_dir(tid)
                if not d.is_dir():
                    continue
                seen = any(e.get("task_id") == tid for m, e in runs if m is n)
                newer = (newest_mtime(d / "stdout.txt", d / "stderr.txt") or 0) > (
                    newest_mtime(n.events_file) or 0
                )
                if not seen or newer:
                    tv.state, tv.node = "running", n.id
                    tv.attempts += 1  # started attempts, the running one included (as Batch)
                    tv.stderr = str(d / "stderr.txt")
                    tv.renderer_log = str(d / "renderer.log")
                    break
        return tv

    def _details(self, tv: TaskView, node: _Node) -> None:
        d = node.task_dir(tv.id)
        tv.stderr = str(d / "stderr.txt")
        tv.renderer_log = str(d / "renderer.log") if (d / "renderer.log").exists() else ""
        summary = read_json(d / "summary.json")  # the task folder: any shape may be there
        times = as_dict(summary.get("times"))
        tv.start = iso_time(times.get("agent_started_at"))
        tv.end = iso_time(summary.get("finished_at"))
        tv.bytes_uploaded = uploaded_bytes(summary)
        if tv.exit_code:
            reason = summary.get("reason")
            tv.reason = (reason if isinstance(reason, str) else "") or first_reason(
                d / "stderr.txt"
            )
            tv.log_tail = tail(read_text(d / "stderr.txt"))
        else:
            tv.log_tail = tail(read_text(d / "renderer.log"), 4)

    def _spans(self, nodes: list[_Node]) -> list[Span]:
        """Each run as a span of time. Events carry `started_at`/`ended_at` (epoch s) when the
        local pool records them; else the end is the run folder's last write for a
        folder's latest run, and earlier runs are placed back to back before it."""
        spans: list[Span] = []
        for n in nodes:
            mine: list[Span] = []
            for ev in n.events:
                kind = str(ev.get("kind", ""))
                name = str(ev.get("task_id") or kind)
                secs = float(ev.get("seconds", 0.0))
                start = ev.get("started_at")
                end = ev.get("ended_at")
                approx = start is None or end is None
                mine.append(
                    Span(
                        n.id,
                        kind,
                        name,
                        float(start) if start is not None else None,
                        float(end) if end is not None else None,
                        int(ev.get("exit_code", 0)),
                        int(ev.get("attempt", 0)),
                        approx,
                    )
                )
                if approx:
                    mine[-1].end = secs  # seconds, placed below
            last_of: dict[str, int] = {}
            for i, s in enumerate(mine):
                last_of[s.name] = i
            for i in range(len(mine) - 1, -1, -1):
                s = mine[i]
                if not s.approximate:
                    continue
                secs = float(s.end or 0.0)
                folder = n.root / "startup" if s.kind == "starttask" else n.task_dir(s.name)
                end = newest_mtime(folder / "stdout.txt", folder / "stderr.txt")
                if last_of[s.name] != i or end is None:
                    later = [m.start for m in mine[i + 1 :] if m.start is not None]
                    end = min(later) if later else end
                s.end = end
                s.start = end - secs if end is not None else None
            spans += mine
        return spans

    def _totals(self, view: JobView, nodes: list[_Node]) -> None:
        synced = 0
        for n in nodes:
            synced += as_int(
                read_json(n.task_dir("jobpreparation") / "sync-summary.json").get(
                    "bytes_downloaded"
                )
            )
        view.bytes_synced = synced
        view.bytes_uploaded = sum(t.bytes_uploaded for t in view.tasks)
        for t in view.tasks:
            if t.state == "done":
                view.frames_uploaded.update(t.frames)


def _ended_reason(record: dict[str, Any]) -> str:
    ended = record.get("ended_by") or {}
    if ended.get("reason"):  # a Terminate Job call (job prep's) or the job's maxWallClockTime
        return f"{ended.get('action', 'terminate')} by {ended.get('by', 'api')}: {ended['reason']}"
    if ended:
        return (
            f"{ended.get('action', 'terminate')} by task {ended.get('task')} "
            f"(exit {ended.get('exit_code')})"
        )
    for key in ("terminate_reason", "reason"):  # fields a newer local pool may add
        if record.get(key):
            return str(record[key])
    if "jobpreparation" in (record.get("failed_tasks") or []):
        return "job preparation failed on every node"
    if record.get("unusable_nodes") and not record.get("runs_tasks", True):
        return "no usable node"
    return ""
