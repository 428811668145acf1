"""What changes a job or a pool on Batch: terminate a job, requeue its failed frames, resize
or delete a pool. REST calls through the azure-batch SDK (API 2025-06-01): Job - Terminate
(POST /jobs/{id}/terminate), Task - Add Collection (POST /jobs/{id}/addtaskcollection), Job -
Add (POST /jobs), Job - Update (PATCH /jobs/{id}), Pool - Resize (POST /pools/{id}/resize),
Pool - Delete (DELETE /pools/{id}); the SDK's begin_* calls wait by reading the job or pool
until the change is done (GET), every `poll_s`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from azure.batch import models as bm
from azure.batch.models import _models as bm_all
from azure.core.polling import LROPoller

from node_agent.batch.jobjson import task_chunks
from node_agent.errors import BatchServiceError, UsageError
from node_agent.jobclient.batchrest import BatchBackend

# Task fields a requeued task keeps (REST names, TaskAddParameter); constraints are reduced
# to the retry count and the wall clock limit the task was given
_TASK_FIELDS = (
    "displayName",
    "commandLine",
    "exitConditions",
    "resourceFiles",
    "environmentSettings",
    "userIdentity",
    "requiredSlots",
    "outputFiles",
    "containerSettings",
    "applicationPackageReferences",
    "affinityInfo",
)
# Job fields a requeue job copies from the ended job (JobAddParameter)
_JOB_FIELDS = (
    "priority",
    "poolInfo",
    "jobPreparationTask",
    "jobReleaseTask",
    "commonEnvironmentSettings",
    "onTaskFailure",
    "usesTaskDependencies",
    "metadata",
    "maxParallelTasks",
    "allowTaskPreemption",
)
_UNLIMITED = "P10675199DT2H48M5.4775807S"


def _wait(poller: LROPoller[None], wait_s: float, what: str) -> None:
    """The SDK's poller reads the job or pool until the change is done; a failed read ends
    it as "Failed" without raising, and a timeout returns: both said here."""
    poller.result(timeout=wait_s)
    if not poller.done():
        raise BatchServiceError(f"Batch: {what}: not done after {wait_s:g}s (see the portal)")
    if poller.status() == "Failed":
        raise BatchServiceError(
            f"Batch: {what}: asked, but reading its state back failed"
        )  # TimeSpan.MaxValue: what Batch returns for "none"


def terminate(
    b: BatchBackend, reason: str, poll_s: float, wait_s: float, say: Callable[[str], None]
) -> None:
    with b.calls(f"terminating job '{b.job_id}'"):
        opts = bm_all.BatchJobTerminateOptions({"terminateReason": reason})
        poller = b.client.begin_terminate_job(b.job_id, opts, polling_interval=int(poll_s))
        _wait(poller, wait_s, f"terminating job '{b.job_id}'")
    say(f"job {b.job_id} terminated ({reason}): no task starts, running tasks are stopped")


def is_failed(t: dict[str, Any]) -> bool:
    info = t.get("executionInfo") or {}
    if t.get("state") != "completed":
        return False
    return info.get("result") == "failure" or bool(info.get("exitCode"))


def requeue_body(t: dict[str, Any], task_id: str) -> dict[str, Any]:
    """A new task with exactly the failed task's frames (its command line) and settings."""
    body: dict[str, Any] = {"id": task_id}
    body.update({k: t[k] for k in _TASK_FIELDS if k in t})
    c = t.get("constraints") or {}
    kept = {k: c[k] for k in ("maxTaskRetryCount", "maxWallClockTime") if k in c}
    if kept.get("maxWallClockTime") == _UNLIMITED:
        del kept["maxWallClockTime"]
    if kept:
        body["constraints"] = kept
    return body


def _next_id(base: str, taken: set[str]) -> str:
    n = 1
    while f"{base}-rq{n}" in taken:
        n += 1
    return f"{base}-rq{n}"


def requeue_failed(b: BatchBackend, say: Callable[[str], None]) -> tuple[str, list[str]]:
    """Re-add the failed tasks' frames as new tasks: into the job while it is active, else
    (a job that ended cannot take tasks) into a new job `<job>-rq<n>` made like it. Returns
    the job the tasks went to and their ids."""
    job = b.job()
    tasks = b.task_docs()
    failed = [t for t in tasks if is_failed(t)]
    if not failed:
        say(f"job {b.job_id}: no failed task; nothing to requeue")
        return b.job_id, []
    if job.get("state") == "active":
        taken = {str(t["id"]) for t in tasks}
        bodies = []
        for t in failed:
            new_id = _next_id(str(t["id"]), taken)
            taken.add(new_id)
            bodies.append(requeue_body(t, new_id))
        _add(b, b.job_id, bodies)
        target = b.job_id
    elif job.get("state") == "completed":
        with b.calls("listing jobs"):
            jobs = {str(j.id) for j in b.client.list_jobs(select=["id"])}
        target = _next_id(b.job_id, jobs)
        body = {"id": target, **{k: job[k] for k in _JOB_FIELDS if k in job}}
        body["onAllTasksComplete"] = "noaction"  # until the tasks are in (as submit does)
        with b.calls(f"adding job '{target}'"):
            b.client.create_job(bm.BatchJobCreateOptions(body))
        bodies = [requeue_body(t, str(t["id"])) for t in failed]
        _add(b, target, bodies)
        with b.calls(f"updating job '{target}'"):
            b.client.update_job(
                target, bm.BatchJobUpdateOptions({"onAllTasksComplete": "terminatejob"})
            )
    else:
        raise UsageError(
            f"job '{b.job_id}' is {job.get('state')}: requeue needs an active or completed job"
        )
    frames = ", ".join(str(t.get("displayName") or t["id"]) for t in failed)
    say(f"requeued {len(bodies)} failed task(s) into job {target}: {frames}")
    if target != b.job_id:
        say(
            f"its frames go to job {target}'s outputs: `node-agent job download {target} DEST` "
            f"(into the same DEST as {b.job_id})"
        )
    return target, [str(x["id"]) for x in bodies]


def _add(b: BatchBackend, job_id: str, bodies: list[dict[str, Any]]) -> None:
    from node_agent.batch.submit import _check_added

    for i, chunk in enumerate(task_chunks(bodies), 1):
        with b.calls(f"adding tasks to job '{job_id}' (request {i})"):
            result = b.client.create_task_collection(job_id, bm.BatchTaskGroup({"value": chunk}))
        _check_added(result, chunk)


def resize_pool(
    b: BatchBackend,
    pool_id: str,
    nodes: int,
    spot: int,
    poll_s: float,
    wait_s: float,
    say: Callable[[str], None],
) -> None:
    body = {"targetDedicatedNodes": nodes, "targetLowPriorityNodes": spot}
    with b.calls(f"resizing pool '{pool_id}'"):
        poller = b.client.begin_resize_pool(
            pool_id, bm.BatchPoolResizeOptions(body), polling_interval=int(poll_s)
        )
        _wait(poller, wait_s, f"resizing pool '{pool_id}'")
    say(f"pool {pool_id} resized to {nodes} dedicated + {spot} spot node(s)")


def delete_pool(
    b: BatchBackend, pool_id: str, poll_s: float, wait_s: float, say: Callable[[str], None]
) -> None:
    with b.calls(f"deleting pool '{pool_id}'"):
        poller = b.client.begin_delete_pool(pool_id, polling_interval=int(poll_s))
        _wait(poller, wait_s, f"deleting pool '{pool_id}'")
    say(f"pool {pool_id} deleted")
