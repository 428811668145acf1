"""state/phase-runs.jsonl as a hostile task or a damaged disk leaves it: a link at its name
is replaced, never followed (every phase runs as root); records of the wrong shape and a
huge file do not break `status`, `doctor` or the phases that append to it."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from helpers import agent_cmd, agent_dir, node_env, run_agent


def _state(root: Path) -> Path:
    return agent_dir(root) / "state" / "phase-runs.jsonl"


def test_a_link_at_the_history_file_is_replaced_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "node"
    assert run_agent(["start-task"], node_env(root)).returncode == 0
    victim = tmp_path / "victim.sh"
    victim.write_text("#!/bin/sh\necho root's own file\n")
    before = victim.read_bytes()
    history = _state(root)
    history.unlink()
    history.symlink_to(victim)
    r = run_agent(["start-task"], node_env(root))
    assert r.returncode == 0, r.stderr
    assert victim.read_bytes() == before  # nothing appended through the link
    assert not history.is_symlink()
    lines = [json.loads(x) for x in history.read_text().splitlines()]
    assert [x["phase"] for x in lines] == ["start-task", "start-task"]  # its start and end


def test_records_of_the_wrong_shape_are_skipped_not_a_crash(tmp_path: Path) -> None:
    root = tmp_path / "node"
    assert run_agent(["start-task"], node_env(root)).returncode == 0
    damaged = [
        {"id": "a1", "phase": None, "job": None, "task": None, "started_at": "2026-01-01T00:00:00Z"},
        {"id": "a2", "phase": "render", "job": None, "task": None, "started_at": 5},
        {
            "id": "a3", "phase": "render", "job": "j", "task": "t",
            "started_at": "2026-01-01T00:00:00Z", "state": "done", "duration_s": "long",
            "exit_code": "10", "exit_name": "render_failed", "cause": ["x"],
        },
        {"id": "a4", "phase": "render", "job": ["j"], "task": {}, "started_at": "2026-01-01"},
    ]  # fmt: skip
    with _state(root).open("a") as fh:
        for d in damaged:
            fh.write(json.dumps(d) + "\n")
    for args in (["status", "--root", str(root)], ["status", "--root", str(root), "--json"]):
        r = run_agent(args)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "internal error" not in r.stderr
    assert "4 unreadable line(s)" in run_agent(["status", "--root", str(root)]).stdout
    doc = json.loads(run_agent(["status", "--root", str(root), "--json"]).stdout)
    assert [r["phase"] for r in doc["phase_runs"]] == ["start-task"]
    assert doc["phase_runs_unreadable_lines"] == 4


def _limited(
    args: list[str], env: dict[str, str] | None, mem: int
) -> subprocess.CompletedProcess[str]:
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))

    return subprocess.run(
        agent_cmd(*args), env=env, capture_output=True, text=True, timeout=300,
        preexec_fn=cap, check=False,
    )  # fmt: skip


def test_a_huge_history_file_is_read_by_its_tail(tmp_path: Path) -> None:
    """A 3 GiB history (sparse: a damaged disk, or a task writing it on purpose): status
    and the next phase read only its end, in bounded memory (1.5 GiB of address space)."""
    root = tmp_path / "node"
    assert run_agent(["start-task"], node_env(root)).returncode == 0
    history = _state(root)
    good = history.read_bytes()
    with history.open("r+b") as fh:
        fh.truncate(3 * 2**30)
        fh.seek(0, os.SEEK_END)
        fh.write(b"\n" + good)
    mem = 1536 * 2**20
    r = _limited(["start-task"], node_env(root), mem)
    assert r.returncode == 0, r.stderr
    r = _limited(["status", "--root", str(root), "--json"], None, mem)
    assert r.returncode == 0, r.stderr
    runs = json.loads(r.stdout)["phase_runs"]
    assert [x["phase"] for x in runs] == ["start-task", "start-task"], runs
    assert history.stat().st_size < 8 * 2**20  # the append cut it to its newest lines
    assert sys.platform.startswith("linux")


def test_a_fifo_at_the_history_file_blocks_neither_a_phase_nor_status(tmp_path: Path) -> None:
    """A FIFO (no writer, no reader) at the history's name: opening it would block forever."""
    root = tmp_path / "node"
    assert run_agent(["start-task"], node_env(root)).returncode == 0
    history = _state(root)
    history.unlink()
    os.mkfifo(history)
    r = run_agent(["status", "--root", str(root)], timeout=60)
    assert r.returncode == 0, r.stderr
    assert "cannot read the history" in r.stdout
    r = run_agent(["start-task"], node_env(root), timeout=60)
    assert r.returncode == 0, r.stderr
    assert history.is_file() and not history.is_symlink()


def test_task_summaries_of_the_wrong_shape_or_a_fifo_do_not_break_status(tmp_path: Path) -> None:
    """A render task's folder is the renderer's to write: its summary.json a JSON list, or a
    FIFO, is a task with unknown results, not a crash or a hang of `status`."""
    root = tmp_path / "node"
    assert run_agent(["start-task"], node_env(root)).returncode == 0
    job = root / "workitems" / "j" / "job-1"
    (job / "t-list").mkdir(parents=True)
    (job / "t-list" / "summary.json").write_text("[1, 2]")
    (job / "t-fifo").mkdir()
    os.mkfifo(job / "t-fifo" / "summary.json")
    (job / "t-ok").mkdir()
    (job / "t-ok" / "summary.json").write_text('{"job": "j", "task": "t-ok", "exit_code": 0}')
    for args in (["status", "--root", str(root)], ["status", "--root", str(root), "--json"]):
        r = run_agent(args, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
    tasks = json.loads(r.stdout)["tasks"]
    assert sorted(t["task"] for t in tasks) == ["t-fifo", "t-list", "t-ok"]
