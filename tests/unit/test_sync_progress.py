"""Progress lines and the final summary line."""

from __future__ import annotations

import io

from node_agent.sync.progress import Progress, SyncSummary


def test_periodic_lines_and_summary() -> None:
    s = SyncSummary(
        listed=10, unchanged=4, downloaded=6, bytes_downloaded=6_000_000, refused=1, seconds=2.0
    )
    out = io.StringIO()
    p = Progress(s, out, interval=0.0)
    p.tick()
    p.tick()
    p.finish()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and all(line.startswith("sync: ") for line in lines)
    assert "\r" not in out.getvalue()  # not a terminal: plain lines for Batch's stdout.txt
    assert lines[-1] == (
        "sync: 10 listed, 4 unchanged, 6 downloaded (6.0 MB), 1 refused, 2.0s, 3.0 MB/s"
    )
    rec = s.record()
    for key in ("listed", "downloaded", "unchanged", "bytes_downloaded", "refused", "seconds"):
        assert key in rec


def test_quiet_between_intervals() -> None:
    out = io.StringIO()
    p = Progress(SyncSummary(), out, interval=3600)
    for _ in range(100):
        p.tick()
    assert out.getvalue() == ""
