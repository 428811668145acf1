"""The cache trim (job release, policies.cache_budget_mb) removes only object files: a content hash
read from a damaged or edited state DB that is not a sha256 (a relative path such as
`../../outside/victim`) is refused, never joined into a path to remove."""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from pathlib import Path

from helpers import make_spec_doc, node_env, run_agent

from node_agent.azurite import AzuriteServer
from node_agent.storage import BlobStore


def test_trim_never_removes_a_file_named_by_a_bad_db_hash(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    store.ensure_container("assets")
    store.container("assets").upload_blob("proj/spin.blend", b"scene", overwrite=True)
    victim = tmp_path / "outside" / "victim.conf"
    victim.parent.mkdir()
    victim.write_text("precious\n")
    root = tmp_path / "node"
    job = f"j-{uuid.uuid4().hex[:6]}"
    doc = make_spec_doc(azurite.account_url)
    doc["job_id"] = job
    doc["policies"] = {"cache_budget_mb": 0}
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(doc))
    res = run_agent(["job-prep", "--spec", str(spec)], node_env(root, job, None))
    assert res.returncode == 0, res.stderr
    agent = root / "shared" / "node_agent"
    objects = agent / "cache" / "objects"
    bad = os.path.relpath(victim, objects.parent)  # object_path = objects/h[:2]/h
    assert os.path.normpath(objects / bad[:2] / bad) == str(victim)
    with sqlite3.connect(agent / "state" / "sync.db") as c:
        c.execute("INSERT INTO objects VALUES (?, 10, 0, NULL, 0)", (bad,))
    res = run_agent(["job-release"], node_env(root, job, "jobrelease"))
    out = res.stdout + res.stderr
    assert victim.read_text() == "precious\n", f"rc={res.returncode}: removed by the cache trim"
    assert res.returncode == 5 and "is not a sha256" in out, out
    assert "Traceback" not in out
