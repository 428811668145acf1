"""Secrets never leak: every phase and a sync by hand run with recognisable storage secrets
(a SAS, a connection string with its AccountKey, an account key) and a recognisable
entitlement token, then every output, every node file and every uploaded blob is searched."""

from __future__ import annotations

import re
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
import yaml
from azure.storage.blob import (
    AccountSasPermissions,
    ResourceTypes,
    generate_account_sas,
)
from helpers import STANDINS, node_env, run_agent, uploaded_job_doc

from node_agent.azurite import (
    AZURITE_ACCOUNT,
    AZURITE_KEY,
    AzuriteServer,
    emulator_connection_string,
)
from node_agent.conventions import job_container
from node_agent.storage import BlobStore
from node_agent.sync.access import sign_container_sas

# a SAS signature that is not masked: sig=<anything but ***>
_SIG = re.compile(rb"(?i)sig(?:=|%3D)(?!\*\*\*|%2A%2A%2A)[A-Za-z0-9%+/=]{8,}")


def _na(args: list[str], env: dict[str, str], log: list[str]) -> int:
    res = run_agent(args, env, timeout=300)
    log += [res.stdout, res.stderr]
    return res.returncode


def _bad_key(key: str) -> str:
    """The key with its middle changed: still base64, first 40 characters the real key's."""
    return key[:44] + "A" * 36 + key[80:]


def _secrets_of(kind: str, account_url: str) -> tuple[str, str, list[str]]:
    """(the secret for the auth.env variable, a wrong one that fails, the SAS signatures
    as signed, not URL-encoded)."""
    if kind == "sas":
        sas = generate_account_sas(
            AZURITE_ACCOUNT,
            AZURITE_KEY,
            ResourceTypes(service=True, container=True, object=True),
            AccountSasPermissions(read=True, write=True, list=True, create=True, add=True),
            expiry=datetime.now(timezone.utc) + timedelta(hours=1),
        )
        sig = unquote([p for p in sas.split("&") if p.startswith("sig=")][0][4:])
        return sas, sas.replace("sp=", "sp=r&x="), [sig]
    if kind == "connection_string":
        conn = emulator_connection_string(account_url)
        return conn, conn.replace(AZURITE_KEY, _bad_key(AZURITE_KEY)), []
    return AZURITE_KEY, _bad_key(AZURITE_KEY), []


def _self_signed_sigs(container: str, since: float, until: float) -> list[str]:
    """Every container SAS signature node_agent can have signed from the key meanwhile
    (access.py: start = now - 5 min, expiry = now + 6 h, to the second)."""
    sigs = []
    for t in range(int(since) - 2, int(until) + 2):
        now = datetime.fromtimestamp(t, timezone.utc)
        sas = sign_container_sas(
            AZURITE_ACCOUNT,
            AZURITE_KEY,
            container,
            start=now - timedelta(minutes=5),
            expiry=now + timedelta(hours=6),
        )
        sigs.append(unquote(dict(p.split("=", 1) for p in sas.split("&"))["sig"]))
    return sigs


@pytest.mark.parametrize("kind", ["sas", "connection_string", "account_key"])
def test_no_phase_leaks_a_secret(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore, kind: str
) -> None:
    t_start = time.time()
    tag = kind.replace("_", "-")
    job = f"secrets-{tag}"
    token = f"entitlement-token-{tag}-3f9a2b7c1d"
    secret, bad_secret, sigs = _secrets_of(kind, azurite.account_url)
    var = "RENDER_STORAGE_SECRET"

    state = tmp_path / "state"
    state.mkdir()
    doc = uploaded_job_doc(
        azurite.account_url,
        store,
        tmp_path,
        job,
        blend=b"scene",
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
    doc["storage"]["auth"] = {"kind": kind, "env": var}
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(doc))

    root = tmp_path / "node"
    out: list[str] = []

    def env_of(task_env: dict[str, str], value: str = secret) -> dict[str, str]:
        return {**task_env, var: value, "AZ_BATCH_SOFTWARE_ENTITLEMENT_TOKEN": token}

    env = env_of(node_env(root))
    assert _na(["start-task"], env, out) == 0, out
    assert _na(["job-prep", "--spec", str(spec)], env_of(node_env(root, job)), out) == 0, out
    env_task = env_of(node_env(root, job, "frames-00001-00002"))
    assert _na(["render", "--frames", "1-2"], env_task, out) == 0, out
    assert _na(["render", "--frames", "1-2", "--dry-run"], env_task, out) == 0, out
    _na(["doctor", "--json", "--spec", str(spec)], env_task, out)
    # a failing storage call: the (wrong) secret must not appear in the error either
    assert _na(["render", "--frames", "1-2"], {**env_task, var: bad_secret}, out) != 0, out
    manual = [
        "sync",
        f"assets/{job}/",
        str(root / "manual" / "view"),
        "--cache",
        str(root / "manual" / "cache"),
        "--account-url",
        azurite.account_url,
        "--auth",
        kind,
        "--auth-env",
        var,
        "--reserve-mb",
        "0",
    ]
    assert _na(manual, env_of(dict(env)), out) == 0, out
    assert (root / "manual" / "view" / "spin.blend").read_bytes() == b"scene"
    assert (
        _na(manual[:2] + [str(root / "manual" / "bad")] + manual[3:], env_of(env, bad_secret), out)
        != 0
    )
    assert _na(["job-release"], env_of(node_env(root, job, "jobrelease")), out) == 0, out

    haystacks: dict[str, bytes] = {f"output {i}": s.encode() for i, s in enumerate(out)}
    for f in root.rglob("*"):
        if f.is_file():
            haystacks[str(f)] = f.read_bytes()
    container = job_container(job)
    for b in store.list_blobs(container):
        haystacks[f"blob {b.name}"] = store.read_blob(container, b.name)
    assert any(b"token is" in v for v in haystacks.values())  # the renderer's line was kept...
    if kind != "sas":  # node_agent signed its own container SAS from the key
        sigs += _self_signed_sigs("assets", t_start, time.time())
    secrets = [token, AZURITE_KEY, AZURITE_KEY[:40], *sigs, *(quote(s, safe="") for s in sigs)]
    leaks = [
        (name, s[:6]) for name, data in haystacks.items() for s in secrets if s.encode() in data
    ]
    assert leaks == []  # ...but not the token, a key or a signature
    unmasked = [
        (name, m.group()[:10]) for name, data in haystacks.items() for m in _SIG.finditer(data)
    ]
    assert unmasked == []
