"""The job client against a Batch account: recorded REST exchanges (API 2025-06-01) on a
local HTTP server (the Replay of test_batch_submit), the job's outputs on a real Azurite."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import REPO, CliResult, make_spec_doc, run_cli
from PIL import Image

from integration.test_batch_submit import KEY, Replay
from node_agent.azurite import AzuriteServer
from node_agent.conventions import job_container
from node_agent.errors import ExitCode
from node_agent.storage import BlobStore

JOB = "shot-010"
POOL = "render-pool"
T1, T2, T3 = "frames-00001-00002", "frames-00003-00004", "frames-00005-00006"
RECORDED = json.loads((REPO / "tests" / "fixtures" / "batch_recording_jobclient.json").read_text())


def exchanges(name: str) -> list[dict[str, Any]]:
    return json.loads(json.dumps(RECORDED[name]))


def _png(shade: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (320, 180), (shade, 90, 200 - shade)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def spec(tmp_path: Path, azurite: AzuriteServer, store: BlobStore) -> Path:
    """The spec the job was submitted with, and what its tasks left in storage: frames 1-4,
    task 5-6's summary and logs (it ran out of memory)."""
    doc = make_spec_doc(azurite.account_url, frames="1-6", frames_per_task=2)
    doc["job_id"] = JOB
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(doc))
    container = job_container(JOB)
    store.ensure_container(container)
    src = tmp_path / "blobs"
    src.mkdir()

    def put(name: str, data: bytes) -> None:
        f = src / "x"
        f.write_bytes(data)
        store.upload_file(f, container, name)

    for n in range(1, 5):
        task = T1 if n < 3 else T2
        put(f"{task}/$TaskOutput/frame_{n:04d}.png", _png(40 * n))
    for task in (T1, T2):
        put(f"{task}/$TaskLog/renderer.log", b"Fra:1 Mem:10M\nSaved: frame\nBlender quit\n")
        summary = {"task": task, "exit_code": 0, "reason": "", "outputs": [{"bytes": 1000}] * 2}
        put(f"{task}/$TaskLog/summary.json", json.dumps(summary).encode())
    put(f"{T3}/$TaskLog/stderr.txt", b"node-agent: error: renderer ran out of memory\n")
    put(f"{T3}/$TaskLog/renderer.log", b"Fra:5 Mem:31000M\nError: Out of memory in CUDA\n")
    oom = {
        "task": T3,
        "exit_code": 13,
        "reason": "renderer ran out of memory (Error: Out of memory in CUDA)",
    }
    put(f"{T3}/$TaskLog/summary.json", json.dumps(oom).encode())
    return path


def _cli(batch: Replay, *args: str) -> CliResult:
    return run_cli([*args, "--endpoint", batch.url, "--account", "acct", "--poll", "0"])


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_BATCH_ACCESS_KEY", KEY)


def _done(batch: Replay) -> None:
    assert batch.mismatches == [] and batch.exchanges == [], batch.mismatches
    for r in batch.requests:
        assert r["query"]["api-version"] == ["2025-06-01"]
        assert r["headers"]["authorization"].startswith("SharedKey acct:")


def test_watch_reads_tasks_nodes_and_storage_and_exits_with_the_result(spec: Path) -> None:
    with Replay(exchanges("watch")) as batch:
        res = _cli(batch, "job", "watch", JOB, "--spec", str(spec))
    _done(batch)
    assert [(r["method"], r["path"]) for r in batch.requests[:4]] == [
        ("GET", f"/jobs/{JOB}"),
        ("GET", f"/jobs/{JOB}/tasks"),
        ("GET", f"/jobs/{JOB}/jobpreparationandreleasetaskstatus"),
        ("GET", f"/pools/{POOL}/nodes"),
    ]
    assert res.returncode == 13, res.stdout + res.stderr  # the failed task's: out_of_memory
    out = res.stdout
    # first look: one task running (its first attempt exited 10), one queued
    assert (
        f"task {T2} (frames 3-4) running on tvm-2, attempt 2 (last attempt exit 10 render_failed)"
        in out
    )
    assert f"task {T3} (frames 5-6) queued" in out
    assert "node tvm-1: job prep done" in out and "node tvm-2: job prep done" in out
    # last look: the failure with its reason (the task's summary.json) and where its logs are
    stderr_url = f"{batch.url}/jobs/{JOB}/tasks/{T3}/files/stderr.txt"
    log_url = f"/{job_container(JOB)}/{T3}/$TaskLog/renderer.log"
    line = next(ln for ln in out.splitlines() if ln.startswith(f"task {T3} (frames 5-6) FAILED"))
    assert "on tvm-1 after 2 attempt(s): exit 13 out_of_memory: renderer ran out of memory" in line
    assert stderr_url in line and log_url in line
    assert f"task {T2} (frames 3-4) done on tvm-2 after 2 attempt(s)" in out
    assert "4/6 frames uploaded" in out
    assert f"job {JOB} ended: FAILED (exit 13; failed tasks: {T3})" in out
    assert KEY not in out + res.stderr


def test_report_from_batch_has_rows_timeline_and_thumbnails(spec: Path, tmp_path: Path) -> None:
    page = tmp_path / "r.html"
    with Replay(exchanges("report")) as batch:
        res = _cli(batch, "job", "report", JOB, "--spec", str(spec), "-o", str(page))
    _done(batch)
    assert res.returncode == 0, res.stderr
    html = page.read_text()
    assert html.count('<img class="thumb"') == 4 and 'data-frame="5" data-missing="1"' in html
    for kind in ("starttask", "jobpreparation", "task", "jobrelease"):
        assert f'data-kind="{kind}"' in html
    assert 'data-node="tvm-1"' in html and 'data-node="tvm-2"' in html
    assert f'data-task="{T3}" data-state="failed"' in html
    assert "Error: Out of memory in CUDA" in html or "renderer ran out of memory" in html
    assert "times are approximate" not in html  # Batch records the times


def test_download_follow_asks_batch_until_the_job_ends(spec: Path, tmp_path: Path) -> None:
    dest = tmp_path / "frames"
    with Replay(exchanges("download_follow")) as batch:
        res = _cli(batch, "job", "download", JOB, str(dest), "--spec", str(spec), "--follow")
    _done(batch)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in dest.iterdir() if not p.name.startswith(".")) == [
        f"frame_{n:04d}.png" for n in range(1, 5)
    ]
    assert "(2 passes)" in res.stdout


def test_requeue_failed_of_an_ended_job_makes_a_job_of_exactly_its_failed_frames() -> None:
    with Replay(exchanges("requeue_completed")) as batch:
        res = _cli(batch, "job", "requeue", JOB, "--failed")
    _done(batch)
    assert res.returncode == 0, res.stderr
    assert [(r["method"], r["path"]) for r in batch.requests] == [
        ("GET", f"/jobs/{JOB}"),
        ("GET", f"/jobs/{JOB}/tasks"),
        ("GET", "/jobs"),
        ("POST", "/jobs"),
        ("POST", f"/jobs/{JOB}-rq1/addtaskcollection"),
        ("PATCH", f"/jobs/{JOB}-rq1"),
    ]
    old = RECORDED["requeue_completed"][0]["body"]
    new_job = batch.requests[3]["body"]
    assert new_job["id"] == f"{JOB}-rq1" and new_job["onAllTasksComplete"] == "noaction"
    for key in ("poolInfo", "jobPreparationTask", "jobReleaseTask", "onTaskFailure"):
        assert new_job[key] == old[key]
    [task] = batch.requests[4]["body"]["value"]
    failed = RECORDED["requeue_completed"][1]["body"]["value"][2]
    assert task["id"] == T3 and task["commandLine"] == failed["commandLine"]
    assert task["commandLine"].endswith("render --frames 5-6'")  # exactly the failed frames
    assert task["exitConditions"] == failed["exitConditions"]
    assert task["constraints"] == {"maxTaskRetryCount": 1}
    assert batch.requests[5]["body"] == {"onAllTasksComplete": "terminatejob"}
    assert f"requeued 1 failed task(s) into job {JOB}-rq1" in res.stdout


def test_requeue_failed_of_an_active_job_adds_to_it() -> None:
    with Replay(exchanges("requeue_active")) as batch:
        res = _cli(batch, "job", "requeue", JOB, "--failed")
    _done(batch)
    assert res.returncode == 0, res.stderr
    [task] = batch.requests[2]["body"]["value"]
    assert task["id"] == f"{T3}-rq1" and task["commandLine"].endswith("--frames 5-6'")


def test_terminate_sends_the_reason_and_waits_for_the_job_to_end() -> None:
    with Replay(exchanges("terminate")) as batch:
        res = _cli(batch, "job", "terminate", JOB, "--reason", "cancelled by TD")
    _done(batch)
    assert res.returncode == 0, res.stderr
    assert batch.requests[0]["body"] == {"terminateReason": "cancelled by TD"}
    assert f"job {JOB} terminated (cancelled by TD)" in res.stdout


def test_pool_resize_to_zero_and_delete() -> None:
    with Replay(exchanges("resize")) as batch:
        res = _cli(batch, "pool", "resize", POOL, "--nodes", "0")
    _done(batch)
    assert res.returncode == 0, res.stderr
    assert batch.requests[0]["body"] == {"targetDedicatedNodes": 0, "targetLowPriorityNodes": 0}
    assert f"pool {POOL} resized to 0 dedicated + 0 spot node(s)" in res.stdout
    with Replay(exchanges("delete")) as batch:
        res = _cli(batch, "pool", "delete", POOL)
    _done(batch)
    assert res.returncode == 0, res.stderr
    assert f"pool {POOL} deleted" in res.stdout


def test_unknown_job_is_one_line_and_exit_batch() -> None:
    with Replay(exchanges("job_not_found")) as batch:
        res = _cli(batch, "job", "watch", JOB)
    _done(batch)
    assert res.returncode == int(ExitCode.BATCH)
    assert res.stderr.strip().splitlines() == [
        f"node-agent: error: Batch: job '{JOB}': HTTP 404 JobNotFound: (JobNotFound) The specified job does not exist."
    ]
