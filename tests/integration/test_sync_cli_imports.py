"""`node-agent sync` (the CLI and job prep's engine, a plain no-op) never imports the job
model (node_agent.spec: renderers, mounts, frames, YAML; ~35-70 ms of every no-op sync's
start, -X importtime) nor the Azure SDK nor pydantic (issue 16: start-up). Its source and
storage options are checked by the rules of node_agent.fieldrules, which the job spec's
pydantic models (spec_assets, spec_storage) call too (node_agent.sync.cli_settings)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from node_agent.azurite import AzuriteServer
from node_agent.storage import BlobStore
from tests.helpers.sync import seed

REPO = Path(__file__).resolve().parents[2]


def _imported(stderr: str) -> set[str]:
    """Module names of a `python -X importtime` run's report."""
    return {
        ln.rsplit("|", 1)[1].strip() for ln in stderr.splitlines() if ln.startswith("import time:")
    }


def test_a_sync_imports_neither_the_job_model_nor_the_sdk_nor_pydantic(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    seed(store, "imports", {"shot/a.bin": b"a" * 100, "shot/b/c.bin": b"c" * 10})
    cmd = [
        sys.executable,
        "-X",
        "importtime",
        "-m",
        "node_agent",
        "sync",
        "imports/shot",
        str(tmp_path / "dest"),
        "--account-url",
        azurite.account_url,
        "--cache",
        str(tmp_path / "cache"),
        "--reserve-mb",
        "0",
    ]
    for run in ("cold", "no-op"):
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        mods = _imported(r.stderr)
        assert "node_agent.sync.engine" in mods, "the report did not list the sync's modules"
        bad = sorted(
            m
            for m in mods
            if m in ("node_agent.spec", "pydantic") or m.startswith(("azure.", "pydantic."))
        )
        assert bad == [], f"{run} sync imported {bad}"
    assert (tmp_path / "dest" / "b" / "c.bin").read_bytes() == b"c" * 10
