"""The node's phase runs (runhistory) as `status` and `doctor` show them."""

from __future__ import annotations

from typing import Any

from node_agent.batchenv import BatchNode
from node_agent.runhistory import History, PhaseRun, history_path, read_history


def node_history(node: BatchNode) -> History:
    return read_history(node.state_dir)


def runs_json(history: History, limit: int | None = None) -> list[dict[str, Any]]:
    runs = history.runs if limit is None else history.runs[:limit]
    return [{**r.as_dict(), "label": r.label} for r in runs]


def _duration(r: PhaseRun) -> str:
    if r.duration_s is None:
        return "-"
    s = r.duration_s
    return f"{s:.1f}s" if s < 120 else f"{int(s // 60)}m{int(s % 60):02d}s"


def run_line(r: PhaseRun) -> str:
    """`2026-11-25T19:50:01Z  job-prep    job-a/jobpreparation  storage (4)  1.2s  cause`"""
    if r.state == "running":
        outcome = "no end recorded (running, or killed)"
        return f"{r.started_at}  {r.phase:<11} {r.label:<32} {outcome}"
    exit_text = "ok" if r.exit_code == 0 else f"{r.exit_name} ({r.exit_code})"
    line = f"{r.started_at}  {r.phase:<11} {r.label:<32} {exit_text:<18} {_duration(r):>7}"
    if r.exit_code and r.cause:
        line += f"  {r.cause}"
    return line


def runs_text(history: History, node: BatchNode, limit: int | None = None) -> list[str]:
    runs = history.runs if limit is None else history.runs[:limit]
    lines = [run_line(r) for r in runs] or ["(none recorded)"]
    if limit is not None and len(history.runs) > limit:
        lines.append(f"... {len(history.runs) - limit} older (node-agent status --all)")
    if history.bad_lines:
        lines.append(
            f"({history.bad_lines} unreadable line(s) in {history_path(node.state_dir)} skipped)"
        )
    if history.error:
        lines.append(f"(cannot read the history: {history.error})")
    return lines
