"""One job on the local pool's nodes, scheduled with Batch's semantics.

- Job preparation runs before a node's first task of the job, retried up to its
  constraints.maxTaskRetryCount. A node whose job preparation failed for good is
  ineligible for the job; its tasks stay active for the other nodes (REST spec
  BatchJobPreparationTask: "Batch will not run Tasks of this Job on the Node").
- Tasks are retried up to maxTaskRetryCount; once done for good their exitConditions'
  jobAction applies when the job's onTaskFailure says so.
- The job ends when every task completed, when a jobAction terminate fires, when someone
  calls Terminate Job on the pool's Batch stand-in (localpool/batchapi.py: job preparation
  does, batch/jobcontrol.py), or at the job's constraints.maxWallClockTime. Running tasks are
  then terminated and job release runs on every node that ran job preparation.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from node_agent.batch.jobcontrol import IMDS_ENV
from node_agent.errors import ExitCode
from node_agent.jobplan import SPEC_FILE
from node_agent.localpool.batchapi import LocalBatchApi
from node_agent.localpool.node import LocalNode, TaskRun
from node_agent.localpool.report import code_name
from node_agent.spec import JobSpec

WALL_CLOCK_REASON = "MaxWallClockTimeExpiry"  # Batch's terminateReason for the backstop


@dataclass
class JobResult:
    exit_code: int
    runs: list[TaskRun]
    failed_tasks: list[str]
    # what ended the job: {"action", "task", "exit_code"} for an exitConditions jobAction,
    # {"action": "terminate", "by": "api"|"maxWallClockTime", "reason", "exit_code"} else
    ended_by: dict[str, Any] | None = None
    cancelled_tasks: list[str] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)  # tasks that never started
    ineligible_nodes: list[str] = field(default_factory=list)  # job prep failed there


def exit_options(task: dict[str, Any], exit_code: int) -> dict[str, Any]:
    """The task's exitOptions for an exit code, looked up as Batch does: exitCodes, then
    exitCodeRanges, then default."""
    ec = task.get("exitConditions") or {}
    for entry in ec.get("exitCodes") or []:
        if entry.get("code") == exit_code:
            return dict(entry.get("exitOptions") or {})
    for entry in ec.get("exitCodeRanges") or []:
        if entry.get("start", 0) <= exit_code <= entry.get("end", -1):
            return dict(entry.get("exitOptions") or {})
    return dict(ec.get("default") or {})


def job_action(job: dict[str, Any], task: dict[str, Any], exit_code: int) -> str:
    """What Batch does to the job when a task fails for good (its retries used up): the
    task's exitOptions.jobAction, applied only when the job's onTaskFailure says so."""
    if exit_code == 0:
        return "none"
    if str(job.get("onTaskFailure", "noaction")).lower() != "performexitoptionsjobaction":
        return "none"
    # Batch's default jobAction: none for exit 0, terminate for any other exit condition
    return str(exit_options(task, exit_code).get("jobAction", "terminate")).lower()


_DURATION = re.compile(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?")


def duration_s(text: str) -> float:
    """An ISO 8601 duration (the REST format of maxWallClockTime) in seconds."""
    m = _DURATION.fullmatch(text.strip())
    if not m:
        raise ValueError(f"not an ISO 8601 duration: {text!r}")
    d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return d * 86400 + h * 3600 + mi * 60 + s


def _env_settings(task: dict[str, Any]) -> dict[str, str]:
    return {str(e["name"]): str(e["value"]) for e in task.get("environmentSettings") or []}


def say(text: str) -> None:
    print(f"local pool: {text}", flush=True)


class JobRun:
    """The scheduler's shared state, the slots' worker loop, job release. Every field is
    read and written under `lock` (or is thread-safe)."""

    def __init__(self, spec: JobSpec, job: dict[str, Any], nodes: list[LocalNode]) -> None:
        self.job, self.job_id, self.nodes = job, str(job["id"]), nodes
        self.total = len(job["tasks"])
        self.todo: queue.Queue[tuple[dict[str, Any], int]] = queue.Queue()
        for t in job["tasks"]:
            self.todo.put((t, 0))
        spec_bytes = spec.model_dump_json(indent=2).encode()
        self.prep = job["jobPreparationTask"]
        self.prep_files = {
            rf.get("filePath") or SPEC_FILE: spec_bytes for rf in self.prep.get("resourceFiles", [])
        } or {SPEC_FILE: spec_bytes}
        self.failed: list[str] = []
        self.cancelled: list[str] = []
        self.started: set[str] = set()
        self.ineligible: list[str] = []
        self.ended: dict[str, Any] = {}
        self.stop = threading.Event()  # the job ended: no task starts, running ones are terminated
        self.remaining = self.total  # tasks not finished for good
        self.lock = threading.Lock()
        wall = (job.get("constraints") or {}).get("maxWallClockTime")
        self.deadline = time.monotonic() + duration_s(wall) if wall else None

    def prep_env(self, node: LocalNode) -> dict[str, str]:
        d = node.job_dir(self.job_id) / "jobpreparation"
        return {"AZ_BATCH_JOB_PREP_DIR": str(d), "AZ_BATCH_JOB_PREP_WORKING_DIR": str(d / "wd")}

    def ensure_prep(self, node: LocalNode) -> bool:
        """Job prep before the node's first task of the job, with its retries; whether it
        succeeded (a node whose job prep failed for good stays ineligible for the job)."""
        with node.prep_lock:
            if self.job_id not in node.prepped:
                retries = int((self.prep.get("constraints") or {}).get("maxTaskRetryCount", 0))
                env = {
                    "AZ_BATCH_JOB_ID": self.job_id,
                    "AZ_BATCH_TASK_ID": self.prep["id"],
                    **_env_settings(self.prep),
                }
                attempt = 0
                while True:
                    run = node.run(
                        "jobpreparation",
                        self.prep["commandLine"],
                        node.job_dir(self.job_id) / self.prep["id"],
                        env,
                        attempt,
                        resource_files=self.prep_files,
                    )
                    if run.exit_code == 0 or self.stop.is_set():
                        break
                    if retries != -1 and attempt >= retries:
                        break
                    attempt += 1
                    say(
                        f"job preparation on {node.node_id} exited {run.exit_code} "
                        f"({code_name(run.exit_code)}); retry {attempt} of {retries}"
                    )
                node.prepped[self.job_id] = run.exit_code
            return node.prepped[self.job_id] == 0

    def worker(self, node: LocalNode) -> None:
        """One slot of a node: take tasks until none is left or the job ended."""
        while not self.stop.is_set():
            with self.lock:
                if self.remaining == 0:
                    return
            try:
                task, attempt = self.todo.get(timeout=0.2)
            except queue.Empty:
                continue
            if self.stop.is_set():
                return
            if not self.ensure_prep(node):
                self.todo.put((task, attempt))  # Batch: the task goes back to active
                with self.lock:
                    first = node.node_id not in self.ineligible
                    if first:
                        self.ineligible.append(node.node_id)
                if first and not self.stop.is_set():
                    code = node.prepped[self.job_id]
                    say(
                        f"job preparation failed on {node.node_id} (exit {code} "
                        f"{code_name(code)}): like Batch, the node runs no task of job "
                        f"{self.job_id}; its tasks stay active for the other nodes"
                    )
                return
            if self.stop.is_set():  # the job ended while this node prepared
                return
            if not self.run_task(node, task, attempt):
                return

    def run_task(self, node: LocalNode, task: dict[str, Any], attempt: int) -> bool:
        """Run one attempt; queue a retry or record the outcome. False if it was cancelled."""
        with self.lock:
            self.started.add(task["id"])
        env = {
            "AZ_BATCH_JOB_ID": self.job_id,
            "AZ_BATCH_TASK_ID": task["id"],
            **self.prep_env(node),
            **_env_settings(task),
        }
        task_dir = node.job_dir(self.job_id) / task["id"]
        run = node.run("task", task["commandLine"], task_dir, env, attempt, cancel=self.stop)
        if run.cancelled:
            with self.lock:
                self.cancelled.append(task["id"])
            say(f"task {task['id']} on {node.node_id} terminated with its job")
            return False
        retries = task["constraints"]["maxTaskRetryCount"]
        if run.exit_code != 0 and (retries == -1 or attempt < retries):
            say(
                f"task {task['id']} exited {run.exit_code} on {node.node_id}; "
                f"retry {attempt + 1} of {'unlimited' if retries == -1 else retries}"
            )
            self.todo.put((task, attempt + 1))
            return True
        self.finish_task(node, task, run)
        return True

    def finish_task(self, node: LocalNode, task: dict[str, Any], run: TaskRun) -> None:
        """A task done for good: count it, and apply its exitConditions' jobAction."""
        action = job_action(self.job, task, run.exit_code)
        with self.lock:
            self.remaining -= 1
            done = self.total - self.remaining
            if run.exit_code != 0:
                self.failed.append(task["id"])
            ends = action in ("terminate", "disable") and not self.ended
            if ends:
                self.ended.update(action=action, task=task["id"], exit_code=run.exit_code)
                self.stop.set()
        say(
            f"task {task['id']} on {node.node_id} exited {run.exit_code} "
            f"after {run.seconds:.1f}s ({done}/{self.total})"
        )
        if ends:
            say(
                f"job {self.job_id} ends: task {task['id']} exited {run.exit_code} "
                f"({code_name(run.exit_code)}), its exitConditions say jobAction {action}; "
                "no further task starts"
            )

    def _prep_failure_code(self) -> int:
        codes = [r.exit_code for n in self.nodes for r in n.events if r.kind == "jobpreparation"]
        failed = [c for c in codes if c != 0]
        return failed[-1] if failed else int(ExitCode.FAILED)

    def terminate(self, job_id: str, reason: str, by: str = "api") -> bool:
        """Terminate Job (the Batch stand-in's callback, or the wall clock): whether the job
        was still running."""
        with self.lock:
            if job_id != self.job_id or self.ended or self.remaining == 0:
                return False
            self.ended.update(action="terminate", by=by, reason=reason, task=None)
            self.stop.set()
        say(f"job {self.job_id} terminated ({by}): {reason}; no further task starts")
        return True

    def wait(self, threads: list[threading.Thread]) -> None:
        """Until the job ended: tasks done, terminated, or its maxWallClockTime passed."""
        said = False
        while True:
            alive = any(t.is_alive() for t in threads)
            with self.lock:
                over = self.remaining == 0 or bool(self.ended)
            if not alive and over:
                return
            if not alive and not said:
                said = True
                wall = (self.job.get("constraints") or {}).get("maxWallClockTime", "none")
                say(
                    f"no node is eligible for job {self.job_id}; its {self.remaining} task(s) "
                    f"stay active, as on Batch, until the job is terminated or its "
                    f"maxWallClockTime ({wall}) passes"
                )
            if self.deadline is not None and time.monotonic() >= self.deadline:
                self.terminate(self.job_id, WALL_CLOCK_REASON, by="maxWallClockTime")
            time.sleep(0.1)

    def release(self) -> None:
        """Job release on every node that ran job prep."""
        release = self.job["jobReleaseTask"]
        for node in self.nodes:
            if self.job_id in node.prepped:
                env = {
                    "AZ_BATCH_JOB_ID": self.job_id,
                    "AZ_BATCH_TASK_ID": release["id"],
                    **self.prep_env(node),
                    **_env_settings(release),
                }
                task_dir = node.job_dir(self.job_id) / release["id"]
                node.run("jobrelease", release["commandLine"], task_dir, env)

    def result(self) -> JobResult:
        runs = [r for n in self.nodes for r in n.events]
        code = 0
        if self.ended.get("by"):
            # terminated from outside: job prep's cause when it failed, else a timeout
            prep_failed = any(r.kind == "jobpreparation" and r.exit_code for r in runs)
            code = self._prep_failure_code() if prep_failed else int(ExitCode.TIMEOUT)
            self.ended["exit_code"] = code
        elif self.ended:
            code = int(self.ended["exit_code"])
        elif self.failed:
            last = [r for r in runs if r.task_id in self.failed]
            code = last[-1].exit_code if last else int(ExitCode.RENDER_FAILED)
        not_run = [t["id"] for t in self.job["tasks"] if t["id"] not in self.started]
        return JobResult(
            code,
            runs,
            self.failed,
            self.ended or None,
            self.cancelled,
            not_run,
            list(self.ineligible),
        )


def run_job_on_nodes(
    spec: JobSpec, job: dict[str, Any], nodes: list[LocalNode], slots: int
) -> JobResult:
    """Job prep before a node's first task, tasks over nodes x slots, retries, the tasks'
    exitConditions, Terminate Job calls on the pool's Batch stand-in, the job's
    maxWallClockTime; then job release on every node that ran job prep."""
    state = JobRun(spec, job, nodes)
    with LocalBatchApi(state.terminate) as api:
        for n in nodes:
            n.account_url = api.url
            n.extra_env[IMDS_ENV] = api.url
        threads = [
            threading.Thread(target=state.worker, args=(n,), name=f"{n.node_id}-slot{s}")
            for n in nodes
            for s in range(slots)
        ]
        for t in threads:
            t.start()
        state.wait(threads)
        for t in threads:
            t.join()
        state.release()
    return state.result()
