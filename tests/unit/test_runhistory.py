"""The phase-run history file (runhistory): start and end lines merged, newest first, bad
lines skipped and counted, the file cut when it grows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node_agent import runhistory
from node_agent.runhistory import Recorder, history_path, read_history


def test_a_run_is_one_entry_from_its_start_and_end_lines(tmp_path: Path) -> None:
    a = Recorder(tmp_path, "job-prep", "job-a", "jobpreparation", None)
    a.start()
    b = Recorder(tmp_path, "render", "job-a", "frames-1", tmp_path / "r.log")
    b.start()
    a.finish(4, "storage", "listing 'c': access denied (403)\nsecond line")
    h = read_history(tmp_path)
    assert [r.phase for r in h.runs] == ["render", "job-prep"]  # newest first
    render, prep = h.runs
    assert render.state == "running" and render.exit_code is None
    assert prep.state == "done" and prep.exit_name == "storage"
    assert prep.cause == "listing 'c': access denied (403)" and prep.label == "job-a/jobpreparation"
    assert len(history_path(tmp_path).read_text().splitlines()) == 3


def test_bad_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    Recorder(tmp_path, "start-task", None, None, None).start()
    with history_path(tmp_path).open("a") as fh:
        fh.write('{"id": "x", "phase": \n[1, 2]\n{"no_id": 1}\n')
    h = read_history(tmp_path)
    assert len(h.runs) == 1 and h.bad_lines == 3 and h.runs[0].label == "-"


def test_the_file_is_cut_to_its_newest_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runhistory, "MAX_BYTES", 4000)
    monkeypatch.setattr(runhistory, "KEEP_LINES", 5)
    for i in range(40):
        r = Recorder(tmp_path, "render", "j", f"t{i}", None)
        r.start()
        r.finish(0, "ok", None)
    lines = history_path(tmp_path).read_text().splitlines()
    assert len(lines) <= 5 + 30 and json.loads(lines[-1])["task"] == "t39"
    assert history_path(tmp_path).stat().st_size < 4000 + 400


def test_recording_never_fails_the_phase(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state folder should be")
    r = Recorder(blocker, "job-prep", "j", "jobpreparation", None)
    r.start()
    r.finish(1, "failed", "internal error: x")
    assert read_history(blocker).runs == []
