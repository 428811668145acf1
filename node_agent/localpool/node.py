"""One local node: its folders and how it runs a task the way Batch would."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from node_agent.azurite import REPO_ROOT

LOCAL_ACCOUNT_URL = "https://localpool.eastus.batch.azure.example"
LOCAL_TOKEN_PREFIX = "local-entitlement-token-"
CANCEL_GRACE_S = 10.0  # a cancelled task gets SIGTERM, then SIGKILL after this long


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


@dataclass
class LocalNode:
    node_id: str
    root: Path
    pool_id: str
    token: str
    events: list[TaskRun] = field(default_factory=list)
    prep_lock: threading.Lock = field(default_factory=threading.Lock)
    prepped: dict[str, int] = field(default_factory=dict)

    def make_dirs(self) -> None:
        for d in ("applications", "fsmounts", "shared", "startup", "volatile", "workitems"):
            (self.root / d).mkdir(parents=True, exist_ok=True)

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AZ_BATCH_")}
        env.update(
            {
                "AZ_BATCH_ACCOUNT_NAME": "localpool",
                "AZ_BATCH_ACCOUNT_URL": LOCAL_ACCOUNT_URL,
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
        """Run one task: its own folder, stdout.txt/stderr.txt, Batch's variables. When
        `cancel` is set while it runs, its process group is terminated (as Batch terminates
        the running tasks of a job that ends)."""
        wd = task_dir / "wd"
        wd.mkdir(parents=True, exist_ok=True)
        for name, data in (resource_files or {}).items():
            (wd / name).write_bytes(data)
        env = self.base_env()
        env.update(extra_env)
        env["AZ_BATCH_TASK_DIR"] = str(task_dir)
        env["AZ_BATCH_TASK_WORKING_DIR"] = str(wd)
        t0 = time.monotonic()
        with open(task_dir / "stdout.txt", "wb") as out, open(task_dir / "stderr.txt", "wb") as err:
            proc = subprocess.Popen(
                shlex.split(command_line),
                cwd=wd,
                env=env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                code, cancelled = _wait(proc, cancel)
            except BaseException:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
                raise
        run = TaskRun(
            self.node_id,
            kind,
            task_dir.name,
            code,
            time.monotonic() - t0,
            attempt,
            command_line,
            cancelled,
        )
        self.events.append(run)
        with open(self.root / "events.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(run.__dict__) + "\n")
        return run


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # the task runs in its own session: pgid == pid
    except ProcessLookupError:
        pass


def _wait(proc: subprocess.Popen[bytes], cancel: threading.Event | None) -> tuple[int, bool]:
    """The exit code, and whether the task was cancelled (SIGTERM, then SIGKILL)."""
    if cancel is None:
        return proc.wait(), False
    cancelled_at: float | None = None
    while True:
        try:
            return proc.wait(timeout=0.2), cancelled_at is not None
        except subprocess.TimeoutExpired:
            pass
        if cancelled_at is None and cancel.is_set():
            cancelled_at = time.monotonic()
            _signal_group(proc, signal.SIGTERM)
        elif cancelled_at is not None and time.monotonic() - cancelled_at > CANCEL_GRACE_S:
            _signal_group(proc, signal.SIGKILL)
