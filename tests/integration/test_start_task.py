"""The start task without and with a pool config; the bootstrap scripts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from helpers import REPO, node_env, run_agent

from node_agent import nodestate
from node_agent.batchenv import BatchNode
from node_agent.errors import SpecError
from node_agent.mounts.manager import pool_probe_timeout
from node_agent.poolconfig import NodeConfig, load_node_config


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


def test_state_files_are_read_back_through_nodestate(tmp_path: Path) -> None:
    """What the start task writes to state/ reads back through node_agent.nodestate: the
    pool config as the NodeConfig it was (typed), the records as JSON; a broken pool config
    is one line naming the file for the strict reader and 'none' for the tolerant one."""
    cfg = tmp_path / "pool.yaml"
    cfg.write_text("min_free_temp_disk_gb: 0.01\nprobe_timeout_s: 7\ncache_budget_mb: 50\n")
    env = node_env(tmp_path / "node")
    res = run_agent(["start-task", "--pool-config", str(cfg)], env)
    assert res.returncode == 0, res.stderr
    node = BatchNode.from_root(tmp_path / "node")
    assert node.state_dir == tmp_path / "node" / "shared" / "node_agent" / "state"
    kept = nodestate.read_pool_config(node)
    assert isinstance(kept, NodeConfig) and kept == load_node_config(cfg)
    assert kept.probe_timeout_s == 7 and kept.cache_budget_mb == 50
    assert nodestate.read_node_facts(node)["node_id"] == "tvmps_test"
    assert nodestate.read_health(node)["healthy"] is True
    assert nodestate.read_pool_mounts(node) == [] and nodestate.read_mount_records(node) == []
    assert pool_probe_timeout(node) == 7.0
    path = nodestate.state_file(node, nodestate.POOL_CONFIG)
    path.write_text('{"probe_timeout_s": 7, "probe_timeout_s": 9}')
    with pytest.raises(SpecError) as e:
        nodestate.read_pool_config(node)
    assert str(e.value) == f"{path}: probe_timeout_s: key given twice"
    assert nodestate.kept_pool_config(node) is None and pool_probe_timeout(node) == 30.0
    path.unlink()
    assert nodestate.read_pool_config(node) is None
