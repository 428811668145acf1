"""The start task without and with a pool config; the bootstrap scripts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import REPO, node_env
from mount_helpers import run_agent


def test_without_pool_config_prepares_folders_and_facts(tmp_path: Path) -> None:
    res = run_agent(["start-task"], node_env(tmp_path))
    assert res.returncode == 0, res.stderr
    agent = tmp_path / "shared" / "node_agent"
    for d in ("logs", "state", "cache", "jobs"):
        assert (agent / d).is_dir()
    facts = json.loads((agent / "state" / "node.json").read_text())
    assert facts["node_id"] == "tvmps_test"
    assert not (agent / "state" / "health.json").exists()
    assert "node tvmps_test ready" in res.stdout and res.stderr == ""


def test_empty_pool_config_runs_health_and_is_rerunnable(tmp_path: Path) -> None:
    cfg = tmp_path / "pool.yaml"
    cfg.write_text("min_free_temp_disk_gb: 0.01\n")
    env = node_env(tmp_path / "node")
    for _ in range(2):
        res = run_agent(["start-task", "--pool-config", str(cfg)], env)
        assert res.returncode == 0, res.stderr
        assert "health PASS temp-disk" in res.stdout
    mounts = tmp_path / "node" / "shared" / "node_agent" / "state" / "pool-mounts.json"
    assert json.loads(mounts.read_text()) == []


def test_missing_pool_config_is_a_usage_error(tmp_path: Path) -> None:
    res = run_agent(
        ["start-task", "--pool-config", str(tmp_path / "nope.json")], node_env(tmp_path)
    )
    assert res.returncode == 2
    assert (
        res.stderr.splitlines()[0]
        == f"node-agent: error: {tmp_path / 'nope.json'}: pool config file not found"
    )


def test_run_sh_bootstrap_passes_arguments(tmp_path: Path) -> None:
    cfg = tmp_path / "pool.json"
    cfg.write_text(json.dumps({"renderers": ["maya"]}))
    res = subprocess.run(
        ["bash", str(REPO / "start_task" / "run.sh"), "--pool-config", str(cfg)],
        env=node_env(tmp_path / "node"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 20
    assert "renderer 'maya' not found" in res.stderr.splitlines()[0]


def test_windows_bootstraps_forward_arguments_and_exit_code() -> None:
    for phase in ("start_task", "job_release"):
        text = (REPO / phase / "run.cmd").read_text()
        assert '"%HERE%run.py" %*' in text and "exit /b %ERRORLEVEL%" in text
