"""The local pool's node writes its task files (stdout.txt, stderr.txt, resource files,
events.jsonl) without following a link a previous task planted, and never outside the
task's working folder, with real task processes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from node_agent.localpool.node import LocalNode
from node_agent.safepath import ContainmentError


def _node(tmp_path: Path) -> LocalNode:
    node = LocalNode("tvmps_local_001", tmp_path / "node", "localpool", "token")
    node.make_dirs()
    return node


def test_planted_links_at_the_task_files_are_replaced_not_followed(tmp_path: Path) -> None:
    node = _node(tmp_path)
    task_dir = node.job_dir("job-x") / "t1"
    task_dir.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("stdout.txt", "stderr.txt"):
        (outside / name).write_text("keep me")
        (task_dir / name).symlink_to(outside / name)  # as a previous attempt could leave
    (outside / "events").write_text("keep me")
    (node.root / "events.jsonl").symlink_to(outside / "events")
    cmd = f"{sys.executable} -c \"print('rendered')\""
    run = node.run("task", cmd, task_dir, {})
    assert run.exit_code == 0
    assert [(outside / n).read_text() for n in ("stdout.txt", "stderr.txt", "events")] == [
        "keep me"
    ] * 3
    assert not (task_dir / "stdout.txt").is_symlink()
    assert (task_dir / "stdout.txt").read_text().strip() == "rendered"
    assert '"exit_code": 0' in (node.root / "events.jsonl").read_text()


@pytest.mark.parametrize("name", ["../escape.txt", "a\\..\\..\\escape.txt", "{tmp}/escape.txt"])
def test_a_resource_file_name_cannot_leave_the_working_folder(tmp_path: Path, name: str) -> None:
    node = _node(tmp_path)
    task_dir = node.job_dir("job-x") / "t2"
    with pytest.raises(ContainmentError, match="resource file"):
        node.run("task", "true", task_dir, {}, resource_files={name.format(tmp=tmp_path): b"x"})
    assert not list(tmp_path.rglob("escape.txt"))
