"""Stand-ins for Maya, Arnold, V-Ray and 3ds Max run through `node-agent render`: every failure
mode gets its documented exit code, progress is printed, logs are uploaded after a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import make_task, standin

from node_agent.azurite import AzuriteServer
from node_agent.errors import ExitCode
from node_agent.storage import BlobStore

RENDERERS = {
    "maya": ("fake_maya_render.py", "s.mb", "1-2", ["frame_0001.png", "frame_0002.png"]),
    "arnold": ("fake_kick.py", "s.ass", "1", ["frame_0001.png"]),
    "vray": ("fake_vray.py", "s.vrscene", "1-2", ["frame.0001.png", "frame.0002.png"]),
    "3dsmax": ("fake_3dsmaxcmdio.py", "s.max", "1-2", ["frame_0001.png", "frame_0002.png"]),
}
MODES = {
    "ok": ExitCode.OK,
    "license": ExitCode.LICENSE,
    "missing": ExitCode.MISSING_ASSET,
    "oom": ExitCode.OUT_OF_MEMORY,
    "crash": ExitCode.CRASH,
    "noout": ExitCode.MISSING_FRAMES,
}


@pytest.mark.slow
@pytest.mark.parametrize("renderer", list(RENDERERS))
@pytest.mark.parametrize("mode", list(MODES))
def test_standin_outcome_maps_to_its_exit_code(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore, renderer: str, mode: str
) -> None:
    exe, scene, frames, files = RENDERERS[renderer]
    t = make_task(
        tmp_path,
        azurite.account_url,
        task=f"t-{renderer}-{mode}",
        renderer=renderer,
        executable=standin(exe),
        scene=scene,
        frames=frames,
        env={"STANDIN_MODE": mode},
    )
    code = t.run(frames)
    assert code == MODES[mode], t.stderr()
    summary = t.summary()
    assert (
        summary["exit_code"] == int(MODES[mode])
        and summary["exit_class"] == MODES[mode].name.lower()
    )
    prefix = f"t-{renderer}-{mode}/"
    names = {b.name for b in store.list_blobs(t.container, prefix)}
    # logs and the summary are uploaded whatever the outcome
    assert {prefix + "$TaskLog/renderer.log", prefix + "$TaskLog/summary.json"} <= names
    outputs = {prefix + "$TaskOutput/" + f for f in files}
    if mode == "ok":
        assert outputs <= names
        assert "progress: " in t.stderr() and "100%" in t.stderr()
        assert summary["cpu_s"] >= 0 and summary["peak_rss_bytes"] > 0 and summary["wall_s"] > 0
    else:
        assert not outputs & names
        assert "node-agent: error: " in t.stderr() and "Traceback" not in t.stderr()


def test_crash_log_is_uploaded_and_says_crash(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    t = make_task(
        tmp_path,
        azurite.account_url,
        renderer="arnold",
        executable=standin("fake_kick.py"),
        scene="s.ass",
        frames="1",
        env={"STANDIN_MODE": "crash"},
    )
    assert t.run("1") == 14
    log = store.read_blob(t.container, "task-1/$TaskLog/renderer.log").decode()
    assert "rendering..." in log
    summary = json.loads(store.read_blob(t.container, "task-1/$TaskLog/summary.json"))
    assert summary["renderer_signal"] == 11 and "crashed" in summary["reason"]
    assert "stderr.txt" in "".join(
        b.name for b in store.list_blobs(t.container, "task-1/$TaskLog/")
    )


def test_missing_executable_is_exit_10_with_logs(tmp_path: Path, azurite: AzuriteServer) -> None:
    t = make_task(
        tmp_path,
        azurite.account_url,
        renderer="vray",
        executable=str(tmp_path / "no-vray"),
        scene="s.vrscene",
        frames="1",
    )
    assert t.run("1") == 10
    assert "cannot start" in t.stderr() and "no-vray" in t.stderr()
