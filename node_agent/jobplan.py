"""From a job spec to the Batch job the pool runs: job prep, job release and frame tasks.

The local pool runs exactly these command lines; `batch job-json` will emit them for Azure.
"""

from __future__ import annotations

from typing import Any

from node_agent.errors import ExitCode
from node_agent.frames import chunk_frames, format_frames
from node_agent.spec import JobSpec

SPEC_FILE = "job.json"
POOL_CONFIG_FILE = "pool-config.json"  # the start task's resource file (the node pool config)


def _bash(cmd: str) -> str:
    return f"/bin/bash -c '{cmd}'"


def start_task_script(pool_config: str | None = None) -> str:
    """The start task proper (after any install), given the pool config when the pool has one."""
    args = f" --pool-config {pool_config}" if pool_config else ""
    return f'"$NODE_AGENT_HOME/start_task/run.sh"{args}'


def start_task_command(pool_config: str | None = None) -> str:
    return _bash(start_task_script(pool_config))


def task_id_for(frames: list[int]) -> str:
    return f"frames-{frames[0]:05d}-{frames[-1]:05d}"


def exit_conditions() -> dict[str, Any]:
    """Retry what can pass on another try; stop the job on what never will."""
    return {
        "exitCodes": [
            # a license failure is retried (maxTaskRetryCount) without stopping the job
            {"code": int(ExitCode.LICENSE), "exitOptions": {"jobAction": "none"}},
            {"code": int(ExitCode.USAGE), "exitOptions": {"jobAction": "terminate"}},
            {"code": int(ExitCode.MISSING_ASSET), "exitOptions": {"jobAction": "terminate"}},
        ],
        "default": {"jobAction": "none"},
    }


def plan_job(spec: JobSpec) -> dict[str, Any]:
    """The Batch job (REST field names) for a spec."""
    tasks = []
    for chunk in chunk_frames(spec.render.frame_list, spec.render.frames_per_task):
        tasks.append(
            {
                "id": task_id_for(chunk),
                "displayName": f"{spec.job_id} frames {format_frames(chunk)}",
                "commandLine": _bash(
                    f'"$NODE_AGENT_HOME/bin/node-agent" render --frames {format_frames(chunk)}'
                ),
                "constraints": {"maxTaskRetryCount": spec.policies.task_retries},
                "exitConditions": exit_conditions(),
            }
        )
    return {
        "id": spec.job_id,
        # a task's exitConditions jobAction only applies (and Batch only accepts a task carrying
        # one: HTTP 400 otherwise) when the job says so; the local pool reads it the same way
        "onTaskFailure": "performexitoptionsjobaction",
        "jobPreparationTask": {
            "id": "jobpreparation",
            "commandLine": _bash(f'"$NODE_AGENT_HOME/job_prep/run.sh" --spec {SPEC_FILE}'),
            "resourceFiles": [{"filePath": SPEC_FILE}],
            "waitForSuccess": True,
            "rerunOnNodeRebootAfterSuccess": True,
        },
        "jobReleaseTask": {
            "id": "jobrelease",
            "commandLine": _bash('"$NODE_AGENT_HOME/job_release/run.sh"'),
            "maxWallClockTime": "PT15M",
        },
        "tasks": tasks,
    }
