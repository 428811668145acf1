"""Job prep records the job view (jobs/<job>/.view.json), in a folder the job's renderers can write:
never through a predictable temporary name where a link may be planted (the old name was
.view.json.<pid>.tmp, and pids are handed out in order)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from helpers import make_spec_doc, node_env, run_agent

from node_agent.azurite import AzuriteServer
from node_agent.storage import BlobStore


def test_the_view_record_is_never_written_through_a_planted_link(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    store.ensure_container("assets")
    store.container("assets").upload_blob("proj/spin.blend", b"scene", overwrite=True)
    victim = tmp_path / "outside" / "victim.conf"
    victim.parent.mkdir()
    victim.write_text("precious\n")
    root = tmp_path / "node"
    job = "job-a"
    job_dir = root / "shared" / "node_agent" / "jobs" / job
    job_dir.mkdir(parents=True)
    # pids on Linux are handed out in order: the next few thousand
    start = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True).stdout.strip()
    for pid in range(int(start), int(start) + 3000):
        os.symlink(victim, job_dir / f".view.json.{pid}.tmp")
    doc = make_spec_doc(azurite.account_url)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(doc))
    env = node_env(root, job, None)
    env["NODE_AGENT_VIEW_ISOLATION"] = "copy"
    res = run_agent(["job-prep", "--spec", str(spec)], env)
    text = victim.read_text()
    assert text == "precious\n", f"rc={res.returncode}: victim now {text[:200]!r}"
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads((job_dir / "view.json").read_text())["mode"] == "copy"
