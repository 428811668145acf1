"""issue 15: a node's whole history in `status` and `doctor`: start task, job prep, render
tasks and job release, also the runs that failed before the renderer started."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from helpers import make_spec, make_task, node_env, run_agent, seed, write_spec

from node_agent.azurite import AzuriteServer
from node_agent.storage import BlobStore

WRONG_KEY = base64.b64encode(b"not the account key, 32 bytes!!!").decode()


def _runs(root: Path) -> list[dict[str, object]]:
    res = run_agent(["status", "--root", str(root), "--json"])
    assert res.returncode == 0, res.stderr
    return list(json.loads(res.stdout)["phase_runs"])


def test_status_and_doctor_show_every_phase_run(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    root = tmp_path / "node"
    assert run_agent(["start-task"], node_env(root)).returncode == 0
    seed(store, "hist", {"p/scene.blend": b"scene"})

    # job prep with a wrong key: 403 from storage, before anything renders
    doc = make_spec(azurite.account_url, "hist", "p/", "job-bad")
    doc["storage"] = {
        "account_url": azurite.account_url,
        "auth": {"kind": "account_key", "env": "HIST_STORAGE_KEY"},
    }
    spec = write_spec(tmp_path / "bad.json", doc)
    env = {**node_env(root, "job-bad"), "HIST_STORAGE_KEY": WRONG_KEY}
    prep = run_agent(["job-prep", "--spec", str(spec)], env)
    assert prep.returncode == 4, prep.stderr

    # a render task whose renderer is not on the node
    t = make_task(
        root, azurite.account_url, job="job-r", task="frames-1",
        renderer="vray", executable=str(tmp_path / "no-vray"), scene="s.vrscene", frames="1",
    )  # fmt: skip
    assert t.run("1") == 10
    # job release of the failed job
    rel = run_agent(["job-release"], node_env(root, "job-bad", "jobrelease"))
    assert rel.returncode in (0, 17), rel.stderr

    runs = _runs(root)
    by_phase = {str(r["phase"]): r for r in runs}
    assert set(by_phase) == {"start-task", "job-prep", "render", "job-release"}, runs
    assert [r["phase"] for r in runs][0] == "job-release"  # newest first
    p = by_phase["job-prep"]
    assert p["exit_code"] == 4 and p["exit_name"] == "storage" and p["job"] == "job-bad"
    assert isinstance(p["duration_s"], float)
    assert "403" in str(p["cause"]) or "denied" in str(p["cause"]).lower(), p
    r = by_phase["render"]
    assert r["exit_code"] == 10 and r["label"] == "job-r/frames-1"
    assert "no-vray" in str(r["cause"])
    assert by_phase["start-task"]["exit_name"] == "ok"
    assert WRONG_KEY not in json.dumps(runs)

    # the failed task's own phase log holds the cause, not only `exit N`
    log = Path(str(r["log"])).read_text()
    assert "exit 10 (render_failed)" in log and "no-vray" in log

    text = run_agent(["status", "--root", str(root)]).stdout
    line = next(ln for ln in text.splitlines() if "job-bad/jobpreparation" in ln)
    assert "storage (4)" in line and "job-prep" in line, text
    assert "render_failed (10)" in text and "no-vray" in text

    doctor = run_agent(["doctor", "--root", str(root), "--spec", str(spec), "--json"])
    ddoc = json.loads(doctor.stdout)
    assert {r["phase"] for r in ddoc["phase_runs"]} == set(by_phase)
    dtext = run_agent(["doctor", "--root", str(root), "--spec", str(spec)]).stdout
    assert "last phase runs on this node" in dtext and "job-bad/jobpreparation" in dtext
