"""A task writing into its assets folder never reaches the node's cache or another job's
view (issue 11, case 3), and AZ_BATCH_* ids never lead outside node_agent/jobs (case 15).

Real processes, real Azurite: job prep, a stand-in renderer run as the job's render task
(and in a local-pool job), job release. Every mount a test makes is undone by a fixture,
whatever happened.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import (
    STANDINS,
    make_spec_doc,
    mount_table_under,
    node_env,
    run_agent,
    run_local_pool,
    seed,
)

from node_agent.azurite import AzuriteServer
from node_agent.conventions import job_container
from node_agent.storage import BlobStore

WRITER = str(STANDINS / "scene_writer.py")
ASSETS = {
    "scene.blend": b"BLENDER-v293" + b"\x01" * 4000,
    "notes.txt": b"shot notes\n",
    "textures/a.png": b"\x89PNG a" * 500,
    "textures/b.png": b"\x89PNG b" * 300,
    "textures/c.png": b"\x89PNG c" * 200,
}
MODES = ["overlay", "copy"]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def cache_objects(root: Path) -> dict[str, bytes]:
    objs = root / "shared" / "node_agent" / "cache" / "objects"
    return {p.name: p.read_bytes() for p in objs.rglob("*") if p.is_file()}


def assert_cache_intact(root: Path, before: dict[str, bytes]) -> None:
    now = cache_objects(root)
    assert now == before, "a cache object changed"
    for name, data in now.items():
        assert sha(data) == name, f"cache object {name[:12]} no longer holds its content"


def _env(root: Path, job: str, task: str | None, mode: str | None) -> dict[str, str]:
    env = node_env(root, job, task)
    if mode:
        env["NODE_AGENT_VIEW_ISOLATION"] = mode
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_agent(args, env)


def writer_spec(url: str, job: str, prefix: str) -> dict[str, object]:
    doc = make_spec_doc(
        url,
        renderer="custom",
        scene="scene.blend",
        frames="1-2",
        command=[sys.executable, WRITER, "{assets_dir}", "{task_dir}/seen.json"]
        + ["{output_dir}", "{frames}"],
    )
    doc["job_id"] = job
    doc["assets"] = [{"name": "scene", "container": "iso-assets", "prefix": prefix}]
    return doc


def prep(root: Path, tmp: Path, doc: dict[str, object], mode: str | None) -> Path:
    job = str(doc["job_id"])
    spec = tmp / f"{job}.json"
    spec.write_text(json.dumps(doc))
    r = run(["job-prep", "--spec", str(spec)], _env(root, job, None, mode))
    assert r.returncode == 0, r.stderr
    return root / "shared" / "node_agent" / "jobs" / job


@pytest.mark.parametrize("mode", MODES)
def test_task_writes_stay_in_the_job(
    mode: str, tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    seed(store, "iso-assets", {f"shared/{k}": v for k, v in ASSETS.items()})
    root = tmp_path / "node"
    a, b = f"iso-{mode}-a", f"iso-{mode}-b"
    job_a = prep(root, tmp_path, writer_spec(azurite.account_url, a, "shared/"), mode)
    job_b = prep(root, tmp_path, writer_spec(azurite.account_url, b, "shared/"), mode)
    cache = cache_objects(root)
    assert len(cache) == len(ASSETS)
    assert tree(job_b / "assets") == ASSETS
    # task 1 of job A: the renderer modifies, truncates, appends, deletes and creates
    r = run(["render", "--frames", "1"], _env(root, a, "task-1", mode))
    assert r.returncode == 0, r.stderr
    assert_cache_intact(root, cache)
    assert tree(job_b / "assets") == ASSETS, "job B's view changed"
    view_a = tree(job_a / "assets")
    assert view_a["scene.blend"].startswith(b"SCENE-WRITER-WAS-HERE")
    assert view_a["textures/a.png"] == b"" and "textures/b.png" not in view_a
    assert view_a["notes.txt"].endswith(b"appended by the renderer\n")
    assert {"scene.blend1", "textures/a.tx", "cache/sim_0001.bc"} <= set(view_a)
    assert json.loads((job_a / "prep.json").read_text()).get("view_isolation") == mode
    mounted = mount_table_under(root)
    if mode == "overlay":
        assert mounted.get(str(job_a / "assets")) == "overlay"
    else:
        assert not mounted

    # task 2 of job A sees task 1's writes; the frames of both reached storage
    r = run(["render", "--frames", "2"], _env(root, a, "task-2", mode))
    assert r.returncode == 0, r.stderr
    seen = json.loads((root / "workitems" / a / "job-1" / "task-2" / "seen.json").read_text())
    assert seen["earlier_run"] and seen["scene_starts_with_mark"]
    assert not seen["b_png_present"]
    blobs = {x.name for x in store.list_blobs(job_container(a))}
    assert {"task-1/$TaskOutput/frame_0001.png", "task-2/$TaskOutput/frame_0002.png"} <= blobs
    assert_cache_intact(root, cache)
    assert tree(job_b / "assets") == ASSETS

    # job prep again (a node reboot): A's view is clean again, one mount, nothing downloaded
    prep(root, tmp_path, writer_spec(azurite.account_url, a, "shared/"), mode)
    assert tree(job_a / "assets") == ASSETS
    assert json.loads((job_a / "prep.json").read_text())["downloaded"] == 0
    if mode == "overlay":
        mine = [line for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        assert sum(f" {job_a / 'assets'} " in line for line in mine) == 1

    # job release of A: no mount left, A's folder gone, B and the cache untouched
    r = run(["job-release"], _env(root, a, "jobrelease", mode))
    assert r.returncode == 0, r.stderr
    assert not any(p.startswith(str(job_a)) for p in mount_table_under(root))
    assert not job_a.exists()
    assert_cache_intact(root, cache)
    assert tree(job_b / "assets") == ASSETS
    r = run(["job-release"], _env(root, b, "jobrelease", mode))
    assert r.returncode == 0, r.stderr
    assert not mount_table_under(tmp_path) and not job_b.exists()
    assert_cache_intact(root, cache)


def test_rerun_while_a_task_holds_the_view(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """Job prep again while a process still has the view open: the lower layer under that
    live view is never modified (the old view is detached lazily and set aside), the new
    view is clean, the cache is intact."""
    seed(store, "iso-assets", {f"busy/{k}": v for k, v in ASSETS.items()})
    root = tmp_path / "node"
    doc = writer_spec(azurite.account_url, "iso-busy", "busy/")
    job = prep(root, tmp_path, doc, "overlay")
    cache = cache_objects(root)
    held = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys,time; open('scene.blend','r+b').write(b'EDIT'); "
            "print('ok', flush=True); time.sleep(600)",
        ],
        cwd=job / "assets",
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert held.stdout is not None and held.stdout.readline().strip() == "ok"
        assert_cache_intact(root, cache)
        r = run(
            ["job-prep", "--spec", str(tmp_path / "iso-busy.json")],
            _env(root, "iso-busy", None, "overlay"),
        )
        assert r.returncode == 0, r.stderr
        assert "detached lazily" in r.stderr
        assert tree(job / "assets") == ASSETS
        assert_cache_intact(root, cache)
        # the old view is still what the running process sees
        assert Path(f"/proc/{held.pid}/cwd/scene.blend").read_bytes().startswith(b"EDIT")
    finally:
        held.kill()
        held.wait()
    time.sleep(0.2)
    r = run(["job-release"], _env(root, "iso-busy", "jobrelease", "overlay"))
    assert r.returncode == 0, r.stderr
    assert not mount_table_under(tmp_path) and not job.exists()
    assert_cache_intact(root, cache)


def test_local_pool_job_writing_its_scene_leaves_cache_and_other_job(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    seed(store, "iso-assets", {f"pool/{k}": v for k, v in ASSETS.items()})
    workdir = tmp_path / "pool"
    node_root = workdir / "localpool" / "nodes" / "node-1"
    # a second job already on the node, sharing the same assets
    job_b = prep(node_root, tmp_path, writer_spec(azurite.account_url, "iso-pool-b", "pool/"), None)
    cache = cache_objects(node_root)
    doc = writer_spec(azurite.account_url, "iso-pool-a", "pool/")
    doc["render"]["frames_per_task"] = 1  # type: ignore[index]
    spec = tmp_path / "pool-a.yaml"
    spec.write_text(yaml.safe_dump(doc))
    r = run_local_pool(spec, workdir, nodes=1, slots=1)
    assert r.returncode == 0, r.stdout + r.stderr
    blobs = {x.name for x in store.list_blobs(job_container("iso-pool-a"))}
    assert sum(n.endswith(".png") and "$TaskOutput" in n for n in blobs) == 2
    reports = sorted(
        (node_root / "workitems" / "iso-pool-a").rglob("seen.json"), key=lambda p: p.stat().st_mtime
    )
    assert len(reports) == 2
    second = json.loads(reports[1].read_text())
    assert second["earlier_run"] and second["scene_starts_with_mark"]  # the job sees its writes
    assert_cache_intact(node_root, cache)
    assert tree(job_b / "assets") == ASSETS, "the other job's view changed"
    job_a = node_root / "shared" / "node_agent" / "jobs" / "iso-pool-a"
    assert not job_a.exists() and not any(
        p.startswith(str(job_a)) for p in mount_table_under(node_root)
    )


@pytest.mark.parametrize(
    "var,value",
    [
        ("AZ_BATCH_JOB_ID", "../../../escape"),
        ("AZ_BATCH_JOB_ID", "..\\..\\..\\escape"),
        ("AZ_BATCH_JOB_ID", "x/../../../../escape"),
        ("AZ_BATCH_TASK_ID", "../../../../escape"),
    ],
)
def test_batch_ids_never_lead_outside(
    var: str, value: str, tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    seed(store, "iso-assets", {f"ids/{k}": v for k, v in ASSETS.items()})
    root = tmp_path / "node"
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps(writer_spec(azurite.account_url, "iso-ids", "ids/")))
    env = _env(root, "iso-ids", None, None)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    r = run(["job-prep", "--spec", str(spec)], {**env, var: value})
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and var in lines[0], r.stderr
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before, "something was written"

    # job release with the same id removes nothing outside node_agent/jobs
    precious = root / "escape" / "precious.txt"
    precious.parent.mkdir(parents=True, exist_ok=True)
    precious.write_text("not node_agent's")
    (root.parent / "escape").mkdir(exist_ok=True)
    (root.parent / "escape" / "precious.txt").write_text("not node_agent's")
    rel_env = _env(root, "iso-ids", "jobrelease", None)
    r = run(["job-release"], {**rel_env, var: value})
    assert r.returncode == 2, r.stderr
    assert precious.read_text() == "not node_agent's"
    assert (root.parent / "escape" / "precious.txt").exists()


@pytest.mark.parametrize("mode", MODES)
def test_rerun_never_writes_through_links_a_task_planted(
    mode: str, tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """A task replaces a folder and a file of its view with links to elsewhere; job prep
    again gives a clean view and never writes or removes through the links."""
    seed(store, "iso-assets", {f"links/{k}": v for k, v in ASSETS.items()})
    root = tmp_path / "node"
    doc = writer_spec(azurite.account_url, "iso-links", "links/")
    job = prep(root, tmp_path, doc, mode)
    cache = cache_objects(root)
    outside = tmp_path / "outside"
    (outside / "tex").mkdir(parents=True)
    (outside / "tex" / "a.png").write_bytes(b"someone else's a.png")
    (outside / "notes.txt").write_bytes(b"someone else's notes")
    view = job / "assets"
    for p in sorted((view / "textures").iterdir()):
        p.unlink()
    (view / "textures").rmdir()
    (view / "textures").symlink_to(outside / "tex")
    (view / "notes.txt").unlink()
    (view / "notes.txt").symlink_to(outside / "notes.txt")
    prep(root, tmp_path, doc, mode)
    assert tree(view) == ASSETS
    assert not (view / "textures").is_symlink() and not (view / "notes.txt").is_symlink()
    assert tree(outside) == {
        "tex/a.png": b"someone else's a.png",
        "notes.txt": b"someone else's notes",
    }
    assert_cache_intact(root, cache)
    r = run(["job-release"], _env(root, "iso-links", "jobrelease", mode))
    assert r.returncode == 0, r.stderr
    assert not job.exists() and not mount_table_under(tmp_path)
    assert tree(outside) == {
        "tex/a.png": b"someone else's a.png",
        "notes.txt": b"someone else's notes",
    }


def test_auto_mode_falls_back_to_a_copy_and_says_why(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """Where an overlay cannot be mounted (here: a node path with ',' that mount options
    cannot carry; elsewhere not root, not Linux), the view is a copy: still isolated."""
    seed(store, "iso-assets", {f"auto/{k}": v for k, v in ASSETS.items()})
    root = tmp_path / "node,1"
    job = prep(root, tmp_path, writer_spec(azurite.account_url, "iso-auto", "auto/"), None)
    cache = cache_objects(root)
    with open(job / "assets" / "scene.blend", "r+b") as fh:
        fh.write(b"IN PLACE")
    (job / "assets" / "notes.txt").write_bytes(b"")
    assert_cache_intact(root, cache)
    record = json.loads((job / "prep.json").read_text())
    assert record.get("view_isolation") == "copy" and "','" in record["view_reason"]
    log = next((root / "shared" / "node_agent" / "logs").glob("job-prep_iso-auto_*.log"))
    assert "view isolation: copy (auto: overlay unavailable" in log.read_text()
    assert not mount_table_under(tmp_path)
