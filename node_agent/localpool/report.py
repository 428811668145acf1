"""The end-of-job summary table of a local pool run."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from node_agent.conventions import job_container
from node_agent.errors import ExitCode
from node_agent.localpool.node import LocalNode, TaskRun
from node_agent.runtime import write_atomic
from node_agent.spec import JobSpec
from node_agent.sync.progress import format_bytes


def _read(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def code_name(code: int) -> str:
    try:
        return ExitCode(code).name.lower()
    except ValueError:
        return "unknown"


def _fresh(path: Path, since: float) -> bool:
    """Written by this run: a re-run of a job id finds the previous run's files in place."""
    try:
        return path.stat().st_mtime >= since
    except OSError:
        return False


def collect(
    spec: JobSpec, nodes: list[LocalNode], runs: list[TaskRun], since: float = 0.0
) -> dict[str, Any]:
    """Frames and bytes of THIS run: only the task folders its runs used, only files written
    since it started (an earlier run of the same job id left its own)."""
    frames = 0
    uploaded = 0
    synced = 0
    for node in nodes:
        jd = node.job_dir(spec.job_id)
        mine = {r.task_id for r in runs if r.node == node.node_id}
        prep = jd / "jobpreparation" / "sync-summary.json"
        if "jobpreparation" in mine and _fresh(prep, since):
            synced += int(_read(prep).get("bytes_downloaded", 0))
        for task_id in sorted(mine - {"jobpreparation", "jobrelease"}):
            summary = jd / task_id / "summary.json"
            if not _fresh(summary, since):
                continue
            doc = _read(summary)
            outs = doc.get("outputs", [])
            frames += len(outs) if doc.get("exit_code") == 0 else 0
            uploaded += sum(int(o.get("bytes", 0)) for o in outs)
    return {"frames": frames, "bytes_synced": synced, "bytes_uploaded": uploaded}


def _prep_stderr(spec: JobSpec, nodes: list[LocalNode], node_id: str) -> Path | None:
    node = next((n for n in nodes if n.node_id == node_id), None)
    return node.job_dir(spec.job_id) / "jobpreparation" / "stderr.txt" if node else None


def _ended_text(ended: dict[str, Any]) -> str:
    code = ended.get("exit_code", 0)
    if ended.get("by") == "api":  # job prep's Terminate Job call (batch/jobcontrol.py)
        return f"TERMINATED by a Terminate Job call: {ended.get('reason', '')}"
    if ended.get("by"):
        return (
            f"TERMINATED at its maxWallClockTime ({ended.get('reason', '')}; "
            f"exit {code} {code_name(code)})"
        )
    return (
        f"{'TERMINATED' if ended['action'] == 'terminate' else 'DISABLED'} by task "
        f"{ended['task']} (exit {code} {code_name(code)}: "
        f"exitConditions jobAction {ended['action']})"
    )


def print_report(
    spec: JobSpec,
    nodes: list[LocalNode],
    runs: list[TaskRun],
    record: dict[str, Any],
    out: Path,
    since: float = 0.0,
) -> None:
    stats = collect(spec, nodes, runs, since)
    record.update(stats)
    write_atomic(out, json.dumps(record, indent=2).encode("utf-8"))
    per_node = Counter(r.node for r in runs if r.kind == "task" and r.exit_code == 0)
    phase_s: dict[str, float] = {}
    for r in runs:
        phase_s[r.kind] = phase_s.get(r.kind, 0.0) + r.seconds
    container = spec.render.output.container or job_container(spec.job_id)
    ended = record.get("ended_by")
    unusable = record.get("unusable_nodes") or []
    if ended:
        result = _ended_text(ended)
    elif record["exit_code"] == 0:
        result = "ok"
    elif not record["failed_tasks"] and unusable:
        result = f"FAILED (exit {record['exit_code']}: no usable node)"
    else:
        result = f"FAILED (exit {record['exit_code']}: {', '.join(record['failed_tasks'])})"
    not_run = record.get("tasks_not_run") or []
    cancelled = record.get("cancelled_tasks") or []
    rows = [
        ("job", spec.job_id),
        ("result", result),
        ("frames rendered", f"{stats['frames']} of {len(spec.render.frame_list)}"),
        ("tasks per node", ", ".join(f"{n.node_id}={per_node.get(n.node_id, 0)}" for n in nodes)),
        ("retries", str(sum(1 for r in runs if r.kind == "task" and r.attempt > 0))),
        *(
            [
                (
                    "unusable nodes",
                    ", ".join(f"{u['node']} (exit {u['exit_code']})" for u in unusable),
                )
            ]
            if unusable
            else []
        ),
        *([("tasks not run", str(len(not_run)))] if not_run else []),
        *(
            [
                ("job prep failed on", ", ".join(record["ineligible_nodes"])),
                ("job prep stderr", str(_prep_stderr(spec, nodes, record["ineligible_nodes"][0]))),
            ]
            if record.get("ineligible_nodes")
            else []
        ),
        *([("tasks cancelled", ", ".join(cancelled))] if cancelled else []),
        *[(f"time in {k}", f"{v:.1f}s (summed over nodes/slots)") for k, v in phase_s.items()],
        ("bytes synced", format_bytes(stats["bytes_synced"])),
        ("bytes uploaded", format_bytes(stats["bytes_uploaded"])),
        ("outputs", f"{spec.storage.account_url}/{container}/<task>/$TaskOutput/"),
        ("logs", f"{spec.storage.account_url}/{container}/<task>/$TaskLog/"),
        ("wall time", f"{record['total_s']:.1f}s"),
        ("run record", str(out)),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n" + "-" * 72)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print("-" * 72, flush=True)
