"""A local Batch node for tests: its environment, a job spec, blobs, mounts left behind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from node_agent.storage import BlobStore

REPO = Path(__file__).resolve().parents[2]
STANDINS = REPO / "tests" / "standins"


def make_spec_doc(account_url: str, **render: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "job_id": "job-a",
        "storage": {"account_url": account_url, "auth": {"kind": "emulator"}},
        "assets": [{"name": "scene", "container": "assets", "prefix": "proj/"}],
        "render": {"renderer": "blender", "scene": "spin.blend", "frames": "1-2", **render},
    }
    return doc


def node_env(root: Path, job: str | None = None, task: str | None = None) -> dict[str, str]:
    """The environment Batch gives a task on a node rooted at `root` (start task if no job)."""
    for d in ("shared", "startup", "fsmounts", "workitems"):
        (root / d).mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZ_BATCH_")}
    env.update(
        AZ_BATCH_NODE_ROOT_DIR=str(root),
        AZ_BATCH_NODE_SHARED_DIR=str(root / "shared"),
        AZ_BATCH_NODE_STARTUP_DIR=str(root / "startup"),
        AZ_BATCH_NODE_MOUNTS_DIR=str(root / "fsmounts"),
        AZ_BATCH_NODE_ID="tvmps_test",
        AZ_BATCH_POOL_ID="testpool",
        AZ_BATCH_ACCOUNT_URL="https://testaccount.eastus.batch.azure.example",
        AZ_BATCH_SOFTWARE_ENTITLEMENT_TOKEN="entitlement-token-3f9a2b7c1d",
    )
    if job is None:
        task_dir = root / "startup"
    else:
        task_dir = root / "workitems" / job / "job-1" / (task or "jobpreparation")
        env.update(AZ_BATCH_JOB_ID=job, AZ_BATCH_TASK_ID=task or "jobpreparation")
        prep = root / "workitems" / job / "job-1" / "jobpreparation"
        if task and task != "jobpreparation":
            env.update(
                AZ_BATCH_JOB_PREP_DIR=str(prep), AZ_BATCH_JOB_PREP_WORKING_DIR=str(prep / "wd")
            )
    (task_dir / "wd").mkdir(parents=True, exist_ok=True)
    env.update(AZ_BATCH_TASK_DIR=str(task_dir), AZ_BATCH_TASK_WORKING_DIR=str(task_dir / "wd"))
    return env


def agent_dir(root: Path) -> Path:
    """node-agent's own folder on the node rooted at `root` (state, cache, jobs, logs)."""
    return root / "shared" / "node_agent"


def upload_tree(store: BlobStore, local: Path, container: str, prefix: str) -> int:
    store.ensure_container(container)
    n = 0
    for f in sorted(p for p in local.rglob("*") if p.is_file()):
        store.upload_file(f, container, prefix + f.relative_to(local).as_posix())
        n += 1
    return n


def _mounts_under(base: str) -> list[str]:
    """Mount points at or below `base`, deepest first (from /proc/mounts; Linux only)."""
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return []
    points = []
    for line in lines:
        fields = line.split()
        if len(fields) > 1:
            point = fields[1].encode().decode("unicode_escape")  # /proc/mounts escapes as \040
            if point == base or point.startswith(base.rstrip("/") + "/"):
                points.append(point)
    return sorted(points, key=len, reverse=True)


def unmount_all_under(base: Path) -> None:
    """Lazily unmount every mount at or below `base` (before removing a node's folder)."""
    for point in _mounts_under(os.path.realpath(base)):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
