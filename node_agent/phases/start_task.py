"""Start task: prepare node_agent's folders, record what this node is, and, with a pool
config, make the pool's mounts and check the node's health.

Progress lines go to stdout (Batch's startup/stdout.txt) so that, when the node is
unfit, the first line on stderr is the reason.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import psutil

from node_agent import health, nodestate, renderers
from node_agent.errors import HealthError
from node_agent.mounts.manager import MountContext, ensure_mounts, results_json
from node_agent.poolconfig import NodeConfig, load_node_config
from node_agent.runtime import Phase


def node_facts(phase: Phase) -> dict[str, object]:
    node = phase.node
    disk = shutil.disk_usage(node.root_dir)
    found = {
        name: path
        for name in renderers.renderer_binaries()  # the registry's programs
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


def _progress_to_stdout(log: logging.Logger) -> None:
    for h in log.handlers:
        if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is sys.stderr:
            h.setStream(sys.stdout)


def run(phase: Phase, pool_config: Path | None = None) -> int:
    node = phase.node
    _progress_to_stdout(phase.log)
    config = load_node_config(pool_config) if pool_config else None
    for d in (
        node.agent_dir,
        node.logs_dir,
        node.state_dir,
        node.cache_dir,
        node.agent_dir / "jobs",
    ):
        d.mkdir(parents=True, exist_ok=True)
    facts = node_facts(phase)
    nodestate.write_node_facts(node, facts)
    found = facts["renderers"]
    names = ", ".join(sorted(found)) if isinstance(found, dict) and found else "none"
    disk = shutil.disk_usage(node.root_dir)
    phase.log.info(
        "node %s ready: %s cores, %.1f GiB memory, %.1f GiB free on the Batch disk, renderers: %s",
        node.node_id,
        os.cpu_count(),
        psutil.virtual_memory().total / 2**30,
        disk.free / 2**30,
        names,
    )
    if config is not None:
        prepare_node(phase, config)
    return 0


def prepare_node(phase: Phase, config: NodeConfig) -> None:
    """Mounts first (health checks read them), then the health checks."""
    node = phase.node
    # Later phases (e.g. Windows drive mappings before a task) read the pool config here;
    # it names environment variables, never secrets.
    nodestate.write_pool_config(node, config)
    ctx = MountContext.create(node, phase.env, phase.redactor, phase.log)
    ctx.probe_timeout = float(config.probe_timeout_s)
    results = ensure_mounts(ctx, list(config.mounts))
    nodestate.write_pool_mounts(node, results_json(results))
    checks = health.run_checks(node, config, phase.env, [Path(r.target) for r in results])
    record = health.write_record(node, checks)
    for c in checks:
        (phase.log.info if c.ok else phase.log.error)("%s", c.line())
    failed = [c for c in checks if c.required and not c.ok]
    if failed:
        reasons = "; ".join(f"{c.name}: {c.detail}" for c in failed)
        raise HealthError(f"node unhealthy: {reasons} (record: {record})")
    phase.log.info("health: %d checks passed (record: %s)", len(checks), record)
