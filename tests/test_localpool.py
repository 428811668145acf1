"""The local pool plays Batch: start task per node, job prep before tasks, retries, job release."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import STANDINS, make_spec_doc, upload_tree

from node_agent.azurite import AzuriteServer
from node_agent.conventions import job_container
from node_agent.storage import BlobStore


def _run_pool(tmp_path: Path, doc: dict, nodes: int = 2, slots: int = 1) -> tuple[int, dict, str]:
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(doc))
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "node_agent",
            "local",
            "run",
            str(spec),
            "--nodes",
            str(nodes),
            "--slots",
            str(slots),
            "--workdir",
            str(tmp_path / "pool"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    record = json.loads((tmp_path / "pool" / "localpool" / f"run-{doc['job_id']}.json").read_text())
    return res.returncode, record, res.stdout + res.stderr


def test_two_nodes_schedule_retry_and_release(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "spin.blend").write_bytes(b"not really a blend file")
    upload_tree(store, src, "assets", "pooltest/")
    state = tmp_path / "state"
    state.mkdir()
    doc = make_spec_doc(
        azurite.account_url,
        renderer="custom",
        frames="1-8",
        frames_per_task=2,
        command=[
            sys.executable,
            str(STANDINS / "pool_test_renderer.py"),
            "{output_dir}",
            "{frames}",
            str(state),
            "frames-00003-00004",
            "{task_id}",
        ],
    )
    doc["job_id"] = "pool-retry"
    doc["assets"][0]["prefix"] = "pooltest/"
    code, record, out = _run_pool(tmp_path, doc)
    assert code == 0, out
    runs = record["runs"]
    by_kind = Counter((r["kind"], r["node"]) for r in runs)
    nodes = record["nodes"]
    assert len(nodes) == 2
    for n in nodes:
        assert by_kind[("starttask", n)] == 1
    prepped = {r["node"] for r in runs if r["kind"] == "jobpreparation"}
    ran_tasks = {r["node"] for r in runs if r["kind"] == "task"}
    assert prepped == ran_tasks
    assert all(by_kind[("jobpreparation", n)] == 1 for n in prepped)
    assert {r["node"] for r in runs if r["kind"] == "jobrelease"} == prepped
    # job prep ran before each node's first task, release after its last
    for n in prepped:
        kinds = [r["kind"] for r in runs if r["node"] == n]
        assert (
            kinds[0] == "starttask" and kinds[1] == "jobpreparation" and kinds[-1] == "jobrelease"
        )
    flaky = sorted(
        (r["attempt"], r["exit_code"]) for r in runs if r["task_id"] == "frames-00003-00004"
    )
    assert flaky == [(0, 10), (1, 0)]  # the renderer's failure is reported as render_failed
    rendered = Counter(
        int(line.split()[0]) for line in (state / "rendered.txt").read_text().splitlines()
    )
    assert rendered == Counter(range(1, 9))  # every frame exactly once
    blobs = {b.name for b in store.list_blobs(job_container("pool-retry"))}
    for f in range(1, 9):
        task = f"frames-{(f - 1) // 2 * 2 + 1:05d}-{(f - 1) // 2 * 2 + 2:05d}"
        assert f"{task}/$TaskOutput/frame_{f:04d}.png" in blobs
        assert f"{task}/$TaskLog/stdout.txt" in blobs
        assert f"{task}/$TaskLog/summary.json" in blobs
    assert "frames rendered         8 of 8" in out


def test_failing_task_fails_the_run_after_retries(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "spin.blend").write_bytes(b"x")
    upload_tree(store, src, "assets", "poolfail/")
    doc = make_spec_doc(
        azurite.account_url,
        renderer="custom",
        frames="1",
        command=[sys.executable, "-c", "import sys; sys.exit(7)"],
    )
    doc["job_id"] = "pool-fail"
    doc["assets"][0]["prefix"] = "poolfail/"
    doc["policies"] = {"task_retries": 2}
    code, record, out = _run_pool(tmp_path, doc, nodes=1)
    assert code == 10, out  # render_failed
    attempts = [r for r in record["runs"] if r["kind"] == "task"]
    assert len(attempts) == 3
    assert record["failed_tasks"] == ["frames-00001-00001"]


@pytest.mark.slow
def test_real_blender_job_on_two_nodes(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore, blender_scene: Path
) -> None:
    upload_tree(store, blender_scene, "assets", "spin/")
    doc = make_spec_doc(azurite.account_url, frames="1-4", frames_per_task=2)
    doc["job_id"] = "pool-blender"
    doc["assets"][0]["prefix"] = "spin/"
    code, record, out = _run_pool(tmp_path, doc)
    assert code == 0, out
    container = job_container("pool-blender")
    frames = sorted(b.name for b in store.list_blobs(container) if "/$TaskOutput/" in b.name)
    assert [f.rsplit("/", 1)[1] for f in frames] == [f"frame_{i:04d}.png" for i in range(1, 5)]
    for name in frames:
        assert store.read_blob(container, name)[:8] == b"\x89PNG\r\n\x1a\n"
    log = store.read_blob(container, "frames-00001-00002/$TaskLog/renderer.log").decode()
    assert "Saved:" in log
