"""`assets push` and pinned manifests against real Azurite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from test_sync_helpers import REPO, make_spec, node_of, run_job_prep, summary, tree, write_spec

from node_agent.azurite import AzuriteServer, free_port
from node_agent.sync.manifest import ManifestFile, canonical


def _push(azurite: AzuriteServer, folder: Path, home: Path) -> tuple[str, str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(home)}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "node_agent",
            "assets",
            "push",
            str(folder),
            "--project",
            "shot10",
            "--container",
            "sync-manifest",
            "--account-url",
            azurite.account_url,
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.split("manifest ")[-1].strip(), r.stdout


def test_canonical_manifest_is_stable() -> None:
    a = [ManifestFile("b", 1, "00"), ManifestFile("a", 2, "11")]
    assert canonical(a) == canonical(list(reversed(a)))
    assert canonical(a).startswith(b'{"files":[{"path":"a"')


def test_push_pin_repush(azurite: AzuriteServer, tmp_path: Path) -> None:
    ws = tmp_path / "workstation"
    (ws / "tex").mkdir(parents=True)
    (ws / "scene.blend").write_bytes(b"scene v1")
    for i in range(20):
        (ws / "tex" / f"t{i}.png").write_bytes(os.urandom(3000))
    (ws / "tex" / "dup.png").write_bytes((ws / "tex" / "t0.png").read_bytes())
    home = tmp_path / "home"
    m1, out = _push(azurite, ws, home)
    assert "22 files, 22 hashed, 21 uploaded" in out  # dup content stored once
    assert _push(azurite, ws, home)[1].startswith("push: 22 files, 0 hashed, 0 uploaded")

    root = tmp_path / "node"
    spec1 = write_spec(
        tmp_path / "a.json",
        make_spec(azurite.account_url, "sync-manifest", "shot10", "job-a", manifest=m1),
    )
    r = run_job_prep(root, "job-a", spec1)
    assert r.returncode == 0, r.stderr
    want_v1 = tree(ws)
    assert tree(node_of(root, "job-a").job_assets_dir()) == want_v1
    assert summary(root, "job-a")["downloaded"] == 21

    # the TD pushes a new version while the job runs
    (ws / "scene.blend").write_bytes(b"scene v2")
    m2, out = _push(azurite, ws, home)
    assert m2 != m1 and "1 hashed, 1 uploaded" in out

    # another node joins job-a late: still gets exactly v1 (content by hash stays retrievable)
    root2 = tmp_path / "node2"
    assert run_job_prep(root2, "job-a", spec1).returncode == 0
    assert tree(node_of(root2, "job-a").job_assets_dir()) == want_v1

    # pinned no-op on a node that has it: nothing fetched, decided locally
    r = run_job_prep(root, "job-a", spec1)
    assert r.returncode == 0 and summary(root, "job-a")["downloaded"] == 0
    assert summary(root, "job-a")["listed"] == 22
    # ... so much so that it needs no storage at all
    dead = make_spec(
        f"http://127.0.0.1:{free_port()}/devstoreaccount1",
        "sync-manifest",
        "shot10",
        "job-a",
        manifest=m1,
    )
    r = run_job_prep(root, "job-a", write_spec(tmp_path / "dead.json", dead))
    assert r.returncode == 0, r.stderr

    # job-b pins v2 on the same node: one new file; job-a's view keeps v1
    spec2 = write_spec(
        tmp_path / "b.json",
        make_spec(azurite.account_url, "sync-manifest", "shot10", "job-b", manifest=m2),
    )
    assert run_job_prep(root, "job-b", spec2).returncode == 0
    assert summary(root, "job-b")["downloaded"] == 1
    assert (node_of(root, "job-a").job_assets_dir() / "scene.blend").read_bytes() == b"scene v1"
    assert (node_of(root, "job-b").job_assets_dir() / "scene.blend").read_bytes() == b"scene v2"


def test_pinned_manifest_must_match_its_hash(azurite: AzuriteServer, tmp_path: Path) -> None:
    bogus = "0" * 64
    spec = write_spec(
        tmp_path / "a.json",
        make_spec(azurite.account_url, "sync-manifest", "shot10", manifest=bogus),
    )
    r = run_job_prep(tmp_path / "node", "job-a", spec)
    assert r.returncode == 4 and "not found" in r.stderr  # StorageError names the blob
