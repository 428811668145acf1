"""`node-agent status`: what is on this node (cached jobs, tasks that ran here)."""

from __future__ import annotations

import time

from node_agent.batchenv import BatchNode
from node_agent.ops.nodeview import cached_jobs, task_records


def status_doc(node: BatchNode) -> dict[str, object]:
    return {
        "node_root": str(node.root_dir),
        "jobs": cached_jobs(node),
        "tasks": [
            {
                "job": r.job,
                "task": r.task,
                "exit_code": r.exit_code,
                "exit_class": r.exit_class,
                "wall_s": r.wall_s,
                "finished_at": r.finished_at,
                "logs": [
                    str(r.task_dir / n)
                    for n in ("stdout.txt", "stderr.txt", "renderer.log")
                    if (r.task_dir / n).exists()
                ],
            }
            for r in task_records(node)
        ],
    }


def status_text(doc: dict[str, object]) -> str:
    lines = [f"node root: {doc['node_root']}", "", "jobs with files on this node:"]
    jobs = doc["jobs"]
    assert isinstance(jobs, list)
    if not jobs:
        lines.append("  (none)")
    for j in jobs:
        last = time.strftime("%Y-%m-%d %H:%M", time.gmtime(j["last_use"])) if j["last_use"] else "-"
        view = j.get("view") or "-"
        if view == "overlay" and not j.get("view_mounted"):
            view = "overlay (not mounted)"
        lines.append(
            f"  {j['job']:<24} {j['bytes'] / 2**20:9.1f} MiB  last use {last}Z  view {view}  "
            f"{j['path']}"
        )
    lines += ["", "tasks that ran here (newest first):"]
    tasks = doc["tasks"]
    assert isinstance(tasks, list)
    if not tasks:
        lines.append("  (none)")
    for t in tasks:
        lines.append(
            f"  {t['finished_at']}  {t['job']}/{t['task']:<22} exit {t['exit_code']!s:>3} "
            f"({t['exit_class']})  {t['wall_s']}s"
        )
        for log in t["logs"]:
            lines.append(f"      {log}")
    return "\n".join(lines)
