"""rclone: mount a blob container read-only through FUSE with a VFS cache on the temp disk.

The config file (0600) holds the credential; the command line names only that file.
rclone 1.60's `endpoint` is a host suffix, so for Azurite and other non-Azure URLs a
key is turned into a read/list container SAS and the remote uses `sas_url`.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from node_agent.mounts.model import RcloneMount
from node_agent.mounts.plan import MountPaths, MountPlan, SecretFile
from node_agent.mounts.platform import Command

REMOTE = "blob"


def _container_sas(m: RcloneMount, key: str) -> str:
    # Imported here: the render phase imports the mount manager (Windows drive mapping)
    # and must not pay for the storage SDK on every task.
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    return generate_container_sas(
        m.account_name,
        m.container,
        account_key=key,
        permission=ContainerSasPermissions(read=True, list=True),
        expiry=datetime.now(timezone.utc) + timedelta(days=m.sas_expiry_days),
    )


def config_text(
    m: RcloneMount, secret: str | None, paths: MountPaths
) -> tuple[str, list[SecretFile]]:
    """The rclone config section, and any extra secret file it points to."""
    lines = [f"[{REMOTE}]", "type = azureblob"]
    extra: list[SecretFile] = []
    mode = m.auth.mode
    if mode in ("key", "emulator") and not m.is_emulator and m.account_url.startswith("https://"):
        lines += [f"account = {m.account_name}", f"key = {secret}"]
    elif mode in ("key", "emulator"):
        lines.append(f"sas_url = {m.container_url}?{_container_sas(m, secret or '')}")
    elif mode == "sas":
        lines.append(f"sas_url = {m.container_url}?{(secret or '').lstrip('?')}")
    elif mode == "msi":
        lines += [f"account = {m.account_name}", "use_msi = true"]
        if m.auth.client_id:
            lines.append(f"msi_client_id = {m.auth.client_id}")
        if m.auth.resource_id:
            lines.append(f"msi_mi_res_id = {m.auth.resource_id}")
    else:  # spn: rclone 1.60 reads the principal from a JSON file
        spn = paths.config_dir / f"{m.name}.spn.json"
        doc = {"appId": m.auth.client_id, "password": secret, "tenant": m.auth.tenant_id}
        extra.append(SecretFile(spn, json.dumps(doc)))
        lines += [f"account = {m.account_name}", f"service_principal_file = {spn}"]
    return "\n".join(lines) + "\n", extra


def config_path(m: RcloneMount, paths: MountPaths) -> str:
    return str(paths.config_dir / f"{m.name}.rclone.conf")


def plan(m: RcloneMount, paths: MountPaths, secret: str | None) -> MountPlan:
    text, extra = config_text(m, secret, paths)
    conf = config_path(m, paths)
    source = f"{REMOTE}:{m.container}" + (f"/{m.prefix}" if m.prefix else "")
    argv = [
        "rclone",
        "mount",
        source,
        str(paths.target),
        "--config",
        conf,
        "--daemon",
        "--daemon-wait",
        "60s",
        "--vfs-cache-mode",
        "full",
        "--cache-dir",
        str(paths.cache_dir),
        "--dir-cache-time",
        f"{m.dir_cache_time_s}s",
        "--attr-timeout",
        f"{m.attr_timeout_s}s",
        "--log-file",
        str(paths.log_file),
        "--log-level",
        "INFO",
    ]
    if m.read_only:
        argv.append("--read-only")
    if m.vfs_cache_max_size_mb:
        argv += ["--vfs-cache-max-size", f"{m.vfs_cache_max_size_mb}M"]
    return MountPlan(
        files=[*extra, SecretFile(paths.config_dir / f"{m.name}.rclone.conf", text)],
        mount=[Command(argv, timeout=120)],
    )


def daemons_for(target: str) -> list[int]:
    """PIDs of rclone mount daemons serving `target` (left over after a stale mount)."""
    import psutil

    pids = []
    for p in psutil.process_iter(["name", "cmdline"]):
        cmd = p.info.get("cmdline") or []
        if cmd and "rclone" in (p.info.get("name") or "") and "mount" in cmd and target in cmd:
            pids.append(p.pid)
    return pids


def stop_daemons(target: str, timeout: float = 10.0) -> int:
    """Terminate rclone daemons for `target`, kill what is left after `timeout`."""
    import psutil

    procs = []
    for pid in daemons_for(target):
        try:
            procs.append(psutil.Process(pid))
            procs[-1].terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    return len(procs)
