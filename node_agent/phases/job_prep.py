"""Job preparation: keep the job's spec on the node and bring its assets (incremental sync)."""

from __future__ import annotations

import json
from pathlib import Path

from node_agent.assets import sync_job_assets
from node_agent.errors import AssetError, SpecError
from node_agent.runtime import Phase, write_atomic
from node_agent.spec import load_spec
from node_agent.sync.access import Access


def run(phase: Phase, spec_path: Path) -> int:
    node = phase.node
    spec = load_spec(spec_path)
    job_dir = node.job_dir()
    write_atomic(node.job_spec_path(), spec.model_dump_json(indent=2).encode())
    access = Access(spec.storage, phase.redactor, phase.env)
    assets = node.job_assets_dir()
    phase.log.info("syncing %d asset source(s) into %s", len(spec.assets), assets)
    summary = sync_job_assets(node, spec, access)
    phase.log.info("%s", summary.line())
    record = json.dumps(summary.record()).encode()
    write_atomic(job_dir / "prep.json", record)
    write_atomic(node.task_dir / "sync-summary.json", record)
    if summary.refused:
        raise AssetError(
            f"{summary.refused} blob name(s) refused (first: {summary.refused_names[0]}); "
            "the other assets were synced"
        )
    scene = assets / spec.render.scene
    if not scene.is_file():
        raise SpecError(f"render.scene: '{spec.render.scene}' is not in the job's assets")
    return 0
