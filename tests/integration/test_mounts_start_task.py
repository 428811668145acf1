"""Mounts with real processes: configuration problems a real start task reports in one
clear line, and the render task mapping Windows drives through a stand-in `net`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import files_mount, node_env, run_agent

from node_agent.batchenv import BatchNode
from node_agent.errors import MountError
from node_agent.logs import get_logger
from node_agent.poolconfig import NodeConfig
from node_agent.redact import Redactor

KEY = "c2VjcmV0LWFjY291bnQta2V5LWZvci10ZXN0cw=="
URL = "https://renderassets.blob.core.windows.net"
ENV = {"MOUNT_KEY": KEY, "PATH": "/usr/bin:/bin"}


def test_blobfuse2_missing_binary_is_one_clear_line(tmp_path: Path) -> None:
    cfg = tmp_path / "pool.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "mounts": [
                    {
                        "name": "assets",
                        "driver": "blobfuse2",
                        "account_url": URL,
                        "container": "scenes",
                        "auth": {"mode": "key", "env": "MOUNT_KEY"},
                    }
                ]
            }
        )
    )
    env = {**node_env(tmp_path), "MOUNT_KEY": KEY}
    res = run_agent(["start-task", "--pool-config", str(cfg)], env)
    assert res.returncode == 21
    lines = res.stderr.splitlines()
    assert len(lines) == 1
    assert (
        lines[0]
        == "node-agent: error: mount 'assets': 'blobfuse2' is not installed (not found on PATH)"
    )
    assert KEY not in res.stdout + res.stderr
    written = tmp_path / "shared" / "node_agent" / "state" / "mounts" / "assets.blobfuse2.yaml"
    assert written.stat().st_mode & 0o777 == 0o600


def test_bad_pool_config_is_a_usage_error(tmp_path: Path) -> None:
    cfg = tmp_path / "pool.json"
    cfg.write_text(
        json.dumps({"mounts": [{"name": "m", "driver": "rclone"}], "min_free_temp_disk_gb": -1})
    )
    res = run_agent(["start-task", "--pool-config", str(cfg)], node_env(tmp_path))
    assert res.returncode == 2
    assert res.stderr.splitlines()[0].startswith(f"node-agent: error: {cfg}: mounts[0]")
    assert "min_free_temp_disk_gb" in res.stderr


@pytest.mark.parametrize("windows", [True, False])
def test_render_task_maps_the_pool_drives_first_on_windows(
    tmp_path: Path, windows: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """The render phase calls map_task_drives for the kept pool config (Windows only).
    `net` is a stand-in that records its arguments: command generation, no real Windows."""
    from helpers import make_spec_doc

    from node_agent.phases import render
    from node_agent.runtime import Phase

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "net-calls.txt"
    net = bin_dir / "net"
    net.write_text(f'#!/bin/sh\nprintf "%s|" "$@" >> "{calls}"\necho >> "{calls}"\n')
    net.chmod(0o755)
    root = tmp_path / "node"
    env = {**node_env(root, "job-a", "frames-00001-00002"), **ENV}
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    node = BatchNode.from_env(env, need_job=True).model_copy(update={"is_windows": windows})
    config = NodeConfig.model_validate(
        {
            "mounts": [
                files_mount(drive="t:").model_dump(),
                files_mount(name="b", drive="U:").model_dump(),
            ]
        }
    )
    node.state_dir.mkdir(parents=True)
    (node.state_dir / "pool-config.json").write_text(config.model_dump_json())
    spec = tmp_path / "job.json"
    exe = "C:\\Blender\\blender.exe" if windows else "/usr/bin/blender"
    spec.write_text(json.dumps(make_spec_doc("http://127.0.0.1:9/acct", executable=exe)))
    phase = Phase("render", node, Redactor(), get_logger("test"), env)

    assert render.run(phase, "1-2", spec, dry=True) == 0
    assert capsys.readouterr().out.startswith("command: ")
    if not windows:
        assert not calls.exists(), "no drive mapping on Linux"
        return
    unc = "\\\\renderfiles.file.core.windows.net\\projects"
    assert calls.read_text().splitlines() == [
        f"use|T:|{unc}|/persistent:no|",
        f"use|U:|{unc}|/persistent:no|",
    ]
    # A mapping that fails stops the task before the renderer: one line, exit 21.
    net.write_text("#!/bin/sh\necho 'System error 53 has occurred.'\nexit 2\n")
    with pytest.raises(MountError, match=r"^map drive T:: 'net' exited 2: System error 53"):
        render.run(phase, "1-2", spec, dry=True)
