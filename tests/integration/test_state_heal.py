"""State that heals (cases 8 and 11): a corrupt state/sync.db is moved aside and rebuilt from
the objects on disk, `doctor` reports a corrupt DB, `doctor --verify-cache` finds and drops a
cache object whose bytes changed behind the sync's back (size and mtime kept)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import (
    agent_dir,
    digests,
    make_spec,
    node_env,
    node_of,
    run_agent,
    run_job_prep,
    seed,
    start_job_prep,
    summary,
    tree,
    write_spec,
)

from node_agent.azurite import AzuriteServer
from node_agent.storage import BlobStore


def _files(prefix: str, n: int = 150) -> dict[str, bytes]:
    files = {f"{prefix}scene.blend": b"scene v1"}
    for i in range(n):
        files[f"{prefix}tex/t{i:03d}.png"] = (f"{prefix}-{i}-".encode() * 40)[: 300 + i]
    return files


def _object(root: Path, data: bytes) -> Path:
    h = hashlib.sha256(data).hexdigest()
    return agent_dir(root) / "cache" / "objects" / h[:2] / h


def _flip_a_byte_keeping_mtime(path: Path) -> None:
    """What a bad disk or a stray write does: same size, same mtime, other bytes."""
    st = path.stat()
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.chmod(path, st.st_mode & 0o777)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


def _corrupt(db: Path, how: str) -> bytes:
    if how == "garbage in the middle":
        data = bytearray(db.read_bytes())
        a, b = len(data) // 4, 3 * len(data) // 4
        data[a:b] = (b"\xde\xad\xbe\xef garbage " * (b - a))[: b - a]
    else:  # not SQLite at all
        data = bytearray(b"this is not a database\n" * 500)
    db.write_bytes(bytes(data))
    return bytes(data)


@pytest.mark.parametrize("how", ["garbage in the middle", "not sqlite"])
def test_corrupt_state_db_is_moved_aside_and_rebuilt(
    azurite: AzuriteServer, store: BlobStore, tmp_path: Path, how: str
) -> None:
    files = _files("h1/")
    seed(store, "heal-db", files)
    spec = write_spec(tmp_path / "job.json", make_spec(azurite.account_url, "heal-db", "h1/"))
    root = tmp_path / "node"
    assert run_job_prep(root, "job-a", spec).returncode == 0
    state = agent_dir(root) / "state"
    db = state / "sync.db"
    assert not (state / "sync.db-wal").exists() or (state / "sync.db-wal").stat().st_size == 0
    bad = _object(root, files["h1/tex/t005.png"])
    _flip_a_byte_keeping_mtime(bad)
    corrupt = _corrupt(db, how)

    r = run_job_prep(root, "job-a", spec)
    assert r.returncode == 0, r.stdout + r.stderr
    aside = sorted(state.glob("sync.db.corrupt-*"))
    assert [p.name for p in aside if not p.name.endswith(("-wal", "-shm"))] == [aside[0].name]
    assert aside[0].read_bytes() == corrupt  # kept for inspection, as it was
    log = r.stdout + r.stderr
    assert aside[0].name in log and "corrupt" in log
    # the view is byte for byte the source again
    assert tree(node_of(root, "job-a").job_assets_dir()) == digests(files, "h1/")
    # objects were re-verified: the bad one was dropped and fetched again, the rest were
    # matched by their Content-MD5 without a download
    s = summary(root, "job-a")
    assert (s["listed"], s["downloaded"]) == (len(files), 1), s
    assert hashlib.sha256(bad.read_bytes()).hexdigest() == bad.name
    # and the rebuilt DB is healthy: a third run is a no-op
    r = run_job_prep(root, "job-a", spec)
    assert r.returncode == 0, r.stderr
    assert summary(root, "job-a")["downloaded"] == 0


def test_two_job_preps_on_a_corrupt_db_heal_it_once(
    azurite: AzuriteServer, store: BlobStore, tmp_path: Path
) -> None:
    files = _files("h4/", 80)
    seed(store, "heal-twice", files)
    specs = {
        job: write_spec(
            tmp_path / f"{job}.json", make_spec(azurite.account_url, "heal-twice", "h4/", job)
        )
        for job in ("job-a", "job-b")
    }
    root = tmp_path / "node"
    assert run_job_prep(root, "job-a", specs["job-a"]).returncode == 0
    state = agent_dir(root) / "state"
    _corrupt(state / "sync.db", "garbage in the middle")
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    procs = [start_job_prep(root, job, spec, **pipes) for job, spec in specs.items()]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    aside = [p for p in state.glob("sync.db.corrupt-*") if not p.name.endswith(("-wal", "-shm"))]
    assert len(aside) == 1, outs
    for job in specs:
        assert tree(node_of(root, job).job_assets_dir()) == digests(files, "h4/")


def _custom_spec(account_url: str, container: str, prefix: str) -> dict[str, object]:
    doc = make_spec(account_url, container, prefix)
    doc["render"] = {
        "renderer": "custom",
        "command": [sys.executable, "{scene}"],
        "scene": "scene.blend",
        "frames": "1",
    }
    return doc


def _prepared_node(
    store: BlobStore, tmp_path: Path, account_url: str, container: str, prefix: str, n: int
) -> tuple[dict[str, bytes], Path, Path]:
    """`n` files (and a scene) seeded under `container`/`prefix`, a custom-renderer job spec
    of them, and a node (tmp_path/node) whose start task and job prep ran on it: the files,
    the spec and the node's root."""
    files = _files(prefix, n)
    seed(store, container, files)
    spec = write_spec(tmp_path / "job.json", _custom_spec(account_url, container, prefix))
    root = tmp_path / "node"
    assert run_agent(["start-task"], node_env(root)).returncode == 0
    assert run_job_prep(root, "job-a", spec).returncode == 0
    return files, spec, root


def _doctor(root: Path, spec: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_agent(["doctor", "--root", str(root), "--spec", str(spec), *extra])


def test_doctor_reports_a_corrupt_state_db(
    azurite: AzuriteServer, store: BlobStore, tmp_path: Path
) -> None:
    files, spec, root = _prepared_node(
        store, tmp_path, azurite.account_url, "heal-doctor", "h2/", 60
    )
    res = _doctor(root, spec)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "state db" in res.stdout and "quick_check ok" in res.stdout

    db = agent_dir(root) / "state" / "sync.db"
    corrupt = _corrupt(db, "garbage in the middle")
    res = _doctor(root, spec)
    assert res.returncode == 20, res.stdout + res.stderr
    line = next(x for x in res.stdout.splitlines() if "state db" in x)
    assert line.startswith("FAIL") and str(db) in line and "corrupt" in line, line
    doc = json.loads(_doctor(root, spec, "--json").stdout)
    check = next(c for c in doc["checks"] if c["name"] == "state db")
    assert not check["ok"] and not doc["ok"]
    assert db.read_bytes() == corrupt  # the doctor reports; the next job prep heals

    db.write_bytes(b"not sqlite" * 100)
    res = _doctor(root, spec)
    assert res.returncode == 20 and "FAIL  state db" in res.stdout, res.stdout


def test_verify_cache_drops_a_flipped_byte_that_the_sync_misses(
    azurite: AzuriteServer, store: BlobStore, tmp_path: Path
) -> None:
    files, spec, root = _prepared_node(
        store, tmp_path, azurite.account_url, "heal-verify", "h3/", 40
    )
    res = _doctor(root, spec, "--verify-cache")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{len(files)} objects" in res.stdout and "0 bad" in res.stdout and "MB/s" in res.stdout

    bad = _object(root, files["h3/tex/t007.png"])
    _flip_a_byte_keeping_mtime(bad)
    # the sync trusts size and mtime: it does not see the change
    assert run_job_prep(root, "job-a", spec).returncode == 0
    assert summary(root, "job-a")["downloaded"] == 0

    res = _doctor(root, spec, "--verify-cache")
    assert res.returncode == 20, res.stdout + res.stderr
    assert bad.name in res.stdout and "dropped" in res.stdout, res.stdout
    assert "1 bad" in res.stdout
    assert not bad.exists()

    r = run_job_prep(root, "job-a", spec)
    assert r.returncode == 0, r.stderr
    assert summary(root, "job-a")["downloaded"] == 1
    assert tree(node_of(root, "job-a").job_assets_dir()) == digests(files, "h3/")
    assert hashlib.sha256(bad.read_bytes()).hexdigest() == bad.name
    res = _doctor(root, spec, "--verify-cache")
    assert res.returncode == 0 and "0 bad" in res.stdout, res.stdout
