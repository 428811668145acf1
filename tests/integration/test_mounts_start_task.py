"""Mount configuration problems seen by a real start task: one clear line, a usage error."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from helpers import node_env, run_agent

KEY = "c2VjcmV0LWFjY291bnQta2V5LWZvci10ZXN0cw=="
URL = "https://renderassets.blob.core.windows.net"


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
