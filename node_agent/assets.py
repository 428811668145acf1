"""Getting a job's assets onto the node: the incremental sync engine (node_agent.sync)."""

from __future__ import annotations

from node_agent.batchenv import BatchNode
from node_agent.spec import JobSpec
from node_agent.sync.access import Access
from node_agent.sync.engine import SyncEngine
from node_agent.sync.progress import Progress, SyncSummary


def sync_job_assets(
    node: BatchNode,
    spec: JobSpec,
    access: Access,
    progress: Progress | None = None,
) -> SyncSummary:
    """Sync every asset source of the job into the node cache and the job's hard-link
    view (`jobs/<job>/.view`, the lower layer of what tasks see: node_agent.sync.isolation).

    A pinned job already on the node never touches storage.
    """
    engine = SyncEngine(
        node.cache_dir,
        node.state_dir,
        access,
        reserve_bytes=spec.policies.free_space_reserve_mb * 1024 * 1024,
        windows=node.is_windows,
        progress=progress,
        retry_s=spec.policies.storage_retry_s,
    )
    try:
        return engine.sync(node.job_id or "", node.job_view_dir(), list(spec.assets))
    finally:
        engine.close()
