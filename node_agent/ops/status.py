"""`node-agent status`: what is on this node (cached jobs, tasks that ran here)."""

from __future__ import annotations

import time

from node_agent.batchenv import BatchNode
from node_agent.ops.history import node_history, runs_json, runs_text
from node_agent.ops.nodeview import cached_jobs, task_records

SHOWN_RUNS = 30


def status_doc(node: BatchNode, all_runs: bool = False) -> dict[str, object]:
    history = node_history(node)
    return {
        "node_root": str(node.root_dir),
        "node_id": node.node_id,
        "phase_runs": runs_json(history, None if all_runs else SHOWN_RUNS),
        "phase_runs_total": len(history.runs),
        "phase_runs_unreadable_lines": history.bad_lines,
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


def status_text(doc: dict[str, object], node: BatchNode, all_runs: bool = False) -> str:
    lines = [f"node root: {doc['node_root']}"]
    lines += ["", "phase runs on this node (newest first):"]
    history = node_history(node)
    lines += ["  " + line for line in runs_text(history, node, None if all_runs else SHOWN_RUNS)]
    lines += ["", "jobs with files on this node:"]
    jobs = doc["jobs"]
    assert isinstance(jobs, list)
    if not jobs:
        lines.append("  (none)")
    for j in jobs:
        last = (
            time.strftime("%Y-%m-%d %H:%MZ", time.gmtime(j["last_use"])) if j["last_use"] else "-"
        )
        view = j.get("view") or "-"
        if view == "overlay" and not j.get("view_mounted"):
            view = "overlay (not mounted)"
        lines.append(
            f"  {j['job']:<24} {j['bytes'] / 2**20:9.1f} MiB  last use {last}  view {view}  "
            f"{j['path']}"
        )
    lines += ["", "render task summaries (newest first):"]
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
