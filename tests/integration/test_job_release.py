"""Job release: logs uploaded by File Conventions, job files removed, nothing-left is fine."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from azure.storage.blob import BlobServiceClient
from helpers import make_spec_doc, node_env, run_agent

from node_agent.azurite import AzuriteServer
from node_agent.conventions import job_container


def _prepared_node(root: Path, job: str, account_url: str, **policies: object) -> dict[str, str]:
    """A node where job prep ran: stored spec, assets, Batch and node_agent logs."""
    prep_env = node_env(root, job, "jobpreparation")
    doc = make_spec_doc(account_url)
    doc["job_id"] = job
    if policies:
        doc["policies"] = policies
    agent = root / "shared" / "node_agent"
    (agent / "jobs" / job / "assets").mkdir(parents=True)
    (agent / "jobs" / job / "spec.json").write_text(json.dumps(doc))
    (agent / "jobs" / job / "assets" / "scene.blend").write_bytes(b"x" * 1000)
    prep = Path(prep_env["AZ_BATCH_TASK_DIR"])
    (prep / "stdout.txt").write_text("prep stdout\n")
    (prep / "stderr.txt").write_text("")
    (prep / "wd" / "tmp.bin").write_bytes(b"y" * 100)
    (agent / "logs").mkdir(parents=True, exist_ok=True)
    (agent / "logs" / f"job-prep_{job}_jobpreparation.log").write_text("synced 3 files\n")
    (agent / "cache").mkdir(parents=True, exist_ok=True)
    (agent / "cache" / "shared.bin").write_bytes(b"z")
    return node_env(root, job, "jobrelease")


def test_release_uploads_logs_and_removes_job_files(tmp_path: Path, azurite: AzuriteServer) -> None:
    job = f"rel-{uuid.uuid4().hex[:8]}"
    env = _prepared_node(tmp_path, job, azurite.account_url)
    res = run_agent(["job-release"], env)
    assert res.returncode == 0, res.stderr
    agent = tmp_path / "shared" / "node_agent"
    assert not (agent / "jobs" / job).exists()
    assert not (tmp_path / "workitems" / job / "job-1" / "jobpreparation" / "wd").exists()
    assert (agent / "cache" / "shared.bin").exists(), "the shared cache stays"

    svc = BlobServiceClient.from_connection_string(azurite.connection_string)
    names = sorted(b.name for b in svc.get_container_client(job_container(job)).list_blobs())
    node = "tvmps_test"
    assert f"jobpreparation/$TaskLog/{node}/stdout.txt" in names
    assert f"jobpreparation/$TaskLog/{node}/job-prep_{job}_jobpreparation.log" in names
    assert f"jobrelease/$TaskLog/{node}/job-release_{job}_jobrelease.log" in names
    blob = svc.get_blob_client(job_container(job), f"jobpreparation/$TaskLog/{node}/stdout.txt")
    assert blob.download_blob().readall() == b"prep stdout\n"
    assert "entitlement-token" not in res.stdout + res.stderr

    again = run_agent(["job-release"], env)
    assert again.returncode == 0, again.stderr
    assert "no job spec on this node" in again.stderr


def test_release_on_a_node_where_nothing_ran(tmp_path: Path) -> None:
    res = run_agent(["job-release"], node_env(tmp_path, "never-here", "jobrelease"))
    assert res.returncode == 0, res.stderr
    assert "nothing to remove" in res.stderr


def test_keep_policy_leaves_files(tmp_path: Path, azurite: AzuriteServer) -> None:
    job = f"keep-{uuid.uuid4().hex[:8]}"
    env = _prepared_node(tmp_path, job, azurite.account_url, cleanup="keep")
    res = run_agent(["job-release"], env)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "shared" / "node_agent" / "jobs" / job / "assets" / "scene.blend").exists()


def test_unreachable_storage_still_cleans_up_then_exits_17(tmp_path: Path) -> None:
    job = "rel-down"
    env = _prepared_node(tmp_path, job, "http://127.0.0.1:9/devstoreaccount1")
    res = run_agent(["job-release"], env, timeout=600)
    assert res.returncode == 17
    assert "log upload failed" in res.stderr.splitlines()[-1]
    assert not (tmp_path / "shared" / "node_agent" / "jobs" / job).exists()
