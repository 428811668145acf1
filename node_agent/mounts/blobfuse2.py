"""blobfuse2: the config YAML (0600) and the `blobfuse2 mount` command line.

Tuned for rendering: read-only by default, file cache on the temp disk, long
attribute/entry cache timeouts, virtual directories for containers without markers.
"""

from __future__ import annotations

from typing import Any

import yaml

from node_agent.mounts.model import Blobfuse2Mount
from node_agent.mounts.plan import MountPaths, MountPlan, SecretFile
from node_agent.mounts.platform import Command


def _azstorage(m: Blobfuse2Mount, secret: str | None) -> dict[str, Any]:
    az: dict[str, Any] = {
        "type": "block",
        "account-name": m.account_name,
        "container": m.container,
        "endpoint": m.account_url,
        "virtual-directory": m.virtual_directory,
    }
    if m.prefix:
        az["subdirectory"] = m.prefix
    mode = m.auth.mode
    if mode in ("key", "emulator"):
        az.update({"mode": "key", "account-key": secret})
    elif mode == "sas":
        az.update({"mode": "sas", "sas": "?" + (secret or "").lstrip("?")})
    elif mode == "msi":
        az["mode"] = "msi"
        if m.auth.client_id:
            az["appid"] = m.auth.client_id
        if m.auth.resource_id:
            az["resid"] = m.auth.resource_id
    else:
        az.update(
            {
                "mode": "spn",
                "clientid": m.auth.client_id,
                "tenantid": m.auth.tenant_id,
                "clientsecret": secret,
            }
        )
    return az


def config(m: Blobfuse2Mount, paths: MountPaths, secret: str | None) -> dict[str, Any]:
    file_cache: dict[str, Any] = {
        "path": str(paths.cache_dir),
        "timeout-sec": m.file_cache_timeout_s,
        "cleanup-on-start": True,
        "allow-non-empty-temp": True,
    }
    if m.file_cache_max_mb:
        file_cache["max-size-mb"] = m.file_cache_max_mb
    return {
        "allow-other": m.allow_other,
        "read-only": m.read_only,
        "logging": {"type": "base", "level": "log_warning", "file-path": str(paths.log_file)},
        "components": ["libfuse", "file_cache", "attr_cache", "azstorage"],
        "libfuse": {
            "attribute-expiration-sec": m.attr_cache_timeout_s,
            "entry-expiration-sec": m.entry_timeout_s,
            "negative-entry-expiration-sec": m.negative_timeout_s,
        },
        "file_cache": file_cache,
        "attr_cache": {"timeout-sec": m.attr_cache_timeout_s},
        "azstorage": _azstorage(m, secret),
    }


def plan(m: Blobfuse2Mount, paths: MountPaths, secret: str | None) -> MountPlan:
    conf = paths.config_dir / f"{m.name}.blobfuse2.yaml"
    text = yaml.safe_dump(config(m, paths, secret), sort_keys=False)
    argv = ["blobfuse2", "mount", str(paths.target), f"--config-file={conf}"]
    return MountPlan(files=[SecretFile(conf, text)], mount=[Command(argv, timeout=120)])
