"""Job release uploads the node's job prep and release logs: a link planted at one of their names
(the logs folder is node-wide, a renderer can write it; a task's stderr.txt swapped for a link) is
not followed: its target never reaches the job's container."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from azure.storage.blob import BlobServiceClient
from helpers import make_spec_doc, node_env, run_agent

from node_agent.azurite import AzuriteServer
from node_agent.conventions import job_container


def test_release_never_uploads_the_target_of_a_planted_log_link(
    tmp_path: Path, azurite: AzuriteServer
) -> None:
    job = f"rel-{uuid.uuid4().hex[:8]}"
    secret = tmp_path / "outside" / "shadow"
    secret.parent.mkdir()
    secret.write_text("root:$6$secrethash:19000::::::\n")
    prep_env = node_env(tmp_path, job, "jobpreparation")
    doc = make_spec_doc(azurite.account_url)
    doc["job_id"] = job
    agent = tmp_path / "shared" / "node_agent"
    (agent / "jobs" / job / "assets").mkdir(parents=True)
    (agent / "jobs" / job / "spec.json").write_text(json.dumps(doc))
    prep = Path(prep_env["AZ_BATCH_TASK_DIR"])
    (prep / "stdout.txt").write_text("prep stdout\n")
    (agent / "logs").mkdir(parents=True, exist_ok=True)
    # planted by a renderer of this (or an earlier) job: matches job-prep_<job>_*.log
    os.symlink(secret, agent / "logs" / f"job-prep_{job}_x.log")
    # and Batch's stdout.txt of job prep swapped for a link
    os.symlink(secret, prep / "stderr.txt")
    res = run_agent(["job-release"], node_env(tmp_path, job, "jobrelease"))
    svc = BlobServiceClient.from_connection_string(azurite.connection_string)
    c = svc.get_container_client(job_container(job))
    leaked = [
        b.name for b in c.list_blobs() if c.download_blob(b.name).readall() == secret.read_bytes()
    ]
    assert not leaked, f"rc={res.returncode}: uploaded the link's target as {leaked}"
    assert res.returncode == 0, res.stdout + res.stderr
    assert "is a symbolic link" in res.stdout + res.stderr, res.stdout + res.stderr
