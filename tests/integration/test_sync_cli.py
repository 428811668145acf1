"""`node-agent sync <source> <dest>` by hand: emulator key (signed SAS) and a SAS from the environment."""

from __future__ import annotations

import os
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas
from helpers import digests, run_agent, seed, tree

from node_agent.azurite import AZURITE_ACCOUNT, AZURITE_KEY, AzuriteServer
from node_agent.storage import BlobStore


def _sync(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_agent(["sync", *args], env, timeout=300)


def test_sync_by_hand_with_key_and_sas(
    azurite: AzuriteServer, store: BlobStore, tmp_path: Path
) -> None:
    files = {f"c1/d/f{i}.txt": f"file {i}".encode() * 100 for i in range(25)}
    seed(store, "sync-cli", files)
    r = _sync(["sync-cli/c1/", str(tmp_path / "out"), "--account-url", azurite.account_url])
    assert r.returncode == 0, r.stderr
    assert "sync: 25 listed, 0 unchanged, 25 downloaded" in r.stdout
    assert tree(tmp_path / "out") == digests(files, "c1/")

    sas = generate_account_sas(
        AZURITE_ACCOUNT,
        AZURITE_KEY,
        ResourceTypes(container=True, object=True),
        AccountSasPermissions(read=True, list=True),
        expiry=datetime.now(timezone.utc) + timedelta(hours=1),
    )
    env = {**os.environ, "TEST_SYNC_SAS": sas}
    out2 = tmp_path / "out2"
    r = _sync(
        [
            "sync-cli/c1/",
            str(out2),
            "--account-url",
            azurite.account_url,
            "--auth",
            "sas",
            "--auth-env",
            "TEST_SYNC_SAS",
        ],
        env,
    )
    assert r.returncode == 0, r.stderr
    assert tree(out2) == digests(files, "c1/")
    assert "unchanged" in r.stdout and sas not in r.stdout + r.stderr
    assert (
        "sync: 25 listed, 25 unchanged, 0 downloaded" in r.stdout
    )  # same node cache beside the dests


def test_sync_by_hand_refused_names_exit_5(
    azurite: AzuriteServer, store: BlobStore, tmp_path: Path
) -> None:
    seed(store, "sync-cli-bad", {"b/ok.txt": b"ok", "b//abs.txt": b"x"})
    r = _sync(["sync-cli-bad/b/", str(tmp_path / "out"), "--account-url", azurite.account_url])
    assert r.returncode == 5, r.stderr
    assert "1 blob name(s) refused" in r.stderr
    assert tree(tmp_path / "out") == {"ok.txt": digests({"ok.txt": b"ok"}, "")["ok.txt"]}
