"""A re-run's plan: which frames an earlier run of the task stored whole (its ledger and
the blobs as listed now), and what is rendered."""

from __future__ import annotations

import hashlib
import io

from node_agent import renderers
from node_agent.errors import ExitCode
from node_agent.output_record import Ledger, Sent, Stored, digest
from node_agent.outputs import Layout
from node_agent.phases.render_rerun import not_retried, plan, verdict_record
from node_agent.supervise import RunResult

LAYOUT = Layout("job-job-a", "task-1")
EXPECTED = {f: f"frame_{f:04d}.png" for f in range(1, 5)}
MD5 = hashlib.md5(b"png", usedforsecurity=False).digest()


def _blob(frame: int) -> str:
    return LAYOUT.output(EXPECTED[frame])


def _stored(frame: int, **kw: object) -> Stored:
    fields: dict[str, object] = {"blob": _blob(frame), "size": 3, "content_md5": MD5}
    fields["etag"] = f"0x{frame}"
    fields.update(kw)
    return Stored(**fields)  # type: ignore[arg-type]


def _ledger(*frames: int, spec: str = "s1", task: str = "task-1", job: str = "job-a") -> Ledger:
    ledger = Ledger(job, task, spec)
    for f in frames:
        ledger.add(_blob(f), Sent(3, MD5, f'"0x{f}"'))
    return ledger


def _plan(
    renderer: str, stored: list[Stored], ledger: Ledger | None, template: bool = False
) -> tuple[list[int], list[int]]:
    fresh = Ledger("job-a", "task-1", "s1")
    descriptor = renderers.get(renderer)
    p = plan([1, 2, 3, 4], EXPECTED, stored, ledger, LAYOUT, fresh, descriptor, template)
    return p.render, sorted(p.skipped)


def test_frames_the_ledger_holds_and_storage_still_has_are_skipped() -> None:
    both = [_stored(1), _stored(2)]
    assert _plan("blender", both, _ledger(1, 2)) == ([3, 4], [1, 2])
    assert _plan("blender", [_stored(1), _stored(3)], _ledger(1, 3)) == ([2, 4], [1, 3])
    assert _plan("vray", [_stored(2)], _ledger(2)) == ([1, 3, 4], [2])
    every = [_stored(f) for f in range(1, 5)]
    assert _plan("blender", every, _ledger(1, 2, 3, 4)) == ([], [1, 2, 3, 4])


def test_anything_the_ledger_does_not_vouch_for_is_rendered_again() -> None:
    one = [_stored(1)]
    assert _plan("blender", one, None) == ([1, 2, 3, 4], [])  # no ledger
    assert _plan("blender", one, _ledger(2)) == ([1, 2, 3, 4], [])  # not in it
    assert _plan("blender", one, _ledger(1, spec="s0")) == ([1, 2, 3, 4], [])  # another spec
    assert _plan("blender", one, _ledger(1, task="task-2")) == ([1, 2, 3, 4], [])
    assert _plan("blender", one, _ledger(1, job="job-b")) == ([1, 2, 3, 4], [])
    for changed in (
        _stored(1, etag="0x9"),  # rewritten since
        _stored(1, size=4),
        _stored(1, content_md5=None),
        _stored(1, content_md5=b"x" * 16),
    ):
        assert _plan("blender", [changed], _ledger(1)) == ([1, 2, 3, 4], []), changed
    assert _plan("blender", [], _ledger(1)) == ([1, 2, 3, 4], [])  # blob gone


def test_range_renderers_skip_only_when_the_rest_is_a_range() -> None:
    assert _plan("maya", [_stored(1), _stored(2)], _ledger(1, 2)) == ([3, 4], [1, 2])
    assert _plan("3dsmax", [_stored(4)], _ledger(4)) == ([1, 2, 3], [4])
    assert _plan("maya", [_stored(2)], _ledger(2)) == ([1, 2, 3, 4], [])  # 1,3,4: no range


def test_a_template_renders_every_frame() -> None:
    assert _plan("custom", [_stored(1)], _ledger(1), template=True) == ([1, 2, 3, 4], [])


def test_ledger_round_trip_and_digest_rewinds() -> None:
    ledger = _ledger(1, 2)
    again = Ledger.parse(ledger.document())
    assert again is not None and again.holds(_stored(2), "job-a", "task-1", "s1")
    assert Ledger.parse(b"{not json") is None and Ledger.parse(b'{"job": 1}') is None
    fh = io.BytesIO(b"xxpng")
    fh.seek(2)
    assert digest(fh) == (3, MD5) and fh.tell() == 2


# Batch's retry of an attempt whose cause no retry fixes (render_rerun.verdict_record /
# not_retried; the processes: tests/integration/test_retry_by_cause.py)


def _run(**kw: object) -> RunResult:
    fields: dict[str, object] = dict(
        returncode=0,
        signal=None,
        timed_out=False,
        stalled=False,
        cancelled=False,
        wall_s=1.0,
        cpu_s=1.0,
        peak_rss=1,
        log_truncated=False,
        started_at=0.0,
    )
    fields.update(kw)
    return RunResult(**fields)  # type: ignore[arg-type]


def test_which_verdicts_a_retry_honours() -> None:
    ran = _run(returncode=1)
    kept = [
        (ExitCode.TIMEOUT, "renderer made no progress", _run(stalled=True), 0),
        (ExitCode.TIMEOUT, "renderer exceeded render.timeout_s", _run(timed_out=True), 0),
        (ExitCode.MISSING_FRAMES, "renderer exited 0 but frames 1-2 are missing", _run(), 0),
        (ExitCode.OUT_OF_MEMORY, "out of memory: bad_alloc", ran, 0),
        (ExitCode.MISSING_ASSET, "missing scene or asset: a.tx", ran, 0),
        (ExitCode.RENDER_FAILED, "cannot start 'vray': No such file or directory", None, 0),
        (ExitCode.STORAGE, "storage: access denied (403) reading 'job-a/x'", None, 0),
    ]
    for code, reason, result, stored in kept:
        ended = verdict_record(code, reason, result, stored)
        assert ended is not None and ended["exit_code"] == int(code), (code, reason)
    retried = [
        (ExitCode.LICENSE, "license failure: no license", ran, 0),
        (ExitCode.UPLOAD, "upload failed", _run(), 0),
        (ExitCode.CRASH, "renderer crashed (signal/status 11)", _run(returncode=-11), 0),
        (ExitCode.STORAGE, "storage unreachable: connection reset", None, 0),
        (ExitCode.RENDER_FAILED, "renderer exited with code 1", ran, 0),  # no cause given
        (ExitCode.RENDER_FAILED, "asked to stop (SIGTERM)", _run(cancelled=True), 0),
        # frames stored before render.timeout_s: the retry renders only the rest
        (ExitCode.TIMEOUT, "renderer exceeded render.timeout_s", _run(timed_out=True), 2),
    ]
    for code, reason, result, stored in retried:
        assert verdict_record(code, reason, result, stored) is None, (code, reason)


def test_the_retry_names_the_earlier_cause_in_one_inert_line() -> None:
    ended = verdict_record(ExitCode.TIMEOUT, "renderer exceeded (60 s)", _run(timed_out=True), 0)
    assert ended is not None
    assert not_retried(ended) == (
        ExitCode.TIMEOUT,
        "not retried: the previous attempt of this task ended with exit 16 timeout: renderer "
        "exceeded (60 s); exitpolicy: the same frames take the same time",
    )
    forged = {"exit_code": 13, "reason": "x\n\x1b]52;c;AAAA\x07" + "y" * 1000}
    stop = not_retried(forged)
    assert stop is not None and stop[0] is ExitCode.OUT_OF_MEMORY
    assert "\n" not in stop[1] and "\x1b" not in stop[1] and len(stop[1]) < 600
    # unreadable, unknown, success, or a code this policy retries: render
    for bad in ({}, {"exit_code": "x"}, {"exit_code": 99}, {"exit_code": 0}, {"exit_code": 11}):
        assert not_retried(bad) is None, bad


def test_the_verdict_travels_in_the_ledger() -> None:
    ledger = _ledger(1)
    assert b"ended" not in ledger.document()  # no verdict: the format as before
    ledger.ended = {"exit_code": 16, "reason": "r"}
    again = Ledger.parse(ledger.document())
    assert again is not None and again.ended == ledger.ended
    assert again.same_task(Ledger("job-a", "task-1", "s1"))
    assert not again.same_task(Ledger("job-a", "task-1", "s2"))
    assert not again.same_task(Ledger("job-a", "task-2", "s1"))
