"""trim_cache: LRU eviction across three jobs, never content a job in use references."""

from __future__ import annotations

import os
from pathlib import Path

from test_sync_helpers import make_spec, node_of, run_job_prep, seed, tree, write_spec

from node_agent.azurite import AzuriteServer
from node_agent.storage import BlobStore
from node_agent.sync.cache import trim_cache
from node_agent.sync.state import StateDB, db_path

KB100 = 100_000


def test_trim_lru_and_in_use(azurite: AzuriteServer, store: BlobStore, tmp_path: Path) -> None:
    common = os.urandom(KB100)
    root = tmp_path / "node"
    for job in ("job-a", "job-b", "job-c"):  # synced in this order: a is least recently used
        files = {f"{job}/scene.blend": common} | {
            f"{job}/t{i}.bin": os.urandom(KB100) for i in range(5)
        }
        seed(store, "sync-trim", files)
        spec = write_spec(
            tmp_path / f"{job}.json", make_spec(azurite.account_url, "sync-trim", f"{job}/", job)
        )
        assert run_job_prep(root, job, spec).returncode == 0
    node = node_of(root, "job-a")
    db = StateDB(db_path(node.state_dir))
    hashes = {j: set(db.view(j).values()) for j in ("job-a", "job-b", "job-c")}
    db.close()
    assert sum(1 for _ in node.cache_dir.joinpath("objects").rglob("*") if _.is_file()) == 16

    # budget of ~2 jobs, job-a still rendering: job-b (the oldest not in use) goes, a and c stay
    s = trim_cache(node, 11 * KB100, {"job-a"})
    assert s.bytes_before == 16 * KB100 and s.bytes_after <= 11 * KB100
    assert s.evicted == 5 and s.protected >= 5
    present = {p.name for p in node.cache_dir.joinpath("objects").rglob("*") if p.is_file()}
    assert hashes["job-a"] <= present and hashes["job-c"] <= present
    assert not (hashes["job-b"] - hashes["job-a"]) & present
    # job-a's view is untouched, content is still whole
    assert len(tree(node.job_assets_dir("job-a"))) == 6

    # nothing in use, budget for one job: LRU order evicts job-a's content before job-c's
    s = trim_cache(node, 6 * KB100, set())
    present = {p.name for p in node.cache_dir.joinpath("objects").rglob("*") if p.is_file()}
    assert present == hashes["job-c"]
    assert s.bytes_after == 6 * KB100

    # everything in use and over budget: nothing is evicted
    s = trim_cache(node, 0, {"job-c"})
    assert s.evicted == 0 and s.bytes_after == 6 * KB100

    # a job whose content was evicted syncs again correctly
    spec = write_spec(
        tmp_path / "job-b.json", make_spec(azurite.account_url, "sync-trim", "job-b/", "job-b")
    )
    assert run_job_prep(root, "job-b", spec).returncode == 0
