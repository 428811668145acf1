"""The end-of-job summary table of a local pool run."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from node_agent.conventions import job_container
from node_agent.errors import ExitCode
from node_agent.localpool.node import LocalNode, TaskRun
from node_agent.spec import JobSpec


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


def collect(spec: JobSpec, nodes: list[LocalNode]) -> dict[str, Any]:
    frames = 0
    uploaded = 0
    synced = 0
    for node in nodes:
        jd = node.job_dir(spec.job_id)
        synced += int(_read(jd / "jobpreparation" / "sync-summary.json").get("bytes_downloaded", 0))
        for summary in jd.glob("*/summary.json"):
            doc = _read(summary)
            outs = doc.get("outputs", [])
            frames += len(outs) if doc.get("exit_code") == 0 else 0
            uploaded += sum(int(o.get("bytes", 0)) for o in outs)
    return {"frames": frames, "bytes_synced": synced, "bytes_uploaded": uploaded}


def print_report(
    spec: JobSpec, nodes: list[LocalNode], runs: list[TaskRun], record: dict[str, Any], out: Path
) -> None:
    stats = collect(spec, nodes)
    record.update(stats)
    out.write_text(json.dumps(record, indent=2))
    per_node = Counter(r.node for r in runs if r.kind == "task" and r.exit_code == 0)
    phase_s: dict[str, float] = {}
    for r in runs:
        phase_s[r.kind] = phase_s.get(r.kind, 0.0) + r.seconds
    container = spec.render.output.container or job_container(spec.job_id)
    ended = record.get("ended_by")
    unusable = record.get("unusable_nodes") or []
    if ended:
        result = (
            f"{'TERMINATED' if ended['action'] == 'terminate' else 'DISABLED'} by task "
            f"{ended['task']} (exit {ended['exit_code']} {code_name(ended['exit_code'])}: "
            f"exitConditions jobAction {ended['action']})"
        )
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
        *([("tasks cancelled", ", ".join(cancelled))] if cancelled else []),
        *[(f"time in {k}", f"{v:.1f}s (summed over nodes/slots)") for k, v in phase_s.items()],
        ("bytes synced", f"{stats['bytes_synced'] / 1e6:.2f} MB"),
        ("bytes uploaded", f"{stats['bytes_uploaded'] / 1e6:.2f} MB"),
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
