"""Output classification: renderer log patterns, progress lines and the exit-code verdict."""

from __future__ import annotations

import pytest

from node_agent.classify import Finding, OutputMonitor
from node_agent.errors import ExitCode
from node_agent.phases.render_result import classify
from node_agent.supervise import RunResult


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


def _result(rc: int | None, **kw: bool) -> RunResult:
    flags = {"timed_out": False, "stalled": False, "cancelled": False, **kw}
    sig = -rc if rc is not None and rc < 0 else None
    return RunResult(
        rc, sig, wall_s=1, cpu_s=1, peak_rss=1, log_truncated=False, started_at=0, **flags
    )


@pytest.mark.parametrize(
    ("timed_out", "stalled", "expected"),
    [
        (True, False, "renderer exceeded render.timeout_s (5400 s) and was killed"),
        (False, True, "no progress for render.stall_timeout_s (900 s) and was killed"),
    ],
)
def test_a_limit_based_failure_names_the_limits_value(
    timed_out: bool, stalled: bool, expected: str
) -> None:
    result = RunResult(
        returncode=None,
        signal=9,
        timed_out=timed_out,
        stalled=stalled,
        cancelled=False,
        wall_s=1.0,
        cpu_s=0.0,
        peak_rss=0,
        log_truncated=False,
        started_at=0.0,
    )
    code, reason = classify(result, None, [], timeout_s=5400, stall_s=900)
    assert code == ExitCode.TIMEOUT
    assert expected in reason
