"""Supervision: timeouts kill the whole tree, a killed node-agent leaves no renderer, caps, metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import Task, make_task, standin

from node_agent.azurite import AzuriteServer
from node_agent.storage import BlobStore
from node_agent.supervise import Options, RunResult, State, run_captured, supervise


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(pids: list[int], within: float = 60.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if all(_gone(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


def _wait_file(path: Path, within: float = 120.0) -> dict[str, int]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text():
            return dict(json.loads(path.read_text()))
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def _kill_all(pids: list[int]) -> None:
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass


@pytest.mark.slow
def _supervise_in(tmp_path: Path, argv: list[str], **options: Any) -> RunResult:
    """`supervise(argv)` run in tmp_path, its log tmp_path/r.log, with this environment unless
    `options` say otherwise."""
    opts: dict[str, Any] = {"env": dict(os.environ), "timeout_s": 300, **options}
    return supervise(argv, Options(cwd=tmp_path, log_path=tmp_path / "r.log", **opts))


def test_timeout_kills_a_renderer_that_ignores_sigterm_and_its_setsid_grandchild(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "pids.json"
    env = dict(os.environ, STANDIN_MODE="hang", STANDIN_PIDS=str(pid_file))
    argv = [standin("fake_kick.py"), "-i", "a.ass"]
    r = _supervise_in(tmp_path, argv, env=env, timeout_s=15, grace_s=1)
    pids = json.loads(pid_file.read_text())  # written long before the timeout
    assert r.timed_out and r.state is State.TIMED_OUT and r.signal == signal.SIGKILL
    assert _wait_gone([pids["renderer"], pids["grandchild"]], 10), pids


def _hanging_task(tmp_path: Path, url: str, **render: object) -> Task:
    return make_task(
        tmp_path,
        url,
        renderer="arnold",
        executable=standin("fake_kick.py"),
        scene="a.ass",
        frames="1",
        kill_grace_s=1,
        env={"STANDIN_MODE": "hang", "STANDIN_PIDS": str(tmp_path / "pids.json")},
        **render,
    )


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killing_node_agent_render_kills_the_renderer_tree(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore, sig: signal.Signals
) -> None:
    t = _hanging_task(tmp_path, azurite.account_url)
    proc = t.start("1")
    pids = _wait_file(tmp_path / "pids.json")
    tree = [pids["renderer"], pids["grandchild"]]
    try:
        assert not _gone(pids["renderer"]) and not _gone(pids["grandchild"])
        proc.send_signal(sig)
        rc = proc.wait(120)
        assert _wait_gone(tree, 60), f"renderer tree survived {sig.name}: {tree}"
    finally:
        _kill_all(tree)
    if sig == signal.SIGTERM:  # a clean stop: exit 10, logs and summary uploaded
        assert rc == 10, t.stderr()
        assert t.summary()["reason"].startswith("node-agent render was asked to stop")
        names = {b.name for b in store.list_blobs(t.container, "task-1/$TaskLog/")}
        assert {"task-1/$TaskLog/renderer.log", "task-1/$TaskLog/summary.json"} <= names
    else:
        assert rc == -signal.SIGKILL


@pytest.mark.slow
def test_stall_timeout_ends_a_silent_renderer_exit_16_and_logs_uploaded(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    t = _hanging_task(tmp_path, azurite.account_url, stall_timeout_s=3)
    assert t.run("1", timeout=300) == 16, t.stderr()
    pids = json.loads((tmp_path / "pids.json").read_text())
    assert _wait_gone([pids["renderer"], pids["grandchild"]], 30)
    assert "no progress for render.stall_timeout_s (3 s)" in t.summary()["reason"]
    log = store.read_blob(t.container, "task-1/$TaskLog/renderer.log").decode()
    assert "never finishes" in log
    summary = json.loads(store.read_blob(t.container, "task-1/$TaskLog/summary.json"))
    assert summary["exit_class"] == "timeout"


def test_long_lines_and_total_log_size_are_capped(tmp_path: Path) -> None:
    code = "import sys\nfor i in range(40): sys.stdout.write('x' * 100000 + '\\n')\nprint('end')"
    r = _supervise_in(tmp_path, [sys.executable, "-c", code], log_cap=300_000)
    assert r.returncode == 0 and r.log_truncated
    data = (tmp_path / "r.log").read_bytes()
    assert len(data) < 300_000 + 2 * 70_000
    assert b"[line cut]" in data and b"log capped at 300000 bytes" in data
    assert max(len(line) for line in data.splitlines()) <= 64 * 1024 + 20


def test_metrics_wall_cpu_and_peak_rss_of_the_tree(tmp_path: Path) -> None:
    child = "import time\nb = bytearray(120 * 2**20)\nt = time.process_time()\n" + (
        "while time.process_time() - t < 0.6: pass\ntime.sleep(1)"
    )
    code = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {child!r}])"
    r = _supervise_in(tmp_path, [sys.executable, "-c", code])
    assert r.returncode == 0
    assert r.cpu_s >= 0.6  # the grandchild's CPU time counts
    assert r.peak_rss >= 120 * 2**20  # sampled while the grandchild held 120 MiB
    assert r.wall_s >= 1.0


def test_run_captured_feeds_stdin_returns_output_and_ends_the_tree_on_timeout(
    tmp_path: Path,
) -> None:
    code = "import sys\nprint(sys.stdin.read().upper())\nprint('err', file=sys.stderr)"
    r = run_captured([sys.executable, "-c", code], timeout_s=60, env=os.environ, stdin_text="x")
    assert (r.returncode, r.stdout, r.stderr) == (0, "X\n", "err\n")
    merged = run_captured(
        [sys.executable, "-c", code], timeout_s=60, env=os.environ, merge_stderr=True
    )
    assert sorted(merged.stdout.split()) == ["err"] and merged.stderr == ""
    pid_file = tmp_path / "pids.json"
    env = dict(os.environ, STANDIN_MODE="hang", STANDIN_PIDS=str(pid_file))
    t0 = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_captured([standin("fake_kick.py"), "-i", "a.ass"], timeout_s=3, env=env, grace_s=1)
    assert time.monotonic() - t0 < 30
    pids = json.loads(pid_file.read_text())
    try:
        assert _wait_gone([pids["renderer"], pids["grandchild"]], 10), pids
    finally:
        _kill_all([pids["renderer"], pids["grandchild"]])
