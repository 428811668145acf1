"""Fault injection with real processes and a real Azurite: nothing is lost, nothing half-written."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import make_spec_doc, node_env, upload_tree

from node_agent.azurite import AzuriteServer
from node_agent.conventions import job_container
from node_agent.errors import StorageError
from node_agent.redact import Redactor
from node_agent.spec import spec_from_data
from node_agent.storage import BlobStore


def _make_source(root: Path, files: int, size: int, seed: int = 1) -> Path:
    rnd = random.Random(seed)
    for i in range(files):
        p = root / f"dir{i % 7}" / f"asset_{i:04d}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rnd.randbytes(size))
    (root / "spin.blend").write_bytes(b"scene")
    return root


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


def _blobs(store: BlobStore, container: str) -> list[str]:
    try:
        return [b.name for b in store.list_blobs(container)]
    except StorageError:  # the container is not there yet
        return []


def _prep_cmd(spec: Path) -> list[str]:
    return [sys.executable, "-m", "node_agent", "job-prep", "--spec", str(spec)]


def _spec(
    tmp_path: Path, account_url: str, prefix: str, job: str, retry_s: float | None = None
) -> Path:
    doc = make_spec_doc(account_url)
    doc["job_id"] = job
    doc["assets"][0]["prefix"] = prefix
    if retry_s is not None:
        doc.setdefault("policies", {})["storage_retry_s"] = retry_s
    path = tmp_path / f"{job}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.slow
def test_kill_9_during_job_prep_at_many_points(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    src = _make_source(tmp_path / "src", files=240, size=48_000)
    upload_tree(store, src, "assets", "kill9/")
    spec = _spec(tmp_path, azurite.account_url, "kill9/", "kill-job")
    root = tmp_path / "node"
    env = node_env(root, "kill-job")
    view = root / "shared" / "node_agent" / "jobs" / "kill-job" / "assets"
    expected = _tree(src)
    rnd = random.Random(7)
    kills = 0
    for _ in range(12):
        proc = subprocess.Popen(
            _prep_cmd(spec), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rnd.uniform(0.3, 2.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        # whatever is visible under a final name is complete and correct
        if view.exists():
            for rel, data in _tree(view).items():
                assert expected.get(rel) == data, f"{rel} is partial or wrong after kill -9"
    assert kills >= 3, "job prep finished too fast to be killed: make the data set larger"
    res = subprocess.run(_prep_cmd(spec), env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert _tree(view) == expected


@pytest.mark.slow
def test_storage_down_mid_sync_then_back(tmp_path: Path) -> None:
    """Azurite stops during a sync and comes back a few seconds later: the phase finishes."""
    with AzuriteServer(location=tmp_path / "az") as az:
        spec_doc = make_spec_doc(az.account_url)
        store = BlobStore(spec_from_data(spec_doc).storage, Redactor())
        src = _make_source(tmp_path / "src", files=1500, size=40_000, seed=3)
        upload_tree(store, src, "assets", "proj/")
        spec = _spec(tmp_path, az.account_url, "proj/", "outage-job")
        root = tmp_path / "node"
        env = node_env(root, "outage-job")
        proc = subprocess.Popen(
            _prep_cmd(spec), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        log = root / "shared" / "node_agent" / "logs"
        deadline = time.monotonic() + 60
        while not list((root / "shared" / "node_agent" / "cache").rglob("objects/*/*")):
            assert proc.poll() is None and time.monotonic() < deadline, "sync never started"
            time.sleep(0.05)
        az.stop()  # mid-sync: some objects are in the cache, most are not
        assert proc.poll() is None, "the sync finished before storage went down"
        time.sleep(3.0)
        az.start()
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        assert "storage is unreachable" in err and "retrying" in err, err
        assert log.is_dir()
        view = root / "shared" / "node_agent" / "jobs" / "outage-job" / "assets"
        assert _tree(view) == _tree(src)


def test_storage_down_for_good_fails_clearly(tmp_path: Path) -> None:
    with AzuriteServer(location=tmp_path / "az") as az:
        url = az.account_url
    spec = _spec(tmp_path, url, "proj/", "down-job", retry_s=3)
    env = node_env(tmp_path / "node", "down-job")
    t0 = time.monotonic()
    res = subprocess.run(_prep_cmd(spec), env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 4, res.stderr
    lines = res.stderr.strip().splitlines()
    assert lines[-1].startswith("node-agent: error:") and "unreachable" in lines[-1]
    assert "attempts over" in lines[-1]  # says how long it tried
    assert "Traceback" not in res.stderr
    assert time.monotonic() - t0 < 60  # the spec's retry budget, not the 60 s default


@pytest.mark.slow
def test_four_concurrent_job_preps_share_downloads(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    src = _make_source(tmp_path / "src", files=120, size=30_000, seed=5)
    upload_tree(store, src, "assets", "conc/")
    root = tmp_path / "node"
    procs = []
    for j in range(4):
        spec = _spec(tmp_path, azurite.account_url, "conc/", f"conc-{j}")
        procs.append(
            subprocess.Popen(
                _prep_cmd(spec),
                env=node_env(root, f"conc-{j}"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    expected = _tree(src)
    total = 0
    import json

    for j in range(4):
        view = root / "shared" / "node_agent" / "jobs" / f"conc-{j}" / "assets"
        assert _tree(view) == expected
        summary = (
            root / "workitems" / f"conc-{j}" / "job-1" / "jobpreparation" / "sync-summary.json"
        )
        total += json.loads(summary.read_text())["bytes_downloaded"]
    source_bytes = sum(len(v) for v in expected.values())
    assert total == source_bytes, (
        "each shared file must be downloaded exactly once across the 4 job preps"
    )


@pytest.mark.slow
def test_huge_renderer_log_is_capped(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """A renderer that writes 1 GB of output: the log is capped, the task completes."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "spin.blend").write_bytes(b"scene")
    upload_tree(store, src, "assets", "hugelog/")
    script = (
        "import os,sys\n"
        "line = b'x' * 1023 + b'\\n'\n"
        "block = line * 1024\n"
        "for _ in range(1024): sys.stdout.buffer.write(block)\n"
        "sys.stdout.flush()\n"
        "out = sys.argv[1]; os.makedirs(out, exist_ok=True)\n"
        "open(os.path.join(out, 'frame_0001.png'), 'wb').write(b'png')\n"
    )
    doc = make_spec_doc(
        azurite.account_url,
        renderer="custom",
        frames="1",
        command=[sys.executable, "-c", script, "{output_dir}"],
    )
    doc["job_id"] = "hugelog"
    doc["assets"][0]["prefix"] = "hugelog/"
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(doc))
    root = tmp_path / "node"
    assert (
        subprocess.run(
            _prep_cmd(spec), env=node_env(root, "hugelog"), capture_output=True
        ).returncode
        == 0
    )
    env = node_env(root, "hugelog", "frames-00001-00001")
    task_dir = Path(env["AZ_BATCH_TASK_DIR"])
    with open(task_dir / "stdout.txt", "wb") as out, open(task_dir / "stderr.txt", "wb") as err:
        res = subprocess.run(
            [sys.executable, "-m", "node_agent", "render", "--frames", "1"],
            env=env,
            stdout=out,
            stderr=err,
            timeout=900,
        )
    assert res.returncode == 0, (task_dir / "stderr.txt").read_text()[-2000:]
    total = sum(p.stat().st_size for p in task_dir.rglob("*") if p.is_file())
    assert total < 600 * 2**20, f"task folder holds {total} bytes"
    assert os.path.getsize(task_dir / "renderer.log") < 300 * 2**20


@pytest.mark.slow
def test_storage_down_mid_upload_then_back(tmp_path: Path) -> None:
    """Azurite stops while a render task is uploading frames and comes back a few seconds
    later: the task retries, exits 0, and every frame and log is in storage."""
    with AzuriteServer(location=tmp_path / "az") as az:
        store = BlobStore(spec_from_data(make_spec_doc(az.account_url)).storage, Redactor())
        src = tmp_path / "src"
        src.mkdir()
        (src / "spin.blend").write_bytes(b"scene")
        upload_tree(store, src, "assets", "upl/")
        # a "renderer" that writes a frame every 0.4 s
        script = (
            "import os,sys,time\n"
            "out = sys.argv[1]; os.makedirs(out, exist_ok=True)\n"
            "for n in range(1, 21):\n"
            "    open(os.path.join(out, 'frame_%04d.png' % n), 'wb').write(os.urandom(50000))\n"
            "    print('wrote frame', n, flush=True); time.sleep(0.4)\n"
        )
        doc = make_spec_doc(
            az.account_url,
            renderer="custom",
            frames="1-20",
            frames_per_task=20,
            command=[sys.executable, "-c", script, "{output_dir}"],
        )
        doc["job_id"] = "upl"
        doc["assets"][0]["prefix"] = "upl/"
        spec = tmp_path / "job.yaml"
        spec.write_text(yaml.safe_dump(doc))
        root = tmp_path / "node"
        prep = subprocess.run(_prep_cmd(spec), env=node_env(root, "upl"), capture_output=True)
        assert prep.returncode == 0, prep.stderr
        task = "frames-00001-00020"
        proc = subprocess.Popen(
            [sys.executable, "-m", "node_agent", "render", "--frames", "1-20"],
            env=node_env(root, "upl", task),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        container = job_container("upl")
        deadline = time.monotonic() + 120
        while not _blobs(store, container):
            assert proc.poll() is None and time.monotonic() < deadline, "no frame was uploaded"
            time.sleep(0.1)
        az.stop()  # frames are being written and uploaded
        assert proc.poll() is None, "the task finished before storage went down"
        time.sleep(3.0)
        az.start()
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err  # the SDK's and node_agent's retries bridged the gap
        names = {b.name for b in store.list_blobs(container)}
        frames = {n for n in names if "/$TaskOutput/" in n}
        assert len(frames) == 20, sorted(frames)
        for log in ("stdout.txt", "stderr.txt", "renderer.log", "summary.json"):
            assert f"{task}/$TaskLog/{log}" in names
