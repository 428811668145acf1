"""Hostile blob names and manifest paths, and the disk check, against real Azurite."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from helpers import make_spec, node_of, run_job_prep, seed, summary, tree, write_spec

from node_agent.azurite import AzuriteServer
from node_agent.storage import BlobStore
from node_agent.sync.manifest import ManifestFile, canonical


def test_hostile_listing_is_refused_rest_completes(
    azurite: AzuriteServer, store: BlobStore, tmp_path: Path
) -> None:
    good = {"h1/scene.blend": b"scene", "h1/tex/a.png": b"a", "h1/dir": b"file first"}
    hostile = {"h1//abs": b"1", "h1/C:drive": b"2", "h1/" + "x" * 300: b"3", "h1/dir/f": b"4"}
    seed(store, "sync-hostile", {**good, **hostile})
    spec = write_spec(tmp_path / "job.json", make_spec(azurite.account_url, "sync-hostile", "h1/"))
    root = tmp_path / "node"
    r = run_job_prep(root, "job-a", spec)
    assert r.returncode == 5, r.stderr  # ExitCode.ASSETS
    assert "refused" in r.stderr
    s = summary(root, "job-a")
    assert s["refused"] == 4 and s["downloaded"] == 3
    view = node_of(root, "job-a").job_assets_dir()
    assert set(tree(view)) == {"scene.blend", "tex/a.png", "dir"}
    assert not list((root / "shared").rglob("abs")) and not list(root.rglob("C:drive"))


def test_hostile_manifest_paths_are_refused(
    azurite: AzuriteServer, store: BlobStore, tmp_path: Path
) -> None:
    content = {"scene.blend": b"scene", "../../escape.txt": b"evil", "sub\\win.txt": b"w"}
    seed(
        store,
        "sync-hostile-m",
        {f"hm/content/{hashlib.sha256(v).hexdigest()}": v for v in content.values()},
    )
    files = [ManifestFile(p, len(v), hashlib.sha256(v).hexdigest()) for p, v in content.items()]
    data = canonical(files)
    mh = hashlib.sha256(data).hexdigest()
    seed(store, "sync-hostile-m", {f"hm/manifests/{mh}.json": data})
    spec = write_spec(
        tmp_path / "job.json", make_spec(azurite.account_url, "sync-hostile-m", "hm", manifest=mh)
    )
    root = tmp_path / "node"
    r = run_job_prep(root, "job-a", spec)
    assert r.returncode == 5, r.stderr
    assert summary(root, "job-a")["refused"] == 2
    assert not list(tmp_path.rglob("escape.txt"))
    assert set(tree(node_of(root, "job-a").job_assets_dir())) == {"scene.blend"}


def test_disk_check_reserve(azurite: AzuriteServer, store: BlobStore, tmp_path: Path) -> None:
    seed(store, "sync-disk", {"d1/scene.blend": b"s" * 1000})
    doc = make_spec(azurite.account_url, "sync-disk", "d1/")
    doc["policies"] = {"free_space_reserve_mb": 1024 * 1024 * 1024}  # a petabyte
    root = tmp_path / "node"
    r = run_job_prep(root, "job-a", write_spec(tmp_path / "job.json", doc))
    assert r.returncode == 6, r.stderr  # ExitCode.DISK_FULL
    assert "needs 0.0 MB" in r.stderr and "MB free minus a reserve of" in r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_disk_check_on_a_small_tmpfs(
    azurite: AzuriteServer, store: BlobStore, tmp_path: Path
) -> None:
    files = {"d2/scene.blend": b"s"} | {f"d2/big{i}.bin": os.urandom(1024 * 1024) for i in range(6)}
    seed(store, "sync-tmpfs", files)
    doc = make_spec(azurite.account_url, "sync-tmpfs", "d2/")
    doc["policies"] = {"free_space_reserve_mb": 0}
    root = tmp_path / "node"
    shared = root / "shared"
    shared.mkdir(parents=True)
    mounted = (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(shared)]).returncode
        == 0
    )
    if not mounted:
        pytest.skip("cannot mount a tmpfs here")
    try:
        r = run_job_prep(root, "job-a", write_spec(tmp_path / "job.json", doc))
        assert r.returncode == 6, r.stderr
        assert "needs 6.3 MB" in r.stderr, r.stderr
        assert not list((shared / "node_agent" / "cache" / "objects").rglob("*.bin"))
    finally:
        subprocess.run(["umount", "-l", str(shared)], check=False)


def test_write_atomic_on_a_full_disk_is_disk_full_and_leaves_nothing(tmp_path: Path) -> None:
    """A record (prep.json, summary.json) written on a full disk: exit 6 naming the file,
    no temporary file left beside it, the previous version intact."""
    from node_agent.errors import DiskFullError
    from node_agent.runtime import write_atomic

    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)]).returncode
        != 0
    ):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        target = mnt / "summary.json"
        write_atomic(target, b"old")
        with pytest.raises(DiskFullError) as err:
            write_atomic(target, b"x" * 200_000)
        assert "disk full writing" in str(err.value) and "summary.json" in str(err.value)
        assert err.value.exit_code == 6
        assert target.read_bytes() == b"old"
        assert sorted(p.name for p in mnt.iterdir()) == ["summary.json"]
    finally:
        subprocess.run(["umount", "-l", str(mnt)])
