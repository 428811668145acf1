"""Mounts never follow a link planted in the node's folders: not the folder of their secret
config files (state/mounts), not the mount point. Real start task, real rclone, real Azurite."""

from __future__ import annotations

import json
import os
import stat
import uuid
from pathlib import Path

from helpers import cleanup_mounts, mount_table_under, node_env, run_agent

from node_agent.azurite import AzuriteServer
from node_agent.storage import BlobStore


def _pool_config(root: Path, azurite: AzuriteServer, store: BlobStore) -> Path:
    name = f"mnt-{uuid.uuid4().hex[:12]}"
    store.ensure_container(name)
    mount = {
        "name": "assets",
        "driver": "rclone",
        "account_url": azurite.account_url,
        "container": name,
        "auth": {"mode": "emulator"},
    }
    p = root / "pool.json"
    p.write_text(json.dumps({"mounts": [mount]}))
    return p


def test_a_link_at_the_secret_config_folder_is_replaced_not_followed(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """state/mounts -> a folder others read: the start task neither chmods it 0700 nor writes
    the rclone config (which holds the key) into it; it makes its own 0700 folder."""
    root = tmp_path / "node"
    root.mkdir()
    outside = tmp_path / "shared-readable"
    outside.mkdir()
    os.chmod(outside, 0o755)
    env = node_env(root)
    cfg = _pool_config(root, azurite, store)
    state = Path(env["AZ_BATCH_NODE_SHARED_DIR"]) / "node_agent" / "state"
    state.mkdir(parents=True, exist_ok=True)
    (state / "mounts").symlink_to(outside)
    try:
        res = run_agent(["start-task", "--pool-config", str(cfg)], env)
        assert res.returncode == 0, res.stdout + res.stderr
        assert stat.S_IMODE(os.stat(outside).st_mode) == 0o755, "the link's target was chmodded"
        assert os.listdir(outside) == [], f"written through the link: {os.listdir(outside)}"
        mounts = state / "mounts"
        assert mounts.is_dir() and not mounts.is_symlink()
        assert stat.S_IMODE(mounts.stat().st_mode) == 0o700
    finally:
        cleanup_mounts(tmp_path)


def test_a_mount_point_that_is_a_link_is_refused_by_name(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """fsmounts/assets -> a folder outside (/etc on a node): refused with one line naming the
    mount point and the link, nothing mounted over the target."""
    root = tmp_path / "node"
    root.mkdir()
    outside = tmp_path / "outside-dir"
    outside.mkdir()
    env = node_env(root)
    cfg = _pool_config(root, azurite, store)
    (root / "fsmounts" / "assets").symlink_to(outside)
    try:
        res = run_agent(["start-task", "--pool-config", str(cfg)], env)
        out = res.stdout + res.stderr
        assert res.returncode != 0, out
        assert "is a symbolic link" in res.stderr and "fsmounts/assets" in res.stderr, out
        assert "Traceback" not in out
        assert str(outside) not in mount_table_under(tmp_path)
    finally:
        cleanup_mounts(tmp_path)
