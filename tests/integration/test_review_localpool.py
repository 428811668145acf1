"""The local pool's own records (job-<id>.json, run-<id>.json, the pool folder) never follow a
link planted at their names: the workdir may be shared, and `local run` may run as root."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from helpers import run_local_pool, stand_in_job_doc

from node_agent.azurite import AzuriteServer
from node_agent.storage import BlobStore


def test_links_at_the_pool_records_are_replaced_not_followed(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    doc, _ = stand_in_job_doc(
        azurite.account_url, store, tmp_path, "recordlinks", frames="1-2", frames_per_task=2
    )
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(doc))
    pool_dir = tmp_path / "pool" / "localpool"
    pool_dir.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    victims = {}
    for name in (f"job-{doc['job_id']}.json", f"run-{doc['job_id']}.json"):
        victim = outside / name
        victim.write_text("precious\n")
        (pool_dir / name).symlink_to(victim)
        victims[name] = victim
    res = run_local_pool(spec, tmp_path / "pool", 1, 1)
    assert res.returncode == 0, res.stdout + res.stderr
    for name, victim in victims.items():
        assert victim.read_text() == "precious\n", f"{name}: the link was followed"
        assert not (pool_dir / name).is_symlink()
    record = json.loads((pool_dir / f"run-{doc['job_id']}.json").read_text())
    assert record["frames"] == 2


def test_fresh_run_with_a_linked_pool_folder_removes_the_link_not_its_target(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    doc, _ = stand_in_job_doc(
        azurite.account_url, store, tmp_path, "poollink", frames="1-2", frames_per_task=2
    )
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(doc))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("precious\n")
    (tmp_path / "pool").mkdir()
    (tmp_path / "pool" / "localpool").symlink_to(outside)
    res = run_local_pool(spec, tmp_path / "pool", 1, 1, "--fresh")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "Traceback" not in out and "internal error" not in out, out
    assert (outside / "keep.txt").read_text() == "precious\n"
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"], "written through the link"
    assert not (tmp_path / "pool" / "localpool").is_symlink()
