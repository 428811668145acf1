"""The local pool plays Batch: start task per node, job prep before tasks, retries, job release."""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest
import yaml
from helpers import (
    STANDINS,
    make_spec_doc,
    pool_job_doc,
    run_cli,
    run_local_pool,
    stand_in_job_doc,
    upload_tree,
)

from node_agent.azurite import AzuriteServer
from node_agent.conventions import job_container
from node_agent.jobplan import start_task_command
from node_agent.localpool import node as localnode
from node_agent.localpool.node import LocalNode, TaskRun
from node_agent.storage import BlobStore


def _run_pool(
    tmp_path: Path, doc: dict, nodes: int = 2, slots: int = 1, extra: tuple[str, ...] = ()
) -> tuple[int, dict, str]:
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(doc))
    res = run_local_pool(spec, tmp_path / "pool", nodes, slots, *extra)
    record = json.loads((tmp_path / "pool" / "localpool" / f"run-{doc['job_id']}.json").read_text())
    return res.returncode, record, res.stdout + res.stderr


def test_two_nodes_schedule_retry_and_release(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    doc, state = stand_in_job_doc(
        azurite.account_url,
        store,
        tmp_path,
        "pool-retry",
        frames="1-8",
        frames_per_task=2,
        fail_task="frames-00003-00004",
    )
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
    doc = pool_job_doc(
        azurite.account_url,
        store,
        tmp_path,
        "pool-fail",
        prefix="poolfail/",
        frames="1",
        command=[sys.executable, "-c", "import sys; sys.exit(7)"],
    )
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


def _pool_config(tmp_path: Path, node_config: dict) -> tuple[str, ...]:
    cfg = tmp_path / "pool.yaml"
    cfg.write_text(yaml.safe_dump({"node_config": node_config}))
    return ("--pool-config", str(cfg))


def test_unfit_node_is_unusable_and_runs_no_task(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """The start task gets the pool config; a node that fails its health check is left alone."""
    doc, _ = stand_in_job_doc(
        azurite.account_url,
        store,
        tmp_path,
        "pool-unfit",
        frames="1-4",
    )
    # a renderer that answers its version check on node 1 only
    check = {
        "name": "blender",
        "executable": sys.executable,
        "version_args": [
            "-c",
            "import os, sys; sys.exit(os.environ['AZ_BATCH_NODE_ID'] != 'node-1')",
        ],
    }
    extra = _pool_config(tmp_path, {"renderers": [check], "cache_budget_mb": 100})
    code, record, out = _run_pool(tmp_path, doc, nodes=2, extra=extra)
    assert code == 0, out
    starts = {r["node"]: r for r in record["runs"] if r["kind"] == "starttask"}
    assert {r["command_line"] for r in starts.values()} == {start_task_command("pool-config.json")}
    assert starts["node-1"]["exit_code"] == 0
    assert starts["node-2"]["exit_code"] == 20  # health
    [bad] = record["unusable_nodes"]
    assert bad["node"] == "node-2" and bad["exit_code"] == 20
    assert bad["reason"].startswith("node unhealthy: renderer-blender:")
    # nothing of the job ran on the unusable node; everything ran on the other one
    assert {r["node"] for r in record["runs"] if r["kind"] != "starttask"} == {"node-1"}
    tasks = [r["task_id"] for r in record["runs"] if r["kind"] == "task"]
    assert sorted(tasks) == [f"frames-{f:05d}-{f:05d}" for f in range(1, 5)]
    # the start task applied the pool config it was given (the copy it keeps names no secret)
    node1 = tmp_path / "pool" / "localpool" / "nodes" / "node-1" / "shared" / "node_agent"
    kept = json.loads((node1 / "state" / "pool-config.json").read_text())
    assert kept["cache_budget_mb"] == 100 and kept["renderers"][0]["executable"] == sys.executable
    assert "unusable nodes          node-2 (exit 20)" in out


def test_start_task_failing_everywhere_leaves_no_usable_node(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    doc, state = stand_in_job_doc(
        azurite.account_url,
        store,
        tmp_path,
        "pool-nomaya",
        frames="1-2",
    )
    extra = _pool_config(tmp_path, {"renderers": ["maya"]})  # no `Render` on this machine
    code, record, out = _run_pool(tmp_path, doc, nodes=1, extra=extra)
    assert code == 20, out
    assert [(r["kind"], r["exit_code"]) for r in record["runs"]] == [("starttask", 20)]
    assert record["unusable_nodes"][0]["reason"].startswith(
        "node unhealthy: renderer-maya: renderer 'maya' not found"
    )
    assert record["tasks_not_run"] == ["frames-00001-00001", "frames-00002-00002"]
    assert "node-agent: error: no usable node: the start task failed on every node" in out
    assert not (state / "rendered.txt").exists()


TERMINATING_RENDERER = """
import os, sys, time
out, frames, state, task = sys.argv[1:5]
open(os.path.join(state, "started-" + task), "w").close()
def wait_for(name):
    for _ in range(1200):
        if os.path.exists(os.path.join(state, name)):
            return True
        time.sleep(0.1)
    return False
if task == "frames-00001-00001":  # runs until its job ends (or 120 s, then renders)
    wait_for("never")
elif task == "frames-00002-00002":  # once task 1 runs: a texture is missing (exit 12)
    wait_for("started-frames-00001-00001")
    print("Error: missing texture tex/wood.png", file=sys.stderr)
    sys.exit(1)
os.makedirs(out, exist_ok=True)
for n in [int(frames)]:
    open(os.path.join(out, "frame_%04d.png" % n), "wb").write(b"frame")
    open(os.path.join(state, "rendered.txt"), "a").write(task + "\\n")
"""


def test_exit_condition_terminate_ends_the_job(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """Exit 12's jobAction terminate (from the job JSON): no task starts after it, the running
    one is terminated, job release still runs, and the run says which task ended the job."""
    state = tmp_path / "state"
    state.mkdir()
    script = tmp_path / "renderer.py"
    script.write_text(TERMINATING_RENDERER)
    command = [sys.executable, str(script), "{output_dir}", "{frames}", str(state), "{task_id}"]
    doc = pool_job_doc(
        azurite.account_url, store, tmp_path, "pool-terminate", frames="1-4", command=command
    )
    doc["policies"] = {"task_retries": 0}
    code, record, out = _run_pool(tmp_path, doc, nodes=1, slots=2)
    assert code == 12, out  # missing_asset
    assert record["ended_by"] == {
        "action": "terminate",
        "task": "frames-00002-00002",
        "exit_code": 12,
    }
    tasks = {r["task_id"]: r for r in record["runs"] if r["kind"] == "task"}
    assert set(tasks) == {"frames-00001-00001", "frames-00002-00002"}
    assert tasks["frames-00001-00001"]["cancelled"] is True  # terminated with its job
    assert record["cancelled_tasks"] == ["frames-00001-00001"]
    assert record["tasks_not_run"] == ["frames-00003-00003", "frames-00004-00004"]
    assert not (state / "started-frames-00003-00003").exists()
    assert not (state / "rendered.txt").exists()
    kinds = [r["kind"] for r in record["runs"]]
    assert kinds[0] == "starttask" and kinds[1] == "jobpreparation" and kinds[-1] == "jobrelease"
    assert (
        "TERMINATED by task frames-00002-00002 (exit 12 missing_asset: exitConditions jobAction "
        "terminate)" in out
    )


def test_local_run_executes_the_tasks_job_json_prints(
    tmp_path: Path,
    azurite: AzuriteServer,
    store: BlobStore,
) -> None:
    """`node-agent local run` runs the document `node-agent batch job-json` prints: the same
    tasks with the same command lines, retried as its constraints allow."""
    doc, _ = stand_in_job_doc(
        azurite.account_url,
        store,
        tmp_path,
        "batch-json-run",
        frames="1-5",
        frames_per_task=2,
        fail_task="frames-00003-00004",  # fails its first attempt
    )
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(doc))
    settings = _pool_config(tmp_path, {"cache_budget_mb": 100})
    printed = run_cli(["batch", "job-json", str(spec), *settings])
    assert printed.returncode == 0, printed.stderr
    batch_doc = json.loads(printed.stdout)
    code, record, out = _run_pool(tmp_path, doc, nodes=1, extra=settings)
    assert code == 0, out
    # the job JSON the run executed is, literally, the printed one
    assert json.loads(Path(record["job_json"]).read_text()) == batch_doc
    ran = [(r["task_id"], r["command_line"]) for r in record["runs"] if r["kind"] == "task"]
    printed = [(t["id"], t["commandLine"]) for t in batch_doc["tasks"]]
    assert set(ran) == set(printed)  # the same tasks and command lines, no more, no fewer
    attempts = Counter(tid for tid, _ in ran)
    flaky = {t["id"]: t for t in batch_doc["tasks"]}["frames-00003-00004"]
    assert flaky["constraints"]["maxTaskRetryCount"] >= 1
    assert attempts == Counter({tid: 1 for tid, _ in printed}) + Counter(["frames-00003-00004"])
    job = batch_doc["job"]
    for kind, key in (("jobpreparation", "jobPreparationTask"), ("jobrelease", "jobReleaseTask")):
        lines = {r["command_line"] for r in record["runs"] if r["kind"] == kind}
        assert lines == {job[key]["commandLine"]}


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_cancelled_task_ignoring_sigterm_loses_its_whole_tree_after_the_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task its job cancels is notified (SIGTERM to its group), then after the grace period
    killed, its children included: also a grandchild that called setsid and ignores SIGTERM."""
    monkeypatch.setattr(localnode, "CANCEL_GRACE_S", 1.0)
    node = LocalNode("node-1", tmp_path / "node", "localpool", "token")
    node.make_dirs()
    pid_file = tmp_path / "pids.json"
    env = {"STANDIN_MODE": "hang", "STANDIN_PIDS": str(pid_file)}
    command = shlex.join([sys.executable, str(STANDINS / "fake_kick.py"), "-i", "a.ass"])
    cancel = threading.Event()
    runs: list[TaskRun] = []
    worker = threading.Thread(
        target=lambda: runs.append(node.run("task", command, tmp_path / "t1", env, cancel=cancel))
    )
    worker.start()
    deadline = time.monotonic() + 60
    while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = json.loads(pid_file.read_text())
    tree = [pids["renderer"], pids["grandchild"]]
    try:
        assert not any(_gone(p) for p in tree)
        cancel.set()
        t0 = time.monotonic()
        worker.join(30)
        assert runs and runs[0].cancelled, runs
        assert time.monotonic() - t0 >= 0.9  # it ignored SIGTERM: the grace period ran out
        deadline = time.monotonic() + 5
        while not all(_gone(p) for p in tree) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [p for p in tree if not _gone(p)] == [], pids
    finally:
        for p in tree:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass


def test_rerun_of_a_job_id_reports_only_its_own_run(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """A second `local run` of the same job id (other chunks: other task folders) counts the
    frames it rendered, not the first run's left in place; node ids are their folders."""
    doc, _ = stand_in_job_doc(
        azurite.account_url,
        store,
        tmp_path,
        "rerun",
        frames="1-4",
        frames_per_task=2,
    )
    code, record, out = _run_pool(tmp_path, doc, nodes=1)
    assert code == 0, out
    assert "frames rendered         4 of 4" in out
    doc["render"]["frames"] = "1-3"  # type: ignore[index]
    doc["render"]["frames_per_task"] = 3  # type: ignore[index]
    # one small asset changed: the re-sync moves exactly it, and the summary says how much
    # in a unit that shows it (it said 'bytes synced 0.00 MB')
    (tmp_path / "src" / "spin.blend").write_bytes(b"y" * 1500)
    store.upload_file(tmp_path / "src" / "spin.blend", "assets", "rerun/spin.blend")
    code, record, out = _run_pool(tmp_path, doc, nodes=1)
    assert code == 0, out
    assert "frames rendered         3 of 3" in out, out
    assert "bytes synced            1.5 kB" in out, out
    assert record["frames"] == 3
    nodes = tmp_path / "pool" / "localpool" / "nodes"
    assert sorted(p.name for p in nodes.iterdir()) == record["nodes"] == ["node-1"]


def test_local_run_that_started_an_empty_azurite_says_so_when_assets_are_missing(
    tmp_path: Path,
) -> None:
    """Nothing answers on the spec's Azurite port: local run starts its own, empty one, so
    the pushed assets are not there; the 'not found' names that and what to do instead of
    leaving the user to guess why storage they pushed to is empty."""
    from node_agent.azurite import free_port

    port = free_port()
    doc = make_spec_doc(f"http://127.0.0.1:{port}/devstoreaccount1")
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(doc))
    res = run_local_pool(spec, tmp_path / "pool", 1, 1)
    code, out = res.returncode, res.stdout + res.stderr
    assert code in (4, 5, 12), out
    assert f"nothing answered on port {port}" in out, out
    assert "node-agent azurite start" in out
    assert "Traceback" not in out
    assert not any(
        "azurite" in " ".join(p.info["cmdline"] or [])
        and str(port) in " ".join(p.info["cmdline"] or [])
        for p in psutil.process_iter(["cmdline"])
    ), "the Azurite local run started is still running"


def test_local_run_again_of_a_job_id_renders_again_after_a_final_verdict(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """A task whose attempt ended with a cause no retry fixes (exit 15: the renderer wrote
    no frame) is not rendered again by Batch's retry of that submission; but a new `local
    run` of the same job id with the same spec is a new submission (spec.submission_id) and
    renders again: the earlier run's ledger must not make it end at once."""
    ran = tmp_path / "ran.txt"
    doc = pool_job_doc(
        azurite.account_url,
        store,
        tmp_path,
        "verdict-rerun",
        frames="1",
        command=[sys.executable, "-c", f"open({str(ran)!r}, 'a').write('ran\\n')"],
    )
    code, _record, out = _run_pool(tmp_path, doc, nodes=1)
    assert code == 15, out
    assert ran.read_text().count("ran") == 1, out  # the retry ended at once, not rendered
    code, _record, out = _run_pool(tmp_path, doc, nodes=1)
    assert code == 15, out
    assert ran.read_text().count("ran") == 2, out  # the second submission rendered again
