"""`job report` / `job watch` on a local pool whose task folders hold what a renderer left
there: a huge (sparse) stderr.txt, lines with markup and a SAS, a summary.json of the wrong
shape. The page stays small, escaped and without the secret; nothing crashes. Real Azurite,
node-agent as a process under a memory limit."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import time
from pathlib import Path

from helpers import SAS_VAR, agent_cmd, azurite_sas, make_spec_doc, run_agent, sas_sig, seed
from helpers.node import REPO

from node_agent.azurite import AzuriteServer
from node_agent.conventions import job_container
from node_agent.storage import BlobStore

JOB = "rv-report"
SCRIPT = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def _pool(tmp_path: Path, sas: str) -> Path:
    """A local pool folder as `local run` leaves it: two tasks, both failed on node-1."""
    pool = tmp_path / "pool" / "localpool"
    node = pool / "nodes" / "node-1"
    tasks = [
        {"id": "frames-1", "commandLine": "node-agent render --frames 1-1"},
        {"id": "frames-2", "commandLine": "node-agent render --frames 2-2"},
    ]
    (pool).mkdir(parents=True)
    (pool / f"job-{JOB}.json").write_text(json.dumps({"job": {"id": JOB}, "tasks": tasks}))
    runs = [
        {"node": "node-1", "kind": "task", "task_id": t["id"], "exit_code": 10, "attempt": 0,
         "job": JOB, "seconds": 1.0}
        for t in tasks
    ]  # fmt: skip
    node.mkdir(parents=True)
    (node / "events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in runs))
    time.sleep(0.05)
    (pool / f"run-{JOB}.json").write_text(json.dumps({"exit_code": 10, "runs": runs}))
    work = node / "workitems" / JOB / "job-1"
    one, two = work / "frames-1", work / "frames-2"
    one.mkdir(parents=True)
    two.mkdir(parents=True)
    with (one / "stderr.txt").open("wb") as fh:  # 3 GiB, mostly a hole
        fh.truncate(3 * 2**30)
        fh.seek(0, os.SEEK_END)
        fh.write(b"\n" + b"y" * (4 * 2**20) + b"\n")  # one 4 MiB line
        fh.write(f"{SCRIPT}\nGET https://acct/c/b?{sas}\nnode-agent: error: it broke\n".encode())
    (two / "stderr.txt").write_text(f"node-agent: error: {SCRIPT}\n")
    (two / "summary.json").write_text(
        json.dumps({"times": [1], "outputs": ["x", {"bytes": "many"}], "reason": ["a"]})
    )
    return tmp_path / "pool"


def _limited(args: list[str], env: dict[str, str], mem: int) -> subprocess.CompletedProcess[str]:
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))

    return subprocess.run(
        agent_cmd(*args), env=env, cwd=REPO, capture_output=True, text=True, timeout=300,
        preexec_fn=cap, check=False,
    )  # fmt: skip


def test_report_of_hostile_task_folders_is_bounded_escaped_and_redacted(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    sas = azurite_sas()
    seed(store, job_container(JOB), {"frames-9/$TaskLog/summary.json": b"{}"})
    doc = make_spec_doc(azurite.account_url)
    doc["job_id"] = JOB
    doc["storage"] = {"account_url": azurite.account_url, "auth": {"kind": "sas", "env": SAS_VAR}}
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps(doc))
    pool = _pool(tmp_path, sas)
    env = {**os.environ, SAS_VAR: sas}
    out = tmp_path / "report.html"
    args = ["job", "report", JOB, "--local", str(pool), "--spec", str(spec), "-o", str(out)]
    r = _limited(args, env, 1536 * 2**20)
    assert r.returncode == 0, r.stdout + r.stderr
    page = out.read_text()
    assert len(page) < 256 * 1024, len(page)
    assert "<script>" not in page and "<img src=x" not in page
    assert "&lt;script&gt;" in page  # shown, escaped
    assert sas_sig(sas) not in page and sas not in page
    assert "it broke" in page
    watch = _limited(
        ["job", "watch", JOB, "--local", str(pool), "--spec", str(spec), "--plain"],
        env,
        1536 * 2**20,
    )
    assert watch.returncode == 10, watch.stdout + watch.stderr
    assert sas_sig(sas) not in watch.stdout + watch.stderr


def test_watch_prints_no_terminal_control_from_a_task_log(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """A renderer's last stderr line with escape sequences (OSC 52 writes the TD's clipboard,
    CSI 2J clears the screen) and a right-to-left override: shown inert, not sent to the
    terminal as they are."""
    hostile = "node-agent: error: \x1b]52;c;cm0gLXJmIH4K\x07\x1b[2Jboom \u202egnp.exe\x9b31m"
    pool = _pool(tmp_path, "sv=x&sig=y")
    work = pool / "localpool" / "nodes" / "node-1" / "workitems" / JOB / "job-1"
    (work / "frames-1" / "stderr.txt").write_text(hostile + "\n")
    (work / "frames-2" / "summary.json").write_text(json.dumps({"reason": hostile}))
    doc = make_spec_doc(azurite.account_url)
    doc["job_id"] = JOB
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps(doc))
    args = ["job", "watch", JOB, "--local", str(pool), "--spec", str(spec), "--plain"]
    r = subprocess.run(agent_cmd(*args), cwd=REPO, capture_output=True, timeout=120, check=False)
    assert r.returncode == 10, r.stdout + r.stderr
    out = r.stdout.decode("utf-8")
    assert "boom" in out
    for bad in ("\x1b", "\x07", "\u202e", "\x9b"):
        assert bad not in out, repr(out)
    report = tmp_path / "r.html"
    rr = run_agent(
        ["job", "report", JOB, "--local", str(pool), "--spec", str(spec), "-o", str(report)]
    )
    assert rr.returncode == 0, rr.stderr
    assert "\x1b" not in report.read_text() and "\u202e" not in report.read_text()
