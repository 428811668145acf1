"""issue 15: the cache is not opaque: `cache ls` maps objects back to asset paths, jobs and
sizes (two jobs sharing assets), `cache verify`, and a re-sync names the files it touched."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from helpers import (
    agent_dir,
    make_spec,
    node_env,
    run_agent,
    run_job_prep,
    seed,
    summary,
    write_spec,
)

from node_agent.azurite import AzuriteServer
from node_agent.storage import BlobStore

SHARED = b"texture shared by both jobs" * 100


def _ls(root: Path, *args: str) -> dict[str, object]:
    res = run_agent(["cache", "ls", "--root", str(root), "--json", *args])
    assert res.returncode == 0, res.stderr
    return dict(json.loads(res.stdout))


def test_cache_ls_on_a_node_with_two_jobs_sharing_assets(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    root = tmp_path / "node"
    assert run_agent(["start-task"], node_env(root)).returncode == 0
    seed(store, "cls", {"a/scene.blend": b"scene a", "a/tex/wood.png": SHARED,
                        "b/scene.blend": b"scene b", "b/tex/wood.png": SHARED})  # fmt: skip
    for job, prefix in (("job-a", "a/"), ("job-b", "b/")):
        spec = write_spec(
            tmp_path / f"{job}.json", make_spec(azurite.account_url, "cls", prefix, job)
        )
        assert run_job_prep(root, job, spec).returncode == 0

    doc = _ls(root)
    entries = {(e["path"], tuple(e["jobs"])): e for e in doc["entries"]}  # type: ignore[union-attr]
    wood = entries[("tex/wood.png", ("job-a", "job-b"))]
    assert wood["object"] == hashlib.sha256(SHARED).hexdigest()
    assert wood["size"] == len(SHARED) and wood["last_used"] and wood["on_disk"]
    assert any(b.endswith("/cls/a/tex/wood.png") for b in wood["blobs"])
    assert ("scene.blend", ("job-a",)) in entries and ("scene.blend", ("job-b",)) in entries
    assert doc["objects"] == 3 and doc["files"] == 3

    only_b = _ls(root, "--job", "job-b")["entries"]
    assert sorted(e["path"] for e in only_b) == ["scene.blend", "tex/wood.png"]  # type: ignore[union-attr]
    assert all("job-b" in e["jobs"] for e in only_b)  # type: ignore[union-attr]
    tex = _ls(root, "--path", "tex/*")["entries"]
    assert [e["path"] for e in tex] == ["tex/wood.png"]  # type: ignore[union-attr]

    text = run_agent(["cache", "ls", "--root", str(root)]).stdout
    line = next(ln for ln in text.splitlines() if ln.endswith("tex/wood.png"))
    assert "job-a,job-b" in line and wood["object"][:12] in line and "2.7 kB" in line
    assert "1 shared by several jobs" in text

    ok = run_agent(["cache", "verify", "--root", str(root)])
    assert ok.returncode == 0 and "3 objects" in ok.stdout, ok.stdout
    obj = agent_dir(root) / "cache" / "objects" / wood["object"][:2] / wood["object"]
    obj.chmod(0o644)
    obj.write_bytes(b"x" * len(SHARED))  # same size, other bytes
    bad = run_agent(["cache", "verify", "--root", str(root)])
    assert bad.returncode == 20 and wood["object"] in bad.stdout, bad.stdout


def test_a_resync_names_the_files_it_downloaded_replaced_and_deleted(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    root = tmp_path / "node"
    seed(store, "cnames", {"p/scene.blend": b"v1", "p/tex/a.png": b"a1", "p/old.txt": b"o"})
    spec = write_spec(tmp_path / "job.json", make_spec(azurite.account_url, "cnames", "p/"))
    assert run_job_prep(root, "job-a", spec).returncode == 0
    store.container("cnames").delete_blob("p/old.txt")
    seed(store, "cnames", {"p/tex/a.png": b"a2 changed", "p/tex/new.png": b"n"})

    res = run_job_prep(root, "job-a", spec)
    assert res.returncode == 0, res.stderr
    rec = summary(root, "job-a")
    assert rec["downloaded_files"] == ["tex/a.png", "tex/new.png"]
    assert rec["replaced_files"] == ["tex/a.png"] and rec["deleted_files"] == ["old.txt"]
    assert rec["bytes_downloaded"] == len(b"a2 changed") + 1
    line = next(ln for ln in res.stderr.splitlines() if "sync:" in ln and "downloaded" in ln)
    assert "INFO" in line
    assert "downloaded 2: tex/a.png, tex/new.png; replaced 1: tex/a.png; deleted 1: old.txt" in line
    log = (agent_dir(root) / "logs" / "job-prep_job-a_jobpreparation.log").read_text()
    assert "replaced 1: tex/a.png" in log
