"""From a job spec to the Batch job the pool runs: job prep, job release and frame tasks.

The local pool runs exactly these command lines; `batch job-json` will emit them for Azure.
"""

from __future__ import annotations

import math
from typing import Any

from node_agent import exitpolicy
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
    """Retry what can pass on another try; stop the job on what never will (exitpolicy)."""
    return exitpolicy.exit_conditions()


# a task's time beyond the renderer's render.timeout_s: job prep's view, the renderer's
# start, the last uploads (a task over its maxWallClockTime is killed and counts as failed)
TASK_MARGIN_S = 15 * 60
# job preparation's share of the job backstop: the first sync of a large asset set
PREP_ALLOWANCE_S = 2 * 3600


def iso_duration(seconds: int) -> str:
    """ISO 8601 duration, the REST format of maxWallClockTime (e.g. PT1H15M)."""
    h, rest = divmod(int(seconds), 3600)
    m, s = divmod(rest, 60)
    return (
        "PT"
        + (f"{h}H" if h else "")
        + (f"{m}M" if m else "")
        + (f"{s}S" if s or not (h or m) else "")
    )


def task_wall_clock_s(spec: JobSpec) -> int:
    return spec.render.timeout_s + TASK_MARGIN_S


def job_wall_clock_s(spec: JobSpec, parallel: int = 1) -> int:
    """The job's maxWallClockTime, the backstop that ends a job nothing else ended (every
    node's job prep failed on a transient cause, so no terminate call was made): an explicit
    `policies.job_timeout_s` when the spec has one, else job prep's allowance plus every task
    at its maxWallClockTime through all its tries, `parallel` at a time."""
    explicit = spec.policies.job_timeout_s
    if explicit:
        return int(explicit)
    tasks = len(chunk_frames(spec.render.frame_list, spec.render.frames_per_task))
    waves = math.ceil(tasks / max(1, parallel))
    return PREP_ALLOWANCE_S + waves * task_wall_clock_s(spec) * (spec.policies.task_retries + 1)


def plan_job(spec: JobSpec, parallel: int = 1) -> dict[str, Any]:
    """The Batch job (REST field names) for a spec; `parallel`: tasks the pool runs at once
    (nodes x slots), for the job's maxWallClockTime backstop."""
    tasks = []
    for chunk in chunk_frames(spec.render.frame_list, spec.render.frames_per_task):
        tasks.append(
            {
                "id": task_id_for(chunk),
                "displayName": f"{spec.job_id} frames {format_frames(chunk)}",
                "commandLine": _bash(
                    f'"$NODE_AGENT_HOME/bin/node-agent" render --frames {format_frames(chunk)}'
                ),
                "constraints": {
                    "maxTaskRetryCount": spec.policies.task_retries,
                    "maxWallClockTime": iso_duration(task_wall_clock_s(spec)),
                },
                "exitConditions": exit_conditions(),
            }
        )
    return {
        "id": spec.job_id,
        # a task's exitConditions jobAction only applies (and Batch only accepts a task carrying
        # one: HTTP 400 otherwise) when the job says so; the local pool reads it the same way
        "onTaskFailure": "performexitoptionsjobaction",
        # the backstop: Batch terminates the job after this (terminateReason
        # MaxWallClockTimeExpiry), whatever else failed to end it
        "constraints": {"maxWallClockTime": iso_duration(job_wall_clock_s(spec, parallel))},
        "jobPreparationTask": {
            "id": "jobpreparation",
            "commandLine": _bash(f'"$NODE_AGENT_HOME/job_prep/run.sh" --spec {SPEC_FILE}'),
            "resourceFiles": [{"filePath": SPEC_FILE}],
            # transient causes are retried on the node; the others terminate the job from
            # job prep itself (batch/jobcontrol.py), since Batch never would
            "constraints": {"maxTaskRetryCount": spec.policies.task_retries},
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
