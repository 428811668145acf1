"""Getting a job's assets onto the node: the incremental sync engine (node_agent.sync)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from node_agent.batchenv import BatchNode
from node_agent.spec import JobSpec
from node_agent.sync.engine import SyncEngine
from node_agent.sync.progress import Progress, SyncSummary

if TYPE_CHECKING:
    from node_agent.storage import BlobStore


def sync_job_assets(
    node: BatchNode,
    spec: JobSpec,
    connect: Callable[[], BlobStore],
    progress: Progress | None = None,
) -> SyncSummary:
    """Sync every asset source of the job into the node cache and the job's view.

    `connect` makes the storage client; a pinned job already on the node never calls it.
    """
    engine = SyncEngine(
        node.cache_dir,
        node.state_dir,
        connect,
        reserve_bytes=spec.policies.free_space_reserve_mb * 1024 * 1024,
        windows=node.is_windows,
        progress=progress,
    )
    try:
        return engine.sync(node.job_id or "", node.job_assets_dir(), list(spec.assets))
    finally:
        engine.close()
