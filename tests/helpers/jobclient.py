"""The job client's tests: a local-pool job rendered by real Blender through a stand-in that
fails tasks on purpose, and headless Chromium to look at the HTML report."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from helpers.node import STANDINS, make_spec_doc, upload_tree
from node_agent.storage import BlobStore

FLAKY = "frames-00003-00004"  # fails its first attempt, then renders
BROKEN = "frames-00005-00006"  # fails every attempt


def failing_blender(tmp_path: Path, fail_once: list[str], fail_always: list[str]) -> Path:
    """standins/jobclient_blender.py copied to tmp_path/bin with its plan beside it."""
    bin_dir = tmp_path / "bin"
    state = tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    exe = bin_dir / "jobclient_blender.py"
    shutil.copy(STANDINS / "jobclient_blender.py", exe)
    exe.write_text(f"#!{sys.executable}\n" + exe.read_text().split("\n", 1)[1])
    exe.chmod(0o755)
    plan = {"state": str(state), "fail_once": fail_once, "fail_always": fail_always}
    (bin_dir / "jobclient_plan.json").write_text(json.dumps(plan))
    return exe


def blender_job_spec(
    tmp_path: Path, account_url: str, store: BlobStore, scene: Path, job_id: str
) -> Path:
    """Frames 1-6, two per task, one retry; FLAKY fails once, BROKEN always (real frames)."""
    upload_tree(store, scene, "assets", f"{job_id}/")
    exe = failing_blender(tmp_path, [FLAKY], [BROKEN])
    doc = make_spec_doc(account_url, frames="1-6", frames_per_task=2, executable=str(exe))
    doc["job_id"] = job_id
    doc["assets"][0]["prefix"] = f"{job_id}/"  # type: ignore[index]
    doc["policies"] = {"task_retries": 1}
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(doc))
    return spec


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_run(
    profile: Path, args: list[str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Headless Chromium (Debian's `chromium`) with a throw-away profile in `profile`."""
    exe = chromium()
    assert exe, "chromium is not installed (scripts/system-deps.sh installs it)"
    base = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    base += ["--no-first-run", "--disable-extensions", f"--user-data-dir={profile}"]
    return subprocess.run(base + args, capture_output=True, text=True, timeout=timeout, check=False)
