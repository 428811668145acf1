"""The render task's verdict (exit class and reason) and its machine-readable summary."""

from __future__ import annotations

import re
import time
from typing import Any

from node_agent.batchenv import BatchNode
from node_agent.classify import Finding, OutputMonitor
from node_agent.errors import ExitCode, UploadError
from node_agent.frames import format_frames
from node_agent.output_record import Stored
from node_agent.supervise import RunResult
from node_agent.watcher import Uploaded

# SIGILL, SIGABRT, SIGBUS, SIGFPE, SIGKILL, SIGSEGV as Linux numbers them (not all exist on Windows)
_CRASH_SIGNALS = {4, 6, 7, 8, 9, 11}
_WINDOWS_CRASHES = {0xC0000005, 0xC0000409, 0xC00000FD, 0xC0000374}  # access violation etc.
_LABEL = {
    ExitCode.LICENSE: "license failure",
    ExitCode.OUT_OF_MEMORY: "out of memory",
    ExitCode.MISSING_ASSET: "missing scene or asset",
    ExitCode.CRASH: "renderer crashed",
}


def _key(rel: str) -> str:
    return "/".join(re.split(r"[/\\]", rel))


def missing_frames(outputs: list[Uploaded], expected: dict[int, str], since: float) -> list[int]:
    """Expected frames not in storage from this run: a frame counts as present only when it
    was uploaded under its name, as a regular file or a link's target inside the output
    folder, written by this run (what a file older than the task held does not count)."""
    present = {_key(u.rel): u.stamp[1] / 1e9 for u in outputs}
    missing = []
    for frame, name in sorted(expected.items()):
        mtime = present.get(_key(name))
        if mtime is None or mtime < since - 2.0:
            missing.append(frame)
    return missing


def _crash_code(rc: int) -> int | None:
    """A signal number when the exit code says the renderer crashed (also via a wrapper)."""
    if rc < 0:
        return -rc
    if 128 < rc < 160 and (rc - 128) in _CRASH_SIGNALS:
        return rc - 128
    if (rc & 0xFFFFFFFF) in _WINDOWS_CRASHES:
        return rc
    return None


def _limit(name: str, value: float | None) -> str:
    """A limit named with its value, as every limit-based failure says it."""
    return f"{name} ({value:g} s)" if value is not None else name


def classify(
    result: RunResult | None,
    finding: Finding | None,
    missing: list[int],
    start_error: str = "",
    *,
    timeout_s: float | None = None,
    stall_s: float | None = None,
) -> tuple[ExitCode, str]:
    if result is None:
        return ExitCode.RENDER_FAILED, start_error or "renderer did not start"
    if result.timed_out:
        return (
            ExitCode.TIMEOUT,
            f"renderer exceeded {_limit('render.timeout_s', timeout_s)} and was killed",
        )
    if result.stalled:
        return (
            ExitCode.TIMEOUT,
            f"renderer made no progress for {_limit('render.stall_timeout_s', stall_s)} "
            "and was killed",
        )
    if result.cancelled:
        return (
            ExitCode.RENDER_FAILED,
            "node-agent render was asked to stop (SIGTERM); renderer killed",
        )
    rc = result.returncode or 0
    failed = rc != 0 or bool(missing)
    if failed and finding is not None:
        return finding.code, f"{_LABEL[finding.code]}: {finding.line}"
    crash = _crash_code(rc)
    if crash is not None:
        return ExitCode.CRASH, f"renderer crashed (signal/status {crash})"
    if rc:
        return ExitCode.RENDER_FAILED, f"renderer exited with code {rc}"
    if missing:
        return (
            ExitCode.MISSING_FRAMES,
            f"renderer exited 0 but frames {format_frames(missing)} are missing",
        )
    return ExitCode.OK, "ok"


def verdict(
    result: RunResult | None,
    finding: Finding | None,
    missing: list[int],
    expected: dict[int, str],
    upload_error: UploadError | None,
    not_uploaded: dict[str, str],
    start_error: str = "",
    *,
    timeout_s: float | None = None,
    stall_s: float | None = None,
) -> tuple[ExitCode, str]:
    """The exit class naming the first real cause. `missing`: expected frames not in storage;
    those the renderer wrote but whose upload failed or was refused do not make the renderer's
    verdict (a harmless finding line must not turn a failed upload into 12); when an upload
    failed and the renderer did its part (or only left frames unwritten), it is 17."""
    failed = {_key(rel) for rel in not_uploaded}
    unwritten = [f for f in missing if _key(expected[f]) not in failed]
    code, reason = classify(
        result, finding, unwritten, start_error, timeout_s=timeout_s, stall_s=stall_s
    )
    if upload_error is not None and code in (ExitCode.OK, ExitCode.MISSING_FRAMES):
        reason = str(upload_error)
        if unwritten:
            reason += f"; frames {format_frames(unwritten)} were not written"
        return ExitCode.UPLOAD, reason
    return code, reason


def _iso(t: float | None) -> str | None:
    if not t:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def summary_doc(
    *,
    node: BatchNode,
    frames: list[int],
    command: list[str],
    code: ExitCode,
    reason: str,
    result: RunResult | None,
    monitor: OutputMonitor,
    outputs: list[Uploaded],
    times: dict[str, float],
    preview: str | None,
    not_uploaded: dict[str, str] | None = None,
    skipped: dict[int, Stored] | None = None,
    not_started: bool = False,
) -> dict[str, Any]:
    """`outputs` is exactly what this task put in storage; `not_uploaded` the files that
    were refused or failed (file -> why); `skipped` the frames an earlier run of this task
    had already stored whole, not rendered again (phases/render_rerun); `not_started`: the
    renderer was not started (Batch's retry of an attempt no retry fixes)."""
    skipped = skipped or {}
    last_closed = max((u.stamp[1] / 1e9 for u in outputs), default=0.0)
    started = times.get("renderer_started_at")
    overhead: dict[str, float | None] = {
        "start_to_renderer_s": round(started - times["agent_started_at"], 3) if started else None,
        "last_frame_to_uploads_done_s": (
            round(times["uploads_done_at"] - last_closed, 3) if last_closed else None
        ),
    }
    return {
        "job": node.job_id,
        "task": node.task_id,
        "node": node.node_id,
        "frames": format_frames(frames),
        "rendered_frames": (
            "" if not_started else format_frames([f for f in frames if f not in skipped])
        ),
        "command": command if len(skipped) < len(frames) and not not_started else [],
        "exit_class": code.name.lower(),
        "exit_code": int(code),
        "reason": reason,
        "renderer_returncode": result.returncode if result else None,
        "renderer_signal": result.signal if result else None,
        "wall_s": round(result.wall_s, 3) if result else 0.0,
        "cpu_s": round(result.cpu_s, 3) if result else 0.0,
        "peak_rss_bytes": result.peak_rss if result else 0,
        "log_truncated": result.log_truncated if result else False,
        "progress": monitor.describe(),
        "findings": {c.name.lower(): f.line for c, f in monitor.findings.items()},
        "times": {k: _iso(v) for k, v in times.items()},
        "overhead": overhead,
        "outputs": [
            {
                "file": u.rel,
                "bytes": u.bytes,
                "frame": u.frame,
                "blob": u.blob,
                "url": u.url,
                "uploaded_at": _iso(u.done_at),
            }
            for u in outputs
        ],
        "not_uploaded": [{"file": f, "reason": r} for f, r in (not_uploaded or {}).items()],
        "skipped": [
            {"frame": f, "blob": s.blob, "bytes": s.size} for f, s in sorted(skipped.items())
        ],
        "preview": preview,
        "finished_at": _iso(time.time()),
    }
