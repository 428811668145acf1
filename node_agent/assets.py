"""Getting a job's assets onto the node: the incremental sync engine (node_agent.sync)."""

from __future__ import annotations

from node_agent.batchenv import BatchNode
from node_agent.spec import JobSpec
from node_agent.storage import BlobStore
from node_agent.sync.engine import SyncEngine
from node_agent.sync.progress import Progress, SyncSummary


def sync_job_assets(
    node: BatchNode, spec: JobSpec, store: BlobStore, progress: Progress | None = None
) -> SyncSummary:
    """Sync every asset source of the job into the node cache and the job's view."""
    engine = SyncEngine(
        node.cache_dir,
        node.state_dir,
        store,
        reserve_bytes=spec.policies.free_space_reserve_mb * 1024 * 1024,
        windows=node.is_windows,
        progress=progress,
    )
    try:
        return engine.sync(node.job_id or "", node.job_assets_dir(), list(spec.assets))
    finally:
        engine.close()
