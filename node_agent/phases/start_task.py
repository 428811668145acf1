"""Start task: prepare node_agent's folders and record what this node is."""

from __future__ import annotations

import json
import os
import platform
import shutil
import time

import psutil

from node_agent.runtime import Phase, write_atomic

RENDERER_BINARIES = ("blender", "Render", "kick", "vray", "3dsmaxcmdio")


def node_facts(phase: Phase) -> dict[str, object]:
    node = phase.node
    disk = shutil.disk_usage(node.root_dir)
    found = {
        name: path
        for name in RENDERER_BINARIES
        if (path := shutil.which(name, path=phase.env.get("PATH")))
    }
    return {
        "node_id": node.node_id,
        "pool_id": node.pool_id,
        "os": platform.platform(),
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "root_disk_free_bytes": disk.free,
        "root_disk_total_bytes": disk.total,
        "renderers": found,
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def run(phase: Phase) -> int:
    node = phase.node
    for d in (node.agent_dir, node.logs_dir, node.state_dir, node.cache_dir, node.agent_dir / "jobs"):
        d.mkdir(parents=True, exist_ok=True)
    facts = node_facts(phase)
    write_atomic(node.state_dir / "node.json", json.dumps(facts, indent=2).encode())
    renderers = ", ".join(sorted(facts["renderers"])) or "none"  # type: ignore[arg-type]
    phase.log.info(
        "node %s ready: %s cores, %.1f GiB memory, %.1f GiB free on the Batch disk, renderers: %s",
        node.node_id, facts["cores"], int(facts["memory_bytes"]) / 2**30,  # type: ignore[call-overload]
        int(facts["root_disk_free_bytes"]) / 2**30, renderers,  # type: ignore[call-overload]
    )
    return 0
