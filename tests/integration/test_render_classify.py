"""Stand-ins for Maya, Arnold, V-Ray and 3ds Max run through `node-agent render`: every failure
mode gets its documented exit code, progress is printed, logs are uploaded after a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import make_task, standin

from node_agent.azurite import AzuriteServer
from node_agent.classify import Finding, OutputMonitor
from node_agent.errors import ExitCode
from node_agent.phases.render_result import classify
from node_agent.storage import BlobStore
from node_agent.supervise import RunResult

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


@pytest.mark.parametrize(
    ("renderer", "line", "code"),
    [
        (
            "blender",
            "Error: Cannot read file '/x/spin.blend': No such file or directory",
            ExitCode.MISSING_ASSET,
        ),
        ("blender", "Error: System is out of GPU memory", ExitCode.OUT_OF_MEMORY),
        ("blender", "Writing: /tmp/spin.crash.txt", ExitCode.CRASH),
        ("arnold", "00:00:00 ERROR | [clm] license not available", ExitCode.LICENSE),
        ("vray", "error: Could not obtain a license (-100)", ExitCode.LICENSE),
        ("maya", "// Error: [mtoa] License was not obtained", ExitCode.LICENSE),
        ("3dsmax", "Missing external file: C:\\maps\\a.jpg", ExitCode.MISSING_ASSET),
    ],
)
def test_patterns(renderer: str, line: str, code: ExitCode) -> None:
    m = OutputMonitor(renderer)
    m("an ordinary line")
    m(line)
    f = m.failure()
    assert f is not None and f.code == code and f.line == line.strip()


def test_progress_lines_blender_arnold_vray() -> None:
    seen: list[str] = []
    m = OutputMonitor("blender", report=seen.append, every_s=3600)
    m("Fra:3 Mem:10M | Time:00:01 | Sample 16/64")
    m("Fra:3 Mem:10M | Time:00:02 | Sample 32/64")  # same frame, within every_s: no new line
    m("Saved: '/out/frame_0003.png'")
    m("Fra:3 Mem:10M | Time:00:03 | Sample 64/64")
    assert seen == [
        "progress: frame 3, 25%",
        "progress: frame 3, 50%, 1 frame file(s) saved",
        "progress: frame 3, 100%, 1 frame file(s) saved",
    ]
    a = OutputMonitor("arnold")
    a("00:00:05 500MB | 45% done - 12 rays/pixel")
    assert a.percent == 45.0
    v = OutputMonitor("vray")
    v("[2026/Nov/22|04:00:00] Rendering image...: 62.50% [ 0h  0m  1.0s]")
    assert v.percent == 62.5


def _result(rc: int | None, **kw: bool) -> RunResult:
    flags = {"timed_out": False, "stalled": False, "cancelled": False, **kw}
    sig = -rc if rc is not None and rc < 0 else None
    return RunResult(
        rc, sig, wall_s=1, cpu_s=1, peak_rss=1, log_truncated=False, started_at=0, **flags
    )


@pytest.mark.parametrize(
    ("rc", "flags", "finding", "missing", "code"),
    [
        (0, {}, None, [], ExitCode.OK),
        (0, {}, None, [3], ExitCode.MISSING_FRAMES),
        (0, {}, ExitCode.LICENSE, [], ExitCode.OK),  # a warning on a complete render
        (0, {}, ExitCode.LICENSE, [1], ExitCode.LICENSE),  # watermark-free failure: no frames
        (1, {}, ExitCode.MISSING_ASSET, [1], ExitCode.MISSING_ASSET),
        (1, {}, None, [1], ExitCode.RENDER_FAILED),
        (-11, {}, None, [1], ExitCode.CRASH),
        (139, {}, None, [1], ExitCode.CRASH),  # SIGSEGV reported by a wrapper script
        (0xC0000005, {}, None, [1], ExitCode.CRASH),  # Windows access violation
        (-9, {"timed_out": True}, ExitCode.LICENSE, [1], ExitCode.TIMEOUT),
        (-9, {"stalled": True}, None, [1], ExitCode.TIMEOUT),
    ],
)
def test_verdict(
    rc: int, flags: dict[str, bool], finding: ExitCode | None, missing: list[int], code: ExitCode
) -> None:
    f = Finding(finding, "a line") if finding else None
    assert classify(_result(rc, **flags), f, missing)[0] == code
