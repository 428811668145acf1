"""Fault injection with real processes and a real Azurite: nothing is lost, nothing half-written."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from helpers import (
    agent_cmd,
    make_spec_doc,
    node_env,
    unmount_all_under,
    upload_tree,
    uploaded_job_doc,
)

from node_agent.azurite import AzuriteServer
from node_agent.conventions import job_container
from node_agent.errors import StorageError
from node_agent.redact import Redactor
from node_agent.spec import spec_from_data
from node_agent.storage import BlobStore
from node_agent.sync.fetch import PART_SIZE


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
    return agent_cmd("job-prep", "--spec", spec)


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


def _assert_nothing_partial(na: Path, expected: dict[str, bytes], after: str) -> None:
    """Whatever is under a final name is complete: view files, objects, the job's records."""
    view = na / "jobs" / "kill-job" / "assets"
    for rel, data in _tree(view).items() if view.exists() else []:
        assert expected.get(rel) == data, f"{rel} is partial or wrong {after}"
    for p in (na / "cache" / "objects").rglob("*") if (na / "cache").exists() else []:
        if p.is_file():
            assert hashlib.sha256(p.read_bytes()).hexdigest() == p.name, f"{p} partial {after}"
    for record in (na / "jobs" / "kill-job" / "spec.json", na / "jobs" / "kill-job" / "prep.json"):
        if record.exists():
            json.loads(record.read_text())  # written whole or not at all


@pytest.mark.slow
def test_kill_9_during_job_prep_at_many_points(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """kill -9 of job prep at >= 10 moments spread over a cold sync (a killed run's successor
    resumes; a run that finished first is followed by a fresh node): after every kill nothing
    partial is visible under a final name, and the last run ends with the exact tree."""
    src = _make_source(tmp_path / "src", files=240, size=48_000)
    upload_tree(store, src, "assets", "kill9/")
    spec = _spec(tmp_path, azurite.account_url, "kill9/", "kill-job")
    root = tmp_path / "node"
    na = root / "shared" / "node_agent"
    view = na / "jobs" / "kill-job" / "assets"
    expected = _tree(src)

    # one cold sync, whole, to know when its moments are
    t0 = time.monotonic()
    res = subprocess.run(
        _prep_cmd(spec), env=node_env(root, "kill-job"), capture_output=True, timeout=600
    )
    cold = time.monotonic() - t0
    assert res.returncode == 0, res.stderr
    summary = root / "workitems" / "kill-job" / "job-1" / "jobpreparation" / "sync-summary.json"
    sync_s = json.loads(summary.read_text())["seconds"]
    startup = max(0.0, cold - sync_s)
    unmount_all_under(root)  # job prep presents the view as an overlay mount
    shutil.rmtree(root)
    # 12 kill delays over the sync part of the run, a little before it to its end
    slots = [startup * 0.8 + (cold - startup * 0.8) * (k + 0.5) / 12 for k in range(12)]

    kills: list[tuple[float, int]] = []  # (delay, objects in the cache just after the kill)
    pending = list(slots)  # each slot is killed once; one past a cold sync's end moves earlier
    cold_run = True  # the node is fresh: this run syncs from nothing
    for _ in range(60):
        if len(kills) >= 10 or not pending:
            break
        delay = pending[0]
        proc = subprocess.Popen(
            _prep_cmd(spec),
            env=node_env(root, "kill-job"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        rc = proc.wait()
        if rc == -signal.SIGKILL:
            _assert_nothing_partial(na, expected, f"after kill -9 at {delay:.2f} s")
            objects = na / "cache" / "objects"
            kills.append((delay, sum(1 for p in objects.rglob("*") if p.is_file())))
            pending.pop(0)
            cold_run = False  # the next run resumes what this one left
        else:
            assert rc == 0, f"job prep exited {rc} at slot {delay:.2f} s"
            assert _tree(view) == expected
            if cold_run:  # even a cold sync ended before this moment: try an earlier one
                pending[0] = startup * 0.8 + (pending[0] - startup * 0.8) * 0.7
            unmount_all_under(root)
            shutil.rmtree(root)  # a fresh node: the next run syncs from nothing again
            cold_run = True
    assert len(kills) >= 10, f"only {len(kills)} kills in 60 runs (cold sync {cold:.1f} s)"
    assert len({d for d, _ in kills}) >= 10, kills  # at 10 distinct moments
    distinct = len(set(expected.values()))
    assert any(0 < n < distinct for _, n in kills), (
        f"no kill landed mid-download: {kills} (cold sync {cold:.1f} s)"
    )
    res = subprocess.run(
        _prep_cmd(spec), env=node_env(root, "kill-job"), capture_output=True, timeout=600
    )
    assert res.returncode == 0, res.stderr
    assert _tree(view) == expected
    _assert_store_consistent(na / "cache", na / "state")


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
def test_storage_down_for_good_part_way_through_a_sync(tmp_path: Path) -> None:
    """Storage goes away for good after part of a sync (a gate lets 40 blob GETs through,
    holds the rest, then Azurite stops and the gate refuses connections): job prep exits 4
    with one clear line; what reached the cache stays, intact and recorded; with storage
    back (same data), the re-run downloads only the rest and ends byte-identical."""
    with AzuriteServer(location=tmp_path / "az") as az:
        store = BlobStore(spec_from_data(make_spec_doc(az.account_url)).storage, Redactor())
        src = _make_source(tmp_path / "src", files=300, size=40_000, seed=11)
        upload_tree(store, src, "assets", "gone/")
        expected = _tree(src)
        gate = _Gate(az.account_url, free_gets=40)
        spec = _spec(tmp_path, gate.url, "gone/", "gone-job", retry_s=2)
        root = tmp_path / "node"
        env = node_env(root, "gone-job")
        na = root / "shared" / "node_agent"
        objects = na / "cache" / "objects"

        def cached() -> list[Path]:
            return [p for p in objects.rglob("*") if p.is_file()] if objects.exists() else []

        try:
            proc = subprocess.Popen(
                _prep_cmd(spec), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            deadline = time.monotonic() + 120
            while not (gate.held.is_set() and len(cached()) >= gate.forwarded):
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the first 40 blobs never landed"
                time.sleep(0.05)
            az.stop()  # for good: nothing answers any more
        finally:
            gate.close()
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 4, err  # ExitCode.STORAGE
        assert "Traceback" not in err, err
        errors = [ln for ln in err.splitlines() if ln.startswith("node-agent:")]
        assert len(errors) == 1 and errors[0].startswith("node-agent: error: "), err
        assert "storage is unreachable" in errors[0] and "attempts over" in errors[0], errors[0]

        kept = cached()
        assert len(kept) >= 40, f"{len(kept)} objects kept in the cache"
        _assert_store_consistent(na / "cache", na / "state")  # each intact, DB agrees
        kept_bytes = sum(p.stat().st_size for p in kept)

        az.start()  # same data location, same port
        gate = _Gate(az.account_url, free_gets=10**9, port=gate.port)  # the spec's URL again
        try:
            res = subprocess.run(
                _prep_cmd(spec), env=env, capture_output=True, text=True, timeout=600
            )
        finally:
            gate.close()
        assert res.returncode == 0, res.stderr
        summary = root / "workitems" / "gone-job" / "job-1" / "jobpreparation" / "sync-summary.json"
        downloaded = json.loads(summary.read_text())["bytes_downloaded"]
        total = sum(len(v) for v in expected.values())
        assert downloaded < total, f"the re-run downloaded the whole source ({downloaded} B)"
        assert downloaded <= total - kept_bytes, "the re-run fetched content already cached"
        assert _tree(na / "jobs" / "gone-job" / "assets") == expected
        _assert_store_consistent(na / "cache", na / "state")


def _four_overlapping_sources(seed: int) -> list[dict[str, bytes]]:
    """Four jobs' trees that overlap: files identical in every job under the same name,
    identical bytes under a different name per job, a file twice within one job, files only
    one job has, and one path every job has with different bytes (of the same size)."""
    rnd = random.Random(seed)
    same_name = {f"lib/shared_{i:02d}.bin": rnd.randbytes(30_000) for i in range(40)}
    renamed = [rnd.randbytes(20_000) for _ in range(10)]
    sources = []
    for j in range(4):
        tree = dict(same_name)
        tree.update({f"tex{j}/alias_{j}_{k}.bin": data for k, data in enumerate(renamed)})
        tree.update({f"own/only_{j}_{i}.bin": rnd.randbytes(25_000) for i in range(15)})
        twice = rnd.randbytes(12_000)
        tree.update({f"dup/a_{j}.bin": twice, f"dup/b_{j}.bin": twice})
        tree["spin.blend"] = f"scene of job {j} ".encode() * 500  # same size, other bytes
        sources.append(tree)
    return sources


@pytest.mark.slow
def test_four_concurrent_job_preps_share_downloads(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """Four job preps at once on one node, each with its own prefix: each view is exactly its
    own source (a mix-up between jobs fails it: spin.blend differs per job), and the bytes
    downloaded over the four are the bytes of distinct content (shared content once)."""
    sources = _four_overlapping_sources(seed=5)
    for j, tree in enumerate(sources):
        src = tmp_path / f"src{j}"
        for rel, data in tree.items():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes(data)
        upload_tree(store, src, "assets", f"conc-{j}/")
    root = tmp_path / "node"
    procs = []
    for j in range(4):
        spec = _spec(tmp_path, azurite.account_url, f"conc-{j}/", f"conc-{j}")
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
    total = 0
    for j in range(4):
        view = root / "shared" / "node_agent" / "jobs" / f"conc-{j}" / "assets"
        assert _tree(view) == sources[j], f"job conc-{j}'s view is not its own source"
        summary = (
            root / "workitems" / f"conc-{j}" / "job-1" / "jobpreparation" / "sync-summary.json"
        )
        total += json.loads(summary.read_text())["bytes_downloaded"]
    distinct = {hashlib.sha256(d).digest(): len(d) for tree in sources for d in tree.values()}
    assert total == sum(distinct.values()), (
        f"{total} bytes downloaded for {sum(distinct.values())} bytes of distinct content: "
        "each distinct content must be downloaded exactly once across the 4 job preps"
    )


@pytest.mark.slow
def test_huge_renderer_log_is_capped(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """A renderer that writes 1 GB of output: the log is capped, the task completes."""
    script = (
        "import os,sys\n"
        "line = b'x' * 1023 + b'\\n'\n"
        "block = line * 1024\n"
        "for _ in range(1024): sys.stdout.buffer.write(block)\n"
        "sys.stdout.flush()\n"
        "out = sys.argv[1]; os.makedirs(out, exist_ok=True)\n"
        "open(os.path.join(out, 'frame_0001.png'), 'wb').write(b'png')\n"
    )
    doc = uploaded_job_doc(
        azurite.account_url,
        store,
        tmp_path,
        "hugelog",
        blend=b"scene",
        renderer="custom",
        frames="1",
        command=[sys.executable, "-c", script, "{output_dir}"],
    )
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
            agent_cmd("render", "--frames", "1"),
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
        # a "renderer" that writes a frame every 0.4 s
        script = (
            "import os,sys,time\n"
            "out = sys.argv[1]; os.makedirs(out, exist_ok=True)\n"
            "for n in range(1, 21):\n"
            "    open(os.path.join(out, 'frame_%04d.png' % n), 'wb').write(os.urandom(50000))\n"
            "    print('wrote frame', n, flush=True); time.sleep(0.4)\n"
        )
        doc = uploaded_job_doc(
            az.account_url,
            store,
            tmp_path,
            "upl",
            blend=b"scene",
            renderer="custom",
            frames="1-20",
            frames_per_task=20,
            command=[sys.executable, "-c", script, "{output_dir}"],
        )
        spec = tmp_path / "job.yaml"
        spec.write_text(yaml.safe_dump(doc))
        root = tmp_path / "node"
        prep = subprocess.run(_prep_cmd(spec), env=node_env(root, "upl"), capture_output=True)
        assert prep.returncode == 0, prep.stderr
        task = "frames-00001-00020"
        env = node_env(root, "upl", task)
        task_dir = Path(env["AZ_BATCH_TASK_DIR"])
        # as Batch does: the task's stdout/stderr go to files in its folder
        out_f = open(task_dir / "stdout.txt", "w")  # noqa: SIM115 - closed below
        err_f = open(task_dir / "stderr.txt", "w")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            agent_cmd("render", "--frames", "1-20"),
            env=env,
            stdout=out_f,
            stderr=err_f,
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
        proc.wait(timeout=600)
        out_f.close()
        err_f.close()
        err = (task_dir / "stderr.txt").read_text()
        assert proc.returncode == 0, err  # the SDK's and node_agent's retries bridged the gap
        names = {b.name for b in store.list_blobs(container)}
        frames = {n for n in names if "/$TaskOutput/" in n}
        assert len(frames) == 20, sorted(frames)
        for log in ("stdout.txt", "stderr.txt", "renderer.log", "summary.json"):
            assert f"{task}/$TaskLog/{log}" in names


# --- a disk that fills up during a sync ------------------------------------------------


class _Gate:
    """An HTTP proxy in front of Azurite that forwards listings at once, forwards the first
    `free_gets` blob GETs, then holds every blob GET until `open` is set (`held` is set when
    the first one is held). Job prep only asks for a blob after its free-space check passed,
    so while a GET is held the test can fill the disk between that check and the write, or
    stop storage part-way through a sync. A request Azurite does not answer (stopped) drops
    the client's connection."""

    def __init__(self, account_url: str, free_gets: int = 0, port: int = 0) -> None:
        target = urlparse(account_url)
        self.held, self.open = threading.Event(), threading.Event()
        self.forwarded = 0  # blob GETs let through
        lock = threading.Lock()
        gate = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                if "comp=list" not in self.path:
                    with lock:
                        hold = gate.forwarded >= free_gets
                        gate.forwarded += 0 if hold else 1
                    if hold:
                        gate.held.set()
                        gate.open.wait(300)
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
                skip = {"connection", "host", "keep-alive"}
                try:
                    conn.request(
                        "GET",
                        self.path,
                        headers={k: v for k, v in self.headers.items() if k.lower() not in skip},
                    )
                    r = conn.getresponse()
                    data = r.read()
                except OSError:  # storage is down: so is the connection
                    self.close_connection = True
                    return
                finally:
                    conn.close()
                self.send_response(r.status, r.reason)
                for k, v in r.getheaders():
                    if k.lower() not in skip | {
                        "content-length",
                        "transfer-encoding",
                        "date",
                        "server",
                    }:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{target.path}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        """Stop listening (new connections are refused), then let held requests go on."""
        self.server.shutdown()
        self.server.server_close()
        self.open.set()


@contextlib.contextmanager
def _tmpfs(path: Path, size: int) -> Iterator[Path]:
    """A real tmpfs of `size` bytes mounted at `path` (root only), unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    cmd = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]
    if subprocess.run(cmd, capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(fs: Path, leave: int) -> Path:
    """Another file takes the filesystem's free space but `leave` bytes (real blocks)."""
    filler = fs / "filler.bin"
    free = shutil.disk_usage(fs).free
    with open(filler, "wb") as fh:
        os.posix_fallocate(fh.fileno(), 0, free - leave)
    assert abs(shutil.disk_usage(fs).free - leave) <= 64 * 1024
    return filler


def _assert_store_consistent(cache: Path, state: Path) -> None:
    """No temp file left; every object (on disk or in the state DB) is complete and named by
    its sha256; every DB object exists as recorded; every blob row points at a known object."""
    assert not list((cache / "tmp").iterdir()), "a temp download was left behind"
    for p in (cache / "objects").rglob("*"):
        if p.is_file():
            assert hashlib.sha256(p.read_bytes()).hexdigest() == p.name, f"{p} is partial"
    db = sqlite3.connect(state / "sync.db")
    try:
        objects = {h: (s, m) for h, s, m in db.execute("SELECT hash, size, mtime_ns FROM objects")}
        blob_hashes = {h for (h,) in db.execute("SELECT hash FROM blobs")}
    finally:
        db.close()
    for h, (size, mtime_ns) in objects.items():
        st = (cache / "objects" / h[:2] / h).stat()
        assert (st.st_size, st.st_mtime_ns) == (size, mtime_ns), f"object {h[:12]} changed"
    assert blob_hashes <= set(objects)


@pytest.mark.parametrize(
    ("shape", "leave"),
    [("small", 0), ("ranged", 1024 * 1024)],
    ids=["small-blobs-disk-completely-full", "ranged-blob-1MB-left"],
)
def test_disk_fills_up_during_the_download(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore, shape: str, leave: int
) -> None:
    """The blobs' listed sizes pass the free-space check, then another file fills the disk
    before the bytes arrive: the write itself hits ENOSPC. Job prep exits 6 (disk full) with
    one line naming the blob and the free bytes; no temp file stays, the cache and the state
    DB stay consistent; with the space back, a re-run ends with the source's exact tree."""
    prefix = f"enospc-{shape}/"
    src = tmp_path / "src"
    (src / "tex").mkdir(parents=True)
    (src / "spin.blend").write_bytes(b"scene")
    sizes = [512 * 1024] * 6 if shape == "small" else [PART_SIZE + 1024 * 1024]
    for i, size in enumerate(sizes):
        (src / "tex" / f"t{i}.bin").write_bytes(random.Random(i).randbytes(size))
    upload_tree(store, src, "assets", prefix)
    expected = _tree(src)
    gate = _Gate(azurite.account_url)
    doc = make_spec_doc(gate.url)
    doc["job_id"] = "full-job"
    doc["assets"][0]["prefix"] = prefix
    doc["policies"] = {"free_space_reserve_mb": 0}
    spec = tmp_path / "full-job.yaml"
    spec.write_text(yaml.safe_dump(doc))
    root = tmp_path / "node"
    env = node_env(root, "full-job")
    na = root / "shared" / "node_agent"
    with _tmpfs(root / "shared", sum(sizes) + 8 * 1024 * 1024) as shared:
        try:
            proc = subprocess.Popen(
                _prep_cmd(spec), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            deadline = time.monotonic() + 120
            while not gate.held.wait(0.1):
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "job prep never asked for a blob"
            filler = _fill(shared, leave)  # after the check, before the write
            gate.open.set()
            out, err = proc.communicate(timeout=300)
        except BaseException:
            gate.close()
            raise
        assert proc.returncode == 6, err  # ExitCode.DISK_FULL, not an internal error
        assert "Traceback" not in err and "Logging error" not in err, err
        errors = [ln for ln in err.splitlines() if ln.startswith("node-agent:")]
        assert len(errors) == 1, err
        line = errors[0]
        assert line.startswith("node-agent: error: ") and "bytes free" in line, line
        assert f"'assets/{prefix}tex/t" in line, line  # names the blob being written
        _assert_store_consistent(na / "cache", na / "state")
        view = na / "jobs" / "full-job" / "assets"
        for rel, data in _tree(view).items() if view.exists() else []:
            assert expected.get(rel) == data, f"{rel} is partial after the disk filled up"

        filler.unlink()  # space is back
        try:
            res = subprocess.run(
                _prep_cmd(spec), env=env, capture_output=True, text=True, timeout=300
            )
        finally:
            gate.close()
        assert res.returncode == 0, res.stderr
        assert _tree(view) == expected
        _assert_store_consistent(na / "cache", na / "state")


def test_disk_fills_up_while_copying_into_the_view(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """`node-agent sync` by hand with the cache on one filesystem and the view on a small
    tmpfs: links fall back to copies (EXDEV), and a copy hits ENOSPC. Exit 6 with one line
    naming the view file and the free bytes; the cache stays consistent; the re-run with
    space finishes with the exact tree."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        (src / f"plate{i}.exr").write_bytes(random.Random(10 + i).randbytes(512 * 1024))
    upload_tree(store, src, "assets", "enospc-view/")
    cache = tmp_path / "cache"
    env = {**os.environ, "NODE_AGENT_ACCOUNT_URL": azurite.account_url}
    cmd = agent_cmd(
        "sync", "assets/enospc-view/", tmp_path / "viewfs" / "view", "--cache", cache
    ) + ["--reserve-mb", "0"]
    with _tmpfs(tmp_path / "viewfs", 4 * 1024 * 1024) as fs:
        filler = _fill(fs, 1024 * 1024)  # room for two of the four copies
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 6, res.stderr
        assert "Traceback" not in res.stderr, res.stderr
        errors = [ln for ln in res.stderr.splitlines() if ln.startswith("node-agent:")]
        assert len(errors) == 1, res.stderr
        assert "bytes free" in errors[0] and "/view/plate" in errors[0], errors[0]
        for rel, data in _tree(fs / "view").items():
            assert _tree(src).get(rel) == data, f"{rel} is partial"
        assert not [p for p in (fs / "view").iterdir() if p.name.endswith(".link")]
        _assert_store_consistent(cache, cache / "state")
        filler.unlink()
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        assert _tree(fs / "view") == _tree(src)
        _assert_store_consistent(cache, cache / "state")
