"""`node-agent render --dry-run` on a workstation: no AZ_BATCH_* variable, a stand-in node
said on stderr, nothing written anywhere; a closed stdout (`| head`) ends any command
quietly instead of with an internal error (issue 13)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

SPEC = {
    "job_id": "job-dry",
    "storage": {"account_url": "http://127.0.0.1:9/devstoreaccount1", "auth": {"kind": "emulator"}},
    "assets": [{"name": "scene", "container": "assets", "prefix": "proj/"}],
    "render": {"renderer": "blender", "scene": "shots/spin.blend", "frames": "1-4"},
}


def _workstation_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZ_BATCH_")}
    for d in ("home", "cwd", "tmp"):
        (tmp / d).mkdir()
    env.update(HOME=str(tmp / "home"), TMPDIR=str(tmp / "tmp"), PYTHONDONTWRITEBYTECODE="1")
    return env


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _spec(tmp: Path) -> Path:
    path = tmp / "cwd" / "job.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return path


def test_dry_run_without_batch_variables_writes_nothing(tmp_path: Path) -> None:
    env = _workstation_env(tmp_path)
    spec = _spec(tmp_path)
    before = _tree(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "node_agent", "render", "--frames", "1-4", "--dry-run"]
        + ["--spec", "job.yaml"],
        cwd=spec.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    stand_in = tmp_path / "tmp" / "node-agent-dry-run"
    # the command names the scene where the stand-in node's job view would hold it
    assert f"{stand_in}/shared/node_agent/jobs/job-dry/assets/shots/spin.blend" in proc.stdout
    assert "-f 1,2,3,4" in proc.stdout
    said = [ln for ln in proc.stderr.splitlines() if "stand-in" in ln]
    assert len(said) == 1 and str(stand_in) in said[0], proc.stderr
    assert "error" not in proc.stderr
    assert _tree(tmp_path) == before  # no file, folder or log anywhere under HOME/cwd/TMPDIR
    assert not stand_in.exists()


def test_dry_run_outside_batch_needs_a_spec(tmp_path: Path) -> None:
    env = _workstation_env(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "node_agent", "render", "--frames", "1", "--dry-run"],
        cwd=tmp_path / "cwd",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "node-agent: error: --dry-run outside a Batch task needs --spec (no job prep ran here)"
    ]


def _closed_stdout(args: list[str], tmp: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run with stdout a pipe whose reader is already gone (what `| head -1` leaves once
    head has its line): every write to stdout fails with EPIPE."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "node_agent", *args],
            cwd=tmp / "cwd",
            env=env,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)
    return proc.returncode, proc.stderr


def test_closed_stdout_is_not_an_internal_error(tmp_path: Path) -> None:
    env = _workstation_env(tmp_path)
    _spec(tmp_path)
    commands = [
        ["render", "--frames", "1-4", "--dry-run", "--spec", "job.yaml"],
        ["validate", "job.yaml"],
        ["batch", "job-json", "job.yaml"],
    ]
    for args in commands:
        code, err = _closed_stdout(args, tmp_path, env)
        assert "internal error" not in err and "Traceback" not in err, (args, err)
        assert "BrokenPipe" not in err, (args, err)
        assert code == 141, (args, code, err)  # 128 + SIGPIPE, as a shell reports `yes | head`
    # click's own output (help, usage): click ends it (exit 1), quietly too
    code, err = _closed_stdout(["--help"], tmp_path, env)
    assert code == 1 and err == "", err
