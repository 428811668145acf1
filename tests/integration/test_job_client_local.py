"""`job watch`, `job download --follow` and `job report` on a real local-pool job: real
Blender frames, one task failing its first attempt (then rendering) and one failing every
attempt. The client runs as processes beside `local run`, reading the pool's folder."""

from __future__ import annotations

import hashlib
import html.parser
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import run_agent, start_agent
from helpers.jobclient import BROKEN, FLAKY, blender_job_spec, chromium_run

from node_agent.azurite import AzuriteServer
from node_agent.conventions import job_container
from node_agent.storage import BlobStore

JOB = "jc-local"


@dataclass
class Ran:
    workdir: Path
    run: subprocess.CompletedProcess[str]
    watch: subprocess.CompletedProcess[str]
    follow: subprocess.CompletedProcess[str]
    dest: Path
    spec: Path


def _finish(p: subprocess.Popen[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    out, err = p.communicate(timeout=timeout)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


@pytest.fixture(scope="module")
def ran(
    tmp_path_factory: pytest.TempPathFactory,
    azurite: AzuriteServer,
    blender_scene: Path,
) -> Ran:
    """`local run` with `job watch` and `job download --follow` started beside it."""
    from helpers import make_spec_doc

    from node_agent.redact import Redactor
    from node_agent.spec import spec_from_data

    tmp = tmp_path_factory.mktemp("jobclient")
    store = BlobStore(spec_from_data(make_spec_doc(azurite.account_url)).storage, Redactor())
    spec = blender_job_spec(tmp, azurite.account_url, store, blender_scene, JOB)
    # the job's output container exists before the job, as `batch submit` leaves it (on the
    # tree of 25 Nov a new job's first upload met ContainerNotFound: the render task's own
    # container set-up is another helper's work in progress)
    store.ensure_container(job_container(JOB))
    workdir = tmp / "pool"
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    run = start_agent(
        ["local", "run", str(spec), "--nodes", "2", "--workdir", str(workdir)], **pipes
    )
    try:
        watch = start_agent(
            ["job", "watch", JOB, "--local", str(workdir), "--poll", "0.2"], **pipes
        )
        job_file = workdir / "localpool" / f"job-{JOB}.json"
        for _ in range(600):
            if job_file.exists() or run.poll() is not None:
                break
            time.sleep(0.1)
        dest = tmp / "frames"
        follow = start_agent(
            [
                "job",
                "download",
                JOB,
                str(dest),
                "--local",
                str(workdir),
                "--follow",
                "--poll",
                "0.3",
            ],
            **pipes,
        )
        return Ran(workdir, _finish(run), _finish(watch), _finish(follow), dest, spec)
    finally:
        for p in (run,):
            if p.poll() is None:
                p.kill()


def test_local_run_has_a_retried_and_a_failed_task(ran: Ran) -> None:
    assert ran.run.returncode == 10, ran.run.stdout + ran.run.stderr
    record = json.loads((ran.workdir / "localpool" / f"run-{JOB}.json").read_text())
    attempts = {}
    for r in record["runs"]:
        if r["kind"] == "task":
            attempts.setdefault(r["task_id"], []).append(r["exit_code"])
    assert sorted(attempts[FLAKY]) == [0, 10] and attempts[BROKEN] == [10, 10]


def test_watch_follows_the_job_and_exits_with_its_result(ran: Ran) -> None:
    out = ran.watch.stdout
    assert ran.watch.returncode == 10, out + ran.watch.stderr  # the job's result: render_failed
    lines = out.splitlines()
    # live: it saw tasks running before they ended, and job prep per node
    nodes = json.loads((ran.workdir / "localpool" / f"run-{JOB}.json").read_text())["nodes"]
    assert any(" running on " in ln for ln in lines), out
    for n in nodes:
        assert f"node {n}: job prep done" in lines, out
    assert f"task {FLAKY} (frames 3-4) done on" in out and "after 2 attempt(s)" in out
    failed = [ln for ln in lines if ln.startswith(f"task {BROKEN} (frames 5-6) FAILED")]
    assert failed, out
    assert "after 2 attempt(s): exit 10 render_failed: renderer exited with code 1" in failed[0]
    stderr_path = Path(failed[0].split("[", 1)[1].split(",")[0])
    assert stderr_path.name == "stderr.txt" and stderr_path.is_file()
    assert f"{BROKEN} fails on purpose" in stderr_path.read_text()
    assert "renderer.log" in failed[0]
    assert lines[-2].startswith(f"job {JOB} ended: FAILED (exit 10; failed tasks: {BROKEN})")
    assert "4/6 frames uploaded" in out


def _md5s(store: BlobStore) -> dict[str, bytes]:
    return {
        b.name.rsplit("/", 1)[1]: b.content_md5 or b""
        for b in store.list_blobs(job_container(JOB))
        if "/$TaskOutput/" in b.name
    }


def test_download_follow_gets_every_frame_flat_and_verified(ran: Ran, store: BlobStore) -> None:
    assert ran.follow.returncode == 0, ran.follow.stdout + ran.follow.stderr
    names = sorted(p.name for p in ran.dest.iterdir() if not p.name.startswith("."))
    assert names == [f"frame_{n:04d}.png" for n in range(1, 5)]  # flat, by the output pattern
    md5s = _md5s(store)
    for n in names:
        data = (ran.dest / n).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"  # real Blender frames
        assert hashlib.md5(data).digest() == md5s[n]
    passes = int(ran.follow.stdout.rsplit("(", 1)[1].split()[0])
    assert passes >= 2, ran.follow.stdout  # it kept looking while the job ran


def test_download_skips_identical_and_repairs_the_rest(
    ran: Ran, tmp_path: Path, store: BlobStore
) -> None:
    dest = tmp_path / "dl"
    args = ["job", "download", JOB, str(dest), "--local", str(ran.workdir)]
    first = run_agent([*args, "--logs"])
    assert first.returncode == 0, first.stderr
    assert (dest / "logs" / BROKEN / "stderr.txt").is_file()
    again = run_agent(args)
    assert "0 file(s) downloaded" in again.stdout and "4 already there" in again.stdout
    # a damaged frame (same size) and a missing one are fetched again; the others are not
    victim = dest / "frame_0002.png"
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF
    victim.write_bytes(bytes(data))
    (dest / "frame_0003.png").unlink()
    # an interrupted run's half-written file is cleared, never taken for a frame
    (dest / ".node-agent-partial").mkdir(exist_ok=True)
    (dest / ".node-agent-partial" / ".frame_0003.png.1a2b3c4d.part").write_bytes(b"half")
    repair = run_agent(args)
    assert "2 file(s) downloaded" in repair.stdout and "2 already there" in repair.stdout
    md5s = _md5s(store)
    for n in ("frame_0002.png", "frame_0003.png"):
        assert hashlib.md5((dest / n).read_bytes()).digest() == md5s[n]
    assert not (dest / ".node-agent-partial").exists()


class _Dom(html.parser.HTMLParser):
    """What the test reads from Chromium's DOM: elements with their attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def having(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [
            a
            for t, a in self.elements
            if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]


def test_report_renders_in_headless_chromium(ran: Ran, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    res = run_agent(["job", "report", JOB, "--local", str(ran.workdir), "-o", str(page)])
    assert res.returncode == 0, res.stderr
    raw = page.read_text()
    assert "<script" not in raw and "<link" not in raw  # self-contained: nothing to fetch
    dom_run = chromium_run(tmp_path / "profile", ["--dump-dom", page.as_uri()])
    assert dom_run.returncode == 0, dom_run.stderr[-2000:]
    dom = _Dom()
    dom.feed(dom_run.stdout)
    states = {a["data-task"]: a["data-state"] for a in dom.having("tr") if "data-task" in a}
    assert states == {"frames-00001-00002": "done", FLAKY: "done", BROKEN: "failed"}
    thumbs = dom.having("img")
    assert len(thumbs) == 4 and all(a["src"].startswith("data:image/png;base64,") for a in thumbs)
    assert {a["data-frame"] for a in dom.having("figure", data_missing="1")} == {"5", "6"}
    lanes = {a["data-node"] for a in dom.having("div") if "data-node" in a}
    record = json.loads((ran.workdir / "localpool" / f"run-{JOB}.json").read_text())
    assert lanes == set(record["nodes"])
    kinds = {a["data-kind"] for a in dom.having("div") if "data-kind" in a}
    assert kinds == {"starttask", "jobpreparation", "task", "jobrelease"}
    text = " ".join(dom.text)
    assert "bytes synced" in text and "bytes uploaded" in text
    assert "renderer exited with code 1" in text and f"{BROKEN} fails on purpose" in text
    [result] = [a for a in dom.having("div") if a.get("id") == "result"]
    assert result["data-code"] == "10"
    shot = tmp_path / "report.png"
    snap = chromium_run(
        tmp_path / "profile2",
        ["--window-size=1280,1300", f"--screenshot={shot}", page.as_uri()],
    )
    assert snap.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", snap.stderr


def test_end_of_local_run_writes_the_report_and_names_each_failure(ran: Ran) -> None:
    """What `local run` can call at its end (node_agent.jobclient.report.end_of_local_run)."""
    from node_agent.jobclient.report import end_of_local_run

    said: list[str] = []
    out = end_of_local_run(ran.workdir, JOB, ran.spec, said.append)
    assert out == ran.workdir / "localpool" / f"report-{JOB}.html" and out.is_file()
    [failed] = [s for s in said if " FAILED " in s]
    assert failed.startswith(f"task {BROKEN} (frames 5-6) FAILED") and "stderr.txt" in failed
    assert said[-1] == f"report: {out}"


def test_requeue_failed_renders_only_the_failed_frames(ran: Ran, tmp_path: Path) -> None:
    """After the TD fixes the cause (here: the stand-in stops failing), requeue renders
    frames 5-6 only, into the job's container: a download of the job has all six frames."""
    state = ran.spec.parent / "state"
    plan_file = ran.spec.parent / "bin" / "jobclient_plan.json"
    plan = json.loads(plan_file.read_text())
    plan_file.write_text(json.dumps({**plan, "fail_always": []}))
    before = (state / "rendered.txt").read_text().splitlines()
    res = run_agent(
        ["job", "requeue", JOB, "--failed", "--local", str(ran.workdir), "--spec", str(ran.spec)]
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"requeue: job {JOB}-rq1 renders the 2 failed frame(s) 5-6 of job {JOB}" in res.stdout
    after = (state / "rendered.txt").read_text().splitlines()
    assert after[len(before) :] == [f"{BROKEN} 5,6"]  # one task, exactly the failed frames
    dest = tmp_path / "all"
    got = run_agent(["job", "download", JOB, str(dest), "--local", str(ran.workdir)])
    assert got.returncode == 0, got.stderr
    assert sorted(p.name for p in dest.iterdir() if not p.name.startswith(".")) == [
        f"frame_{n:04d}.png" for n in range(1, 7)
    ]


def test_watch_of_a_job_whose_job_prep_fails_everywhere(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """Bad scene name: job prep fails on both nodes and ends the job; watch says so per node
    (state, exit, reason), the tasks never left the queue, and it exits with job prep's code."""
    from helpers import run_local_pool, stand_in_job_doc

    doc, _ = stand_in_job_doc(
        azurite.account_url,
        store,
        tmp_path,
        "jc-prepfail",
        frames="1-4",
        frames_per_task=2,
    )
    doc["render"]["scene"] = "no-such-scene.blend"  # type: ignore[index]
    spec = tmp_path / "job.yaml"
    spec.write_text(json.dumps(doc))
    run = run_local_pool(spec, tmp_path / "pool", 2, 1, "--allow-missing")
    assert run.returncode == 2, run.stdout + run.stderr
    res = run_agent(["job", "watch", "jc-prepfail", "--local", str(tmp_path / "pool")])
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    prep = [ln for ln in lines if "job prep failed" in ln]
    assert prep and all("(exit 2: render.scene: 'no-such-scene.blend'" in ln for ln in prep), lines
    assert "task frames-00001-00002 (frames 1-2) queued" in lines
    assert "task frames-00003-00004 (frames 3-4) queued" in lines
    assert lines[-1].startswith(
        "job jc-prepfail ended: FAILED (exit 2; failed tasks: no task failed)"
    )
    assert "terminate by api: job preparation failed on node node-" in lines[-1]
