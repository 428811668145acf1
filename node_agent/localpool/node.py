"""One local node: its folders and how it runs a task the way Batch would."""

from __future__ import annotations

import json
import os
import shlex
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from node_agent.azurite import REPO_ROOT
from node_agent.proctree import ProcessGroup, State, watch
from node_agent.runtime import write_atomic
from node_agent.safepath import open_for_write, split_rel

LOCAL_ACCOUNT_URL = "https://localpool.eastus.batch.azure.example"
LOCAL_TOKEN_PREFIX = "local-entitlement-token-"
CANCEL_GRACE_S = 10.0  # a cancelled task is notified, then its tree killed after this long


@dataclass
class TaskRun:
    node: str
    kind: str
    task_id: str
    exit_code: int
    seconds: float
    attempt: int = 0
    command_line: str = ""
    cancelled: bool = False  # ended by the pool (its job was terminated), not by itself
    job: str = ""  # the job it belongs to ('' for the start task): one workdir, many jobs
    started_at: float = 0.0  # epoch seconds (job report's per-node timeline)
    ended_at: float = 0.0


@dataclass
class LocalNode:
    node_id: str
    root: Path
    pool_id: str
    token: str
    events: list[TaskRun] = field(default_factory=list)
    prep_lock: threading.Lock = field(default_factory=threading.Lock)
    prepped: dict[str, int] = field(default_factory=dict)
    # the Batch account its tasks call (the local pool's stand-in, localpool/batchapi.py)
    account_url: str = LOCAL_ACCOUNT_URL
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. the stand-in IMDS

    def make_dirs(self) -> None:
        for d in ("applications", "fsmounts", "shared", "startup", "volatile", "workitems"):
            (self.root / d).mkdir(parents=True, exist_ok=True)

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AZ_BATCH_")}
        env.update(
            {
                "AZ_BATCH_ACCOUNT_NAME": "localpool",
                "AZ_BATCH_ACCOUNT_URL": self.account_url,
                "AZ_BATCH_SOFTWARE_ENTITLEMENT_TOKEN": self.token,
                "AZ_BATCH_POOL_ID": self.pool_id,
                "AZ_BATCH_NODE_ID": self.node_id,
                "AZ_BATCH_NODE_IS_DEDICATED": "true",
                "AZ_BATCH_NODE_ROOT_DIR": str(self.root),
                "AZ_BATCH_NODE_SHARED_DIR": str(self.root / "shared"),
                "AZ_BATCH_NODE_STARTUP_DIR": str(self.root / "startup"),
                "AZ_BATCH_NODE_MOUNTS_DIR": str(self.root / "fsmounts"),
                "AZ_BATCH_TASK_RESERVED_EPHEMERAL_DISK_SPACE_BYTES": "0",
                "NODE_AGENT_HOME": str(REPO_ROOT),
                **self.extra_env,
            }
        )
        return env

    def job_dir(self, job_id: str) -> Path:
        return self.root / "workitems" / job_id / "job-1"

    def run(
        self,
        kind: str,
        command_line: str,
        task_dir: Path,
        extra_env: dict[str, str],
        attempt: int = 0,
        resource_files: dict[str, bytes] | None = None,
        cancel: threading.Event | None = None,
    ) -> TaskRun:
        """Run one task: its own folder, stdout.txt/stderr.txt, Batch's variables, its own
        process group. When `cancel` is set while it runs, it is stopped the way the render
        task stops a renderer (notify, CANCEL_GRACE_S, terminate the tree), as Batch
        terminates the running tasks of a job that ends."""
        wd = task_dir / "wd"
        wd.mkdir(parents=True, exist_ok=True)
        for name, data in (resource_files or {}).items():  # filePath: from the job JSON
            write_atomic(wd.joinpath(*split_rel(name, "resource file")), data)
        env = self.base_env()
        env.update(extra_env)
        env["AZ_BATCH_TASK_DIR"] = str(task_dir)
        env["AZ_BATCH_TASK_WORKING_DIR"] = str(wd)
        t0, started_at = time.monotonic(), time.time()
        with (
            open_for_write(task_dir / "stdout.txt") as out,
            open_for_write(task_dir / "stderr.txt") as err,
        ):
            group = ProcessGroup.spawn(
                shlex.split(command_line), env=env, cwd=wd, stdout=out, stderr=err
            )
            state = watch(group, lambda: _cancelled(cancel), grace_s=CANCEL_GRACE_S, wake=cancel)
            code = group.wait()
        run = TaskRun(
            self.node_id,
            kind,
            task_dir.name,
            int(code or 0),
            time.monotonic() - t0,
            attempt,
            command_line,
            state is State.CANCELLED,
            extra_env.get("AZ_BATCH_JOB_ID", ""),
            started_at,
            time.time(),
        )
        self.events.append(run)
        with open_for_write(self.root / "events.jsonl", append=True) as fh:
            fh.write((json.dumps(run.__dict__) + "\n").encode())
        return run


def _cancelled(cancel: threading.Event | None) -> State:
    return State.CANCELLED if cancel is not None and cancel.is_set() else State.RUNNING
