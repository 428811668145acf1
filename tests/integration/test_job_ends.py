"""A job always ends (issue 14): job preparation terminates its job on a failure no retry can
fix, the local pool plays Batch (a node whose job prep failed is ineligible, tasks stay
active) and ends the job on that call, or at the job's maxWallClockTime."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml
from helpers import (
    make_spec_doc,
    node_env,
    run_agent,
    run_local_pool,
    stand_in_job_doc,
    uploaded_job_doc,
)

from node_agent.azurite import AzuriteServer
from node_agent.batch.jobcontrol import IDENTITY_ENV, IMDS_ENV
from node_agent.localpool.pool import make_nodes, run_job_on_nodes
from node_agent.spec import spec_from_data
from node_agent.storage import BlobStore

IDENTITY = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/render"
TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.recorded-batch-token-5d1f0c"


def test_job_prep_failing_on_every_node_terminates_the_job(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """Bad scene name: real job prep on two nodes fails (exit 2), calls Terminate Job on the
    local pool's Batch stand-in with a token from its IMDS stand-in; the job ends at once,
    job release runs on both nodes, no task ever starts."""
    doc, _ = stand_in_job_doc(
        azurite.account_url,
        store,
        tmp_path,
        "prep-fails",
        frames="1-4",
        frames_per_task=2,
    )
    doc["render"]["scene"] = "no-such-scene.blend"  # type: ignore[index]
    doc["policies"] = {"task_retries": 1}
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(doc))
    settings = tmp_path / "pool.yaml"
    settings.write_text(yaml.safe_dump({"identity_resource_id": IDENTITY}))
    t0 = time.monotonic()
    # --allow-missing: local run's own preflight would refuse the scene before any node starts
    res = run_local_pool(
        spec, tmp_path / "pool", 2, 1, "--allow-missing", "--pool-settings", str(settings)
    )
    took = time.monotonic() - t0
    out = res.stdout + res.stderr
    assert (tmp_path / "pool" / "localpool" / "run-prep-fails.json").is_file(), out
    record = json.loads((tmp_path / "pool" / "localpool" / "run-prep-fails.json").read_text())
    assert res.returncode == 2, out  # job prep's cause: usage (bad spec)
    ended = record["ended_by"]
    assert ended["by"] == "api" and ended["action"] == "terminate", ended
    assert ended["reason"].startswith("job preparation failed on node node-"), ended
    assert (
        "exit 2 usage: render.scene: 'no-such-scene.blend' is not in the job's assets"
        in (ended["reason"])
    )
    runs = record["runs"]
    assert [r for r in runs if r["kind"] == "task"] == []  # no task ever started
    assert record["tasks_not_run"] == ["frames-00001-00002", "frames-00003-00004"]
    prepped = {r["node"] for r in runs if r["kind"] == "jobpreparation"}
    released = {r["node"] for r in runs if r["kind"] == "jobrelease"}
    assert prepped and released == prepped
    # well before any retry budget or wall clock: the terminate call ended it
    assert took < 120, out
    assert "TERMINATED by a Terminate Job call: job preparation failed on node node-" in out
    assert "/jobpreparation/stderr.txt" in out
    # the node's own AZ_BATCH_NODE_ID is its folder's name
    for node in prepped:
        assert (tmp_path / "pool" / "localpool" / "nodes" / node / "workitems").is_dir()


class _Recorder(BaseHTTPRequestHandler):
    seen: list[dict[str, Any]] = []

    def log_message(self, *args: Any) -> None:
        return

    def _record(self, body: bytes) -> None:
        u = urlparse(self.path)
        self.seen.append(
            {
                "method": self.command,
                "path": u.path,
                "query": parse_qs(u.query),
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": json.loads(body) if body else None,
            }
        )

    def do_GET(self) -> None:  # noqa: N802
        self._record(b"")
        data = json.dumps({"access_token": TOKEN, "token_type": "Bearer"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802
        self._record(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_job_prep_terminate_request_as_recorded(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """Real job prep, missing scene: the IMDS and Terminate Job requests a recording server
    sees (method, path, api-version, headers, body), and the token in no log."""
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        doc = uploaded_job_doc(azurite.account_url, store, tmp_path, "rec-job", scene="typo.blend")
        spec = tmp_path / "job.json"
        spec.write_text(json.dumps(doc))
        root = tmp_path / "node"
        env = node_env(root, "rec-job")
        env.update({"AZ_BATCH_ACCOUNT_URL": url, IMDS_ENV: url, IDENTITY_ENV: IDENTITY})
        res = run_agent(["job-prep", "--spec", str(spec)], env)
    finally:
        server.shutdown()
        server.server_close()
    assert res.returncode == 2, res.stderr
    imds, term = _Recorder.seen
    assert (imds["method"], imds["path"]) == ("GET", "/metadata/identity/oauth2/token")
    assert imds["query"] == {
        "api-version": ["2018-02-01"],
        "resource": ["https://batch.core.windows.net/"],
        "msi_res_id": [IDENTITY],
    }
    assert imds["headers"]["metadata"] == "true"
    assert (term["method"], term["path"]) == ("POST", "/jobs/rec-job/terminate")
    assert term["query"] == {"api-version": ["2025-06-01"]}
    assert term["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert term["headers"]["content-type"] == "application/json; odata=minimalmetadata"
    assert term["body"] == {
        "terminateReason": "job preparation failed on node tvmps_test: exit 2 usage: "
        "render.scene: 'typo.blend' is not in the job's assets"
    }
    logs = res.stdout + res.stderr
    logs += "".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file())
    assert "recorded-batch-token" not in logs
    assert "terminated: job preparation failed" in logs


def test_transient_prep_failure_everywhere_ends_at_the_jobs_wall_clock(tmp_path: Path) -> None:
    """A cause a retry may fix (exit 4, storage unreachable) is retried, then the nodes are
    ineligible; nobody terminates the job, so its maxWallClockTime does (real processes)."""
    doc = make_spec_doc("http://127.0.0.1:9", frames="1-2")
    doc["job_id"] = "wall-clock"
    spec = spec_from_data(doc)
    job = {
        "id": "wall-clock",
        "constraints": {"maxWallClockTime": "PT6S"},
        "jobPreparationTask": {
            "id": "jobpreparation",
            "commandLine": "/bin/bash -c 'exit 4'",
            "constraints": {"maxTaskRetryCount": 1},
        },
        "jobReleaseTask": {"id": "jobrelease", "commandLine": "/bin/true"},
        "tasks": [
            {"id": "t1", "commandLine": "/bin/true", "constraints": {"maxTaskRetryCount": 0}}
        ],
    }
    nodes = make_nodes(tmp_path, "localpool", 2)
    t0 = time.monotonic()
    result = run_job_on_nodes(spec, job, nodes, 1)
    took = time.monotonic() - t0
    assert 6 <= took < 30
    assert result.ended_by is not None
    assert result.ended_by["by"] == "maxWallClockTime"
    assert result.ended_by["reason"] == "MaxWallClockTimeExpiry"
    assert result.exit_code == 4
    preps = [r for r in result.runs if r.kind == "jobpreparation"]
    assert sorted((r.node, r.attempt) for r in preps) == [
        ("node-1", 0),
        ("node-1", 1),
        ("node-2", 0),
        ("node-2", 1),
    ]
    assert sorted(result.ineligible_nodes) == ["node-1", "node-2"]
    assert not [r for r in result.runs if r.kind == "task"] and result.not_run == ["t1"]
    assert sorted(r.node for r in result.runs if r.kind == "jobrelease") == ["node-1", "node-2"]
