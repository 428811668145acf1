"""Render-task tests: a Batch task on a local node, `node-agent render` run as Batch runs it."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.cli import agent_cmd, start_agent
from helpers.node import STANDINS, make_spec_doc, node_env
from helpers.secrets import SAS_VAR
from node_agent.batchenv import BatchNode
from node_agent.conventions import job_container
from node_agent.storage import BlobStore


@dataclass
class Task:
    env: dict[str, str]
    node: BatchNode
    spec_path: Path
    doc: dict[str, Any]

    @property
    def out_dir(self) -> Path:
        return self.node.task_working_dir / "output"

    @property
    def container(self) -> str:
        return job_container(str(self.node.job_id))

    def summary(self) -> dict[str, Any]:
        return dict(json.loads((self.node.task_dir / "summary.json").read_text()))

    def args(self, frames: str, *extra: str) -> list[str]:
        return ["render", "--frames", frames, "--spec", str(self.spec_path), *extra]

    def argv(self, frames: str, *extra: str) -> list[str]:
        return agent_cmd(*self.args(frames, *extra))

    def start(self, frames: str, *extra: str) -> subprocess.Popen[bytes]:
        """Like Batch: stdout/stderr go to stdout.txt/stderr.txt in the task folder."""
        td = self.node.task_dir
        with open(td / "stdout.txt", "ab") as out, open(td / "stderr.txt", "ab") as err:
            return start_agent(self.args(frames, *extra), self.env, stdout=out, stderr=err)

    def run(self, frames: str, *extra: str, timeout: float = 300) -> int:
        proc = self.start(frames, *extra)
        return proc.wait(timeout)

    def stdout(self) -> str:
        return (self.node.task_dir / "stdout.txt").read_text(errors="replace")

    def stderr(self) -> str:
        return (self.node.task_dir / "stderr.txt").read_text(errors="replace")

    def refuse_upload(self, store: BlobStore, name: str) -> None:
        """Every upload of output `name` to $TaskOutput fails: a blob already there, leased
        for good, refuses a write without the lease (412)."""
        store.ensure_container(self.container)
        blob_name = f"{self.env['AZ_BATCH_TASK_ID']}/$TaskOutput/{name}"
        blob = store.container(self.container).get_blob_client(blob_name)
        blob.upload_blob(b"old", overwrite=True)
        blob.acquire_lease(-1)

    def use_sas(self, sas: str, **auth: Any) -> None:
        """Storage auth by the SAS in $SAS_VAR (and `auth`'s other keys): in the spec file
        and in the task's environment."""
        self.doc["storage"]["auth"] = {"kind": "sas", "env": SAS_VAR, **auth}
        self.spec_path.write_text(json.dumps(self.doc))
        self.env[SAS_VAR] = sas


def make_task(
    root: Path, account_url: str, *, job: str = "job-a", task: str = "task-1", **render: Any
) -> Task:
    env = node_env(root, job, task)
    node = BatchNode.from_env(env, need_job=True)
    doc = make_spec_doc(account_url, **render)
    spec_path = root / f"spec-{task}.json"
    spec_path.write_text(json.dumps(doc))
    node.job_assets_dir().mkdir(parents=True, exist_ok=True)
    return Task(env, node, spec_path, doc)


def standin(name: str) -> str:
    return str(STANDINS / name)


def standin_task(root: Path, account_url: str, script: str, *args: str, **render: Any) -> Task:
    """`make_task` of a `custom` renderer: stand-in `script` (tests/standins/) writing to
    {output_dir}, then `args`."""
    command = [standin(script), "{output_dir}", *args]
    return make_task(root, account_url, renderer="custom", command=command, **render)


def kill_tree(pid: int) -> None:
    """What a preempted node does to a task: every process of its tree gone at once, no
    SIGTERM, so no summary is written."""
    import os
    import signal

    import psutil

    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            os.killpg(os.getpgid(p.pid), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=30)
