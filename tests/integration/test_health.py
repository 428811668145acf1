"""Node health checks in the start task: pass/fail lines, the JSON record, exit 20."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import yaml
from helpers import node_env, run_agent

from node_agent import health
from node_agent.batchenv import ENTITLEMENT_TOKEN, BatchNode
from node_agent.poolconfig import NodeConfig, RendererCheck


def _start(tmp_path: Path, config: dict[str, object], env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    cfg = tmp_path / "pool.yaml"
    cfg.write_text(yaml.safe_dump(config))
    return run_agent(["start-task", "--pool-config", str(cfg)], env or node_env(tmp_path / "node"))


def _record(tmp_path: Path) -> dict[str, object]:
    return json.loads(
        (tmp_path / "node" / "shared" / "node_agent" / "state" / "health.json").read_text()
    )


def test_too_little_disk_fails_with_exit_20(tmp_path: Path) -> None:
    res = _start(tmp_path, {"min_free_temp_disk_gb": 1_000_000})
    assert res.returncode == 20
    first = res.stderr.splitlines()[0]
    assert first.startswith("node-agent: error: node unhealthy: temp-disk: ")
    assert "minimum 1,000,000 GiB" in first
    assert "health FAIL temp-disk" in res.stdout
    doc = _record(tmp_path)
    assert doc["healthy"] is False
    [disk] = [c for c in doc["checks"] if c["name"] == "temp-disk"]  # type: ignore[union-attr]
    assert disk["ok"] is False


def test_missing_renderer_fails_with_exit_20(tmp_path: Path) -> None:
    res = _start(tmp_path, {"renderers": ["maya"]})
    assert res.returncode == 20
    first = res.stderr.splitlines()[0]
    assert first.startswith(
        "node-agent: error: node unhealthy: renderer-maya: renderer 'maya' not found"
    )
    assert "health FAIL renderer-maya" in res.stdout
    assert "health PASS temp-disk" in res.stdout


def test_healthy_node_passes_and_records(tmp_path: Path) -> None:
    res = _start(
        tmp_path,
        {
            "renderers": ["blender"],
            "min_free_temp_disk_gb": 0.001,
            "application_licenses": ["arnold"],
        },
    )
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    assert "health PASS renderer-blender" in res.stdout and "Blender" in res.stdout
    assert "health PASS entitlement" in res.stdout
    doc = _record(tmp_path)
    assert doc["healthy"] is True
    names = [c["name"] for c in doc["checks"]]  # type: ignore[union-attr]
    assert names == ["temp-disk", "renderer-blender", "entitlement", "clock"]
    assert "entitlement-token" not in json.dumps(doc) + res.stdout


def test_entitlement_required_when_licenses_expected(tmp_path: Path) -> None:
    env = node_env(tmp_path / "node")
    del env[ENTITLEMENT_TOKEN]
    res = _start(tmp_path, {"application_licenses": ["vray"]}, env)
    assert res.returncode == 20
    assert "entitlement: AZ_BATCH_SOFTWARE_ENTITLEMENT_TOKEN not set" in res.stderr.splitlines()[0]


def test_renderer_that_hangs_times_out(tmp_path: Path) -> None:
    exe = tmp_path / "hang.sh"
    exe.write_text("#!/bin/sh\nexec sleep 1000\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    check = health.check_renderer(
        RendererCheck(name="vray", executable=str(exe), timeout_s=1), os.environ
    )
    assert not check.ok and "did not answer within 1s" in check.detail


def test_renderer_from_image_exec_variable(tmp_path: Path) -> None:
    exe = tmp_path / "kick"
    exe.write_text("#!/bin/sh\necho 'Arnold 7.1.0 [fake]'\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    env = {"PATH": "/nonexistent", "ARNOLD_2018_EXEC": str(exe)}
    check = health.check_renderer(RendererCheck(name="arnold"), env)
    assert check.ok and "Arnold 7.1.0" in check.detail


def test_clock_sanity_and_unreachable_reference_is_only_a_warning(tmp_path: Path) -> None:
    assert health.check_clock(None, 300).ok
    c = health.check_clock("http://127.0.0.1:9/devstoreaccount1", 300)
    assert c.ok and not c.required and c.line().startswith("health PASS clock")


def test_unreadable_mount_fails(tmp_path: Path) -> None:
    node = BatchNode.from_env(node_env(tmp_path / "node"))
    c = health.check_mount(tmp_path / "not-there", 10)
    assert not c.ok and "No such file" in c.detail
    checks = health.run_checks(node, NodeConfig(), {}, [tmp_path / "not-there"])
    assert [x.name for x in checks if not x.ok] == ["mount not-there"]
