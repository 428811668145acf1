"""Job release's tree removal: read-only files and missing folders."""

from __future__ import annotations

from pathlib import Path

from node_agent.phases.job_release import remove_tree


def test_remove_tree_handles_read_only_and_missing(tmp_path: Path) -> None:
    d = tmp_path / "t"
    (d / "sub").mkdir(parents=True)
    f = d / "sub" / "ro.txt"
    f.write_text("x")
    f.chmod(0o444)
    (d / "sub").chmod(0o555)
    assert remove_tree(d, pause_s=0.01)
    assert not d.exists()
    assert remove_tree(d)
