"""The Batch job and its tasks (REST bodies), built on the plan the local pool runs.

`jobplan.plan_job` is the single source of command lines, retries and exit conditions; this
module only ADDS what a real Batch account needs (the pool, NODE_AGENT_HOME, where the job
preparation task downloads the spec from). `local_plan` strips those additions again, so
`node-agent local run` can execute a generated document unchanged.
"""

from __future__ import annotations

import copy
from typing import Any

from node_agent.batch.jobcontrol import IDENTITY_ENV
from node_agent.batch.pooljson import AGENT_CONTAINER, BatchPoolSettings, auto_user
from node_agent.conventions import job_container
from node_agent.errors import SpecError
from node_agent.jobplan import SPEC_FILE, plan_job
from node_agent.spec import JobSpec

SPEC_CONTAINER = AGENT_CONTAINER
MAX_TASKS_PER_REQUEST = 100  # Batch's limit for one add-task-collection request


def spec_blob(job_id: str) -> str:
    return f"jobs/{job_id}/{SPEC_FILE}"


def spec_url(spec: JobSpec) -> str:
    """Where `submit` uploads the spec; job preparation downloads it from there."""
    return f"{spec.storage.account_url}/{SPEC_CONTAINER}/{spec_blob(spec.job_id)}"


def _windows(command_line: str) -> str:
    """The Windows form of a plan command line: `run.sh` -> `run.cmd` under cmd.exe."""
    prefix = "/bin/bash -c '"
    if not command_line.startswith(prefix) or not command_line.endswith("'"):
        raise SpecError(f"cannot translate command line for Windows: {command_line}")
    inner = command_line[len(prefix) : -1]
    inner = inner.replace("$NODE_AGENT_HOME", "%NODE_AGENT_HOME%").replace("/", "\\")
    inner = inner.replace("\\run.sh", "\\run.cmd").replace(
        "\\bin\\node-agent", "\\bin\\node-agent.cmd"
    )
    return f'cmd /c "{inner}"'


# What makes the job end when its tasks are done. REST spec (BatchJobCreateOptions
# onAllTasksComplete): "if a Job contains no Tasks, then all Tasks are considered complete
# [...] if you want to use automatic Job termination without a Job Manager, you should
# initially set onAllTasksComplete to noaction and update the Job properties to set
# onAllTasksComplete to terminatejob once you have finished adding Tasks".
JOB_UPDATE = {"onAllTasksComplete": "terminatejob"}


def parallel_tasks(pool: BatchPoolSettings) -> int:
    """How many tasks the pool runs at once when all its nodes are up."""
    return max(1, (pool.dedicated_nodes + pool.low_priority_nodes) * pool.task_slots_per_node)


def job_json(
    spec: JobSpec, pool: BatchPoolSettings, spec_source: str | None = None
) -> dict[str, Any]:
    """The calls that run the job, in order: `{"job": <POST /jobs body>, "tasks": [<task
    bodies>, POST /jobs/{id}/addtaskcollection 100 at a time], "jobUpdate": <PATCH
    /jobs/{id} body, sent after the last task>}`. Each body is sent as printed."""
    plan = plan_job(spec, parallel_tasks(pool))
    tasks = plan.pop("tasks")
    job = copy.deepcopy(plan)
    home = [{"name": "NODE_AGENT_HOME", "value": pool.home()}]
    job["poolInfo"] = {"poolId": pool.pool_id}
    job["commonEnvironmentSettings"] = home
    # Batch counts a job without tasks as complete: "jobUpdate" (terminatejob) is sent only
    # after the last task is added
    job["onAllTasksComplete"] = "noaction"
    job["usesTaskDependencies"] = False
    job["metadata"] = [{"name": "created-by", "value": "node-agent"}]
    if pool.identity_resource_id:
        # job prep terminates the job on a failure no retry can fix (batch/jobcontrol.py)
        job["jobPreparationTask"]["environmentSettings"] = [
            {"name": IDENTITY_ENV, "value": pool.identity_resource_id}
        ]
    for t in (job["jobPreparationTask"], job["jobReleaseTask"], *tasks):
        t["userIdentity"] = auto_user(pool.task_elevation)
    for rf in job["jobPreparationTask"]["resourceFiles"]:
        if pool.blob_access == "auto_storage":
            # a container source lands at <working dir>/<blob name>: the blob is `job.json`
            # in the job's File Conventions container (`submit` puts it there)
            del rf["filePath"]
            rf.update(autoStorageContainerName=job_container(spec.job_id), blobPrefix=SPEC_FILE)
            continue
        rf["httpUrl"] = spec_source or spec_url(spec)
        if pool.identity_resource_id:
            rf["identityReference"] = {"resourceId": pool.identity_resource_id}
    if pool.os == "windows":
        for t in (job["jobPreparationTask"], job["jobReleaseTask"], *tasks):
            t["commandLine"] = _windows(t["commandLine"])
    return {"job": job, "tasks": tasks, "jobUpdate": dict(JOB_UPDATE)}


def credential_warnings(pool: BatchPoolSettings) -> list[str]:
    """What the nodes cannot download or call as configured (one line each)."""
    if pool.blob_access == "identity" and not pool.identity_resource_id:
        return [
            "pool settings: no identity_resource_id: the job preparation's resource file "
            "(job.json) is a bare httpUrl with no credential, which a private storage account "
            "refuses (HTTP 403), and job preparation cannot terminate the job on a failure "
            "no retry fixes (it then ends only at its maxWallClockTime); set "
            "identity_resource_id (the pool's user-assigned managed identity) or blob_access "
            "'auto_storage'"
        ]
    if not pool.identity_resource_id:
        return [
            "pool settings: no identity_resource_id: job preparation cannot terminate the job "
            "on a failure no retry fixes; the job ends only at its maxWallClockTime"
        ]
    return []


def local_plan(doc: dict[str, Any]) -> dict[str, Any]:
    """The plan the local pool executes, recovered from a `job_json` document."""
    job = copy.deepcopy(doc["job"])
    for key in (
        "poolInfo",
        "commonEnvironmentSettings",
        "onAllTasksComplete",
        "usesTaskDependencies",
        "metadata",
    ):
        job.pop(key, None)
    rfs = job["jobPreparationTask"].get("resourceFiles", [])
    for i, rf in enumerate(rfs):
        if "autoStorageContainerName" in rf:
            rfs[i] = {"filePath": rf["blobPrefix"]}
        rf.pop("httpUrl", None)
        rf.pop("identityReference", None)
    job["tasks"] = copy.deepcopy(doc["tasks"])
    for t in (job["jobPreparationTask"], job["jobReleaseTask"], *job["tasks"]):
        t.pop("userIdentity", None)  # the local pool runs every task as the current user
    return job


def task_chunks(tasks: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    n = MAX_TASKS_PER_REQUEST
    return [tasks[i : i + n] for i in range(0, len(tasks), n)]
