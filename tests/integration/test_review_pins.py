"""`assets push --write-spec` on a spec the TD cannot or did not want changed: refused by
name before anything is uploaded (a push whose pin then fails leaves the spec and the
storage out of step). Real Azurite, node-agent as a process."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from helpers import run_agent

from node_agent.azurite import AzuriteServer

HASH = re.compile(r"\b[0-9a-f]{64}\b")
SPEC = "assets:\n  - {name: s, container: pins, prefix: rv/}\n"


def _push(
    azurite: AzuriteServer, ws: Path, home: Path, spec: Path
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(home)}
    args = ["assets", "push", str(ws), "--project", "rv", "--container", "pins"]
    return run_agent([*args, "--account-url", azurite.account_url, "--write-spec", str(spec)], env)


def _ws(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "scene.blend").write_bytes(os.urandom(300))
    return ws


def test_a_read_only_spec_is_refused_before_the_push(
    azurite: AzuriteServer, tmp_path: Path
) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(SPEC)
    spec.chmod(0o444)
    r = _push(azurite, _ws(tmp_path), tmp_path / "h", spec)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"--write-spec '{spec}'" in r.stderr and "read-only" in r.stderr, r.stderr
    assert spec.read_text() == SPEC and spec.stat().st_mode & 0o777 == 0o444
    assert not HASH.search(r.stdout + r.stderr)  # nothing was pushed


def test_a_spec_in_a_folder_that_refuses_writes_is_refused_before_the_push(
    azurite: AzuriteServer, tmp_path: Path
) -> None:
    """The atomic replace writes beside the spec: an immutable (chattr +i) folder refuses it."""
    folder = tmp_path / "specs"
    folder.mkdir()
    spec = folder / "job.yaml"
    spec.write_text(SPEC)
    subprocess.run(["chattr", "+i", str(folder)], check=True)
    try:
        r = _push(azurite, _ws(tmp_path), tmp_path / "h", spec)
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "internal error" not in r.stderr
    assert f"--write-spec '{spec}'" in r.stderr and str(folder) in r.stderr, r.stderr
    assert spec.read_text() == SPEC
    assert not HASH.search(r.stdout + r.stderr)
