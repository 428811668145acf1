"""`node-agent doctor` and `status` on a node that the local pool used."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import make_spec_doc, node_env

from node_agent.azurite import AzuriteServer


def _na(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node_agent", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_doctor_and_status_on_a_node(tmp_path: Path, azurite: AzuriteServer) -> None:
    root = tmp_path / "node"
    env = node_env(root)
    assert _na("start-task", env=env).returncode == 0
    # a finished task, as the render phase leaves it
    task = root / "workitems" / "job-x" / "job-1" / "frames-00001-00002"
    task.mkdir(parents=True)
    (task / "stdout.txt").write_text("hello\n")
    (task / "summary.json").write_text(
        json.dumps(
            {
                "job": "job-x",
                "task": "frames-00001-00002",
                "exit_code": 11,
                "exit_class": "license",
                "wall_s": 3.2,
                "finished_at": "2026-11-22T01:02:03Z",
            }
        )
    )
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(make_spec_doc(azurite.account_url)))

    res = _na("doctor", "--root", str(root), "--spec", str(spec), "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    by_name = {c["name"]: c for c in doc["checks"]}
    assert by_name["storage"]["ok"] and "answered" in by_name["storage"]["detail"]
    assert by_name["node folders"]["ok"]
    assert doc["last_tasks"][0]["exit_class"] == "license"

    text = _na("doctor", "--root", str(root), "--spec", str(spec)).stdout
    assert "job-x/frames-00001-00002  exit 11 (license)" in text

    # storage that does not answer is a failed required check: exit 20
    bad = make_spec_doc("http://127.0.0.1:9/devstoreaccount1")
    spec.write_text(yaml.safe_dump(bad))
    res = _na("doctor", "--root", str(root), "--spec", str(spec))
    assert res.returncode == 20
    assert "FAIL  storage" in res.stdout

    status = _na("status", "--root", str(root))
    assert status.returncode == 0
    assert "job-x/frames-00001-00002" in status.stdout and str(task / "stdout.txt") in status.stdout


def test_doctor_without_a_node_says_where_it_looked(tmp_path: Path) -> None:
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("AZ_BATCH_")}
    res = _na("doctor", env=env)
    assert res.returncode == 2
    assert res.stderr.startswith("node-agent: error: no Batch node found: pass --root")
    res = _na("doctor", "--root", str(tmp_path / "nope"), env=env)
    assert res.returncode == 2 and "is not a folder" in res.stderr
