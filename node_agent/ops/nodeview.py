"""Reading a node's state from disk, for ops tools that run outside any Batch task."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node_agent.batchenv import STANDARD_ROOTS, BatchNode
from node_agent.errors import EnvironmentMissing
from node_agent.sync.isolation import read_record


def locate_node(root: Path | None, env: Mapping[str, str] | None = None) -> BatchNode:
    """From --root, else the task's AZ_BATCH_* variables, else Batch's standard locations."""
    env = os.environ if env is None else env
    if root is not None:
        if not root.is_dir():
            raise EnvironmentMissing(f"--root: {root} is not a folder")
        return BatchNode.from_root(root.resolve())
    if env.get("AZ_BATCH_NODE_ROOT_DIR"):
        try:
            return BatchNode.from_env(env)
        except EnvironmentMissing:
            return BatchNode.from_root(Path(env["AZ_BATCH_NODE_ROOT_DIR"]))
    for candidate in STANDARD_ROOTS:
        if Path(candidate, "shared").is_dir():
            return BatchNode.from_root(Path(candidate))
    raise EnvironmentMissing(
        "no Batch node found: pass --root <AZ_BATCH_NODE_ROOT_DIR> (looked in "
        + ", ".join(STANDARD_ROOTS)
        + ")"
    )


@dataclass
class TaskRecord:
    job: str
    task: str
    exit_code: int | None
    exit_class: str
    wall_s: float | None
    finished_at: str
    task_dir: Path


SUMMARY_MAX = 4 * 2**20  # a render summary is a few KiB; more is not one


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file a task could write: opened without following a link or
    blocking (a FIFO), bounded; anything else is {} (unknown)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return {}
            doc = json.loads(fh.read(SUMMARY_MAX + 1).decode("utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def task_records(node: BatchNode) -> list[TaskRecord]:
    """Every frame task that left a summary on this node, newest first."""
    out = []
    for summary in node.root_dir.glob("workitems/*/*/*/summary.json"):
        doc = _read_json(summary)
        out.append(
            TaskRecord(
                job=str(doc.get("job") or summary.parents[2].name),
                task=str(doc.get("task") or summary.parent.name),
                exit_code=doc.get("exit_code"),
                exit_class=str(doc.get("exit_class", "unknown")),
                wall_s=doc.get("wall_s"),
                finished_at=str(doc.get("finished_at", "")),
                task_dir=summary.parent,
            )
        )
    return sorted(out, key=lambda r: r.finished_at, reverse=True)


def tree_size(path: Path) -> int:
    """Bytes under path, counting each hard-linked file once and never entering a mount
    (a job's assets/ overlay shows its .view, counted already, and its upper layer)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if not os.path.ismount(os.path.join(dirpath, d))]
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def cached_jobs(node: BatchNode) -> list[dict[str, Any]]:
    jobs_dir = node.agent_dir / "jobs"
    out = []
    if jobs_dir.is_dir():
        for job in sorted(p for p in jobs_dir.iterdir() if p.is_dir()):
            spec = job / "spec.json"
            last = max(
                (p.stat().st_mtime for p in (spec, job / "prep.json") if p.exists()), default=0.0
            )
            view = read_record(job)
            out.append(
                {
                    "job": job.name,
                    "bytes": tree_size(job),
                    "last_use": last,
                    "path": str(job),
                    "view": view.get("mode"),  # overlay | copy | None (no job prep recorded one)
                    "view_mounted": os.path.ismount(job / "assets"),
                }
            )
    return out
