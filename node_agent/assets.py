"""Getting a job's assets onto the node (foundation: a verified full copy per job)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from node_agent.errors import AssetError
from node_agent.logs import get_logger
from node_agent.spec import JobSpec
from node_agent.storage import BlobStore

log = get_logger("assets")


@dataclass
class SyncSummary:
    listed: int = 0
    downloaded: int = 0
    unchanged: int = 0
    bytes_downloaded: int = 0
    refused: int = 0
    seconds: float = 0.0


def _safe_target(root: Path, rel: str) -> Path:
    p = PurePosixPath(rel)
    if not rel or p.is_absolute() or ".." in p.parts or "\\" in rel or "\x00" in rel:
        raise AssetError(f"blob name '{rel}' would land outside the assets folder")
    return root.joinpath(*p.parts)


def sync_job_assets(spec: JobSpec, store: BlobStore, dest: Path) -> SyncSummary:
    """Download every asset source of the job into `dest`."""
    t0 = time.monotonic()
    summary = SyncSummary()
    for source in spec.assets:
        root = dest / source.dest if source.dest else dest
        for blob in store.list_blobs(source.container, source.prefix):
            summary.listed += 1
            rel = blob.name[len(source.prefix) :].lstrip("/")
            target = _safe_target(root, rel)
            if target.exists() and target.stat().st_size == blob.size:
                summary.unchanged += 1
                continue
            summary.bytes_downloaded += store.download_file(
                source.container, blob.name, target, blob.size
            )
            summary.downloaded += 1
    summary.seconds = time.monotonic() - t0
    return summary
