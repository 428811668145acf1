"""`node-agent local run`: a job on a local pool, scheduled the way Batch schedules it."""

from __future__ import annotations

import json
import secrets
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from node_agent.azurite import AzuriteServer, is_local_url, port_open
from node_agent.batch.jobcontrol import IDENTITY_ENV
from node_agent.batch.jobjson import job_json, local_plan
from node_agent.batch.pooljson import BatchPoolSettings, load_pool_settings, node_config_json
from node_agent.errors import ExitCode, NodeAgentError
from node_agent.jobplan import POOL_CONFIG_FILE, start_task_command
from node_agent.localpool.jobrun import (
    JobResult,
    exit_options,
    job_action,
    run_job_on_nodes,
    say,
)
from node_agent.localpool.node import LocalNode
from node_agent.localpool.report import print_report
from node_agent.preflight import say_logger
from node_agent.preflight_storage import check_storage
from node_agent.runtime import write_atomic
from node_agent.safepath import own_root, remove_tree
from node_agent.spec import JobSpec, load_spec, submitted


def _maybe_start_azurite(spec: JobSpec, stack: ExitStack, workdir: Path) -> str | None:
    """Start Azurite for an emulator spec whose port nothing answers on. Returns what a
    later 'not found' must add: this Azurite holds only what an earlier one left in its
    folder, usually nothing, so the user's pushes went elsewhere."""
    url = urlparse(spec.storage.account_url)
    if spec.storage.auth.kind != "emulator" or not is_local_url(spec.storage.account_url):
        return None
    port = url.port or 10000
    if port_open(url.hostname or "127.0.0.1", port):
        return None
    location = workdir / "azurite"
    location.mkdir(parents=True, exist_ok=True)
    print(f"local pool: starting Azurite on port {port} (data in {location})", flush=True)
    stack.enter_context(AzuriteServer(port=port, location=location))
    return (
        f"nothing answered on port {port}, so local run started its own Azurite with the data "
        f"in {location} (empty unless an earlier run left some): start yours with "
        "`node-agent azurite start` and push your assets there (docs/local-project.md)"
    )


LOCAL_IDENTITY = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/localpool/providers/"
    "Microsoft.ManagedIdentity/userAssignedIdentities/localpool-identity"
)


def _stand_in_identity(job: dict[str, Any]) -> None:
    """Job prep ends a job it cannot prepare as the pool's managed identity
    (batch/jobcontrol.py). Pool settings without one: on Batch that job would run until its
    maxWallClockTime; the local pool gives job prep a stand-in identity (its IMDS stand-in
    issues the tokens) so a local run ends as a pool with an identity would, and says so."""
    env = job["jobPreparationTask"].setdefault("environmentSettings", [])
    if any(e["name"] == IDENTITY_ENV for e in env):
        return
    env.append({"name": IDENTITY_ENV, "value": LOCAL_IDENTITY})
    say(
        "pool settings have no identity_resource_id: on Batch, job preparation could not "
        "terminate a job it cannot prepare (it would end at its maxWallClockTime); here it "
        "uses the local pool's stand-in identity"
    )


def make_nodes(workdir: Path, pool_id: str, count: int) -> list[LocalNode]:
    token = "local-entitlement-token-" + secrets.token_hex(8)
    nodes = []
    for i in range(count):
        # one name everywhere: AZ_BATCH_NODE_ID, the summary and the folder nodes/<id>
        node_id = f"node-{i + 1}"
        node = LocalNode(
            node_id,
            workdir / pool_id / "nodes" / node_id,
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
    if fresh:
        remove_tree(workdir / pool_id)  # a link there is unlinked, its target untouched
    own_root(workdir / pool_id)  # a link planted at the pool folder is replaced, not followed
    t0, since = time.monotonic(), time.time()
    with ExitStack() as stack:
        started = _maybe_start_azurite(spec, stack, workdir)
        # before any node starts: the upload checked as the nodes will see it (exit 12)
        spec = _check_storage(
            started,
            spec,
            allow_missing=allow_missing,
            strict=strict,
            log=say_logger("local", say),
            where=f"local run: render.scene '{spec.render.scene}'",
        )
        spec = submitted(spec)  # a run again of this job id renders again
        # what runs is the document `batch job-json` prints, as JSON, minus Azure-only fields
        doc = json.loads(json.dumps(job_json(spec, cfg)))
        job_file = workdir / pool_id / f"job-{spec.job_id}.json"
        write_atomic(job_file, (json.dumps(doc, indent=2) + "\n").encode("utf-8"))
        job = local_plan(doc)
        _stand_in_identity(job)
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
        write_atomic(out, json.dumps(record, indent=2).encode("utf-8"))
        print_report(spec, pool, runs, record, out, since)
        _end_with_report(workdir, spec.job_id, spec_path)
    if not usable:
        first = unusable[0]
        raise NodeAgentError(
            f"no usable node: the start task failed on every node (first: {first['node']}, "
            f"exit {first['exit_code']}: {first['reason']})",
            _as_exit_code(int(first["exit_code"])),
        )
    return result.exit_code


def _check_storage(started: str | None, spec: JobSpec, **kwargs: Any) -> JobSpec:
    """check_storage; when local run started an empty Azurite, a failure says so."""
    try:
        return check_storage(spec, **kwargs)
    except NodeAgentError as e:
        if started is None:
            raise
        raise NodeAgentError(f"{e} ({started})", e.exit_code) from None


def _end_with_report(workdir: Path, job_id: str, spec_path: Path) -> None:
    """The job's HTML report (jobclient.report) and one line per failed task with its
    reason and stderr.txt; a report that cannot be written never changes the job's result."""
    from node_agent.jobclient.report import end_of_local_run

    try:
        end_of_local_run(workdir, job_id, spec_path, say)
    except (NodeAgentError, OSError, ValueError) as e:
        say(f"warning: the job report was not written: {e}")


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
        "ineligible_nodes": result.ineligible_nodes,
        "runs": [r.__dict__ for n in pool for r in n.events],
    }


def _as_exit_code(code: int) -> ExitCode:
    try:
        return ExitCode(code)
    except ValueError:
        return ExitCode.HEALTH


__all__ = ["JobResult", "exit_options", "job_action", "run_job_on_nodes", "run_local_job"]
