"""Specs that mean what they say, against Azurite: a prefix is a folder, not its siblings
(case 5), in job prep and in `node-agent sync`. The document checks (cases 5, 6, 12, 15) are
in tests/unit/test_spec_documents.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers import (
    digests,
    make_spec,
    node_of,
    run_agent,
    run_job_prep,
    seed,
    summary,
    tree,
    write_spec,
)

from node_agent.azurite import AzuriteServer
from node_agent.storage import BlobStore


def _na(*args: str) -> subprocess.CompletedProcess[str]:
    return run_agent(list(args), timeout=300)


# --- case 5: a prefix names a folder ------------------------------------------------------


SIBLINGS = {
    "shot01/scene.blend": b"the real scene",
    "shot01/tex/a.png": b"real texture" * 100,
    "shot010/scene.blend": b"a sibling's scene",
    "shot01_old/notes.txt": b"old notes",
    "shot01.bak": b"a blob beside the folder",
}
REAL = {k: v for k, v in SIBLINGS.items() if k.startswith("shot01/")}


@pytest.mark.parametrize("prefix", ["shot01", "shot01//"])
def test_prefix_without_slash_is_the_folder_not_its_siblings(
    azurite: AzuriteServer, store: BlobStore, tmp_path: Path, prefix: str
) -> None:
    seed(store, "prefix-folders", SIBLINGS)
    spec = write_spec(
        tmp_path / "job.json", make_spec(azurite.account_url, "prefix-folders", prefix)
    )
    root = tmp_path / "node"
    r = run_job_prep(root, "job-a", spec)
    assert r.returncode == 0, r.stdout + r.stderr
    assert tree(node_of(root, "job-a").job_assets_dir()) == digests(REAL, "shot01/")
    s = summary(root, "job-a")
    assert (s["listed"], s["refused"]) == (2, 0)


def test_sync_cli_prefix_without_slash_is_the_folder(
    azurite: AzuriteServer, store: BlobStore, tmp_path: Path
) -> None:
    seed(store, "prefix-folders", SIBLINGS)
    out = tmp_path / "out"
    r = _na("sync", "prefix-folders/shot01", str(out), "--account-url", azurite.account_url)
    assert r.returncode == 0, r.stdout + r.stderr
    assert tree(out) == digests(REAL, "shot01/")
