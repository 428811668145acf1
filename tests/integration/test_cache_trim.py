"""trim_cache: LRU eviction across three jobs, never content a job in use references."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from helpers import make_spec, node_env, node_of, run_agent, run_job_prep, seed, tree, write_spec

from node_agent.azurite import AzuriteServer
from node_agent.storage import BlobStore
from node_agent.sync.cache import trim_cache
from node_agent.sync.state import StateDB, db_path

KB100 = 100_000


def _job_files(job: str, common: bytes, size: int) -> dict[str, bytes]:
    """Job `job`'s assets: a scene with the `common` bytes all jobs share, and five random
    files of `size` bytes of its own."""
    return {f"{job}/scene.blend": common} | {f"{job}/t{i}.bin": os.urandom(size) for i in range(5)}


def test_trim_lru_and_in_use(azurite: AzuriteServer, store: BlobStore, tmp_path: Path) -> None:
    common = os.urandom(KB100)
    root = tmp_path / "node"
    for job in ("job-a", "job-b", "job-c"):  # synced in this order: a is least recently used
        files = _job_files(job, common, KB100)
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


MB = 1024 * 1024


def _release(root: Path, job: str) -> subprocess.CompletedProcess[str]:
    env = node_env(root, job, "jobrelease")
    return run_agent(["job-release"], env, timeout=300)


def _objects(root: Path) -> set[str]:
    objs = root / "shared" / "node_agent" / "cache" / "objects"
    return {p.name for p in objs.rglob("*") if p.is_file()}


def test_job_release_keeps_the_cache_budget(
    azurite: AzuriteServer, store: BlobStore, tmp_path: Path
) -> None:
    """Three jobs of 6 MB each (1 MB shared) fill a 11 MB budget past its limit; job release
    evicts the least recently used content of jobs no longer on the node, none in use."""
    common = os.urandom(MB)
    root = tmp_path / "node"
    for job in ("rel-a", "rel-b", "rel-c"):  # prepared in this order: a is least recently used
        files = _job_files(job, common, MB)
        seed(store, "sync-release-trim", files)
        doc = make_spec(azurite.account_url, "sync-release-trim", f"{job}/", job)
        if job != "rel-a":
            doc["policies"] = {"cache_budget_mb": 11}
        assert run_job_prep(root, job, write_spec(tmp_path / f"{job}.json", doc)).returncode == 0
    db = StateDB(db_path(node_of(root, "rel-a").state_dir))
    hashes = {j: set(db.view(j).values()) for j in ("rel-a", "rel-b", "rel-c")}
    db.close()
    assert len(_objects(root)) == 16

    # rel-a ends, its spec sets no budget: nothing is trimmed, its content stays cached
    res = _release(root, "rel-a")
    assert res.returncode == 0, res.stderr
    assert "no budget set" in res.stderr
    assert len(_objects(root)) == 16

    # rel-b ends with an 11 MB budget while rel-c still renders: of the content no job on the
    # node uses (a's and b's), a's is least recently used and goes; b's and c's stay
    res = _release(root, "rel-b")
    assert res.returncode == 0, res.stderr
    present = _objects(root)
    assert hashes["rel-c"] <= present
    assert hashes["rel-b"] <= present
    assert not (hashes["rel-a"] - hashes["rel-b"]) & present
    assert len(present) == 11
    assert "evicted 5 object(s)" in res.stderr
    # rel-c's files are whole and readable
    assert len(tree(node_of(root, "rel-c").job_assets_dir("rel-c"))) == 6


def test_job_release_on_a_corrupt_state_db_does_not_heal_it(
    azurite: AzuriteServer, store: BlobStore, tmp_path: Path
) -> None:
    """Healing re-hashes the whole cache, which could outlast a job release's time limit:
    release skips the trim with one warning and leaves the DB for the next job prep."""
    root = tmp_path / "node"
    files = {f"rc/t{i}.bin": os.urandom(64 * 1024) for i in range(4)}
    seed(store, "sync-release-corrupt", files | {"rc/scene.blend": b"a scene"})
    doc = make_spec(azurite.account_url, "sync-release-corrupt", "rc/", "rel-x")
    doc["policies"] = {"cache_budget_mb": 1}
    assert run_job_prep(root, "rel-x", write_spec(tmp_path / "rel-x.json", doc)).returncode == 0
    db = db_path(node_of(root, "rel-x").state_dir)
    db.write_bytes(b"this is not a database\n" * 500)
    res = _release(root, "rel-x")
    assert res.returncode == 0, res.stderr
    assert "shared cache not trimmed" in res.stderr and "next job prep heals it" in res.stderr
    assert db.read_bytes().startswith(b"this is not a database")  # left as it was
    assert not list(db.parent.glob("sync.db.corrupt-*"))
