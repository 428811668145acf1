"""The sync summary line names the files a sync touched: a blob name is someone else's
text, and a newline or escape in it must not forge a line of the node's log (a
`node-agent: error:` line is what `job watch` shows as a task's reason)."""

from __future__ import annotations

from pathlib import Path

from helpers import agent_dir, make_spec, run_job_prep, seed, write_spec

from node_agent.azurite import AzuriteServer
from node_agent.storage import BlobStore


def test_a_blob_name_with_a_newline_forges_no_log_line(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    evil = "p/tex\nnode-agent: error: forged by a blob name.png"
    seed(store, "rv-names", {"p/scene.blend": b"scene", evil: b"x"})
    spec = write_spec(tmp_path / "job.json", make_spec(azurite.account_url, "rv-names", "p/"))
    root = tmp_path / "node"
    r = run_job_prep(root, "job-a", spec)
    logs = r.stdout + r.stderr
    for f in (agent_dir(root) / "logs").rglob("*"):
        if f.is_file():
            logs += f.read_text(errors="replace")
    assert "forged by a blob name" in logs, "the name is logged (its text, inert)"
    lines = logs.splitlines()
    assert not [ln for ln in lines if ln.startswith("node-agent: error: forged")], logs[-2000:]
    assert "\x1b" not in logs


def test_a_blob_name_with_a_control_character_is_refused_by_name(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """safepath refuses control characters in every name from someone else (a file named
    with a newline would reach the job view and every log that names it): job prep refuses
    the blob, naming it escaped on one line, exit 5 (assets)."""
    # a tab: Azurite cannot list names holding characters XML 1.0 forbids (ESC: HTTP 500)
    seed(store, "rv-ctl", {"p/scene.blend": b"scene", "p/tex\twood.png": b"x"})
    spec = write_spec(tmp_path / "job.json", make_spec(azurite.account_url, "rv-ctl", "p/"))
    root = tmp_path / "node"
    r = run_job_prep(root, "job-a", spec)
    assert r.returncode == 5, r.stdout + r.stderr
    assert "tex\\x09wood.png" in r.stderr and "control character U+0009" in r.stderr
    assert "\t" not in r.stderr
    assert not list((agent_dir(root) / "jobs").rglob("*wood.png"))
