"""The command-line edge of spec checking, as a process: exit codes and one-line errors."""

from __future__ import annotations

from pathlib import Path

import yaml
from helpers import make_spec_doc, run_agent


def test_outside_batch_exits_2_naming_the_variable(tmp_path: Path) -> None:
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("AZ_BATCH_")}
    res = run_agent(["start-task"], env, cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "node-agent: error: AZ_BATCH_NODE_ROOT_DIR is not set: node-agent phases run inside an "
        "Azure Batch task (or `node-agent local run`)"
    ]
    assert list(tmp_path.iterdir()) == []


def test_bad_spec_as_a_process_is_one_line_exit_2_no_traceback(tmp_path: Path) -> None:
    """What tests/unit/test_spec.py checks in-process, once through `python -m node_agent`:
    the exit code and the one stderr line naming the field reach the shell as they are."""
    doc = make_spec_doc("http://127.0.0.1:10000/devstoreaccount1", frames="10-1")
    f = tmp_path / "job.yaml"
    f.write_text(yaml.safe_dump(doc))
    res = run_agent(["validate", str(f)])
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [
        f"node-agent: error: {f}: render.frames: '10-1': range ends before it starts"
    ]
    assert "Traceback" not in res.stderr and res.stdout == ""
