"""The Batch backend: a job's state read from a Batch account through the azure-batch SDK
(REST API 2025-06-01, the client `batch submit` uses, with the same credentials: the shared
key from an environment variable, else azure-identity). Field names below are the REST
spec's (Azure/azure-rest-api-specs, specification/batch/data-plane, BatchService.json
2025-06-01: Task.state active|preparing|running|completed, TaskExecutionInformation.result
success|failure, JobPreparationAndReleaseTaskExecutionInformation, Job.executionInfo
.terminateReason); the SDK models are read as those REST documents (`as_dict()`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from azure.batch import BatchClient

from node_agent.batch.submit import SubmitOptions, _batch_errors, make_client
from node_agent.errors import ExitCode
from node_agent.jobclient.model import JobView, NodeView, Span, TaskView, exit_name, tail
from node_agent.jobclient.outputs import JobBlobs
from node_agent.jobclient.taskfiles import iso_time, task_frames, uploaded_bytes
from node_agent.redact import Redactor
from node_agent.safepath import check_component
from node_agent.spec import JobSpec, load_spec

_TASK_STATES = {"active": "queued", "preparing": "preparing", "running": "running"}


def _doc(model: Any) -> dict[str, Any]:
    return dict(model.as_dict()) if hasattr(model, "as_dict") else dict(model or {})


class BatchBackend:
    """A job on a Batch account (`--endpoint`, `--account`, the key variable)."""

    def __init__(
        self,
        opts: SubmitOptions,
        job_id: str,
        spec_path: Path | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        check_component(job_id, "JOB")
        self.opts = opts
        self.job_id = job_id
        self.spec_path = spec_path
        self.redactor = redactor or Redactor()
        self.where = opts.endpoint
        self._client: BatchClient | None = None
        self._blobs: JobBlobs | None = None

    @property
    def client(self) -> BatchClient:
        if self._client is None:
            self._client = make_client(self.opts, self.redactor)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    @contextmanager
    def calls(self, what: str) -> Iterator[None]:
        with _batch_errors(what, self.redactor):
            yield

    def spec(self) -> JobSpec | None:
        return load_spec(self.spec_path) if self.spec_path is not None else None

    def blobs(self) -> JobBlobs | None:
        """Frames and logs need the job's storage: the spec it was submitted with (--spec)."""
        if self._blobs is None:
            self._blobs = self._find_blobs()
        return self._blobs

    def _find_blobs(self) -> JobBlobs | None:
        spec = self.spec()
        return JobBlobs.of_spec(spec, self.job_id, self.redactor) if spec is not None else None

    def job(self) -> dict[str, Any]:
        with self.calls(f"job '{self.job_id}'"):
            return _doc(self.client.get_job(self.job_id))

    def finished(self) -> bool:
        return self.job().get("state") == "completed"

    def task_docs(self) -> list[dict[str, Any]]:
        with self.calls(f"listing the tasks of job '{self.job_id}'"):
            return [_doc(t) for t in self.client.list_tasks(self.job_id)]

    def snapshot(self) -> JobView:
        job = self.job()
        tasks = self.task_docs()
        with self.calls(f"job prep and release status of job '{self.job_id}'"):
            preps = [
                _doc(s)
                for s in self.client.list_job_preparation_and_release_task_status(self.job_id)
            ]
        pool_id = str((job.get("executionInfo") or {}).get("poolId") or "")
        pool_id = pool_id or str((job.get("poolInfo") or {}).get("poolId") or "")
        nodes: list[dict[str, Any]] = []
        if pool_id:
            with self.calls(f"listing the nodes of pool '{pool_id}'"):
                nodes = [_doc(n) for n in self.client.list_nodes(pool_id)]
        return self.view(job, tasks, preps, nodes)

    def task_url(self, task_id: str, name: str) -> str:
        # Task - Get File: GET {endpoint}/jobs/{jobId}/tasks/{taskId}/files/{filePath}
        return f"{self.opts.endpoint.rstrip('/')}/jobs/{self.job_id}/tasks/{task_id}/files/{name}"

    def view(
        self,
        job: dict[str, Any],
        tasks: list[dict[str, Any]],
        preps: list[dict[str, Any]],
        nodes: list[dict[str, Any]],
    ) -> JobView:
        state = str(job.get("state", "active"))
        view = JobView(self.job_id, [], [], finished=state == "completed")
        for t in tasks:
            view.tasks.append(self._task(t, view.spans))
        view.frames_total = sum(len(t.frames) for t in view.tasks)
        for tv in view.tasks:
            if tv.state == "done":
                view.frames_uploaded.update(tv.frames)
        prepped = set()
        for p in preps:
            node = str(p.get("nodeId", ""))
            prepped.add(node)
            nv = NodeView(node)
            for key, attr, kind in (
                ("jobPreparationTaskExecutionInfo", "prep", "jobpreparation"),
                ("jobReleaseTaskExecutionInfo", "release", "jobrelease"),
            ):
                info = p.get(key) or {}
                if not info:
                    continue
                code = info.get("exitCode")
                done = info.get("state") == "completed"
                ok = done and info.get("result", "success") == "success" and not code
                setattr(nv, attr, "running" if not done else ("done" if ok else "failed"))
                if attr == "prep":
                    nv.prep_exit = code
                    if done and not ok:
                        fi = info.get("failureInfo") or {}
                        nv.prep_reason = str(fi.get("message") or "") or (
                            f"exit {code} {exit_name(code)}"
                        )
                view.spans.append(
                    Span(
                        node,
                        kind,
                        kind,
                        iso_time(info.get("startTime")),
                        iso_time(info.get("endTime")),
                        code,
                    )
                )
            view.nodes.append(nv)
        for n in nodes:
            info = n.get("startTaskInfo") or {}
            node = str(n.get("id", ""))
            if info:
                view.spans.append(
                    Span(
                        node,
                        "starttask",
                        "startup",
                        iso_time(info.get("startTime")),
                        iso_time(info.get("endTime")),
                        info.get("exitCode"),
                    )
                )
            if node not in prepped:
                nv = NodeView(node)
                if n.get("state") in ("starttaskfailed", "unusable"):
                    nv.usable = False
                    fi = info.get("failureInfo") or {}
                    nv.reason = str(fi.get("message") or n.get("state"))
                view.nodes.append(nv)
        if view.finished:
            reason = str((job.get("executionInfo") or {}).get("terminateReason") or "")
            view.ended_reason = "" if reason == "AllTasksComplete" else reason
            if reason not in ("", "AllTasksComplete") and not view.failed():
                # ended before its tasks did (terminated by a person, a job prep's call, time)
                view.result_code = int(ExitCode.FAILED)
        return view

    def _task(self, t: dict[str, Any], spans: list[Span]) -> TaskView:
        tid = str(t.get("id"))
        tv = TaskView(tid, task_frames(t))
        info = t.get("executionInfo") or {}
        node = str((t.get("nodeInfo") or {}).get("nodeId") or "")
        tv.node = node
        tv.attempts = int(info.get("retryCount", 0)) + (1 if info.get("startTime") else 0)
        tv.exit_code = info.get("exitCode")
        tv.start, tv.end = iso_time(info.get("startTime")), iso_time(info.get("endTime"))
        state = str(t.get("state", "active"))
        if state == "completed":
            ok = info.get("result", "success") == "success" and not tv.exit_code
            tv.state = "done" if ok else "failed"
        else:
            tv.state = _TASK_STATES.get(state, "queued")  # type: ignore[assignment]
        fi = info.get("failureInfo") or {}
        if tv.state == "failed":
            tv.reason = str(fi.get("message") or "") or (
                f"exit {tv.exit_code} {exit_name(tv.exit_code)}"
            )
        elif tv.exit_code:
            tv.reason = str(fi.get("message") or "")
        if node or state == "completed":
            tv.stderr = self.task_url(tid, "stderr.txt")
        if tv.start is not None:
            spans.append(Span(node, "task", tid, tv.start, tv.end, tv.exit_code, tv.attempts - 1))
        return tv


def enrich(view: JobView, blobs: JobBlobs) -> None:
    """What only storage knows: each task's summary.json (one-line reason, bytes uploaded),
    renderer.log URLs and tails, and the frames uploaded so far."""
    listing = blobs.listing()
    names = {b.name for b in listing}
    summaries = blobs.summaries(listing)
    for t in view.tasks:
        doc = summaries.get(t.id, {})
        if not t.renderer_log and f"{t.id}/$TaskLog/renderer.log" in names:
            t.renderer_log = blobs.url(f"{t.id}/$TaskLog/renderer.log")
        if doc:
            t.bytes_uploaded = uploaded_bytes(doc)
            if t.state == "failed" and isinstance(doc.get("reason"), str) and doc["reason"]:
                t.reason = doc["reason"]
        if not t.log_tail and t.state in ("done", "failed"):
            t.log_tail = tail(
                blobs.log_tail(t.id, "stderr.txt" if t.state == "failed" else "renderer.log"),
                4 if t.state == "done" else 12,
            )
    view.bytes_uploaded = sum(t.bytes_uploaded for t in view.tasks)
    frames = blobs.frames(listing)
    view.frames_uploaded.update(n for f in frames.values() if (n := f.number) is not None)
