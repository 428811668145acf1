"""Trimming the node's content store to a budget: least recently used first, never in-use content."""

from __future__ import annotations

import json
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass

from filelock import FileLock, Timeout

from node_agent.batchenv import BatchNode
from node_agent.sync.state import StateDB, db_path
from node_agent.sync.store import ContentStore


@dataclass
class TrimSummary:
    objects_before: int = 0
    bytes_before: int = 0
    evicted: int = 0
    bytes_evicted: int = 0
    bytes_freed: int = 0  # evicted content no job folder still links to
    protected: int = 0
    bytes_after: int = 0


def trim_cache(node: BatchNode, budget_bytes: int, in_use_jobs: set[str]) -> TrimSummary:
    """Evict least recently used content until the store fits `budget_bytes`.

    Content referenced by a job in `in_use_jobs` is never evicted, even if the
    budget cannot be met. Jobs' last use is recorded by each sync.
    """
    cstore = ContentStore(node.cache_dir)
    db = StateDB(db_path(node.state_dir))
    try:
        objects = db.all_objects()
        protected = db.hashes_of_jobs(in_use_jobs)
        s = TrimSummary(len(objects), sum(o.size for o in objects.values()))
        total = s.bytes_before
        evicted: list[str] = []
        for obj in sorted(objects.values(), key=lambda o: (o.last_used, o.hash)):
            if total <= budget_bytes:
                break
            if obj.hash in protected:
                s.protected += 1
                continue
            path = cstore.object_path(obj.hash)
            try:
                links = os.stat(path).st_nlink
                path.unlink()
            except FileNotFoundError:
                links = 1
            evicted.append(obj.hash)
            total -= obj.size
            s.evicted += 1
            s.bytes_evicted += obj.size
            if links <= 1:
                s.bytes_freed += obj.size
        db.forget_objects(evicted)
        db.forget_blobs_with_hashes(evicted)
        s.bytes_after = total
        return s
    finally:
        db.close()


def cache_budget_mb(node: BatchNode, spec_budget_mb: int | None) -> int | None:
    """The shared cache budget: the job spec's policies.cache_budget_mb, else the one in the
    pool config the start task applied (state/pool-config.json), else none."""
    if spec_budget_mb is not None:
        return spec_budget_mb
    try:
        doc = json.loads((node.state_dir / "pool-config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    budget = doc.get("cache_budget_mb") if isinstance(doc, dict) else None
    return budget if isinstance(budget, int) and budget >= 0 else None


def jobs_on_node(node: BatchNode) -> set[str]:
    """Jobs whose per-job folder is on the node: prepared and not yet released."""
    jobs = node.agent_dir / "jobs"
    return {p.name for p in jobs.iterdir() if p.is_dir()} if jobs.is_dir() else set()


def trim_when_idle(
    node: BatchNode, budget_bytes: int, in_use_jobs: set[str], wait_s: float = 120.0
) -> TrimSummary | None:
    """trim_cache while holding every storage lock of the cache, so no job prep is linking
    content while it is evicted; None when a job prep kept a lock for `wait_s`."""
    locks = ContentStore(node.cache_dir).locks
    deadline = time.monotonic() + wait_s
    with ExitStack() as held:
        for path in sorted(locks.glob("*.lock")):
            try:
                held.enter_context(
                    FileLock(str(path), timeout=max(0.0, deadline - time.monotonic()))
                )
            except Timeout:
                return None
        return trim_cache(node, budget_bytes, in_use_jobs)
