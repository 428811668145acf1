"""Secrets never leak: every phase runs with a recognisable SAS, account key and entitlement
token, then every log, stdout/stderr, summary, node file and uploaded blob is searched."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml
from azure.storage.blob import (
    AccountSasPermissions,
    ResourceTypes,
    generate_account_sas,
)
from conftest import STANDINS, make_spec_doc, node_env, upload_tree

from node_agent.azurite import AZURITE_ACCOUNT, AZURITE_KEY, AzuriteServer
from node_agent.conventions import job_container
from node_agent.storage import BlobStore

TOKEN = "entitlement-token-3f9a2b7c1d"  # what conftest.node_env gives every task


def _na(args: list[str], env: dict[str, str], log: list[str]) -> int:
    res = subprocess.run(
        [sys.executable, "-m", "node_agent", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    log += [res.stdout, res.stderr]
    return res.returncode


def test_no_phase_leaks_a_secret(tmp_path: Path, azurite: AzuriteServer, store: BlobStore) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "spin.blend").write_bytes(b"scene")
    upload_tree(store, src, "assets", "secrets/")
    sas = generate_account_sas(
        AZURITE_ACCOUNT,
        AZURITE_KEY,
        ResourceTypes(service=True, container=True, object=True),
        AccountSasPermissions(read=True, write=True, list=True, create=True, add=True),
        expiry=datetime.now(timezone.utc) + timedelta(hours=1),
    )
    sig = [p for p in sas.split("&") if p.startswith("sig=")][0][4:]
    secrets = [TOKEN, sig, AZURITE_KEY, AZURITE_KEY[:40]]

    state = tmp_path / "state"
    state.mkdir()
    doc = make_spec_doc(
        azurite.account_url,
        renderer="custom",
        frames="1-2",
        # the "renderer" prints the token it was given, as a careless tool might
        command=[
            sys.executable,
            "-c",
            "import os,sys; print('token is', os.environ['AZ_BATCH_SOFTWARE_ENTITLEMENT_TOKEN']);"
            "sys.stdout.flush(); os.execv(sys.executable, [sys.executable] + sys.argv[1:])",
            str(STANDINS / "pool_test_renderer.py"),
            "{output_dir}",
            "{frames}",
            str(state),
            "-",
            "{task_id}",
        ],
    )
    doc["job_id"] = "secrets-job"
    doc["assets"][0]["prefix"] = "secrets/"
    doc["storage"]["auth"] = {"kind": "sas", "env": "RENDER_SAS"}
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(doc))

    root = tmp_path / "node"
    out: list[str] = []
    env = node_env(root)
    env["RENDER_SAS"] = sas
    assert _na(["start-task"], env, out) == 0, out
    env_prep = {**node_env(root, "secrets-job"), "RENDER_SAS": sas}
    assert _na(["job-prep", "--spec", str(spec)], env_prep, out) == 0, out
    env_task = {**node_env(root, "secrets-job", "frames-00001-00002"), "RENDER_SAS": sas}
    assert _na(["render", "--frames", "1-2"], env_task, out) == 0, out
    assert _na(["render", "--frames", "1-2", "--dry-run"], env_task, out) == 0, out
    _na(["doctor", "--json", "--spec", str(spec)], env_task, out)
    # a failing storage call: the SAS must not appear in the error either
    bad_env = {**env_task, "RENDER_SAS": sas.replace("sp=", "sp=r&x=")}
    _na(["render", "--frames", "1-2"], bad_env, out)
    env_rel = {**node_env(root, "secrets-job", "jobrelease"), "RENDER_SAS": sas}
    assert _na(["job-release"], env_rel, out) == 0, out

    haystacks: dict[str, bytes] = {f"output {i}": s.encode() for i, s in enumerate(out)}
    for f in root.rglob("*"):
        if f.is_file():
            haystacks[str(f)] = f.read_bytes()
    container = job_container("secrets-job")
    for b in store.list_blobs(container):
        haystacks[f"blob {b.name}"] = store.read_blob(container, b.name)
    assert any(b"token is" in v for v in haystacks.values())  # the renderer's line was kept...
    leaks = [
        (name, s[:6]) for name, data in haystacks.items() for s in secrets if s.encode() in data
    ]
    assert leaks == []  # ...but not the token
