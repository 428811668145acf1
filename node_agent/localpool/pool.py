"""`node-agent local run`: a job on a local pool, scheduled the way Batch schedules it."""

from __future__ import annotations

import json
import queue
import secrets
import shutil
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from node_agent.azurite import AzuriteServer, is_local_url, port_open
from node_agent.errors import ExitCode, NodeAgentError
from node_agent.jobplan import SPEC_FILE, plan_job, start_task_command
from node_agent.localpool.node import LocalNode, TaskRun
from node_agent.localpool.report import print_report
from node_agent.spec import JobSpec, load_spec


@dataclass
class JobResult:
    exit_code: int
    runs: list[TaskRun]
    failed_tasks: list[str]


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


def run_job_on_nodes(
    spec: JobSpec, job: dict[str, Any], nodes: list[LocalNode], slots: int
) -> JobResult:
    """Job prep before a node's first task, tasks over nodes x slots, retries, then job release."""
    todo: queue.Queue[tuple[dict[str, Any], int]] = queue.Queue()
    for t in job["tasks"]:
        todo.put((t, 0))
    spec_bytes = spec.model_dump_json(indent=2).encode()
    prep = job["jobPreparationTask"]
    failed: list[str] = []
    remaining = [len(job["tasks"])]
    lock = threading.Lock()

    def prep_env(node: LocalNode) -> dict[str, str]:
        d = node.job_dir(spec.job_id) / "jobpreparation"
        return {"AZ_BATCH_JOB_PREP_DIR": str(d), "AZ_BATCH_JOB_PREP_WORKING_DIR": str(d / "wd")}

    def ensure_prep(node: LocalNode) -> bool:
        with node.prep_lock:
            if spec.job_id not in node.prepped:
                env = {"AZ_BATCH_JOB_ID": spec.job_id, "AZ_BATCH_TASK_ID": prep["id"]}
                run = node.run(
                    "jobpreparation",
                    prep["commandLine"],
                    node.job_dir(spec.job_id) / prep["id"],
                    env,
                    resource_files={SPEC_FILE: spec_bytes},
                )
                node.prepped[spec.job_id] = run.exit_code
            return node.prepped[spec.job_id] == 0

    def worker(node: LocalNode) -> None:
        while True:
            with lock:
                if remaining[0] == 0:
                    return
            try:
                task, attempt = todo.get(timeout=0.2)
            except queue.Empty:
                continue
            if not ensure_prep(node):
                todo.put((task, attempt))  # Batch: this node runs no task of the job
                with lock:
                    if all(n.prepped.get(spec.job_id, 0) != 0 for n in nodes):
                        failed.append("jobpreparation")
                        remaining[0] = 0
                return
            env = {"AZ_BATCH_JOB_ID": spec.job_id, "AZ_BATCH_TASK_ID": task["id"], **prep_env(node)}
            run = node.run(
                "task", task["commandLine"], node.job_dir(spec.job_id) / task["id"], env, attempt
            )
            retries = task["constraints"]["maxTaskRetryCount"]
            if run.exit_code != 0 and attempt < retries:
                print(
                    f"local pool: task {task['id']} exited {run.exit_code} on {node.node_id}; "
                    f"retry {attempt + 1} of {retries}",
                    flush=True,
                )
                todo.put((task, attempt + 1))
                continue
            with lock:
                remaining[0] -= 1
                if run.exit_code != 0:
                    failed.append(task["id"])
            print(
                f"local pool: task {task['id']} on {node.node_id} exited {run.exit_code} "
                f"after {run.seconds:.1f}s ({len(job['tasks']) - remaining[0]}/{len(job['tasks'])})",
                flush=True,
            )

    threads = [
        threading.Thread(target=worker, args=(n,), name=f"{n.node_id}-slot{s}")
        for n in nodes
        for s in range(slots)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    release = job["jobReleaseTask"]
    for node in nodes:
        if spec.job_id in node.prepped:
            env = {
                "AZ_BATCH_JOB_ID": spec.job_id,
                "AZ_BATCH_TASK_ID": release["id"],
                **prep_env(node),
            }
            node.run(
                "jobrelease", release["commandLine"], node.job_dir(spec.job_id) / release["id"], env
            )
    runs = [r for n in nodes for r in n.events]
    code = 0
    if failed:
        last = [r for r in runs if r.task_id in failed]
        code = last[-1].exit_code if last else int(ExitCode.RENDER_FAILED)
    return JobResult(code, runs, failed)


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


def run_local_job(
    spec_path: Path, *, nodes: int, slots: int, workdir: Path, fresh: bool = False
) -> int:
    spec = load_spec(spec_path)
    workdir = workdir.resolve()
    pool_id = "localpool"
    if fresh and (workdir / pool_id).exists():
        shutil.rmtree(workdir / pool_id)
    job = plan_job(spec)
    t0 = time.monotonic()
    with ExitStack() as stack:
        _maybe_start_azurite(spec, stack, workdir)
        pool = make_nodes(workdir, pool_id, nodes)
        t_start = time.monotonic()
        for node in pool:
            run = node.run("starttask", start_task_command(), node.root / "startup", {})
            if run.exit_code != 0:
                raise NodeAgentError(
                    f"start task failed on {node.node_id} with exit {run.exit_code}; "
                    f"see {node.root / 'startup' / 'stderr.txt'}",
                    ExitCode.HEALTH,
                )
        start_s = time.monotonic() - t_start
        print(
            f"local pool: {nodes} node(s) x {slots} slot(s) ready; job {spec.job_id}: "
            f"{len(job['tasks'])} task(s)",
            flush=True,
        )
        result = run_job_on_nodes(spec, job, pool, slots)
        record = {
            "job": spec.job_id,
            "nodes": [n.node_id for n in pool],
            "exit_code": result.exit_code,
            "failed_tasks": result.failed_tasks,
            "runs": [r.__dict__ for r in result.runs],
            "start_task_s": start_s,
            "total_s": time.monotonic() - t0,
        }
        out = workdir / pool_id / f"run-{spec.job_id}.json"
        out.write_text(json.dumps(record, indent=2))
        print_report(spec, pool, result.runs, record, out)
    return result.exit_code
