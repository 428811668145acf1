"""`node-agent doctor` and `status` on a node that the local pool used."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import yaml
from helpers import make_spec_doc, node_env, run_agent

from node_agent.azurite import AzuriteServer


def test_doctor_and_status_on_a_node(tmp_path: Path, azurite: AzuriteServer) -> None:
    root = tmp_path / "node"
    env = node_env(root)
    assert run_agent(["start-task"], env).returncode == 0
    # a finished task, as the render phase leaves it
    task = root / "workitems" / "job-x" / "job-1" / "frames-00001-00002"
    task.mkdir(parents=True)
    (task / "stdout.txt").write_text("hello\n")
    (task / "summary.json").write_text(
        json.dumps(
            {
                "job": "job-x",
                "task": "frames-00001-00002",
                "exit_code": 11,
                "exit_class": "license",
                "wall_s": 3.2,
                "finished_at": "2026-11-22T01:02:03Z",
            }
        )
    )
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(make_spec_doc(azurite.account_url)))

    res = run_agent(["doctor", "--root", str(root), "--spec", str(spec), "--json"])
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    by_name = {c["name"]: c for c in doc["checks"]}
    assert by_name["storage"]["ok"] and "answered" in by_name["storage"]["detail"]
    assert by_name["node folders"]["ok"]
    assert doc["last_tasks"][0]["exit_class"] == "license"

    text = run_agent(["doctor", "--root", str(root), "--spec", str(spec)]).stdout
    assert "job-x/frames-00001-00002  exit 11 (license)" in text

    # storage that does not answer is a failed required check: exit 20
    bad = make_spec_doc("http://127.0.0.1:9/devstoreaccount1")
    spec.write_text(yaml.safe_dump(bad))
    res = run_agent(["doctor", "--root", str(root), "--spec", str(spec)])
    assert res.returncode == 20
    assert "FAIL  storage" in res.stdout

    status = run_agent(["status", "--root", str(root)])
    assert status.returncode == 0
    assert "job-x/frames-00001-00002" in status.stdout and str(task / "stdout.txt") in status.stdout


def test_doctor_without_a_node_says_where_it_looked(tmp_path: Path) -> None:
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("AZ_BATCH_")}
    res = run_agent(["doctor"], env)
    assert res.returncode == 2
    assert res.stderr.startswith("node-agent: error: no Batch node found: pass --root")
    res = run_agent(["doctor", "--root", str(tmp_path / "nope")], env)
    assert res.returncode == 2 and "is not a folder" in res.stderr


def _checks(res: subprocess.CompletedProcess[str]) -> dict[str, dict[str, object]]:
    return {c["name"]: c for c in json.loads(res.stdout)["checks"]}


def test_doctor_resolves_the_specs_renderer_like_the_render_task(
    tmp_path: Path, azurite: AzuriteServer
) -> None:
    root = tmp_path / "node"
    env = {k: v for k, v in node_env(root).items() if not k.upper().startswith("MAYA_")}
    assert run_agent(["start-task"], env).returncode == 0
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(make_spec_doc(azurite.account_url, renderer="maya")))
    res = run_agent(["doctor", "--root", str(root), "--spec", str(spec), "--json"], env)
    assert res.returncode == 20, res.stdout + res.stderr
    check = _checks(res)["renderers"]
    assert not check["ok"] and check["required"]
    assert "maya" in str(check["detail"]) and "'Render' not found" in str(check["detail"])

    # The image's MAYA_<version>_EXEC variable is what the render task would run.
    fake = tmp_path / "maya2024" / "Render"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    with_exec = {**env, "MAYA_2024_EXEC": str(fake)}
    res = run_agent(["doctor", "--root", str(root), "--spec", str(spec), "--json"], with_exec)
    assert res.returncode == 0, res.stdout
    assert _checks(res)["renderers"]["detail"] == f"maya ({fake})"

    # render.executable that is not on the node: named in the failure.
    spec.write_text(
        yaml.safe_dump(
            make_spec_doc(azurite.account_url, renderer="arnold", executable="/opt/nope/kick")
        )
    )
    res = run_agent(["doctor", "--root", str(root), "--spec", str(spec), "--json"], env)
    assert res.returncode == 20
    detail = str(_checks(res)["renderers"]["detail"])
    assert detail.startswith("arnold: render.executable '/opt/nope/kick' does not exist")


def test_doctor_free_disk_minimum_comes_from_the_pool_config(tmp_path: Path) -> None:
    root = tmp_path / "node"
    env = node_env(root)
    assert run_agent(["start-task"], env).returncode == 0
    res = run_agent(["doctor", "--root", str(root), "--json"], env)
    disk = _checks(res)["free disk"]
    assert disk["ok"] and "minimum 2 GiB, default" in str(disk["detail"])

    cfg = tmp_path / "pool.json"
    cfg.write_text(json.dumps({"min_free_temp_disk_gb": 1000000}))
    started = run_agent(["start-task", "--pool-config", str(cfg)], env)
    assert started.returncode == 20, "the start task's own health check refuses the node"
    res = run_agent(["doctor", "--root", str(root), "--json"], env)
    assert res.returncode == 20
    disk = _checks(res)["free disk"]
    assert not disk["ok"] and disk["required"]
    detail = str(disk["detail"])
    free = detail.split(" GiB free")[0]
    assert float(free.replace(",", "")) > 0
    assert "(minimum 1,000,000 GiB, from the pool config)" in detail


def test_doctor_warns_on_cache_over_budget_and_status_lists_prepared_job(
    tmp_path: Path, azurite: AzuriteServer
) -> None:
    from azure.storage.blob import BlobServiceClient

    container = f"ops-{uuid.uuid4().hex[:10]}"
    svc = BlobServiceClient.from_connection_string(azurite.connection_string)
    svc.create_container(container)
    scene = b"s" * 300_000
    svc.get_blob_client(container, "proj/spin.blend").upload_blob(scene)
    root = tmp_path / "node"
    job = "job-cached"
    doc = make_spec_doc(azurite.account_url)
    doc.update(
        job_id=job,
        assets=[{"name": "scene", "container": container, "prefix": "proj/"}],
        policies={"cache_budget_mb": 0},
    )
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(doc))
    assert run_agent(["start-task"], node_env(root)).returncode == 0
    prep = run_agent(["job-prep", "--spec", str(spec)], node_env(root, job, "jobpreparation"))
    assert prep.returncode == 0, prep.stderr

    # The spec job prep stored is the one the doctor reads (no --spec).
    res = run_agent(["doctor", "--root", str(root)])
    assert res.returncode == 0, res.stdout
    [line] = [ln for ln in res.stdout.splitlines() if "shared cache" in ln]
    assert line.startswith("warn  shared cache")
    assert "over its budget of 0 MiB" in line

    status = run_agent(["status", "--root", str(root), "--json"])
    [cached] = json.loads(status.stdout)["jobs"]
    assert cached["job"] == job and cached["bytes"] >= len(scene)
    text = run_agent(["status", "--root", str(root)]).stdout
    [row] = [ln for ln in text.splitlines() if ln.strip().startswith(job)]
    assert "0.3 MiB" in row

    release = run_agent(["job-release"], node_env(root, job, "jobrelease"))
    assert release.returncode == 0, release.stderr
    assert json.loads(run_agent(["status", "--root", str(root), "--json"]).stdout)["jobs"] == []
