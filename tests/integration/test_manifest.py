"""`assets push` and pinned manifests against real Azurite."""

from __future__ import annotations

import os
import re
from pathlib import Path

from helpers import make_spec, node_of, run_agent, run_job_prep, summary, tree, write_spec

from node_agent.azurite import AzuriteServer, free_port


def _push(azurite: AzuriteServer, folder: Path, home: Path) -> tuple[str, str, str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(home)}
    r = run_agent(
        [
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
        env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.split("manifest ")[-1].strip(), r.stdout, r.stderr


def _push_summary(stderr: str) -> str:
    """Progress and the summary go to stderr (stdout is the result); the summary is last."""
    lines = [line for line in stderr.splitlines() if line.startswith("push: ")]
    assert lines, stderr
    return re.sub(r"\d+\.\ds$", "<s>s", lines[-1])


def test_push_pin_repush(azurite: AzuriteServer, tmp_path: Path) -> None:
    ws = tmp_path / "workstation"
    (ws / "tex").mkdir(parents=True)
    (ws / "scene.blend").write_bytes(b"scene v1")
    for i in range(20):
        (ws / "tex" / f"t{i}.png").write_bytes(os.urandom(3000))
    (ws / "tex" / "dup.png").write_bytes((ws / "tex" / "t0.png").read_bytes())
    home = tmp_path / "home"
    m1, out, err = _push(azurite, ws, home)
    assert "22 files, 22 hashed, 21 uploaded" in out  # dup content stored once
    assert _push_summary(err) == (
        "push: 22 files, 22 hashed, 0 reused from the hash cache, 21 uploaded (60.0 kB), "
        "0 refused, <s>s"
    )
    _, out, err = _push(azurite, ws, home)
    assert out.startswith("push: 22 files, 0 hashed, 0 uploaded")
    assert _push_summary(err) == (
        "push: 22 files, 0 hashed, 22 reused from the hash cache, 0 uploaded (0 B), 0 refused, <s>s"
    )

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
    m2, out, err = _push(azurite, ws, home)
    assert m2 != m1 and "1 hashed, 1 uploaded" in out
    assert "1 hashed, 21 reused from the hash cache, 1 uploaded (8 B)" in _push_summary(err)

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
