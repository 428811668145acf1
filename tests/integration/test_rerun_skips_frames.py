"""A task that runs again after its node went away renders only the frames not in storage.

Real Blender, real Azurite, `node-agent render --frames 1-4` as a task process: its whole
process tree is killed (SIGKILL, as a preempted spot node) once frames 1 and 2 are in
storage; the same task then runs on another node and must render only frames 3 and 4.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import time
from pathlib import Path

import pytest
from helpers import kill_tree, make_task, start_agent
from helpers.task import Task

from node_agent.azurite import AzuriteServer
from node_agent.errors import StorageError
from node_agent.storage import BlobStore

pytestmark = pytest.mark.skipif(shutil.which("blender") is None, reason="needs Blender")

# Blender waits before rendering frame 3 or later while HOLD exists: the first run is
# killed there, with frames 1 and 2 rendered and uploaded. No braces: extra_args are
# templates ({placeholder}).
_HOLD = """import bpy, os, time
HOLD = %r
def hold(scene, *rest):
    while scene.frame_current >= 3 and os.path.exists(HOLD):
        time.sleep(0.1)
bpy.app.handlers.render_pre.append(hold)
"""


# its own task id: Azurite lives for the whole session and other tests render task-1 of
# job-a; their frames must not look like this run's first two
TASK = "task-rerun"


def _task(root: Path, azurite: AzuriteServer, scene: Path, hold: Path) -> Task:
    t = make_task(
        root,
        azurite.account_url,
        task=TASK,
        renderer="blender",
        scene="spin.blend",
        frames="1-4",
        threads=1,
        extra_args=["--python-expr", _HOLD % str(hold)],
    )
    assets = t.node.job_assets_dir()
    shutil.copy(scene / "spin.blend", assets)
    shutil.copytree(scene / "textures", assets / "textures")
    return t


def _blobs(store: BlobStore, t: Task) -> dict[str, str]:
    try:
        return {b.name: b.etag for b in store.list_blobs(t.container, f"{TASK}/$TaskOutput/")}
    except StorageError:  # the container is not there yet
        return {}


def _rendered(t: Task) -> set[int]:
    log = (t.node.task_dir / "renderer.log").read_text(errors="replace")
    return {int(m) for m in re.findall(r"^Fra:(\d+) ", log, re.MULTILINE)}


FRAMES = [f"{TASK}/$TaskOutput/frame_{f:04d}.png" for f in range(1, 5)]


@pytest.mark.slow
def test_a_rerun_after_preemption_renders_only_the_missing_frames(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore, blender_scene: Path
) -> None:
    hold = tmp_path / "hold"
    hold.touch()
    first = _task(tmp_path / "node1", azurite, blender_scene, hold)
    td = first.node.task_dir
    with open(td / "stdout.txt", "ab") as out, open(td / "stderr.txt", "ab") as err:
        proc = start_agent(
            first.args("1-4"), first.env, stdout=out, stderr=err, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 300
        while not set(FRAMES[:2]) <= set(_blobs(store, first)):
            assert proc.poll() is None, first.stderr()
            assert time.monotonic() < deadline, first.stderr()
            time.sleep(0.2)
        assert _rendered(first) >= {1, 2} and 4 not in _rendered(first)
    finally:
        kill_tree(proc.pid)
        proc.wait(30)
    before = _blobs(store, first)
    assert set(before) == set(FRAMES[:2])  # frame 3 was held, the node went away first
    hold.unlink()

    again = _task(tmp_path / "node2", azurite, blender_scene, hold)  # the task, requeued
    assert again.run("1-4", timeout=600) == 0, again.stderr()

    assert _rendered(again) == {3, 4}  # Blender's own "Fra:N" lines: 1 and 2 not again
    assert "re-run: frames 1-2 already in storage" in again.stderr()
    s = again.summary()
    assert s["exit_class"] == "ok", s["reason"]
    assert [k["frame"] for k in s["skipped"]] == [1, 2]
    assert s["frames"] == "1-4" and s["rendered_frames"] == "3-4"
    assert s["command"][s["command"].index("-f") + 1] == "3,4"
    assert [o["frame"] for o in s["outputs"]] == [3, 4]

    after = _blobs(store, again)
    assert set(FRAMES) <= set(after)
    for name in FRAMES[:2]:
        assert after[name] == before[name], f"{name} was uploaded again"
    container = store.container(again.container)
    for name in FRAMES:
        blob = container.get_blob_client(name)
        data = blob.download_blob().readall()
        props = blob.get_blob_properties()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) == props.size
        md5 = bytes(props.content_settings.content_md5)
        assert md5 == hashlib.md5(data, usedforsecurity=False).digest(), name
        assert props.metadata["task"] == TASK
        assert props.metadata["frame"] == str(int(name[-8:-4]))
