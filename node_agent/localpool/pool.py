"""`node-agent local run`: a job on a local pool, scheduled the way Batch schedules it."""

from __future__ import annotations

import json
import queue
import secrets
import shutil
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from node_agent.azurite import AzuriteServer, is_local_url, port_open
from node_agent.batch.jobjson import job_json, local_plan
from node_agent.batch.pooljson import BatchPoolSettings, load_pool_settings, node_config_json
from node_agent.errors import ExitCode, NodeAgentError
from node_agent.jobplan import POOL_CONFIG_FILE, SPEC_FILE, start_task_command
from node_agent.localpool.node import LocalNode, TaskRun
from node_agent.localpool.report import code_name, print_report
from node_agent.preflight import say_logger
from node_agent.preflight_storage import check_storage
from node_agent.spec import JobSpec, load_spec


@dataclass
class JobResult:
    exit_code: int
    runs: list[TaskRun]
    failed_tasks: list[str]
    # the exitConditions jobAction that ended the job: {"action", "task", "exit_code"}
    ended_by: dict[str, Any] | None = None
    cancelled_tasks: list[str] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)  # tasks that never started


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


def _maybe_start_azurite(spec: JobSpec, stack: ExitStack, workdir: Path) -> None:
    url = urlparse(spec.storage.account_url)
    if spec.storage.auth.kind != "emulator" or not is_local_url(spec.storage.account_url):
        return
    port = url.port or 10000
    if port_open(url.hostname or "127.0.0.1", port):
        return
    location = workdir / "azurite"
    location.mkdir(parents=True, exist_ok=True)
    print(f"local pool: starting Azurite on port {port} (data in {location})", flush=True)
    stack.enter_context(AzuriteServer(port=port, location=location))


class _JobRun:
    """One job on the local pool's nodes: the scheduler's shared state, the slots' worker
    loop, job release. Every field is read and written under `lock` (or is thread-safe)."""

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
        self.ended: dict[str, Any] = {}
        self.stop = threading.Event()  # the job ended: no task starts, running ones are terminated
        self.remaining = self.total  # tasks not finished for good
        self.lock = threading.Lock()

    def prep_env(self, node: LocalNode) -> dict[str, str]:
        d = node.job_dir(self.job_id) / "jobpreparation"
        return {"AZ_BATCH_JOB_PREP_DIR": str(d), "AZ_BATCH_JOB_PREP_WORKING_DIR": str(d / "wd")}

    def ensure_prep(self, node: LocalNode) -> bool:
        """Job prep before the node's first task of the job; whether it succeeded."""
        with node.prep_lock:
            if self.job_id not in node.prepped:
                env = {"AZ_BATCH_JOB_ID": self.job_id, "AZ_BATCH_TASK_ID": self.prep["id"]}
                run = node.run(
                    "jobpreparation",
                    self.prep["commandLine"],
                    node.job_dir(self.job_id) / self.prep["id"],
                    env,
                    resource_files=self.prep_files,
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
                self.todo.put((task, attempt))  # Batch: this node runs no task of the job
                with self.lock:
                    if all(n.prepped.get(self.job_id, 0) != 0 for n in self.nodes):
                        self.failed.append("jobpreparation")
                        self.remaining = 0
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
        }
        task_dir = node.job_dir(self.job_id) / task["id"]
        run = node.run("task", task["commandLine"], task_dir, env, attempt, cancel=self.stop)
        if run.cancelled:
            with self.lock:
                self.cancelled.append(task["id"])
            _say(f"task {task['id']} on {node.node_id} terminated with its job")
            return False
        retries = task["constraints"]["maxTaskRetryCount"]
        if run.exit_code != 0 and (retries == -1 or attempt < retries):
            _say(
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
        _say(
            f"task {task['id']} on {node.node_id} exited {run.exit_code} "
            f"after {run.seconds:.1f}s ({done}/{self.total})"
        )
        if ends:
            _say(
                f"job {self.job_id} ends: task {task['id']} exited {run.exit_code} "
                f"({code_name(run.exit_code)}), its exitConditions say jobAction {action}; "
                "no further task starts"
            )

    def release(self) -> None:
        """Job release on every node that ran job prep."""
        release = self.job["jobReleaseTask"]
        for node in self.nodes:
            if self.job_id in node.prepped:
                env = {
                    "AZ_BATCH_JOB_ID": self.job_id,
                    "AZ_BATCH_TASK_ID": release["id"],
                    **self.prep_env(node),
                }
                task_dir = node.job_dir(self.job_id) / release["id"]
                node.run("jobrelease", release["commandLine"], task_dir, env)

    def result(self) -> JobResult:
        runs = [r for n in self.nodes for r in n.events]
        code = 0
        if self.ended:
            code = int(self.ended["exit_code"])
        elif self.failed:
            last = [r for r in runs if r.task_id in self.failed]
            code = last[-1].exit_code if last else int(ExitCode.RENDER_FAILED)
        not_run = [t["id"] for t in self.job["tasks"] if t["id"] not in self.started]
        return JobResult(code, runs, self.failed, self.ended or None, self.cancelled, not_run)


def _say(text: str) -> None:
    print(f"local pool: {text}", flush=True)


def run_job_on_nodes(
    spec: JobSpec, job: dict[str, Any], nodes: list[LocalNode], slots: int
) -> JobResult:
    """Job prep before a node's first task, tasks over nodes x slots, retries, the tasks'
    exitConditions (a jobAction terminate ends the job: no task starts after it, running
    ones are terminated), then job release on every node that ran job prep."""
    state = _JobRun(spec, job, nodes)
    threads = [
        threading.Thread(target=state.worker, args=(n,), name=f"{n.node_id}-slot{s}")
        for n in nodes
        for s in range(slots)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    state.release()
    return state.result()


def make_nodes(workdir: Path, pool_id: str, count: int) -> list[LocalNode]:
    token = "local-entitlement-token-" + secrets.token_hex(8)
    nodes = []
    for i in range(count):
        node = LocalNode(
            f"tvmps_local_{i + 1:03d}",
            workdir / pool_id / "nodes" / f"node-{i + 1}",
            pool_id,
            token,
        )
        node.make_dirs()
        nodes.append(node)
    return nodes


def _first_line(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return next((ln.strip() for ln in lines if ln.strip()), "")


def start_nodes(nodes: list[LocalNode], cfg: BatchPoolSettings) -> list[dict[str, Any]]:
    """Each node's start task, with the pool's node config as a resource file when it has
    one. Returns the unusable nodes: with waitForSuccess, Batch schedules nothing on a node
    whose start task failed."""
    files = {POOL_CONFIG_FILE: node_config_json(cfg.node_config)} if cfg.node_config else {}
    command = start_task_command(POOL_CONFIG_FILE if files else None)
    unusable = []
    for node in nodes:
        startup = node.root / "startup"
        run = node.run("starttask", command, startup, {}, resource_files=files)
        if run.exit_code != 0:
            reason = _first_line(startup / "stderr.txt").removeprefix("node-agent: error: ")
            reason = reason or "no reason on stderr"
            unusable.append({"node": node.node_id, "exit_code": run.exit_code, "reason": reason})
            print(
                f"local pool: node {node.node_id} is unusable (start task exited "
                f"{run.exit_code}: {reason}); like Batch with waitForSuccess, it runs no task",
                flush=True,
            )
    return unusable


def run_local_job(
    spec_path: Path,
    *,
    nodes: int,
    slots: int,
    workdir: Path,
    fresh: bool = False,
    pool_settings: Path | None = None,
    allow_missing: bool = False,
    strict: bool = False,
) -> int:
    spec = load_spec(spec_path)
    # the pool settings `batch pool-json|job-json|submit` take; the local pool is Linux
    cfg = load_pool_settings(pool_settings).with_os("linux")
    workdir = workdir.resolve()
    pool_id = "localpool"
    if fresh and (workdir / pool_id).exists():
        shutil.rmtree(workdir / pool_id)
    (workdir / pool_id).mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with ExitStack() as stack:
        _maybe_start_azurite(spec, stack, workdir)
        # before any node starts: the upload checked as the nodes will see it (exit 12)
        spec = check_storage(
            spec,
            allow_missing=allow_missing,
            strict=strict,
            log=say_logger("local", _say),
            where=f"local run: render.scene '{spec.render.scene}'",
        )
        # what runs is the document `batch job-json` prints, as JSON, minus Azure-only fields
        doc = json.loads(json.dumps(job_json(spec, cfg)))
        job_file = workdir / pool_id / f"job-{spec.job_id}.json"
        job_file.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        job = local_plan(doc)
        pool = make_nodes(workdir, pool_id, nodes)
        t_start = time.monotonic()
        unusable = start_nodes(pool, cfg)
        start_s = time.monotonic() - t_start
        bad = {u["node"] for u in unusable}
        usable = [n for n in pool if n.node_id not in bad]
        print(
            f"local pool: {len(usable)} of {nodes} node(s) x {slots} slot(s) ready; "
            f"job {spec.job_id}: {len(job['tasks'])} task(s) from {job_file}",
            flush=True,
        )
        if usable:
            result = run_job_on_nodes(spec, job, usable, slots)
        else:
            # Batch would keep the job waiting for a usable node; a local run stops here
            result = JobResult(
                int(unusable[0]["exit_code"]), [], [], not_run=[t["id"] for t in job["tasks"]]
            )
        runs = [r for n in pool for r in n.events]
        record = _run_record(spec, job_file, pool, unusable, result)
        record.update(start_task_s=start_s, total_s=time.monotonic() - t0)
        out = workdir / pool_id / f"run-{spec.job_id}.json"
        out.write_text(json.dumps(record, indent=2))
        print_report(spec, pool, runs, record, out)
    if not usable:
        first = unusable[0]
        raise NodeAgentError(
            f"no usable node: the start task failed on every node (first: {first['node']}, "
            f"exit {first['exit_code']}: {first['reason']})",
            _as_exit_code(int(first["exit_code"])),
        )
    return result.exit_code


def _run_record(
    spec: JobSpec,
    job_file: Path,
    pool: list[LocalNode],
    unusable: list[dict[str, Any]],
    result: JobResult,
) -> dict[str, Any]:
    """What `local run` writes to run-<job>.json (start_task_s and total_s added by it)."""
    return {
        "job": spec.job_id,
        "job_json": str(job_file),
        "nodes": [n.node_id for n in pool],
        "unusable_nodes": unusable,
        "exit_code": result.exit_code,
        "failed_tasks": result.failed_tasks,
        "ended_by": result.ended_by,
        "cancelled_tasks": result.cancelled_tasks,
        "tasks_not_run": result.not_run,
        "runs": [r.__dict__ for n in pool for r in n.events],
    }


def _as_exit_code(code: int) -> ExitCode:
    try:
        return ExitCode(code)
    except ValueError:
        return ExitCode.HEALTH
