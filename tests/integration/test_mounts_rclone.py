"""rclone mounts of a real Azurite container, made by `node-agent start-task --pool-config`."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from azure.storage.blob import BlobServiceClient
from helpers import cleanup_mounts, mounts_under, node_env, rclone_daemons_under, run_agent

from node_agent.azurite import AZURITE_KEY, AzuriteServer
from node_agent.batchenv import BatchNode
from node_agent.logs import get_logger
from node_agent.mounts.manager import MountContext, ensure_mount, read_records
from node_agent.mounts.model import RcloneMount
from node_agent.mounts.platform import probe
from node_agent.redact import Redactor

pytestmark = pytest.mark.slow

FILES = {
    "scenes/shot1.blend": b"blend-bytes" * 100,
    "textures/wood.png": b"png" * 1000,
    "readme.txt": b"hi",
}


@pytest.fixture
def container(azurite: AzuriteServer) -> str:
    name = f"mnt-{uuid.uuid4().hex[:12]}"
    svc = BlobServiceClient.from_connection_string(azurite.connection_string)
    svc.create_container(name)
    for blob, data in FILES.items():
        svc.get_blob_client(name, blob).upload_blob(data)
    return name


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    node_root = tmp_path / "node"
    node_root.mkdir()
    try:
        yield node_root
    finally:
        cleanup_mounts(node_root)


def _pool_config(root: Path, azurite: AzuriteServer, container: str, **extra: object) -> Path:
    mount = {
        "name": "assets",
        "driver": "rclone",
        "account_url": azurite.account_url,
        "container": container,
        "auth": {"mode": "emulator"},
    }
    path = root / "pool.json"
    path.write_text(json.dumps({"mounts": [mount], **extra}))
    return path


def test_start_task_mounts_reads_is_idempotent_and_recovers_stale(
    root: Path, azurite: AzuriteServer, container: str
) -> None:
    env = node_env(root)
    cfg = _pool_config(root, azurite, container)
    target = root / "fsmounts" / "assets"

    first = run_agent(["start-task", "--pool-config", str(cfg)], env)
    assert first.returncode == 0, first.stderr
    assert mounts_under(root) == [str(target)]
    for blob, data in FILES.items():
        assert (target / blob).read_bytes() == data

    # Secrets: the rclone config is 0600 in a 0700 folder and nothing secret is in argv.
    conf = root / "shared" / "node_agent" / "state" / "mounts" / "assets.rclone.conf"
    assert conf.stat().st_mode & 0o777 == 0o600
    assert conf.parent.stat().st_mode & 0o777 == 0o700
    daemons = rclone_daemons_under(root)
    assert len(daemons) == 1
    argv = " ".join(daemons[0].cmdline())
    assert "sig=" not in argv and AZURITE_KEY not in argv and str(conf) in argv
    assert "sig=" not in first.stdout + first.stderr

    second = run_agent(["start-task", "--pool-config", str(cfg)], env)
    assert second.returncode == 0, second.stderr
    assert "already mounted" in second.stdout
    assert mounts_under(root) == [str(target)]
    assert len(rclone_daemons_under(root)) == 1

    # Kill rclone: the mount stays in the table but its endpoint is gone.
    for p in rclone_daemons_under(root):
        p.kill()
    psutil.wait_procs(daemons, timeout=30)
    stale = probe(target)
    assert stale.state == "stale", stale
    assert "Transport endpoint is not connected" in stale.detail

    # The doctor sees it (os.path.ismount does not: a stale FUSE mount is not "a mount").
    doctor = run_agent(["doctor", "--root", str(root), "--json"], env)
    assert doctor.returncode == 20, doctor.stdout + doctor.stderr
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    bad = checks["mount assets"]
    assert not bad["ok"] and bad["required"]
    assert bad["detail"].startswith(f"{target}: stale: Transport endpoint is not connected")

    third = run_agent(["start-task", "--pool-config", str(cfg)], env)
    assert third.returncode == 0, third.stderr
    assert "stale mount" in third.stdout and "remounted" in third.stdout
    assert mounts_under(root) == [str(target)]
    assert (target / "readme.txt").read_bytes() == b"hi"

    # The ops path over SSH: list, then unmount; the folder and the daemon go too.
    listed = run_agent(["mounts", "list", "--root", str(root), "--json"], env)
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert (row["name"], row["scope"], row["state"]) == ("assets", "pool", "ok")
    gone = run_agent(["mounts", "unmount", "--all", "--root", str(root)], env)
    assert gone.returncode == 0, gone.stderr
    assert "unmounted: assets" in gone.stdout
    assert mounts_under(root) == []
    assert not target.exists()
    assert rclone_daemons_under(root) == []
    assert read_records(BatchNode.from_env(env)) == []
    again = run_agent(["mounts", "unmount", "--all", "--root", str(root)], env)
    assert again.returncode == 0 and "already gone" in again.stdout


def test_non_empty_mount_point_is_refused(
    root: Path, azurite: AzuriteServer, container: str
) -> None:
    env = node_env(root)
    cfg = _pool_config(root, azurite, container)
    target = root / "fsmounts" / "assets"
    target.mkdir(parents=True)
    (target / "stray.txt").write_text("someone's file")
    res = run_agent(["start-task", "--pool-config", str(cfg)], env)
    assert res.returncode == 21
    first = res.stderr.splitlines()[0]
    assert "not empty" in first and str(target) in first
    assert mounts_under(root) == []
    assert (target / "stray.txt").read_text() == "someone's file"


def test_job_release_unmounts_job_scoped_mount(
    root: Path, azurite: AzuriteServer, container: str
) -> None:
    job = "job-mnt"
    prep_env = node_env(root, job, "jobpreparation")
    node = BatchNode.from_env(prep_env, need_job=True)
    ctx = MountContext.create(node, prep_env, Redactor(), get_logger("test"))
    m = RcloneMount(
        name="refs",
        driver="rclone",
        account_url=azurite.account_url,
        container=container,
        prefix="textures",
        auth={"mode": "emulator"},
    )  # type: ignore[arg-type]
    result = ensure_mount(ctx, m, scope=job)
    target = root / "fsmounts" / "jobs" / job / "refs"
    assert result.target == str(target) and result.action == "mounted"
    assert (target / "wood.png").read_bytes() == FILES["textures/wood.png"]

    release_env = node_env(root, job, "jobrelease")
    res = run_agent(["job-release"], release_env)
    assert res.returncode == 0, res.stderr
    assert mounts_under(root) == []
    assert not (root / "fsmounts" / "jobs" / job).exists()
    assert rclone_daemons_under(root) == []
    # Again: nothing left to do is not a failure.
    again = run_agent(["job-release"], release_env)
    assert again.returncode == 0, again.stderr
    assert os.listdir(root / "fsmounts") == []


def _job_spec(root: Path, azurite: AzuriteServer, container: str, job: str) -> Path:
    from helpers import make_spec_doc

    doc = make_spec_doc(azurite.account_url, scene="shot1.blend")
    doc["job_id"] = job
    doc["assets"] = [{"name": "scenes", "container": container, "prefix": "scenes/"}]
    doc["mounts"] = [
        {
            "name": "refs",
            "driver": "rclone",
            "account_url": azurite.account_url,
            "container": container,
            "prefix": "textures",
            "auth": {"mode": "emulator"},
        }
    ]
    path = root / "job.json"
    path.write_text(json.dumps(doc))
    return path


def test_job_prep_mounts_the_specs_mounts_and_job_release_unmounts_them(
    root: Path, azurite: AzuriteServer, container: str
) -> None:
    job = "job-mnt"
    spec = _job_spec(root, azurite, container, job)
    prep_env = node_env(root, job, "jobpreparation")
    target = root / "fsmounts" / "jobs" / job / "refs"

    first = run_agent(["job-prep", "--spec", str(spec)], prep_env)
    assert first.returncode == 0, first.stderr
    assert mounts_under(root) == [str(target)]
    assert (target / "wood.png").read_bytes() == FILES["textures/wood.png"]
    [rec] = read_records(BatchNode.from_env(prep_env))
    assert (rec["name"], rec["scope"], rec["target"]) == ("refs", job, str(target))

    again = run_agent(["job-prep", "--spec", str(spec)], prep_env)
    assert again.returncode == 0, again.stderr
    assert "already mounted" in again.stderr
    assert mounts_under(root) == [str(target)] and len(rclone_daemons_under(root)) == 1

    # The doctor checks job mounts too (two levels below fsmounts/).
    doctor = run_agent(["doctor", "--root", str(root), "--json"], prep_env)
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks[f"mount {job}/refs"]["ok"], checks
    # Unmounted behind node_agent's back: recorded but not mounted is a failure.
    subprocess.run(["fusermount3", "-uz", str(target)], check=True, timeout=60)
    doctor = run_agent(["doctor", "--root", str(root), "--json"], prep_env)
    assert doctor.returncode == 20
    check = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}[f"mount {job}/refs"]
    assert not check["ok"] and check["detail"].startswith(f"{target}: not mounted")

    release = run_agent(["job-release"], node_env(root, job, "jobrelease"))
    assert release.returncode == 0, release.stderr
    assert mounts_under(root) == []
    assert rclone_daemons_under(root) == []
    assert read_records(BatchNode.from_env(prep_env)) == []
    assert not (root / "fsmounts" / "jobs" / job).exists()


def test_job_prep_mount_failure_is_one_line_exit_21(
    root: Path, azurite: AzuriteServer, container: str
) -> None:
    job = "job-badmnt"
    spec = _job_spec(root, azurite, container, job)
    doc = json.loads(spec.read_text())
    doc["mounts"][0]["auth"] = {"mode": "key", "env": "NOT_SET_KEY"}
    spec.write_text(json.dumps(doc))
    env = {k: v for k, v in node_env(root, job, "jobpreparation").items() if k != "NOT_SET_KEY"}
    res = run_agent(["job-prep", "--spec", str(spec)], env)
    assert res.returncode == 21
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("node-agent: error:")]
    assert errors == [
        "node-agent: error: mount 'refs': auth.env: environment variable NOT_SET_KEY is not set"
    ]
    assert mounts_under(root) == []
