"""Batch retries every non-zero exit (ExitOptions has no "do not retry"); a frame task whose
previous attempt ended with a cause no retry fixes ends at once on its retry, without
starting the renderer, and still uploads its logs and summary (exitpolicy, render_rerun).

Real `node-agent render` processes, real Azurite; the renderer is the V-Ray stand-in, which
writes STANDIN_ENV_DUMP when it starts (the marker that it ran). Batch's retry is played as
Batch runs it: the same job, the same task id, the same spec, on another node folder (or
the same one).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import kill_tree, make_task, standin, start_agent
from helpers.task import Task

from node_agent.azurite import AzuriteServer
from node_agent.errors import ExitCode
from node_agent.storage import BlobStore

pytestmark = pytest.mark.slow


def _task(root: Path, azurite: AzuriteServer, task: str, marker: Path, **render: Any) -> Task:
    env = {"STANDIN_ENV_DUMP": str(marker), **render.pop("env", {})}
    return make_task(
        root,
        azurite.account_url,
        task=task,
        renderer="vray",
        executable=standin("fake_vray.py"),
        scene="s.vrscene",
        frames="1-2",
        kill_grace_s=1,
        env=env,
        **render,
    )


def _stored_summary(store: BlobStore, t: Task, task: str) -> dict[str, Any]:
    blob = store.container(t.container).get_blob_client(f"{task}/$TaskLog/summary.json")
    return dict(json.loads(blob.download_blob().readall()))


def _stored_log(store: BlobStore, t: Task, task: str, name: str) -> str:
    blob = store.container(t.container).get_blob_client(f"{task}/$TaskLog/{name}")
    return bytes(blob.download_blob().readall()).decode(errors="replace")


CASES = {
    # mode, spec, exit, the previous attempt's reason as the retry names it, exitpolicy's why
    "timeout": (
        "hang",
        {"timeout_s": 2},
        ExitCode.TIMEOUT,
        "exit 16 timeout: renderer exceeded render.timeout_s (2 s) and was killed",
        "the same frames take the same time",
    ),
    "missing_frames": (
        "noout",
        {},
        ExitCode.MISSING_FRAMES,
        "exit 15 missing_frames: renderer exited 0 but frames 1-2 are missing",
        "renderer exited 0 without its frames",
    ),
    "out_of_memory": (
        "oom",
        {},
        ExitCode.OUT_OF_MEMORY,
        "exit 13 out_of_memory: out of memory: ",
        "the same frames need the same memory",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_retry_after_a_cause_no_retry_fixes_ends_at_once(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore, case: str
) -> None:
    mode, render, code, previous, why = CASES[case]
    task = f"t-nocure-{case}"
    marker = tmp_path / "renderer-started"
    first = _task(tmp_path / "node1", azurite, task, marker, env={"STANDIN_MODE": mode}, **render)
    assert first.run("1-2") == code, first.stderr()
    assert marker.exists()  # the renderer ran the first time
    marker.unlink()

    # Batch's retry: same job, task id and spec, on another node
    again = _task(tmp_path / "node2", azurite, task, marker, env={"STANDIN_MODE": mode}, **render)
    t0 = time.monotonic()
    assert again.run("1-2") == code, again.stderr()
    took = time.monotonic() - t0
    assert not marker.exists(), "the renderer started on the retry"
    assert not (again.node.task_dir / "renderer.log").exists()
    expected = f"not retried: the previous attempt of this task ended with {previous}"
    err = again.stderr()
    assert expected in err and f"; exitpolicy: {why}" in err, err
    assert "Traceback" not in err
    assert "running: " not in err  # no command line logged as if it ran
    lines = [ln for ln in err.splitlines() if "node-agent: error:" in ln]
    assert len(lines) == 1 and lines[0].count("not retried") == 1, lines
    s = again.summary()
    assert s["exit_code"] == int(code) and s["reason"].startswith(expected), s["reason"]
    assert s["renderer_returncode"] is None and s["command"] == [] and s["outputs"] == []
    # logs and the summary still uploaded: the stored ones are this attempt's
    stored = _stored_summary(store, again, task)
    assert stored["reason"] == s["reason"]
    assert expected in _stored_log(store, again, task, "stderr.txt")
    assert took < 20, took

    # a third attempt (on the same node folder as the second) ends the same way
    assert again.run("1-2") == code and not marker.exists()


def test_a_retry_after_a_transient_cause_renders_again(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """Exit 11 (the license server was busy): Batch's retry is what it needs."""
    task = "t-transient-license"
    marker = tmp_path / "renderer-started"
    first = _task(tmp_path / "node1", azurite, task, marker, env={"STANDIN_MODE": "license"})
    assert first.run("1-2") == ExitCode.LICENSE, first.stderr()
    assert marker.exists()
    marker.unlink()
    again = _task(tmp_path / "node1", azurite, task, marker, env={"STANDIN_MODE": "license"})
    assert again.run("1-2") == ExitCode.LICENSE, again.stderr()
    assert marker.exists(), "a transient cause must be retried: the renderer did not start"
    assert "not retried" not in again.stderr()


def test_a_changed_spec_renders_again(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """Same job and task id, another spec (a TD raised render.timeout_s): not the same task."""
    task = "t-newspec"
    marker = tmp_path / "renderer-started"
    hang = {"STANDIN_MODE": "hang"}
    first = _task(tmp_path / "node1", azurite, task, marker, env=hang, timeout_s=2)
    assert first.run("1-2") == ExitCode.TIMEOUT, first.stderr()
    marker.unlink()
    again = _task(tmp_path / "node2", azurite, task, marker, env=hang, timeout_s=3)
    assert again.run("1-2") == ExitCode.TIMEOUT, again.stderr()
    assert marker.exists() and "not retried" not in again.stderr()
    assert "render.timeout_s (3 s)" in again.summary()["reason"]


def test_an_attempt_killed_without_a_summary_is_rendered_again(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """A spot node preempted mid-task leaves no verdict: the retry renders (and here times
    out for itself, exit 16, naming its own limit)."""
    task = "t-preempted"
    marker = tmp_path / "renderer-started"
    pids = tmp_path / "pids.json"  # written once the renderer started its grandchild
    hang = {"STANDIN_MODE": "hang", "STANDIN_PIDS": str(pids)}
    first = _task(tmp_path / "node1", azurite, task, marker, env=hang, timeout_s=3)
    td = first.node.task_dir
    with open(td / "stdout.txt", "ab") as out, open(td / "stderr.txt", "ab") as err:
        proc = start_agent(
            first.args("1-2"), first.env, stdout=out, stderr=err, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        while not pids.exists():
            assert proc.poll() is None and time.monotonic() < deadline, first.stderr()
            time.sleep(0.05)
        time.sleep(0.2)
    finally:
        kill_tree(proc.pid)
        proc.wait(30)
    kill_tree(json.loads(pids.read_text())["grandchild"])
    marker.unlink()
    pids.unlink()
    again = _task(tmp_path / "node2", azurite, task, marker, env=hang, timeout_s=3)
    assert again.run("1-2") == ExitCode.TIMEOUT, again.stderr()
    assert marker.exists() and "not retried" not in again.stderr()


def test_a_timeout_after_stored_frames_renders_the_rest_on_retry(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """render.timeout_s hit after frame 1 was stored: not the same frames next time (the
    retry renders only frame 2, with a limit of its own)."""
    task = "t-timeout-progress"
    marker = tmp_path / "renderer-started"
    go = tmp_path / "go"  # the stand-in waits for it before its second frame
    wait = {"STANDIN_MODE": "wait", "STANDIN_MARKER": str(go)}
    first = _task(tmp_path / "node1", azurite, task, marker, env=wait, timeout_s=4)
    assert first.run("1-2") == ExitCode.TIMEOUT, first.stderr()
    assert [o["frame"] for o in first.summary()["outputs"]] == [1]
    marker.unlink()
    go.touch()
    again = _task(tmp_path / "node2", azurite, task, marker, env=wait, timeout_s=4)
    assert again.run("1-2") == 0, again.stderr()
    s = again.summary()
    assert marker.exists() and s["rendered_frames"] == "2" and "not retried" not in s["reason"]
