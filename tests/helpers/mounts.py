"""Storage mounts a test made: find them, and unmount them and their daemons whatever happened."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psutil

from node_agent.mounts.model import AzureFilesMount
from node_agent.mounts.platform import LinuxPlatform


def mount_table_under(root: Path) -> dict[str, str]:
    """Every mount at or below `root` (symlinks resolved), job views included: path -> type."""
    r = os.path.realpath(root)
    table = LinuxPlatform().mount_table()
    return {p: t for p, t in table.items() if p == r or p.startswith(r + "/")}


def mounts_under(root: Path) -> list[str]:
    """Storage mounts below `root`; job views (overlays at node_agent/jobs/<job>/assets,
    made by job prep for view isolation) are not storage mounts and are left out."""
    return [p for p in mount_table_under(root) if "/node_agent/jobs/" not in p]


def rclone_daemons_under(root: Path) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["name", "cmdline"]):
        cmd = p.info.get("cmdline") or []
        if "rclone" in (p.info.get("name") or "") and any(str(root) in a for a in cmd):
            out.append(p)
    return out


def cleanup_mounts(root: Path) -> None:
    """Unmount (lazily) and kill everything a test mounted under `root`, whatever happened."""
    for target in sorted(mounts_under(root), key=len, reverse=True):
        subprocess.run(["fusermount3", "-uz", target], capture_output=True, timeout=60, check=False)
    procs = rclone_daemons_under(root)
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=10)


def files_mount(**kw: object) -> AzureFilesMount:
    """An Azure Files mount of share 'projects' on account 'renderfiles' (key in $MOUNT_KEY)."""
    return AzureFilesMount.model_validate(
        {
            "name": "projects",
            "driver": "azurefiles",
            "account_name": "renderfiles",
            "share": "projects",
            "key_env": "MOUNT_KEY",
            **kw,
        }
    )
